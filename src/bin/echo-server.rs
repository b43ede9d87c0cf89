//! `echo-server`: parses the command line and hands over to the library.

use std::path::PathBuf;

use clap::Parser;
use echo_service::server::config::{Host, LogLevel, Overrides};
use echo_service::server::{Launch, launch};
use echo_service::shared::exit_code;
use echo_service::shared::manual::Section;

/// An RFC 862 echo daemon: every byte received over TCP (and UDP, if enabled)
/// is sent back unchanged.
///
/// The configuration comes from --config, else $ECHO_SERVER_CONFIG, else
/// /etc/echo-server/config.toml if it exists, else the built-in default
/// (127.0.0.1:65432, TCP only). SIGHUP reloads it; SIGTERM stops gracefully.
#[derive(Debug, Parser)]
#[command(name = "echo-server", version, term_width = 100)]
struct Args {
    /// Read the configuration from this TOML file.
    #[arg(short, long, value_name = "PATH")]
    config: Option<PathBuf>,

    /// Listen on this host instead of the configured ones (address or name).
    #[arg(long, value_name = "HOST")]
    host: Option<Host>,

    /// Listen on this port instead of the configured ones.
    #[arg(short, long, value_name = "PORT")]
    port: Option<u16>,

    /// Log at this level: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<LogLevel>,

    /// Validate the configuration, print the effective settings and exit.
    #[arg(short = 't', long)]
    check_config: bool,

    /// With --check-config: also name the changed settings that take effect only on a restart,
    /// compared with the configuration file the daemon runs with.
    #[arg(long, value_name = "PATH", requires = "check_config")]
    running: Option<PathBuf>,

    /// Run in the background as a classic daemon, with a pid file (for hosts without systemd).
    #[cfg(unix)]
    #[arg(short, long)]
    daemon: bool,

    /// With --daemon: write the pid file here instead of [daemon] pid_file.
    #[cfg(unix)]
    #[arg(long, value_name = "PATH", requires = "daemon")]
    pid_file: Option<PathBuf>,

    /// With --daemon: drop to this user after binding instead of [daemon] user.
    #[cfg(unix)]
    #[arg(long, value_name = "USER", requires = "daemon")]
    user: Option<String>,

    /// With --daemon: drop to this group after binding instead of [daemon] group.
    #[cfg(unix)]
    #[arg(long, value_name = "GROUP", requires = "daemon")]
    group: Option<String>,

    /// Print the shipped, commented configuration file and exit.
    #[arg(long, conflicts_with_all = ["config", "check_config"])]
    print_default_config: bool,
}

fn main() {
    let (args, _) = exit_code::parse_args_or_exit::<Args>(Section::Administration);
    if args.print_default_config {
        let default = echo_service::server::config::DEFAULT_CONFIG_TOML.as_bytes();
        std::process::exit(echo_service::shared::output::print(
            "echo-server",
            default,
            exit_code::OK,
        ));
    }
    #[cfg(unix)]
    let (daemon, pid_file, user, group) = (args.daemon, args.pid_file, args.user, args.group);
    #[cfg(not(unix))]
    let (daemon, pid_file, user, group) = (false, None, None, None);
    std::process::exit(launch(Launch {
        config_path: args.config,
        overrides: Overrides {
            host: args.host,
            port: args.port,
            log_level: args.log_level,
            pid_file,
            user,
            group,
        },
        check_config: args.check_config,
        running_config: args.running,
        daemon,
    }));
}
