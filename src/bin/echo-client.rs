//! `echo-client`: parses the command line and hands over to the library.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use clap::parser::ValueSource;
use clap::{Args, Parser, Subcommand};
use echo_service::client::bench::{self, BenchOptions};
use echo_service::client::check::{
    self, CheckOptions, Format, NagiosState, NagiosThresholds, Thresholds,
};
use echo_service::client::inventory;
use echo_service::client::mtu::{self, MtuOptions};
use echo_service::client::pipe::{self, PipeOptions};
use echo_service::client::send::{self, SendOptions};
use echo_service::client::tls::{Tls, TlsOptions};
use echo_service::client::{MAX_UDP_PAYLOAD, UDP_PROBE_HEADER};
use echo_service::shared::address::HostPort;
use echo_service::shared::duration::HumanDuration;
use echo_service::shared::exit_code;
use echo_service::shared::manual::Section;
use echo_service::shared::protocol::{DEFAULT_HOST, DEFAULT_PORT};

/// Talks to an RFC 862 echo server: send a message, check health for
/// scripts, measure throughput and latency, or find the path MTU.
///
/// A target is HOST:PORT, [IPV6]:PORT, or a bare host (port 65432). Every
/// command takes it as --target TARGET (-t too, except for check, where -t is
/// --timeout); check, bench, pipe and mtu also take it as their argument. send
/// takes it only with -t: its arguments are the message, and one whose first
/// or last word looks like a target is refused unless -t is given or the
/// message follows --.
///
/// Exit codes: 0 healthy, 1 an echo came back wrong, 2 could not connect,
/// 3 timed out, 4 a TLS certificate was refused, 64 usage error, 69 not supported on this
/// platform (mtu).
#[derive(Debug, Parser)]
#[command(name = "echo-client", version, term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a message and print the echo; exit 0 only if it came back unchanged.
    Send(SendArgs),
    /// Check that targets echo correctly, and how fast (for monitoring).
    Check(Box<CheckArgs>),
    /// Load a target and report throughput and latency.
    Bench(BenchArgs),
    /// Copy standard input to the server and its echo to standard output.
    Pipe(PipeArgs),
    /// Find the path MTU to a target over UDP (signalled or black hole), or the TCP MSS.
    Mtu(MtuArgs),
}

#[derive(Debug, Args)]
struct SendArgs {
    /// The server.
    #[arg(short, long, default_value_t = default_target(), value_parser = parse_target)]
    target: HostPort,
    /// Whether -t/--target was on the command line (clap's default is not).
    #[arg(skip)]
    target_given: bool,
    /// Send one UDP datagram instead.
    #[arg(long)]
    udp: bool,
    #[command(flatten)]
    tls: TlsArgs,
    /// Print the echo as a hex dump.
    #[arg(long)]
    hex: bool,
    /// Give up when the whole echo has not arrived within this time.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    timeout: HumanDuration,
    /// The message, words joined by spaces. Without one, or with "-", standard input is sent.
    /// Without -t, a first or last word like HOST:PORT is an error (a target, meant for -t?).
    message: Vec<String>,
    /// The message (or its rest) after --, taken as it is, HOST:PORT words too.
    #[arg(last = true, value_name = "MESSAGE")]
    literal: Vec<String>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Servers to check (default: 127.0.0.1:65432 unless --hosts is given).
    #[arg(value_parser = parse_target)]
    targets: Vec<HostPort>,
    /// Also check this server, as an argument does (repeatable; here -t is --timeout).
    #[arg(long = "target", id = "target_option", value_name = "TARGET", value_parser = parse_target)]
    target_options: Vec<HostPort>,
    /// Also check every host of this inventory file, at its echo_port (or --port).
    #[arg(long, value_name = "FILE")]
    hosts: Option<PathBuf>,
    /// The echo port for inventory hosts without echo_port=.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Check over UDP instead of TCP: one stream of numbered probes, with loss, late,
    /// duplicated and reordered answers, and jitter.
    #[arg(long)]
    udp: bool,
    #[command(flatten)]
    tls: TlsArgs,
    /// Bytes per probe (over UDP, at least 24: a header, then random bytes).
    #[arg(short, long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=16 * 1024 * 1024))]
    size: u32,
    /// Probes per target.
    #[arg(short = 'n', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// Pause between the probes of a target.
    #[arg(short, long, default_value = "1s", value_name = "DURATION")]
    interval: HumanDuration,
    /// Attempts to repeat a probe that could not connect or timed out (TCP only).
    #[arg(short, long, default_value_t = 0)]
    retries: u32,
    /// Bound on each attempt: connect, send and the whole echo.
    #[arg(short, long, default_value = "5s", value_name = "DURATION")]
    timeout: HumanDuration,
    /// How to write the results: human, json, nagios (a Nagios/Icinga plugin: exit 0 OK,
    /// 1 WARNING, 2 CRITICAL, 3 UNKNOWN) or textfile (Prometheus text for node_exporter).
    #[arg(long, value_enum, default_value_t = CheckFormat::Human, value_name = "FORMAT")]
    format: CheckFormat,
    /// Print the results as JSON (--format json).
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// With --format nagios: WARNING when the average round trip in ms, or the loss in
    /// percent, is outside a range: RTT[,LOSS%], e.g. 100,20% (ranges as N, N:, ~:N, @N:M).
    #[arg(short, long, value_name = "RTT[,LOSS%]")]
    warning: Option<Thresholds>,
    /// With --format nagios: CRITICAL when outside a range, as for --warning.
    #[arg(short, long, value_name = "RTT[,LOSS%]")]
    critical: Option<Thresholds>,
    /// With --format nagios and --tls: WARNING when the server's certificate expires in fewer
    /// days [default: 20, as check_ssl_cert].
    #[arg(long, value_name = "DAYS")]
    cert_warning: Option<f64>,
    /// With --format nagios and --tls: CRITICAL when it expires in fewer days [default: 15].
    #[arg(long, value_name = "DAYS")]
    cert_critical: Option<f64>,
    /// With --format textfile: replace FILE atomically instead of printing (for
    /// node_exporter's textfile directory, FILE ends in .prom).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CheckFormat {
    Human,
    Json,
    Nagios,
    Textfile,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// The server.
    #[arg(default_value_t = default_target(), value_parser = parse_target)]
    target: HostPort,
    /// The server, instead of the argument.
    #[arg(short = 't', long = "target", id = "target_option", value_name = "TARGET",
          value_parser = parse_target, conflicts_with = "target")]
    target_option: Option<HostPort>,
    /// Concurrent connections (UDP: sockets).
    #[arg(short, long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,
    /// How long to count and time round trips.
    #[arg(short, long, default_value = "10s", value_name = "DURATION")]
    duration: HumanDuration,
    /// Run this long first without counting (connecting, warming up).
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    warmup: HumanDuration,
    /// Bytes per message.
    #[arg(short, long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=16 * 1024 * 1024))]
    size: u32,
    /// Requests per second over all connections (default: as fast as possible).
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pipeline: u32,
    /// Bench over UDP instead of TCP.
    #[arg(long)]
    udp: bool,
    #[command(flatten)]
    tls: TlsArgs,
    /// Bound on one round trip; slower ones count as timeouts.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    timeout: HumanDuration,
    /// Load threads (default: the CPUs this process may use).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PipeArgs {
    /// The server.
    #[arg(default_value_t = default_target(), value_parser = parse_target)]
    target: HostPort,
    /// The server, instead of the argument.
    #[arg(short = 't', long = "target", id = "target_option", value_name = "TARGET",
          value_parser = parse_target, conflicts_with = "target")]
    target_option: Option<HostPort>,
    /// Give up when connecting takes this long, or the echo stops for this long.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    timeout: HumanDuration,
    #[command(flatten)]
    tls: TlsArgs,
}

/// TLS, for `send`, `check`, `bench` and `pipe`.
#[derive(Debug, Args)]
struct TlsArgs {
    /// Talk TLS 1.2 or 1.3 to the server (echo-server's [tls] listener, stunnel, a TLS proxy).
    #[arg(long)]
    tls: bool,
    /// With --tls: trust the CA certificates of this PEM file instead of the system's.
    #[arg(long, value_name = "FILE", requires = "tls")]
    ca: Option<PathBuf>,
    /// With --tls: the name the server's certificate must be for (default: the target's host).
    #[arg(long, value_name = "NAME", requires = "tls")]
    server_name: Option<String>,
    /// With --tls: a client certificate (PEM, with its chain) for a server that asks for one.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    cert: Option<PathBuf>,
    /// With --tls: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "cert"])]
    key: Option<PathBuf>,
    /// With --tls: accept any server certificate, with a warning every time (for tests).
    #[arg(long, requires = "tls", conflicts_with = "ca")]
    insecure: bool,
}

/// The TLS configuration the arguments ask for, if any; a file that cannot
/// be used is a usage error. Not over UDP: there is no DTLS.
fn tls(args: TlsArgs, udp: bool) -> Option<Arc<Tls>> {
    if !args.tls {
        return None;
    }
    if udp {
        usage_error("--tls is for TCP: there is no TLS over UDP (DTLS) here");
    }
    let options = TlsOptions {
        ca: args.ca,
        server_name: args.server_name,
        identity: args.cert.zip(args.key),
        insecure: args.insecure,
    };
    Some(Arc::new(
        Tls::new(&options).unwrap_or_else(|e| usage_error(e)),
    ))
}

#[derive(Debug, Args)]
struct MtuArgs {
    /// The server (its UDP echo; with --tcp, its TCP echo).
    #[arg(default_value_t = default_target(), value_parser = parse_target)]
    target: HostPort,
    /// The server, instead of the argument.
    #[arg(short = 't', long = "target", id = "target_option", value_name = "TARGET",
          value_parser = parse_target, conflicts_with = "target")]
    target_option: Option<HostPort>,
    /// Report the MSS of a TCP connection (after a 64 KiB echo) instead of searching over UDP.
    #[arg(long)]
    tcp: bool,
    /// How long to wait for each probe's echo (with --tcp: for the whole exchange).
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    timeout: HumanDuration,
    /// Unanswered probes of one size before it counts as too big (a black hole looks like loss).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    attempts: u32,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// The server's default address.
fn default_target() -> HostPort {
    parse_target(DEFAULT_HOST).expect("the default host is valid")
}

fn parse_target(text: &str) -> Result<HostPort, String> {
    HostPort::parse_with_default_port(text, DEFAULT_PORT)
}

/// Ends the process with a usage error; as a Nagios plugin, with the
/// plugin's UNKNOWN.
fn usage_error(message: impl std::fmt::Display) -> ! {
    if nagios_requested() {
        println!(
            "{}",
            NagiosState::Unknown.status_line(&format!("echo-client: {message}"))
        );
        std::process::exit(NagiosState::Unknown.exit_code());
    }
    eprintln!("echo-client: error: {message}");
    std::process::exit(exit_code::USAGE);
}

/// Whether the command line asks for a Nagios plugin's output. Looked up
/// before parsing, since a plugin must report even a command line that does
/// not parse as a plugin does (UNKNOWN, exit 3), not with echo-client's 64.
/// (`args_os`: an argument that is not UTF-8 is a usage error to report,
/// not a reason to panic.)
fn nagios_requested() -> bool {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    args.iter().any(|arg| arg == "--format=nagios")
        || args
            .windows(2)
            .any(|pair| pair[0] == "--format" && pair[1] == "nagios")
}

fn main() {
    let (mut cli, matches) = exit_code::parse_args_or_else::<Cli>(
        Section::UserCommands,
        |error| -> std::convert::Infallible {
            if error.use_stderr() && nagios_requested() {
                let rendered = error.to_string();
                let first_line = rendered.lines().next().unwrap_or_default();
                usage_error(first_line.trim_start_matches("error: "));
            }
            exit_code::exit_with_clap_error(&error)
        },
    );
    if let Command::Send(args) = &mut cli.command {
        args.target_given = matches
            .subcommand_matches("send")
            .and_then(|send| send.value_source("target"))
            == Some(ValueSource::CommandLine);
    }
    let job = match cli.command {
        Command::Send(args) => Job::Send(send_options(args)),
        Command::Check(args) => Job::Check(check_options(*args)),
        Command::Bench(args) => Job::Bench(bench_options(args)),
        Command::Pipe(args) => Job::Pipe(PipeOptions {
            target: args.target_option.unwrap_or(args.target),
            timeout: positive(args.timeout, "--timeout"),
            tls: tls(args.tls, false),
        }),
        Command::Mtu(args) => Job::Mtu(MtuOptions {
            target: args.target_option.unwrap_or(args.target),
            tcp: args.tcp,
            timeout: positive(args.timeout, "--timeout"),
            attempts: args.attempts,
            json: args.json,
        }),
    };
    let runtime = echo_service::client::runtime()
        .unwrap_or_else(|e| usage_error(format!("cannot start: {e}")));
    let code = runtime.block_on(async {
        match job {
            Job::Send(options) => send::run(options).await,
            Job::Check(options) => check::run(options).await,
            Job::Bench(options) => bench::run(options).await,
            Job::Pipe(options) => pipe::run(options).await,
            Job::Mtu(options) => mtu::run(options).await,
        }
    });
    std::process::exit(code);
}

enum Job {
    Send(SendOptions),
    Check(CheckOptions),
    Bench(BenchOptions),
    Pipe(PipeOptions),
    Mtu(MtuOptions),
}

/// A duration that must not be zero, since zero would fail at once.
fn positive(duration: HumanDuration, flag: &str) -> std::time::Duration {
    if duration.0.is_zero() {
        usage_error(format!("{flag} must be longer than 0"));
    }
    duration.0
}

fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `echo-client send hello 10.0.0.5:7` would send "hello 10.0.0.5:7" to the
/// default target, not "hello" to 10.0.0.5:7 as a user of nc or curl might
/// expect. So without -t, a message whose first or last word before `--`
/// is a HOST:PORT is refused, with the two ways to say what was meant.
fn refuse_a_target_in_the_message(args: &SendArgs) {
    if args.target_given {
        return;
    }
    let looks_like_a_target = |word: &&String| word.parse::<HostPort>().is_ok();
    let suspect = args
        .message
        .first()
        .filter(looks_like_a_target)
        .or(args.message.last().filter(looks_like_a_target));
    if let Some(word) = suspect {
        let rest: Vec<&str> = args
            .message
            .iter()
            .filter(|w| *w != word)
            .map(String::as_str)
            .collect();
        usage_error(format!(
            "`{word}` looks like a target, but send takes its target only with -t: \
             write `echo-client send -t {word} {}`, or put the message after -- to send \
             `{word}` as part of it",
            if rest.is_empty() {
                "MESSAGE".to_string()
            } else {
                rest.join(" ")
            }
        ));
    }
}

fn send_options(args: SendArgs) -> SendOptions {
    refuse_a_target_in_the_message(&args);
    let words: Vec<String> = args.message.into_iter().chain(args.literal).collect();
    let message = if words.is_empty() || words == ["-"] {
        let mut input = Vec::new();
        if let Err(e) = std::io::stdin().read_to_end(&mut input) {
            usage_error(format!("cannot read standard input: {e}"));
        }
        input
    } else {
        words.join(" ").into_bytes()
    };
    if args.udp && message.len() > MAX_UDP_PAYLOAD {
        usage_error(format!(
            "a UDP message holds at most {MAX_UDP_PAYLOAD} bytes, not {}",
            message.len()
        ));
    }
    SendOptions {
        target: args.target,
        udp: args.udp,
        tls: tls(args.tls, args.udp),
        hex: args.hex,
        timeout: positive(args.timeout, "--timeout"),
        message,
    }
}

fn check_options(args: CheckArgs) -> CheckOptions {
    let mut targets = args.targets;
    targets.extend(args.target_options);
    if let Some(path) = &args.hosts {
        let hosts = inventory::load(path).unwrap_or_else(|e| usage_error(e));
        if hosts.is_empty() {
            usage_error(format!("{}: the hosts file lists no hosts", path.display()));
        }
        targets.extend(hosts.iter().map(|host| host.echo_target(args.port)));
    }
    if targets.is_empty() {
        targets.push(default_target());
    }
    if args.udp && !(UDP_PROBE_HEADER..=MAX_UDP_PAYLOAD).contains(&(args.size as usize)) {
        usage_error(format!(
            "--size: a UDP probe holds {UDP_PROBE_HEADER} (its sequence number and send time) \
             to {MAX_UDP_PAYLOAD} bytes"
        ));
    }
    if args.udp && args.retries > 0 {
        usage_error(
            "--retries is for TCP: over UDP every probe counts toward the loss; \
             send more probes with -n instead",
        );
    }
    let nagios = args.format == CheckFormat::Nagios;
    if !nagios && (args.warning.is_some() || args.critical.is_some()) {
        usage_error("--warning and --critical are thresholds of --format nagios");
    }
    if !nagios && (args.cert_warning.is_some() || args.cert_critical.is_some()) {
        usage_error("--cert-warning and --cert-critical are thresholds of --format nagios");
    }
    if !args.tls.tls && (args.cert_warning.is_some() || args.cert_critical.is_some()) {
        usage_error("--cert-warning and --cert-critical judge the certificate of --tls");
    }
    if args.output.is_some() && args.format != CheckFormat::Textfile {
        usage_error("--output is where --format textfile writes");
    }
    CheckOptions {
        targets,
        udp: args.udp,
        tls: tls(args.tls, args.udp),
        size: args.size as usize,
        count: args.count,
        interval: args.interval.0,
        retries: args.retries,
        timeout: positive(args.timeout, "--timeout"),
        format: match (args.format, args.json) {
            (_, true) | (CheckFormat::Json, _) => Format::Json,
            (CheckFormat::Human, false) => Format::Human,
            (CheckFormat::Nagios, false) => Format::Nagios(NagiosThresholds {
                warning: args.warning.unwrap_or_default(),
                critical: args.critical.unwrap_or_default(),
                certificate_warning_days: args
                    .cert_warning
                    .unwrap_or(NagiosThresholds::CERTIFICATE_WARNING_DAYS),
                certificate_critical_days: args
                    .cert_critical
                    .unwrap_or(NagiosThresholds::CERTIFICATE_CRITICAL_DAYS),
            }),
            (CheckFormat::Textfile, false) => Format::Textfile(args.output),
        },
    }
}

fn bench_options(args: BenchArgs) -> BenchOptions {
    let options = BenchOptions {
        target: args.target_option.unwrap_or(args.target),
        udp: args.udp,
        tls: tls(args.tls, args.udp),
        connections: args.connections as usize,
        duration: positive(args.duration, "--duration"),
        warmup: args.warmup.0,
        size: args.size as usize,
        rate: args.rate,
        pipeline: args.pipeline as usize,
        timeout: positive(args.timeout, "--timeout"),
        threads: args.threads.map_or_else(available_cpus, |t| t as usize),
        json: args.json,
    };
    options
        .validate()
        .unwrap_or_else(|message| usage_error(message));
    options
}
