//! The daemon's life: load the configuration, bind, serve, reload on SIGHUP,
//! and stop gracefully on SIGTERM.
//!
//! `launch` is everything `main` would otherwise hold, so the binary stays a
//! thin argument parser and every path out of the daemon, including errors,
//! goes through one place that flushes the log and picks the exit code.

use std::io::PipeWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

#[cfg(unix)]
use crate::server::config::DAEMON_LOG_DIRECTORY;
use crate::server::config::{
    CONFIG_ENV_VAR, Config, ConfigSource, LogConfig, Overrides, SYSTEM_CONFIG_PATH, ServerConfig,
    TlsConfig,
};
use crate::server::error::StartupError;
use crate::server::limits::Limits;
use crate::server::listeners::{self, Listeners, Origin};
use crate::server::logging::Logging;
use crate::server::mailbox::Mailbox;
use crate::server::metrics::{self, counters::Reloads};
use crate::server::notify::Notifier;
use crate::server::shutdown::{RUNTIME_SHUTDOWN_TIMEOUT, ShutdownController};
use crate::server::signals::{Request, Signals};
use crate::server::tls::Tls;
use crate::server::udp::{UdpEndpoint, UdpWatch};
use crate::server::workers::Workers;
use crate::shared::exit_code;
use crate::shared::output;

/// How often the status line shown by `systemctl status` is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// What the command line asked for.
#[derive(Debug, Default)]
pub struct Launch {
    pub config_path: Option<PathBuf>,
    pub overrides: Overrides,
    /// Validate and print the effective configuration, then exit.
    pub check_config: bool,
    /// With `check_config`: the configuration file the daemon runs with,
    /// against which to name the changes that need a restart.
    pub running_config: Option<PathBuf>,
    /// Fork into the background as a classic daemon (Unix only).
    pub daemon: bool,
}

/// Runs the daemon to the end and returns the process exit code. A panic
/// (a bug) still unwinds through here, flushing the log, and exits 70.
pub fn launch(launch: Launch) -> i32 {
    std::panic::catch_unwind(|| run_to_exit(launch)).unwrap_or(exit_code::SOFTWARE)
}

fn run_to_exit(launch: Launch) -> i32 {
    let source = ConfigSource::locate(
        launch.config_path.clone(),
        std::env::var_os(CONFIG_ENV_VAR).map(PathBuf::from),
        Path::new(SYSTEM_CONFIG_PATH),
    );
    let mut config = match Config::load(&source, &launch.overrides) {
        Ok(config) => config,
        Err(e) => return report(&e.into()),
    };
    // Read before privileges are dropped, and by --check-config too.
    let tls = match config.tls.as_ref().map(Tls::load).transpose() {
        Ok(tls) => tls.map(Arc::new),
        Err(e) => return report(&e.into()),
    };
    if launch.check_config {
        let mut output = String::new();
        if let Some(path) = launch.running_config {
            let running = ConfigSource::locate(Some(path), None, Path::new(SYSTEM_CONFIG_PATH));
            let running = match Config::load(&running, &launch.overrides) {
                Ok(running) => running,
                Err(e) => return report(&e.into()),
            };
            let pending = running.restart_only_changes(&config);
            if !pending.is_empty() {
                output = format!("# Takes effect only on a restart: {}\n", pending.join(", "));
            }
        }
        output.push_str(&format!(
            "# The configuration from {source} is valid. Effective settings:\n{}",
            config.to_toml()
        ));
        return output::print("echo-server", output.as_bytes(), exit_code::OK);
    }
    // Everything up to here runs in the foreground, where errors reach the
    // terminal (or the journal) directly.
    let (listeners, parent, pid_file) = match open_and_detach(&launch, &mut config) {
        Ok(started) => started,
        Err(e) => return report(&e),
    };
    let mut notifier = Notifier::new(parent);
    let logging = match Logging::init(&config.log) {
        Ok(logging) => logging,
        Err(e) => return fail(&mut notifier, &e),
    };
    // The control side only: TCP connections are served by the workers.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&mut notifier, &StartupError::Runtime(e)),
    };
    let service = Service {
        config,
        source,
        overrides: launch.overrides,
        tls,
    };
    let result = runtime.block_on(run(service, listeners, &logging, &mut notifier));
    // What is left of UDP and the control tasks is dropped here (TCP
    // connections were closed with their workers).
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    // Removed while the log can still say so if that fails.
    #[cfg_attr(not(unix), allow(clippy::drop_non_drop))]
    drop(pid_file);
    match result {
        Ok(()) => exit_code::OK,
        Err(e) => {
            if logging.to_file() {
                error!("{e}");
            }
            drop(logging);
            fail(&mut notifier, &e)
        }
    }
}

/// `path` made absolute against the working directory (which the daemon is
/// about to leave).
#[cfg(unix)]
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(unix)]
type PidFileGuard = crate::server::daemon::PidFileGuard;
/// Without daemon mode there is never a pid file to remove.
#[cfg(not(unix))]
enum PidFileGuard {}

/// Binds (or takes the service manager's sockets) and, with `--daemon`,
/// forks into the background: past this point only the daemon runs.
fn open_and_detach(
    launch: &Launch,
    config: &mut Config,
) -> Result<(Listeners, Option<PipeWriter>, Option<PidFileGuard>), StartupError> {
    #[cfg(unix)]
    if launch.daemon {
        use crate::server::daemon::{DaemonOptions, detach, prepare};

        // The daemon works from `/`: relative paths are resolved now.
        let log_directory = config
            .log
            .directory
            .get_or_insert_with(|| DAEMON_LOG_DIRECTORY.into());
        *log_directory = absolute(log_directory);
        let options = DaemonOptions {
            pid_file: absolute(&config.daemon.pid_file),
            user: config.daemon.user.clone(),
            group: config.daemon.group.clone(),
            log_directory: log_directory.clone(),
        };
        let prepared = prepare(&options)?;
        let listeners = open_listeners(config)?;
        let (parent, pid_file) = detach(&options, prepared)?;
        return Ok((listeners, Some(parent), Some(pid_file)));
    }
    #[cfg(not(unix))]
    let _ = launch;
    Ok((open_listeners(config)?, None, None))
}

/// Every socket the daemon serves: the echo's, and the metrics endpoint's.
/// Under socket activation the service manager passes them all, as it
/// passes the echo's: `[metrics] listen` applies no more than `listen`
/// does (the activated unit has no network to bind it in).
fn open_listeners(config: &Config) -> Result<Listeners, StartupError> {
    let mut listeners = Listeners::open(&config.server, config.tls.as_ref())?;
    if listeners.any_tls() && config.tls.is_none() {
        return Err(StartupError::Activation(
            "a socket named tls was passed, but the configuration has no [tls] section with the certificate to serve it with".to_string(),
        ));
    }
    if listeners.origin == Origin::Configured
        && let Some(address) = config.metrics.address()
    {
        listeners.metrics = Some(listeners::bind_metrics(address)?);
    }
    Ok(listeners)
}

fn report(error: &StartupError) -> i32 {
    eprintln!("echo-server: error: {error}");
    error.exit_code()
}

/// Reports a failure after the foreground part, to the `--daemon` parent
/// and the service manager too.
fn fail(notifier: &mut Notifier, error: &StartupError) -> i32 {
    notifier.failed(error.exit_code(), &error.to_string());
    report(error)
}

/// The running configuration and where it came from.
struct Service {
    config: Config,
    source: ConfigSource,
    overrides: Overrides,
    /// The TLS listeners' certificate, if `[tls]` was there at the start.
    tls: Option<Arc<Tls>>,
}

async fn run(
    mut service: Service,
    listeners: Listeners,
    logging: &Logging,
    notifier: &mut Notifier,
) -> Result<(), StartupError> {
    let mut signals = Signals::install().map_err(StartupError::Runtime)?;
    let limits = Limits::new(&service.config.server);
    let reloads = Arc::new(Reloads::new());
    let controller = ShutdownController::default();
    let addresses = listeners.describe().to_string();
    let proxied = listeners.describe_proxied();
    let unheeded = listeners.unheeded_proxy_entries(&service.config.server);
    let mut udp = Vec::new();
    let mut udp_counters = Vec::new();
    for socket in listeners.udp {
        let counters = Arc::new(metrics::counters::UdpCounters::default());
        let address = socket.local_addr().map_err(StartupError::Runtime)?;
        udp_counters.push((address.to_string(), Arc::clone(&counters)));
        udp.push(UdpEndpoint { socket, counters });
    }
    // Last, so that nothing can fail once connections are being accepted.
    let worker_count = Workers::count_for(service.config.server.workers);
    let mut workers = Workers::start(
        worker_count,
        listeners.tcp,
        udp,
        &limits,
        service.tls.as_ref(),
        &controller,
    )
    .map_err(StartupError::Runtime)?;
    let metrics_address = match listeners.metrics {
        Some(listener) => {
            let address = listener.local_addr().map_err(StartupError::Runtime)?;
            let sources = metrics::Sources {
                workers: workers.counters(),
                udp: udp_counters,
                reloads: Arc::clone(&reloads),
                limits: Arc::clone(&limits),
                started_at: metrics::counters::unix_seconds(std::time::SystemTime::now()),
            };
            metrics::start(listener, sources).map_err(StartupError::Runtime)?;
            Some(format!("http://{address}/metrics"))
        }
        None => None,
    };
    let sockets = match listeners.origin {
        Origin::Configured => "bound from the configuration",
        Origin::Activated => "passed by the service manager",
    };
    if !unheeded.is_empty() {
        warn!(configured = %unheeded,
            "[server] listen asks for the PROXY protocol, but no socket passed by the service manager is named proxy-protocol, so none takes the header (name the socket unit's sockets with FileDescriptorName=proxy-protocol)");
    }
    // The field is left out when no listener takes the PROXY protocol.
    let proxy_protocol = (!proxied.is_empty()).then_some(proxied.as_str());
    info!(version = env!("CARGO_PKG_VERSION"), config = %service.source, listening = %addresses, sockets,
        workers = worker_count, proxy_protocol, metrics = metrics_address, "echo-server started");
    notifier.ready(&status_line(&addresses, &limits));
    let heartbeat = tokio::spawn(heartbeat(
        notifier.without_parent(),
        addresses.clone(),
        Arc::clone(&limits),
        workers.mailboxes(),
        workers.udp_watches(),
    ));

    loop {
        match signals.recv().await {
            Request::Reload => {
                notifier.reloading();
                reloads.record(service.reload(&limits, logging));
                notifier.reloaded(&status_line(&addresses, &limits));
            }
            Request::Stop(signal) => {
                info!(signal, "stopping");
                notifier.stopping();
                break;
            }
        }
    }
    heartbeat.abort();
    controller.notify();
    // Once every worker has closed its copies, the listening sockets close.
    workers.stopped_accepting().await;
    let grace = service.config.server.shutdown_grace;
    info!(open_connections = limits.open_connections(), shutdown_grace = %grace,
        "stopping: no longer accepting connections");
    tokio::select! {
        finished = controller.wait(grace.0) => if finished {
            info!("all connections finished; exiting");
        } else {
            warn!(open_connections = limits.open_connections(),
                "shutdown grace period over; closing the remaining connections");
        },
        signal = next_stop(&mut signals) => warn!(signal, open_connections = limits.open_connections(),
            "second stop signal: closing the remaining connections now"),
    }
    workers.close().await;
    if logging.dropped_lines() > 0 {
        warn!(
            dropped = logging.dropped_lines(),
            "log lines were dropped because the log could not keep up"
        );
    }
    Ok(())
}

/// What `systemctl status` shows next to the unit.
fn status_line(addresses: &str, limits: &Limits) -> String {
    format!(
        "serving {addresses}; {} open connections",
        limits.open_connections()
    )
}

/// Keeps the service manager's view fresh: the connection count in the
/// status, and watchdog pings (`WatchdogSec=`) sent only once every TCP
/// worker has answered and every UDP thread still runs, so that a stuck
/// loop, the main runtime or a worker's, or a UDP thread gone, stops the
/// pings and gets the daemon restarted.
async fn heartbeat(
    notifier: Notifier,
    addresses: String,
    limits: Arc<Limits>,
    workers: Vec<Mailbox>,
    udp: Vec<UdpWatch>,
) {
    let mut status = tokio::time::interval(STATUS_INTERVAL);
    let mut watchdog =
        tokio::time::interval(notifier.watchdog_interval().unwrap_or(Duration::MAX / 4));
    let pinging = notifier.watchdog_interval().is_some();
    loop {
        tokio::select! {
            _ = status.tick() => notifier.status(&status_line(&addresses, &limits)),
            _ = watchdog.tick(), if pinging => {
                // A stuck worker never answers: no ping then, and the
                // status line goes on.
                let answered = tokio::time::timeout(watchdog.period(), all_answer(&workers)).await;
                if answered == Ok(true) && udp.iter().all(UdpWatch::is_running) {
                    notifier.watchdog();
                }
            }
        }
    }
}

/// Whether every worker answers a ping (see `Mailbox::ping`).
async fn all_answer(workers: &[Mailbox]) -> bool {
    for worker in workers {
        if !worker.ping().await {
            return false;
        }
    }
    true
}

/// Waits for another stop signal; a reload while stopping is pointless.
async fn next_stop(signals: &mut Signals) -> &'static str {
    loop {
        match signals.recv().await {
            Request::Stop(signal) => return signal,
            Request::Reload => info!("SIGHUP ignored: stopping"),
        }
    }
}

impl Service {
    /// Re-reads the configuration and applies what can change live. A file
    /// that does not load leaves the running configuration untouched, and
    /// makes it return `false`.
    fn reload(&mut self, limits: &Limits, logging: &Logging) -> bool {
        if self.source == ConfigSource::BuiltIn {
            // Started without a file; one may have been installed since.
            self.source = ConfigSource::locate(None, None, Path::new(SYSTEM_CONFIG_PATH));
            if self.source == ConfigSource::BuiltIn {
                info!(
                    "SIGHUP: no config file ({SYSTEM_CONFIG_PATH} does not exist); the built-in default stays"
                );
                return true;
            }
        }
        let new = match Config::load(&self.source, &self.overrides) {
            Ok(new) => new,
            Err(e) => {
                error!(
                    "SIGHUP: the configuration was not reloaded, the running one stays in effect: {e}"
                );
                return false;
            }
        };
        // The certificate is part of the configuration: if it does not
        // load, nothing changes, as with a broken file.
        if let (Some(tls), Some(settings)) = (&self.tls, &new.tls)
            && let Err(e) = tls.reload(settings)
        {
            error!(
                "SIGHUP: the configuration was not reloaded, the running one (and its certificate) stays in effect: {e}"
            );
            return false;
        }
        limits.update(&new.server);
        logging.set_level(new.log.level);
        let needs_restart = self.config.restart_only_changes(&new);
        if !needs_restart.is_empty() {
            warn!(settings = ?needs_restart, "SIGHUP: these changes take effect only after a restart");
        }
        info!(config = %self.source, level = %new.log.level, max_connections = new.server.max_connections,
            idle_timeout = %new.server.idle_timeout, "configuration reloaded");
        // Keep describing what actually runs: the restart-only settings stay
        // as they were, so the next reload still reports them.
        let running = self.config.clone();
        self.config = Config {
            server: ServerConfig {
                listen: running.server.listen,
                udp: running.server.udp,
                workers: running.server.workers,
                ..new.server
            },
            log: LogConfig {
                level: new.log.level,
                ..running.log
            },
            daemon: running.daemon,
            metrics: running.metrics,
            tls: match (running.tls, new.tls) {
                (Some(running), Some(new)) => Some(TlsConfig {
                    listen: running.listen,
                    ..new
                }),
                // Turned on or off: only a restart does that.
                (running, _) => running,
            },
        };
        true
    }
}
