//! Every exit code of `echo-server` and `echo-client`: one table, with each
//! code's name, number and meaning for each program.
//!
//! Why one table for both: service managers, deploy scripts and monitoring
//! act on these numbers, so a number must mean the same in both binaries
//! (64 is a usage error in either) and the documentation must say exactly
//! what the code does. The constants are what the code uses; [`TABLE`]
//! holds the same codes as data, so a test can hold the README's table
//! against it. Codes above 63 are the `sysexits.h` ones.

use crate::shared::{manual, output};

/// One exit code and what it means from each program (`None`: that program
/// never exits with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCode {
    /// The constant's name in this module.
    pub name: &'static str,
    pub code: i32,
    pub echo_server: Option<&'static str>,
    pub echo_client: Option<&'static str>,
}

macro_rules! exit_codes {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident = $code:literal {
            echo_server: $server:expr,
            echo_client: $client:expr $(,)?
        }
    )*) => {
        $(
            $(#[doc = $doc])*
            pub const $name: i32 = $code;
        )*

        /// Every exit code, in increasing order.
        pub const TABLE: &[ExitCode] = &[$(
            ExitCode {
                name: stringify!($name),
                code: $code,
                echo_server: $server,
                echo_client: $client,
            },
        )*];
    };
}

exit_codes! {
    /// Success.
    OK = 0 {
        echo_server: Some("stopped cleanly after `SIGTERM`/`SIGINT`; `--check-config` found the file valid"),
        echo_client: Some("every echo came back unchanged"),
    }
    /// An echo came back different from what was sent.
    MISMATCH = 1 {
        echo_server: None,
        echo_client: Some("an echo came back different from what was sent"),
    }
    /// Could not connect: refused, unreachable, name not resolved, reset.
    UNREACHABLE = 2 {
        echo_server: None,
        echo_client: Some("could not connect: refused, unreachable, name not resolved, or the connection ended before the whole echo came back"),
    }
    /// No (complete) echo within the timeout.
    TIMED_OUT = 3 {
        echo_server: None,
        echo_client: Some("no complete echo within `--timeout`; `pipe`: no progress of the echo for `--timeout`"),
    }
    /// Over TLS, a certificate was refused: the server's (expired, for
    /// another name, from an unknown CA) or the client's.
    CERTIFICATE = 4 {
        echo_server: None,
        echo_client: Some("`--tls`: a certificate was refused: the server's is expired, not yet valid, for another name or from a CA not trusted (see `--ca`), or the server requires or refused the client's (`--cert`, `--key`)"),
    }
    /// The command line (or the client's hosts file) is wrong (EX_USAGE).
    USAGE = 64 {
        echo_server: Some("bad command line (EX_USAGE)"),
        echo_client: Some("bad command line or hosts file"),
    }
    /// The config file cannot be read (EX_NOINPUT).
    NO_INPUT = 66 {
        echo_server: Some("the config file cannot be read (EX_NOINPUT)"),
        echo_client: None,
    }
    /// The `[daemon]` user or group does not exist (EX_NOUSER).
    NO_USER = 67 {
        echo_server: Some("the `[daemon]` user or group does not exist (EX_NOUSER)"),
        echo_client: None,
    }
    /// A host name in the config does not resolve (EX_NOHOST).
    NO_HOST = 68 {
        echo_server: Some("a configured host name does not resolve (EX_NOHOST)"),
        echo_client: None,
    }
    /// The address is in use or not on this machine, or the daemon is
    /// already running; for the client, `mtu` on a platform without path
    /// MTU socket options (EX_UNAVAILABLE).
    UNAVAILABLE = 69 {
        echo_server: Some("the address is already in use, or is not an address of this machine; with `--daemon`, the daemon is already running (EX_UNAVAILABLE)"),
        echo_client: Some("`mtu`: not supported on this platform (the search needs Linux's path MTU socket options) (EX_UNAVAILABLE)"),
    }
    /// An unexpected internal error (EX_SOFTWARE).
    SOFTWARE = 70 {
        echo_server: Some("internal error, a bug (EX_SOFTWARE); the log is flushed and the panic message printed"),
        echo_client: None,
    }
    /// Any other operating-system error (EX_OSERR).
    OS_ERROR = 71 {
        echo_server: Some("another operating-system error while starting, e.g. cannot fork, or unusable sockets from the service manager (EX_OSERR)"),
        echo_client: Some("`bench`: its load threads could not be started, e.g. out of file descriptors (EX_OSERR)"),
    }
    /// The log directory or file, or the pid file, cannot be created
    /// (EX_CANTCREAT).
    CANT_CREATE = 73 {
        echo_server: Some("the log directory or file, or the pid file, cannot be created (EX_CANTCREAT)"),
        echo_client: None,
    }
    /// Standard input or output failed, so a result was lost (EX_IOERR).
    IO_ERROR = 74 {
        echo_server: Some("`--print-default-config`, `--check-config`: standard output cannot be written, e.g. a full disk; a reader that stops early is no error (EX_IOERR)"),
        echo_client: Some("`pipe`: standard input or output failed; `send`, `check`, `bench`: a run that was otherwise clean could not write its result, e.g. to a full disk, where a reader that stops early (`| head`) is no error; `check --format textfile -o FILE`: FILE could not be replaced, whatever the check found (EX_IOERR)"),
    }
    /// Not allowed to bind the port (EX_NOPERM).
    NO_PERMISSION = 77 {
        echo_server: Some("permission denied binding the port, e.g. a port below 1024 without `CAP_NET_BIND_SERVICE` (EX_NOPERM)"),
        echo_client: None,
    }
    /// The config file is invalid (EX_CONFIG).
    CONFIG = 78 {
        echo_server: Some("the config file is invalid (EX_CONFIG)"),
        echo_client: None,
    }
}

/// The exit code for a command line that clap did not accept: a usage
/// error, except for `--help` and `--version`, which clap reports the same
/// way but which succeeded.
pub fn of_clap_error(error: &clap::Error) -> i32 {
    if error.use_stderr() { USAGE } else { OK }
}

/// Parses the command line; on an error (or `--help`, `--version`) prints
/// clap's message and ends the process with [`of_clap_error`]'s code. With
/// the hidden `--generate KIND` it prints the program's man page (in
/// `section`) or a completion script instead, and exits (see
/// [`manual`](crate::shared::manual)). The matches come along, for what the
/// parsed type does not keep (where a value came from).
pub fn parse_args_or_exit<P: clap::Parser>(section: manual::Section) -> (P, clap::ArgMatches) {
    parse_args_or_else(section, |error| exit_with_clap_error(&error))
}

/// [`parse_args_or_exit`], handing an error (or `--help`, `--version`) to
/// `on_error`, which ends the process, for a program that must report some
/// of them its own way.
pub fn parse_args_or_else<P: clap::Parser>(
    section: manual::Section,
    on_error: impl Fn(clap::Error) -> std::convert::Infallible,
) -> (P, clap::ArgMatches) {
    let matches = manual::with_generate_option(P::command())
        .try_get_matches()
        .unwrap_or_else(|e| match on_error(e) {});
    if let Some(kind) = manual::requested(&matches) {
        let command = P::command();
        let program = command.get_name().to_string();
        let text = manual::render(kind, command, section);
        std::process::exit(output::print(&program, &text, OK));
    }
    let parsed = P::from_arg_matches(&matches)
        .map_err(|e| e.format(&mut P::command()))
        .unwrap_or_else(|e| match on_error(e) {});
    (parsed, matches)
}

/// Prints clap's message and ends the process with [`of_clap_error`]'s code.
pub fn exit_with_clap_error(error: &clap::Error) -> ! {
    let _ = error.print();
    std::process::exit(of_clap_error(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_ordered_and_every_code_means_something() {
        for pair in TABLE.windows(2) {
            assert!(pair[0].code < pair[1].code, "{pair:?}");
        }
        for entry in TABLE {
            assert!(
                entry.echo_server.is_some() || entry.echo_client.is_some(),
                "{entry:?}"
            );
        }
        assert_eq!(
            TABLE.iter().find(|e| e.name == "USAGE").unwrap().code,
            USAGE
        );
    }
}
