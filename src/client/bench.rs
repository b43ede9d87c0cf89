//! `echo-client bench`: load an echo server and measure it.
//!
//! Each connection runs a closed loop: send a batch of `pipeline` messages,
//! read every echo back, verify it byte for byte, repeat. With `--rate`, the
//! batches are scheduled instead, and latency is measured from the moment a
//! batch was *due*, not from when it was sent, so a stalled server cannot
//! hide its stall by slowing the load down (coordinated omission).
//!
//! The tool must not be the bottleneck, so the hot path makes no allocation
//! and takes no lock: each connection owns its buffers, stamps a sequence
//! number into a prebuilt batch, and keeps latencies in a small local buffer
//! that it folds into the shared HDR histogram a few hundred at a time.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{Failure, Verdict, resolve, udp_socket_to, within};
use crate::address::HostPort;

/// Latencies a connection keeps before folding them into the histogram.
const LOCAL_SAMPLES: usize = 512;
/// Pause before reconnecting after a failure, so a dead server is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// Rows of the latency histogram drawn in the terminal.
const HISTOGRAM_ROWS: usize = 10;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub target: HostPort,
    pub udp: bool,
    pub connections: usize,
    pub duration: Duration,
    /// Bytes per message.
    pub size: usize,
    /// Requests per second over all connections; `None` runs flat out.
    pub rate: Option<f64>,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// Bound on one batch's round trip.
    pub timeout: Duration,
    pub json: bool,
}

/// Counts shared by all connections.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    connect_errors: AtomicU64,
    io_errors: AtomicU64,
    timeouts: AtomicU64,
    mismatches: AtomicU64,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub target: String,
    pub protocol: &'static str,
    pub connections: usize,
    pub size: usize,
    pub pipeline: usize,
    pub rate: Option<f64>,
    pub duration_s: f64,
    pub requests: u64,
    pub requests_per_s: f64,
    /// Echoed payload per second, in one direction, in 10^6 bytes.
    pub megabytes_per_s: f64,
    pub latency_ms: LatencySummary,
    pub errors: ErrorSummary,
    pub exit_code: i32,
}

#[derive(Debug, Serialize)]
pub struct LatencySummary {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Serialize)]
pub struct ErrorSummary {
    pub connect: u64,
    pub io: u64,
    pub timeout: u64,
    pub mismatch: u64,
}

/// Runs the benchmark, prints the report and returns the exit code.
pub async fn run(options: BenchOptions) -> i32 {
    // Resolve once up front: a name that does not resolve is a usage-level
    // failure, not thousands of connect errors.
    let addr = match resolve(&options.target).await {
        Ok(addrs) => addrs[0],
        Err(failure) => {
            eprintln!("echo-client: {}: {failure}", options.target);
            return failure.verdict.exit_code();
        }
    };
    let counters = Arc::new(Counters::default());
    // Nanoseconds, from 1 ns to a minute; slower echoes are recorded as a minute.
    let histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds");
    let histogram = Arc::new(Mutex::new(histogram));
    let started = Instant::now();
    let deadline = started + options.duration;
    let progress = Progress::start(&options, Arc::clone(&counters), started);

    let per_connection_rate = options.rate.map(|rate| rate / options.connections as f64);
    let workers: Vec<_> = (0..options.connections)
        .map(|id| {
            let worker = Worker {
                addr,
                size: options.size,
                pipeline: options.pipeline,
                timeout: options.timeout,
                interval: per_connection_rate
                    .map(|rate| Duration::from_secs_f64(options.pipeline as f64 / rate)),
                deadline,
                counters: Arc::clone(&counters),
                latencies: Latencies::new(Arc::clone(&histogram)),
                seed: id as u64,
            };
            if options.udp {
                tokio::spawn(worker.run_udp())
            } else {
                tokio::spawn(worker.run_tcp())
            }
        })
        .collect();
    for worker in workers {
        worker.await.expect("a bench connection does not panic");
    }
    let elapsed = started.elapsed();
    progress.finish();

    let histogram = histogram
        .lock()
        .expect("no worker panicked holding the histogram")
        .clone();
    let report = build_report(&options, &counters, &histogram, elapsed);
    if options.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        print!("{}", render(&report, &histogram));
    }
    report.exit_code
}

struct Worker {
    addr: SocketAddr,
    size: usize,
    pipeline: usize,
    timeout: Duration,
    /// Time between batches when the rate is limited.
    interval: Option<Duration>,
    deadline: Instant,
    counters: Arc<Counters>,
    latencies: Latencies,
    seed: u64,
}

impl Worker {
    async fn run_tcp(mut self) {
        let mut batch = Batch::new(self.size, self.pipeline, self.seed);
        let mut echo = vec![0u8; self.size];
        let mut schedule = Schedule::new(self.interval);
        while Instant::now() < self.deadline {
            let connect = within(self.timeout, async {
                TcpStream::connect(self.addr)
                    .await
                    .map_err(|e| Failure::io(&e))
            });
            let mut stream = match connect.await {
                Ok(stream) => stream,
                Err(failure) => {
                    self.count_failure(&failure, true);
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            while Instant::now() < self.deadline {
                let due = schedule.next_due().await;
                batch.stamp();
                let round_trip = within(self.timeout, async {
                    stream
                        .write_all(batch.bytes())
                        .await
                        .map_err(|e| Failure::io(&e))?;
                    for index in 0..self.pipeline {
                        stream
                            .read_exact(&mut echo)
                            .await
                            .map_err(|e| Failure::io(&e))?;
                        if echo != batch.message(index) {
                            return Err(Failure::mismatch("wrong echo"));
                        }
                        self.latencies.record(due.elapsed());
                    }
                    Ok(())
                });
                match round_trip.await {
                    Ok(()) => {
                        self.counters
                            .requests
                            .fetch_add(self.pipeline as u64, Ordering::Relaxed);
                    }
                    Err(failure) => {
                        // The stream is out of step now: start a new one.
                        self.count_failure(&failure, false);
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                        break;
                    }
                }
            }
        }
        self.latencies.flush();
    }

    async fn run_udp(mut self) {
        let mut batch = Batch::new(self.size, self.pipeline, self.seed);
        let mut echo = vec![0u8; self.size + 1];
        let mut schedule = Schedule::new(self.interval);
        let socket: UdpSocket = match udp_socket_to(self.addr).await {
            Ok(socket) => socket,
            Err(failure) => {
                self.count_failure(&failure, true);
                return;
            }
        };
        while Instant::now() < self.deadline {
            let due = schedule.next_due().await;
            batch.stamp();
            let round_trip = within(self.timeout, async {
                for index in 0..self.pipeline {
                    socket
                        .send(batch.message(index))
                        .await
                        .map_err(|e| Failure::io(&e))?;
                }
                // Datagrams may be lost or reordered: match each by its stamp.
                let mut outstanding = self.pipeline;
                while outstanding > 0 {
                    let len = socket.recv(&mut echo).await.map_err(|e| Failure::io(&e))?;
                    match batch.find(&echo[..len]) {
                        Some(_) => {
                            outstanding -= 1;
                            self.latencies.record(due.elapsed());
                            self.counters.requests.fetch_add(1, Ordering::Relaxed);
                        }
                        None if batch.is_stale(&echo[..len]) => {} // a late answer to an earlier batch
                        None => return Err(Failure::mismatch("wrong echo")),
                    }
                }
                Ok(())
            });
            if let Err(failure) = round_trip.await {
                self.count_failure(&failure, false);
            }
        }
        self.latencies.flush();
    }

    fn count_failure(&self, failure: &Failure, connecting: bool) {
        let counter = match failure.verdict {
            Verdict::Mismatch => &self.counters.mismatches,
            Verdict::TimedOut => &self.counters.timeouts,
            _ if connecting => &self.counters.connect_errors,
            _ => &self.counters.io_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// When the next batch is due: now, or on a fixed grid under `--rate`.
///
/// Under `--rate`, latency is counted from the due time only when the batch
/// is late because the previous one was still waiting for the server; when
/// the connection was idle, the timer's own lateness is the client's, not
/// the server's, and the batch's real send time counts.
struct Schedule {
    interval: Option<Duration>,
    next: Instant,
}

impl Schedule {
    fn new(interval: Option<Duration>) -> Schedule {
        // Spread connections over one interval so they do not fire in step.
        let offset = interval.map_or(Duration::ZERO, |i| i.mul_f64(fastrand::f64()));
        Schedule {
            interval,
            next: Instant::now() + offset,
        }
    }

    async fn next_due(&mut self) -> Instant {
        match self.interval {
            None => Instant::now(),
            Some(interval) => {
                let due = self.next;
                self.next = due + interval;
                if Instant::now() >= due {
                    return due;
                }
                tokio::time::sleep_until(due.into()).await;
                Instant::now()
            }
        }
    }
}

/// `pipeline` messages back to back, each a fixed random block whose first
/// bytes carry a sequence number, so every echo is checked against exactly
/// the bytes that were sent and a stale or shifted echo cannot pass.
struct Batch {
    bytes: Vec<u8>,
    size: usize,
    next_sequence: u64,
    stamp_len: usize,
}

impl Batch {
    fn new(size: usize, pipeline: usize, seed: u64) -> Batch {
        let mut rng = fastrand::Rng::with_seed(seed);
        let block: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(size).collect();
        Batch {
            bytes: block.repeat(pipeline),
            size,
            next_sequence: seed << 40,
            stamp_len: size.min(8),
        }
    }

    fn stamp(&mut self) {
        for message in self.bytes.chunks_mut(self.size) {
            message[..self.stamp_len]
                .copy_from_slice(&self.next_sequence.to_le_bytes()[..self.stamp_len]);
            self.next_sequence += 1;
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn message(&self, index: usize) -> &[u8] {
        &self.bytes[index * self.size..(index + 1) * self.size]
    }

    /// The index of the message of the current batch that `echo` equals.
    fn find(&self, echo: &[u8]) -> Option<usize> {
        self.bytes
            .chunks(self.size)
            .position(|message| message == echo)
    }

    /// True if `echo` is one of this connection's earlier messages.
    fn is_stale(&self, echo: &[u8]) -> bool {
        if echo.len() != self.size
            || echo[self.stamp_len..] != self.bytes[self.stamp_len..self.size]
        {
            return false;
        }
        let mut stamp = [0u8; 8];
        stamp[..self.stamp_len].copy_from_slice(&echo[..self.stamp_len]);
        // With fewer than 8 stamp bytes the number wraps: accept any.
        self.stamp_len < 8 || u64::from_le_bytes(stamp) < self.next_sequence
    }
}

/// A connection's latencies, batched before they reach the shared histogram.
struct Latencies {
    local: Vec<u64>,
    shared: Arc<Mutex<Histogram<u64>>>,
}

impl Latencies {
    fn new(shared: Arc<Mutex<Histogram<u64>>>) -> Latencies {
        Latencies {
            local: Vec::with_capacity(LOCAL_SAMPLES),
            shared,
        }
    }

    fn record(&mut self, latency: Duration) {
        self.local
            .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1));
        if self.local.len() == LOCAL_SAMPLES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.local.is_empty() {
            return;
        }
        let mut histogram = self
            .shared
            .lock()
            .expect("no worker panicked holding the histogram");
        for &nanos in &self.local {
            histogram.saturating_record(nanos);
        }
        self.local.clear();
    }
}

/// The progress bar, shown only when standard error is a terminal.
struct Progress {
    bar: Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)>,
}

impl Progress {
    fn start(options: &BenchOptions, counters: Arc<Counters>, started: Instant) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let total_ms = options.duration.as_millis() as u64;
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
                let elapsed = started.elapsed();
                let requests = counters.requests.load(Ordering::Relaxed);
                ticking.set_position((elapsed.as_millis() as u64).min(total_ms));
                ticking.set_message(format!(
                    "{requests} requests, {:.0}/s",
                    requests as f64 / elapsed.as_secs_f64().max(1e-9)
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
    elapsed: Duration,
) -> BenchReport {
    let requests = counters.requests.load(Ordering::Relaxed);
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let ms = |nanos: u64| round_to_microseconds(nanos as f64 / 1e6);
    let errors = ErrorSummary {
        connect: counters.connect_errors.load(Ordering::Relaxed),
        io: counters.io_errors.load(Ordering::Relaxed),
        timeout: counters.timeouts.load(Ordering::Relaxed),
        mismatch: counters.mismatches.load(Ordering::Relaxed),
    };
    let verdict = if errors.mismatch > 0 {
        Verdict::Mismatch
    } else if errors.timeout > 0 {
        Verdict::TimedOut
    } else if errors.connect > 0 || errors.io > 0 || requests == 0 {
        Verdict::Unreachable
    } else {
        Verdict::Healthy
    };
    BenchReport {
        target: options.target.to_string(),
        protocol: if options.udp { "UDP" } else { "TCP" },
        connections: options.connections,
        size: options.size,
        pipeline: options.pipeline,
        rate: options.rate,
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
        exit_code: verdict.exit_code(),
    }
}

/// Milliseconds with three decimals: finer digits are noise on any real path.
pub fn round_to_microseconds(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

fn render(report: &BenchReport, histogram: &Histogram<u64>) -> String {
    let rate = report.rate.map_or("as fast as possible".to_string(), |r| {
        format!("{r} requests/s")
    });
    let latency = &report.latency_ms;
    let errors = &report.errors;
    let mut out = format!(
        "Target:     {} over {}\n\
         Load:       {} connections, {}-byte messages, pipeline {}, {rate}, {:.2} s\n\
         Requests:   {} ({:.1}/s), every echo verified\n\
         Throughput: {:.2} MB/s each way\n\
         Errors:     connect {}, I/O {}, timeout {}, mismatch {}\n\n\
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
    fn batches_carry_fresh_sequence_numbers() {
        let mut batch = Batch::new(16, 3, 7);
        batch.stamp();
        let first: Vec<Vec<u8>> = (0..3).map(|i| batch.message(i).to_vec()).collect();
        assert_ne!(first[0], first[1]);
        assert_eq!(first[0][8..], first[1][8..], "same block after the stamp");
        assert_eq!(batch.find(&first[2]), Some(2));
        batch.stamp();
        assert_eq!(batch.find(&first[0]), None);
        assert!(batch.is_stale(&first[0]));
        let mut corrupt = first[0].clone();
        corrupt[12] ^= 1;
        assert!(!batch.is_stale(&corrupt));
    }

    #[test]
    fn tiny_messages_still_work() {
        let mut batch = Batch::new(1, 2, 1);
        batch.stamp();
        assert_eq!(batch.bytes().len(), 2);
        assert!(batch.find(batch.message(1)).is_some());
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
