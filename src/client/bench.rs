//! `echo-client bench`: load an echo server and measure it.
//!
//! Each connection runs a closed loop: send a batch of `pipeline` messages,
//! read every echo back, verify it byte for byte, repeat. With `--rate`, the
//! batches are scheduled instead, and latency is measured from the moment a
//! batch was *due*, not from when it was sent, so a stalled server cannot
//! hide its stall by slowing the load down (coordinated omission).
//!
//! This module checks the options, finds the server and reports; `load`
//! drives the connections, on threads of their own, and `batch` is what they
//! send and how each echo is judged.

mod batch;
mod load;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::path::{StreamAccount, percent_of};
use super::tls::Tls;
use super::{Failure, MAX_UDP_PAYLOAD, Verdict, judge_echo, print_result, tcp_echo, udp_echo};
use crate::shared::address::HostPort;
use crate::shared::exit_code;
use load::{Counters, Plan};

/// Rows of the latency histogram drawn in the terminal.
const HISTOGRAM_ROWS: usize = 10;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub target: HostPort,
    pub udp: bool,
    /// Over TLS, with this configuration.
    pub tls: Option<Arc<Tls>>,
    pub connections: usize,
    /// How long round trips are counted and timed.
    pub duration: Duration,
    /// How long the load runs first without being counted: connecting,
    /// and the first round trips while caches and buffers fill.
    pub warmup: Duration,
    /// Bytes per message.
    pub size: usize,
    /// Requests per second over all connections; `None` runs flat out.
    pub rate: Option<f64>,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// Bound on one batch's round trip.
    pub timeout: Duration,
    /// Load threads, each with its share of the connections.
    pub threads: usize,
    pub json: bool,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct BenchReport {
    pub(crate) target: String,
    pub(crate) protocol: &'static str,
    pub(crate) connections: usize,
    pub(crate) size: usize,
    pub(crate) pipeline: usize,
    pub(crate) rate: Option<f64>,
    pub(crate) warmup_s: f64,
    pub(crate) duration_s: f64,
    pub(crate) requests: u64,
    pub(crate) requests_per_s: f64,
    /// Echoed payload per second, in one direction, in 10^6 bytes.
    pub(crate) megabytes_per_s: f64,
    pub(crate) latency_ms: LatencySummary,
    pub(crate) errors: ErrorSummary,
    /// Over UDP: what the answers tell of the path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<BenchPath>,
    pub(crate) exit_code: i32,
}

/// The path figures of a UDP bench over the measured window, counted as
/// `check --udp` counts them (`path::StreamAccount`), each socket being
/// one stream.
#[derive(Debug, Serialize)]
pub(crate) struct BenchPath {
    /// Messages whose fate fell in the measured window: answered in time
    /// (`requests`) or given up at their timeout (`lost`).
    pub(crate) sent: u64,
    /// Messages unanswered at their timeout, the late ones included, as
    /// `check --udp` counts them; and their share of `sent`, in percent.
    pub(crate) lost: u64,
    pub(crate) loss_percent: f64,
    /// First answers that came after their timeout (also in `lost`).
    pub(crate) late: u64,
    /// Answers that came a second time, copied on the path: counted once.
    pub(crate) duplicated: u64,
    /// RFC 4737's reordered answers, within each socket's stream, and
    /// their ratio to the answers that came, in percent.
    pub(crate) reordered: u64,
    pub(crate) reordered_percent: f64,
    /// The sockets' RFC 3550 jitter, averaged, in milliseconds.
    pub(crate) jitter_ms: Option<f64>,
    pub(crate) jitter_method: &'static str,
}

/// The method of `BenchPath::jitter_ms`, in words for the output.
const JITTER_METHOD: &str =
    "RFC 3550 interarrival jitter of the round trips, per socket, averaged over the sockets";

#[derive(Debug, Serialize)]
pub(crate) struct LatencySummary {
    pub(crate) min: f64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p99_9: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct ErrorSummary {
    pub(crate) connect: u64,
    pub(crate) io: u64,
    /// Connections the server closed or reset before their echo was whole.
    pub(crate) closed: u64,
    pub(crate) timeout: u64,
    pub(crate) mismatch: u64,
}

/// What one connection may hold in flight, at most.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// What all connections together may hold in flight, at most.
const MAX_TOTAL_BYTES: usize = 1 << 30;

impl BenchOptions {
    /// Checks what the command line cannot: limits that keep the run finite
    /// and its memory bounded.
    pub fn validate(&self) -> Result<(), String> {
        // Room for the probe before the run and a timeout armed at its end.
        let longest = self
            .duration
            .saturating_add(self.warmup)
            .saturating_add(self.timeout.saturating_mul(2));
        if Instant::now().checked_add(longest).is_none() {
            return Err("--duration or --warmup is too long".to_string());
        }
        let batch = self.pipeline.saturating_mul(self.size);
        if batch > MAX_BATCH_BYTES {
            return Err(format!(
                "--pipeline × --size is {batch} bytes; at most {MAX_BATCH_BYTES} may be in flight per connection"
            ));
        }
        if batch.saturating_mul(self.connections) > MAX_TOTAL_BYTES {
            return Err(format!(
                "--connections × --pipeline × --size exceeds {MAX_TOTAL_BYTES} bytes in flight"
            ));
        }
        if self.udp && !(8..=MAX_UDP_PAYLOAD).contains(&self.size) {
            return Err(format!(
                "--size: a UDP message holds 8 (for its sequence number) to {MAX_UDP_PAYLOAD} bytes"
            ));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!(
                    "--rate must be a positive number of requests per second, not {rate}"
                ));
            }
            match self.batch_interval() {
                Some(interval) if interval <= self.duration => {}
                _ => {
                    return Err(format!(
                        "--rate {rate} is too low: a connection would not send once in --duration"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Time between one connection's batches under `--rate`.
    fn batch_interval(&self) -> Option<Duration> {
        let rate = self.rate?;
        Duration::try_from_secs_f64(self.pipeline as f64 * self.connections as f64 / rate).ok()
    }
}

/// Runs the benchmark, prints the report and returns the exit code.
pub async fn run(options: BenchOptions) -> i32 {
    // Find the address that answers once, up front: a name that does not
    // resolve, a server that is down or a refused certificate is one clear
    // error, not thousands.
    let found = find_server(&options).await.and_then(|addr| {
        let tls = options
            .tls
            .as_ref()
            .map(|tls| tls.for_target(&options.target));
        Ok((addr, tls.transpose()?))
    });
    let (addr, tls) = match found {
        Ok(found) => found,
        Err(failure) => {
            eprintln!("echo-client: {}: {failure}", options.target);
            return failure.verdict.exit_code();
        }
    };
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let measured_from = started + options.warmup;
    let plan = Arc::new(Plan {
        addr,
        udp: options.udp,
        tls,
        block: batch::shared_block(options.size),
        pipeline: options.pipeline,
        timeout: options.timeout,
        interval: options.batch_interval(),
        measured_from,
        deadline: measured_from + options.duration,
    });
    let progress = Progress::start(&plan, Arc::clone(&counters), started);
    let threads = options.threads.clamp(1, options.connections);
    let connections = options.connections;
    let shared = Arc::clone(&counters);
    // The load runs on threads of its own while this runtime keeps the
    // progress bar going.
    let loaded = tokio::task::spawn_blocking(move || {
        // Every thread's event loop first, so that a shortage of file
        // descriptors stops the run before it starts rather than halfway.
        let polls = (0..threads)
            .map(|_| mio::Poll::new())
            .collect::<std::io::Result<Vec<_>>>()?;
        std::thread::scope(|scope| {
            // No thread starts until all are there: a thread that cannot be
            // made ends the others before they run, not after the run.
            let mut gates = Vec::with_capacity(threads);
            let mut spawned = Vec::with_capacity(threads);
            for (thread, poll) in polls.into_iter().enumerate() {
                let ids = (thread..connections).step_by(threads).map(|id| id as u64);
                let (plan, counters) = (&plan, &shared);
                let (open, gate) = std::sync::mpsc::channel::<()>();
                spawned.push(
                    std::thread::Builder::new()
                        .name("bench-load".into())
                        .spawn_scoped(scope, move || {
                            if gate.recv().is_err() {
                                return Ok(load::latency_histogram());
                            }
                            load::run(plan, poll, ids.collect(), counters)
                        })?,
                );
                gates.push(open);
            }
            for gate in gates {
                let _ = gate.send(());
            }
            let mut latencies = load::latency_histogram();
            for thread in spawned {
                let thread_latencies = thread.join().expect("a load thread does not panic")?;
                latencies
                    .add(thread_latencies)
                    .expect("histograms of the same bounds add up");
            }
            Ok::<_, std::io::Error>(latencies)
        })
    })
    .await
    .expect("the load does not panic");
    progress.finish();
    let histogram = match loaded {
        Ok(histogram) => histogram,
        Err(e) => {
            eprintln!("echo-client: cannot start the load: {e}");
            return exit_code::OS_ERROR;
        }
    };

    let report = build_report(&options, &counters, &histogram);
    if report.errors.closed > 0 {
        // Said apart from the figures: a server that hangs up is no wrong
        // echo, and its operator has somewhere to look.
        let closed = report.errors.closed;
        eprintln!(
            "echo-client: {}: the server closed {closed} connection{} before the echo was whole; \
             its log should say why (max_connections reached? a restart?)",
            options.target,
            if closed == 1 { "" } else { "s" }
        );
    }
    let output = if options.json {
        serde_json::to_string_pretty(&report).expect("a report serializes") + "\n"
    } else {
        render(&report, &histogram)
    };
    print_result(output.as_bytes(), report.exit_code)
}

/// Datagrams `bench --udp` sends to find its server before it gives up:
/// on a lossy path, one lost is no reason not to start (at 10% loss each
/// way, all five are lost once in 100,000 runs).
const UDP_FIND_ATTEMPTS: u32 = 5;

/// The first of the target's addresses that echoes, within the timeout.
async fn find_server(options: &BenchOptions) -> Result<SocketAddr, Failure> {
    let probe = vec![0u8; 8.min(options.size)];
    let echo = if options.udp {
        let mut attempt = 1;
        loop {
            match udp_echo(&options.target, &probe, options.timeout).await {
                Err(failure)
                    if failure.verdict == Verdict::TimedOut && attempt < UDP_FIND_ATTEMPTS =>
                {
                    attempt += 1;
                }
                found => break found?,
            }
        }
    } else {
        tcp_echo(
            &options.target,
            options.tls.as_deref(),
            &probe,
            options.timeout,
        )
        .await?
    };
    judge_echo(&probe, &echo.bytes)?;
    Ok(echo.address)
}

/// The progress bar, shown only when standard error is a terminal.
struct Progress {
    bar: Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)>,
}

impl Progress {
    fn start(plan: &Plan, counters: Arc<Counters>, started: Instant) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let (measured_from, deadline) = (plan.measured_from, plan.deadline);
        let total_ms = (deadline - started).as_millis() as u64;
        let bar = indicatif::ProgressBar::new(total_ms);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {msg}",
            )
            .expect("a valid template"),
        );
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let now = Instant::now();
                ticking.set_position(((now - started).as_millis() as u64).min(total_ms));
                if now < measured_from {
                    ticking.set_message("warming up");
                    continue;
                }
                let requests = counters.requests.load(Ordering::Relaxed);
                ticking.set_message(format!(
                    "{requests} requests, {:.0}/s",
                    requests as f64 / (now - measured_from).as_secs_f64().max(1e-9)
                ));
            }
        });
        Progress {
            bar: Some((bar, ticker)),
        }
    }

    fn finish(self) {
        if let Some((bar, ticker)) = self.bar {
            ticker.abort();
            bar.finish_and_clear();
        }
    }
}

fn build_report(
    options: &BenchOptions,
    counters: &Counters,
    histogram: &Histogram<u64>,
) -> BenchReport {
    let requests = counters.requests.load(Ordering::Relaxed);
    // Exactly the measured window: only round trips that ended in it count,
    // so neither connecting nor closing the connections dilutes the rate.
    let seconds = options.duration.as_secs_f64();
    let ms = |nanos: u64| round_to_microseconds(nanos as f64 / 1e6);
    let errors = ErrorSummary {
        connect: counters.connect_errors.load(Ordering::Relaxed),
        io: counters.io_errors.load(Ordering::Relaxed),
        closed: counters.closed.load(Ordering::Relaxed),
        timeout: counters.timeouts.load(Ordering::Relaxed),
        mismatch: counters.mismatches.load(Ordering::Relaxed),
    };
    let verdict = if errors.mismatch > 0 {
        Verdict::Mismatch
    } else if errors.timeout > 0 {
        Verdict::TimedOut
    } else if errors.connect > 0 || errors.io > 0 || errors.closed > 0 {
        Verdict::Unreachable
    } else if requests == 0 {
        // Nothing failed, yet nothing came back within the run.
        Verdict::TimedOut
    } else {
        Verdict::Healthy
    };
    BenchReport {
        target: options.target.to_string(),
        protocol: match (options.udp, &options.tls) {
            (true, _) => "UDP",
            (false, None) => "TCP",
            (false, Some(_)) => "TLS",
        },
        connections: options.connections,
        size: options.size,
        pipeline: options.pipeline,
        rate: options.rate,
        warmup_s: options.warmup.as_secs_f64(),
        duration_s: seconds,
        requests,
        requests_per_s: (requests as f64 / seconds).round(),
        megabytes_per_s: ((requests * options.size as u64) as f64 / seconds / 1e4).round() / 100.0,
        latency_ms: LatencySummary {
            min: ms(histogram.min()),
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p99_9: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: round_to_microseconds(histogram.mean() / 1e6),
        },
        errors,
        path: options.udp.then(|| {
            let streams = counters.streams.lock().expect("not poisoned");
            let account = StreamAccount::combined(&streams);
            let lost = counters.lost.load(Ordering::Relaxed);
            let sent = requests + lost;
            BenchPath {
                sent,
                lost,
                loss_percent: percent_of(lost, sent),
                late: account.late,
                duplicated: counters.duplicated.load(Ordering::Relaxed),
                reordered: account.reordered,
                reordered_percent: account.reordered_percent(),
                jitter_ms: account.jitter_ms(),
                jitter_method: JITTER_METHOD,
            }
        }),
        exit_code: verdict.exit_code(),
    }
}

/// Milliseconds with three decimals: finer digits are noise on any real path.
pub(crate) fn round_to_microseconds(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

fn render(report: &BenchReport, histogram: &Histogram<u64>) -> String {
    let rate = report.rate.map_or("as fast as possible".to_string(), |r| {
        format!("{r} requests/s")
    });
    let warmup = if report.warmup_s > 0.0 {
        format!(" after {:.2} s warm-up", report.warmup_s)
    } else {
        String::new()
    };
    let latency = &report.latency_ms;
    let errors = &report.errors;
    let path = report.path.as_ref().map_or(String::new(), |path| {
        let jitter = path
            .jitter_ms
            .map_or("no jitter (too few answers)".to_string(), |jitter| {
                format!("jitter {jitter:.3} ms (RFC 3550, averaged over the sockets)")
            });
        format!(
            "Path:       {} sent, {} lost ({}%), {} late, {} duplicated, {} reordered ({}%), {jitter}\n",
            path.sent,
            path.lost,
            path.loss_percent,
            path.late,
            path.duplicated,
            path.reordered,
            path.reordered_percent
        )
    });
    let mut out = format!(
        "Target:     {} over {}\n\
         Load:       {} connections, {}-byte messages, pipeline {}, {rate}, {:.2} s{warmup}\n\
         Requests:   {} ({:.1}/s), every echo verified\n\
         Throughput: {:.2} MB/s each way\n\
         Errors:     connect {}, I/O {}, closed {}, timeout {}, mismatch {}\n{path}\n\
         Latency:\n  \
           p50    {:>10.3} ms\n  \
           p90    {:>10.3} ms\n  \
           p99    {:>10.3} ms\n  \
           p99.9  {:>10.3} ms\n  \
           max    {:>10.3} ms\n",
        report.target,
        report.protocol,
        report.connections,
        report.size,
        report.pipeline,
        report.duration_s,
        report.requests,
        report.requests_per_s,
        report.megabytes_per_s,
        errors.connect,
        errors.io,
        errors.closed,
        errors.timeout,
        errors.mismatch,
        latency.p50,
        latency.p90,
        latency.p99,
        latency.p99_9,
        latency.max,
    );
    if !histogram.is_empty() {
        out.push_str("\nLatency histogram:\n");
        out.push_str(&draw_histogram(histogram));
    }
    out
}

/// Rows on a logarithmic scale from the fastest echo to the slowest, so that
/// both the bulk and the tail stay visible, drawn with bars as `oha` does.
fn draw_histogram(histogram: &Histogram<u64>) -> String {
    let low = histogram.min().max(1) as f64;
    let high = (histogram.max() as f64).max(low * 1.01);
    let ratio = (high / low).powf(1.0 / HISTOGRAM_ROWS as f64);
    let upper_bounds: Vec<f64> = (1..=HISTOGRAM_ROWS)
        .map(|row| low * ratio.powi(row as i32))
        .collect();
    let mut counts = [0u64; HISTOGRAM_ROWS];
    for value in histogram.iter_recorded() {
        let nanos = histogram.highest_equivalent(value.value_iterated_to()) as f64;
        let row = upper_bounds
            .iter()
            .position(|&upper| nanos <= upper)
            .unwrap_or(HISTOGRAM_ROWS - 1);
        counts[row] += value.count_since_last_iteration();
    }
    let tallest = counts.iter().copied().max().unwrap_or(1).max(1);
    let count_width = tallest.to_string().len();
    let mut out = String::new();
    for (upper, &count) in upper_bounds.iter().zip(&counts) {
        let bar = "■".repeat(((count * 40).div_ceil(tallest)) as usize);
        out.push_str(&format!(
            "  {:>9.3} ms [{count:>count_width$}] |{bar}\n",
            upper / 1e6
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_keep_runs_finite_and_bounded() {
        let options = BenchOptions {
            target: "127.0.0.1:7".parse().unwrap(),
            udp: false,
            tls: None,
            connections: 10,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            size: 64,
            rate: None,
            pipeline: 1,
            timeout: Duration::from_secs(1),
            threads: 1,
            json: false,
        };
        assert_eq!(options.validate(), Ok(()));
        for (broken, needle) in [
            (
                BenchOptions {
                    rate: Some(1e-300),
                    ..options.clone()
                },
                "too low",
            ),
            (
                BenchOptions {
                    rate: Some(-5.0),
                    ..options.clone()
                },
                "positive",
            ),
            (
                BenchOptions {
                    rate: Some(5.0),
                    ..options.clone()
                },
                "too low",
            ),
            (
                BenchOptions {
                    duration: Duration::MAX / 2,
                    ..options.clone()
                },
                "too long",
            ),
            (
                BenchOptions {
                    warmup: Duration::MAX / 2,
                    ..options.clone()
                },
                "too long",
            ),
            (
                BenchOptions {
                    size: 16 << 20,
                    pipeline: 1024,
                    ..options.clone()
                },
                "in flight",
            ),
            (
                BenchOptions {
                    size: 1 << 20,
                    pipeline: 64,
                    connections: 100,
                    ..options.clone()
                },
                "in flight",
            ),
            (
                BenchOptions {
                    udp: true,
                    size: 4,
                    ..options.clone()
                },
                "sequence number",
            ),
        ] {
            let error = broken.validate().unwrap_err();
            assert!(error.contains(needle), "{error}");
        }
    }

    #[test]
    fn the_histogram_puts_every_sample_in_a_row() {
        let mut histogram = Histogram::<u64>::new(3).unwrap();
        for nanos in [100_000u64, 200_000, 200_000, 300_000, 5_000_000] {
            histogram.record(nanos).unwrap();
        }
        let drawn = draw_histogram(&histogram);
        assert_eq!(drawn.lines().count(), HISTOGRAM_ROWS);
        let total: u64 = drawn
            .lines()
            .map(|l| {
                l.split('[')
                    .nth(1)
                    .unwrap()
                    .split(']')
                    .next()
                    .unwrap()
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(total, 5);
    }
}
