//! The daemon's life: load the configuration, bind, serve, reload on SIGHUP,
//! and stop gracefully on SIGTERM.
//!
//! `launch` is everything `main` would otherwise hold, so the binary stays a
//! thin argument parser and every path out of the daemon, including errors,
//! goes through one place that flushes the log and picks the exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::config::{
    CONFIG_ENV_VAR, Config, ConfigSource, LogConfig, Overrides, SYSTEM_CONFIG_PATH, ServerConfig,
};
use crate::error::{StartupError, exit_code};
use crate::limits::Limits;
use crate::listeners::Listeners;
use crate::logging::Logging;
use crate::shutdown::ShutdownController;
use crate::signals::{Request, Signals};
use crate::{tcp, udp};

/// How long the runtime may take to drop what is left after the grace period.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// What the command line asked for.
#[derive(Debug, Default)]
pub struct Launch {
    pub config_path: Option<PathBuf>,
    pub overrides: Overrides,
    /// Validate and print the effective configuration, then exit.
    pub check_config: bool,
}

/// Runs the daemon to the end and returns the process exit code. A panic
/// (a bug) still unwinds through here, flushing the log, and exits 70.
pub fn launch(launch: Launch) -> i32 {
    std::panic::catch_unwind(|| run_to_exit(launch)).unwrap_or(exit_code::SOFTWARE)
}

fn run_to_exit(launch: Launch) -> i32 {
    let source = ConfigSource::locate(
        launch.config_path,
        std::env::var_os(CONFIG_ENV_VAR).map(PathBuf::from),
        Path::new(SYSTEM_CONFIG_PATH),
    );
    let config = match Config::load(&source, &launch.overrides) {
        Ok(config) => config,
        Err(e) => return report(&e.into()),
    };
    if launch.check_config {
        print!(
            "# The configuration from {source} is valid. Effective settings:\n{}",
            config.to_toml()
        );
        return exit_code::OK;
    }
    let logging = match Logging::init(&config.log) {
        Ok(logging) => logging,
        Err(e) => return report(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("echo-server")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return report(&StartupError::Runtime(e)),
    };
    let result = runtime.block_on(run(config, source, launch.overrides, &logging));
    // Connections still open after the grace period are dropped, and closed, here.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    match result {
        Ok(()) => exit_code::OK,
        Err(e) => {
            if logging.to_file() {
                error!("{e}");
            }
            drop(logging);
            report(&e)
        }
    }
}

fn report(error: &StartupError) -> i32 {
    eprintln!("echo-server: error: {error}");
    error.exit_code()
}

async fn run(
    mut config: Config,
    mut source: ConfigSource,
    overrides: Overrides,
    logging: &Logging,
) -> Result<(), StartupError> {
    let mut signals = Signals::install().map_err(StartupError::Runtime)?;
    let listeners = Listeners::bind(&config.server).await?;
    let limits = Limits::new(&config.server);
    let controller = ShutdownController::default();
    let addresses = listeners.describe();
    let mut serving = JoinSet::new();
    for listener in listeners.tcp {
        serving.spawn(tcp::serve(
            listener,
            Arc::clone(&limits),
            controller.subscribe(),
            controller.guard(),
        ));
    }
    for socket in listeners.udp {
        serving.spawn(udp::serve(
            socket,
            Arc::clone(&limits),
            controller.subscribe(),
            controller.guard(),
        ));
    }
    info!(version = env!("CARGO_PKG_VERSION"), config = %source, listening = %addresses, "echo-server started");

    loop {
        match signals.recv().await {
            Request::Reload => reload(&mut config, &mut source, &overrides, &limits, logging),
            Request::Stop(signal) => {
                info!(signal, "stopping");
                break;
            }
        }
    }
    controller.notify();
    // Once every listener task has returned, its socket is closed.
    while serving.join_next().await.is_some() {}
    info!(open_connections = limits.open_connections(), shutdown_grace = %config.server.shutdown_grace,
        "stopping: no longer accepting connections");
    tokio::select! {
        finished = controller.wait(config.server.shutdown_grace.0) => if finished {
            info!("all connections finished; exiting");
        } else {
            warn!(open_connections = limits.open_connections(),
                "shutdown grace period over; closing the remaining connections");
        },
        signal = next_stop(&mut signals) => warn!(signal, open_connections = limits.open_connections(),
            "second stop signal: closing the remaining connections now"),
    }
    if logging.dropped_lines() > 0 {
        warn!(
            dropped = logging.dropped_lines(),
            "log lines were dropped because the log could not keep up"
        );
    }
    Ok(())
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

/// Re-reads the configuration and applies what can change live. A file that
/// does not load leaves the running configuration untouched.
fn reload(
    config: &mut Config,
    source: &mut ConfigSource,
    overrides: &Overrides,
    limits: &Limits,
    logging: &Logging,
) {
    if *source == ConfigSource::BuiltIn {
        // Started without a file; one may have been installed since.
        *source = ConfigSource::locate(None, None, Path::new(SYSTEM_CONFIG_PATH));
        if *source == ConfigSource::BuiltIn {
            info!(
                "SIGHUP: no config file ({SYSTEM_CONFIG_PATH} does not exist); the built-in default stays"
            );
            return;
        }
    }
    let new = match Config::load(source, overrides) {
        Ok(new) => new,
        Err(e) => {
            error!(
                "SIGHUP: the configuration was not reloaded, the running one stays in effect: {e}"
            );
            return;
        }
    };
    limits.update(&new.server);
    logging.set_level(new.log.level);
    let needs_restart = config.restart_only_changes(&new);
    if !needs_restart.is_empty() {
        warn!(settings = ?needs_restart, "SIGHUP: these changes take effect only after a restart");
    }
    info!(config = %source, level = %new.log.level, max_connections = new.server.max_connections,
        idle_timeout = %new.server.idle_timeout, "configuration reloaded");
    // Keep describing what actually runs: the restart-only settings stay as
    // they were, so the next reload still reports them.
    let running = config.clone();
    *config = Config {
        server: ServerConfig {
            listen: running.server.listen,
            udp: running.server.udp,
            ..new.server
        },
        log: LogConfig {
            level: new.log.level,
            ..running.log
        },
    };
}
