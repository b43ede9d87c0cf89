//! Where log lines go and how they look.
//!
//! Under systemd, standard error goes to the journal, which stamps each line
//! itself; elsewhere an operator may want rotating files. Either way lines go
//! through `tracing-appender`'s non-blocking writer, so a slow disk or a full
//! pipe never stalls the echo path. Should the writer fall more than its
//! buffer (128k lines) behind, it drops lines rather than block the
//! runtime, and the count of dropped lines is logged when the daemon stops.
//! The level sits behind a reload handle so that a SIGHUP can change it
//! without a restart.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry, reload};

use crate::server::config::{LogConfig, LogFormat, LogLevel, Rotation};
use crate::server::error::StartupError;

/// The installed logger. Dropping it flushes every buffered line, so it must
/// live until the process is about to exit, on every path.
pub(crate) struct Logging {
    level: reload::Handle<LevelFilter, Registry>,
    to_file: bool,
    dropped: ErrorCounter,
    _flush_on_drop: WorkerGuard,
}

impl Logging {
    /// Installs the global logger described by `config`.
    pub(crate) fn init(config: &LogConfig) -> Result<Logging, StartupError> {
        let (writer, flush_on_drop) = match &config.directory {
            Some(directory) => {
                let cannot_open = |message: String| StartupError::LogDirectory {
                    directory: directory.clone(),
                    message,
                };
                // Created here rather than by the appender, which would first
                // complain on stderr that it cannot list a missing directory.
                std::fs::create_dir_all(directory).map_err(|e| cannot_open(e.to_string()))?;
                let appender = rolling::Builder::new()
                    .rotation(match config.rotation {
                        Rotation::Daily => rolling::Rotation::DAILY,
                        Rotation::Hourly => rolling::Rotation::HOURLY,
                        Rotation::Never => rolling::Rotation::NEVER,
                    })
                    .filename_prefix("echo-server")
                    .filename_suffix("log")
                    .max_log_files(if config.max_files == 0 {
                        usize::MAX
                    } else {
                        config.max_files
                    })
                    .build(directory)
                    .map_err(|e| cannot_open(error_chain(&e)))?;
                non_blocking().finish(appender)
            }
            None => non_blocking().finish(std::io::stderr()),
        };
        let dropped = writer.error_counter();
        let to_file = config.directory.is_some();
        let ansi = !to_file && std::io::stderr().is_terminal();
        // The journal records its own timestamps.
        let journald = !to_file && std::env::var_os("JOURNAL_STREAM").is_some();

        let (filter, level) = reload::Layer::new(level_filter(config.level));
        let format = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_target(false);
        let format = match (config.format, journald) {
            (LogFormat::Json, _) => format
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .boxed(),
            (LogFormat::Text, true) => format.with_ansi(false).without_time().boxed(),
            (LogFormat::Text, false) => format.with_ansi(ansi).boxed(),
        };
        // rustls logs through `log` what a peer can trigger on every
        // connection (a warning for an IP address sent as the server name,
        // from socat and `openssl s_client`): unthrottled, that would flood
        // the log. Failed handshakes are logged, throttled, by `tls`.
        let quiet_rustls =
            tracing_subscriber::filter::filter_fn(|meta| !meta.target().starts_with("rustls"));
        tracing_subscriber::registry()
            .with(filter)
            .with(format.with_filter(quiet_rustls))
            .try_init()
            .map_err(|e| StartupError::Runtime(std::io::Error::other(e)))?;
        Ok(Logging {
            level,
            to_file,
            dropped,
            _flush_on_drop: flush_on_drop,
        })
    }

    /// Changes the level of the running logger.
    pub(crate) fn set_level(&self, level: LogLevel) {
        // Fails only if the subscriber is gone, when nothing is logged anyway.
        let _ = self.level.modify(|filter| *filter = level_filter(level));
    }

    /// How many lines were dropped because the writer could not keep up.
    pub(crate) fn dropped_lines(&self) -> usize {
        self.dropped.dropped_lines()
    }

    /// True when lines go to files rather than to standard error.
    pub(crate) fn to_file(&self) -> bool {
        self.to_file
    }
}

fn non_blocking() -> NonBlockingBuilder {
    NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("echo-server-log")
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// `InitError` says only "failed to create initial log file"; the cause
/// (permission denied, read-only file system) is what the operator needs.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
