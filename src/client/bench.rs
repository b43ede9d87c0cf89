//! `echo-client bench`: load an echo server and measure it.
//!
//! Each connection runs a closed loop: send a batch of `pipeline` messages,
//! read every echo back, verify it byte for byte, repeat. With `--rate`, the
//! batches are scheduled instead, and latency is measured from the moment a
//! batch was *due*, not from when it was sent, so a stalled server cannot
//! hide its stall by slowing the load down (coordinated omission).
//!
//! The tool must not be the bottleneck, so the hot path makes no allocation
//! and takes no lock: each connection stamps a sequence number into its
//! prebuilt batch, checks echoes in a buffer its thread shares, keeps
//! latencies in a small local buffer that it folds into the shared HDR
//! histogram a few hundred at a time, and re-arms no timer per batch.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::runtime::Handle;
use tokio::time::Sleep;

use super::{
    Failure, MAX_DATAGRAM, MAX_UDP_PAYLOAD, Verdict, judge_echo, tcp_echo, udp_echo, udp_socket_to,
    within,
};
use crate::address::HostPort;
use crate::rarely::{self, First, Stamp};

/// Latencies a connection keeps before folding them into the histogram.
const LOCAL_SAMPLES: usize = 512;
/// Pause before reconnecting after a failure, so a dead server is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// The most of an echo read at once.
const READ_WINDOW: usize = 64 * 1024;

thread_local! {
    /// Where echoes are read to be checked. One per thread rather than one
    /// per connection: with hundreds of connections, buffers of their own
    /// would not stay in the CPU's cache (with 4 KiB messages, such copies
    /// cost a C load generator 12% of its speed).
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_WINDOW + 1].into_boxed_slice());
}

/// Reads the next part of an echo and checks it against `expected`, the
/// part of the batch not echoed yet; returns how many bytes came.
fn poll_verified_read(
    reader: Pin<&mut impl AsyncRead>,
    cx: &mut std::task::Context<'_>,
    scratch: &mut [u8],
    expected: &[u8],
) -> std::task::Poll<Result<usize, Failure>> {
    // Asking for one byte more than can come makes the last read a short
    // one, which tells tokio the socket is drained: no read that fails with
    // WouldBlock after every echo.
    let asked = expected.len().min(READ_WINDOW) + 1;
    let mut buf = tokio::io::ReadBuf::new(&mut scratch[..asked]);
    std::task::ready!(reader.poll_read(cx, &mut buf)).map_err(|e| Failure::io(&e))?;
    let got = buf.filled();
    std::task::Poll::Ready(if got.is_empty() {
        Err(Failure::mismatch(
            "the server closed the connection mid-echo",
        ))
    } else if got.len() > expected.len() || got != &expected[..got.len()] {
        Err(Failure::mismatch("wrong echo"))
    } else {
        Ok(got.len())
    })
}

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

/// What one connection may hold in flight, at most.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// What all connections together may hold in flight, at most.
const MAX_TOTAL_BYTES: usize = 1 << 30;
/// Late UDP answers a socket still accepts as stale rather than wrong.
const MAX_LOST_REMEMBERED: usize = 4096;

impl BenchOptions {
    /// Checks what the command line cannot: limits that keep the run finite
    /// and its memory bounded.
    pub fn validate(&self) -> Result<(), String> {
        if Instant::now()
            .checked_add(self.duration + self.timeout)
            .is_none()
        {
            return Err("--duration is too long".to_string());
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
    // resolve or a server that is down is one clear error, not thousands.
    let addr = match find_server(&options).await {
        Ok(addr) => addr,
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
    let (timer_runtime, _stop_timers) = timer_thread();

    let workers: Vec<_> = (0..options.connections)
        .map(|id| {
            let worker = Worker {
                addr,
                size: options.size,
                pipeline: options.pipeline,
                timeout: options.timeout,
                schedule: Schedule::new(options.batch_interval(), deadline),
                timer_runtime: timer_runtime.clone(),
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

/// The first of the target's addresses that echoes, within the timeout.
async fn find_server(options: &BenchOptions) -> Result<SocketAddr, Failure> {
    let probe = vec![0u8; 8.min(options.size)];
    let echo = if options.udp {
        udp_echo(&options.target, &probe, options.timeout).await?
    } else {
        tcp_echo(&options.target, &probe, options.timeout).await?
    };
    judge_echo(&probe, &echo.bytes)?;
    Ok(echo.address)
}

struct Worker {
    addr: SocketAddr,
    size: usize,
    pipeline: usize,
    timeout: Duration,
    schedule: Schedule,
    /// Where the round-trip timers live (see `timer_thread`).
    timer_runtime: Handle,
    counters: Arc<Counters>,
    latencies: Latencies,
    seed: u64,
}

impl Worker {
    async fn run_tcp(mut self) {
        let mut batch = Batch::new(self.size, self.pipeline, self.seed);
        let mut expiry = Expiry::new(&self.timer_runtime, self.schedule.deadline, self.timeout);
        let in_flight = Stamp::unset();
        while !self.schedule.is_over() {
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
            let ended = {
                let expiry = pin!(expiry.wait(&in_flight));
                let exchange = pin!(exchange_batches(
                    &mut stream,
                    &mut batch,
                    &mut self.schedule,
                    &mut self.latencies,
                    &self.counters,
                    &in_flight,
                ));
                // Batches wake the task for every echo, the timer rarely.
                rarely::select(exchange, expiry).await
            };
            // A batch abandoned with its stream is no longer in flight.
            in_flight.clear();
            let failure = match ended {
                First::Busy(Ok(())) | First::Rare(Expired::RunOver) => break,
                First::Busy(Err(failure)) => failure,
                First::Rare(Expired::TimedOut) => Failure::timed_out(self.timeout),
            };
            // The stream is out of step now: start a new one.
            self.count_failure(&failure, false);
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
        self.latencies.flush();
    }

    async fn run_udp(mut self) {
        let mut expiry = Expiry::new(&self.timer_runtime, self.schedule.deadline, self.timeout);
        let in_flight = Stamp::unset();
        let mut batch = Batch::new(self.size, self.pipeline, self.seed);
        let mut echo = vec![0u8; MAX_DATAGRAM];
        let socket: UdpSocket = match udp_socket_to(self.addr).await {
            Ok(socket) => socket,
            Err(failure) => {
                self.count_failure(&failure, true);
                return;
            }
        };
        while let Some(due) = self.schedule.next_due().await {
            batch.stamp();
            let latencies = &mut self.latencies;
            let counters = &self.counters;
            let pipeline = self.pipeline;
            let batch_ref = &mut batch;
            let round_trip = expiry.bound(&in_flight, async {
                for index in 0..pipeline {
                    socket
                        .send(batch_ref.message(index))
                        .await
                        .map_err(|e| Failure::io(&e))?;
                }
                // Datagrams may be lost or reordered: each answer is matched
                // by its sequence number.
                let mut outstanding = pipeline;
                while outstanding > 0 {
                    let len = socket.recv(&mut echo).await.map_err(|e| Failure::io(&e))?;
                    match batch_ref.answer(&echo[..len]) {
                        Answer::Expected => {
                            outstanding -= 1;
                            latencies.record(due.elapsed());
                            counters.requests.fetch_add(1, Ordering::Relaxed);
                        }
                        Answer::Late => {}
                        Answer::Wrong => return Err(Failure::mismatch("wrong echo")),
                    }
                }
                Ok(())
            });
            if let Some(Err(failure)) = round_trip.await {
                self.count_failure(&failure, false);
                batch.forget_unanswered();
                if failure.verdict == Verdict::Unreachable {
                    // A closed port answers at once: do not spin on it.
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
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

/// Sends batches on `stream` and checks their echoes until the run is over
/// (`Ok`) or one fails. `in_flight` tells the timer when the batch now in
/// flight was sent.
async fn exchange_batches(
    stream: &mut TcpStream,
    batch: &mut Batch,
    schedule: &mut Schedule,
    latencies: &mut Latencies,
    counters: &Counters,
    in_flight: &Stamp,
) -> Result<(), Failure> {
    while let Some(due) = schedule.next_due().await {
        batch.stamp();
        in_flight.set_now();
        let sent = batch.bytes();
        // Most batches fit in the socket buffer and go in one write; the
        // rest is written while the echo is read, since a batch larger than
        // the socket buffers would never finish writing.
        let written = match stream.try_write(sent) {
            Ok(written) => written,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(Failure::io(&e)),
        };
        if written == sent.len() {
            read_echo(stream, sent, batch.size, due, latencies).await?;
        } else {
            let (mut reader, mut writer) = stream.split();
            let write = async {
                writer
                    .write_all(&sent[written..])
                    .await
                    .map_err(|e| Failure::io(&e))
            };
            let read = read_echo(&mut reader, sent, batch.size, due, latencies);
            tokio::try_join!(write, read)?;
        }
        in_flight.clear();
        counters
            .requests
            .fetch_add((sent.len() / batch.size) as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// Reads the echo of `sent`, checking it byte for byte, and records the
/// latency of each message as its echo completes.
async fn read_echo(
    reader: &mut (impl AsyncRead + Unpin),
    sent: &[u8],
    size: usize,
    due: Instant,
    latencies: &mut Latencies,
) -> Result<(), Failure> {
    let mut received = 0;
    while received < sent.len() {
        let expected = &sent[received..];
        let got = std::future::poll_fn(|cx| {
            READ_SCRATCH.with_borrow_mut(|scratch| {
                poll_verified_read(Pin::new(&mut *reader), cx, scratch, expected)
            })
        })
        .await?;
        let answered = received / size;
        received += got;
        if received / size > answered {
            let latency = due.elapsed();
            for _ in answered..received / size {
                latencies.record(latency);
            }
        }
    }
    Ok(())
}

/// Why a connection's timer ended it.
enum Expired {
    TimedOut,
    RunOver,
}

/// A worker's one timer: it bounds each batch's round trip and the run. A
/// new timer per batch would cost the load generator about as much as the
/// batch itself, so the timer is lazy: it is not re-armed for every batch,
/// but when it fires, for the batch then in flight (see `Stamp`).
struct Expiry {
    timer: Pin<Box<Sleep>>,
    end: tokio::time::Instant,
    limit: Duration,
}

impl Expiry {
    /// Keeps its timer on `runtime` (see `timer_thread`).
    fn new(runtime: &Handle, end: Instant, limit: Duration) -> Expiry {
        let end = tokio::time::Instant::from(end);
        let first = end.min(tokio::time::Instant::now() + limit);
        Expiry {
            timer: Box::pin(rarely::sleep_on(runtime, first)),
            end,
            limit,
        }
    }

    /// Returns once the batch in flight has waited `limit` for its echo,
    /// or at the end of the run.
    async fn wait(&mut self, in_flight: &Stamp) -> Expired {
        loop {
            self.timer.as_mut().await;
            let now = tokio::time::Instant::now();
            let limit_at = in_flight
                .get()
                .map(|sent| tokio::time::Instant::from(sent) + self.limit);
            if limit_at.is_some_and(|limit_at| now >= limit_at) {
                return Expired::TimedOut;
            }
            if now >= self.end {
                return Expired::RunOver;
            }
            let next = limit_at.unwrap_or(now + self.limit).min(self.end);
            self.timer.as_mut().reset(next);
        }
    }

    /// Runs one batch's round trip within the timeout. A batch still in
    /// flight when the run ends is abandoned (`None`): it is neither a
    /// success nor a failure, and the run stops on time.
    async fn bound<T>(
        &mut self,
        in_flight: &Stamp,
        round_trip: impl Future<Output = Result<T, Failure>>,
    ) -> Option<Result<T, Failure>> {
        in_flight.set_now();
        let limit = self.limit;
        let ended = tokio::select! {
            biased;
            result = round_trip => Some(result),
            expired = self.wait(in_flight) => match expired {
                Expired::TimedOut => Some(Err(Failure::timed_out(limit))),
                Expired::RunOver => None,
            },
        };
        in_flight.clear();
        ended
    }
}

/// A runtime on a thread of its own, for the round-trip timers, and what
/// stops it when dropped. A runtime with a timer pending sleeps in
/// `epoll_wait` with a timeout, and arming the kernel's timer for that on
/// every wake-up costs the load generator about 5% of its speed (see
/// `tcp::idle` in the server). Without such a thread, the timers stay here.
fn timer_thread() -> (Handle, Option<tokio::sync::oneshot::Sender<()>>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .and_then(|runtime| {
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("bench-timers".into())
                .spawn(move || {
                    let _ = runtime.block_on(stopped);
                })
                .map(|_| handle)
        });
    match started {
        Ok(handle) => (handle, Some(stop)),
        Err(_) => (Handle::current(), None),
    }
}

/// When the next batch is due: now, or on a fixed grid under `--rate`; and
/// never after the end of the run.
///
/// Under `--rate`, latency is counted from the due time only when the batch
/// is late because the previous one was still waiting for the server; when
/// the connection was idle, the timer's own lateness is the client's, not
/// the server's, and the batch's real send time counts.
struct Schedule {
    interval: Option<Duration>,
    next: Instant,
    deadline: Instant,
}

impl Schedule {
    fn new(interval: Option<Duration>, deadline: Instant) -> Schedule {
        // Spread connections over one interval so they do not fire in step.
        let offset = interval.map_or(Duration::ZERO, |i| i.mul_f64(fastrand::f64()));
        Schedule {
            interval,
            next: Instant::now() + offset,
            deadline,
        }
    }

    fn is_over(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// The start of the next batch, or `None` once the run is over.
    async fn next_due(&mut self) -> Option<Instant> {
        let now = Instant::now();
        if now >= self.deadline {
            return None;
        }
        let Some(interval) = self.interval else {
            return Some(now);
        };
        let due = self.next;
        if due >= self.deadline {
            tokio::time::sleep_until(self.deadline.into()).await;
            return None;
        }
        self.next = due + interval;
        if now >= due {
            return Some(due);
        }
        tokio::time::sleep_until(due.into()).await;
        Some(Instant::now())
    }
}

/// `pipeline` messages back to back, each a fixed random block whose first
/// bytes are a stamp: the message's sequence number, and from 16 bytes on,
/// the number again, inverted. Every echo is checked against exactly the
/// bytes that were sent, so a stale or shifted echo cannot pass, and a UDP
/// answer whose number was damaged cannot pass for a late answer to
/// another message.
struct Batch {
    bytes: Vec<u8>,
    size: usize,
    stamp_len: usize,
    next_sequence: u64,
    /// This batch's messages not answered yet (UDP).
    unanswered: Vec<u64>,
    /// Earlier messages that were never answered: their answers may still
    /// arrive, late (UDP).
    lost: VecDeque<u64>,
}

/// A message's stamp: its sequence number, then the number inverted.
fn stamp_of(sequence: u64) -> [u8; 16] {
    let mut stamp = [0u8; 16];
    stamp[..8].copy_from_slice(&sequence.to_le_bytes());
    stamp[8..].copy_from_slice(&(!sequence).to_le_bytes());
    stamp
}

/// What a UDP answer turned out to be.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Expected,
    Late,
    Wrong,
}

impl Batch {
    fn new(size: usize, pipeline: usize, seed: u64) -> Batch {
        let mut rng = fastrand::Rng::with_seed(seed);
        let block: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(size).collect();
        Batch {
            bytes: block.repeat(pipeline),
            size,
            stamp_len: size.min(16),
            next_sequence: seed << 40,
            unanswered: Vec::with_capacity(pipeline),
            lost: VecDeque::new(),
        }
    }

    fn stamp(&mut self) {
        self.unanswered.clear();
        for message in self.bytes.chunks_mut(self.size) {
            message[..self.stamp_len]
                .copy_from_slice(&stamp_of(self.next_sequence)[..self.stamp_len]);
            self.unanswered.push(self.next_sequence);
            self.next_sequence += 1;
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn message(&self, index: usize) -> &[u8] {
        &self.bytes[index * self.size..(index + 1) * self.size]
    }

    /// Judges a UDP answer: one of this batch's messages, exactly; or a late
    /// answer to a message that was given up on; or wrong.
    fn answer(&mut self, echo: &[u8]) -> Answer {
        if echo.len() != self.size || self.stamp_len < 8 {
            return Answer::Wrong;
        }
        let sequence = u64::from_le_bytes(echo[..8].try_into().expect("eight bytes"));
        // The stamp must be whole, and every message carries the same block
        // after it.
        let stamp_intact = echo[..self.stamp_len] == stamp_of(sequence)[..self.stamp_len];
        if !stamp_intact || echo[self.stamp_len..] != self.bytes[self.stamp_len..self.size] {
            return Answer::Wrong;
        }
        if let Some(position) = self.unanswered.iter().position(|&s| s == sequence) {
            self.unanswered.swap_remove(position);
            return Answer::Expected;
        }
        if let Some(position) = self.lost.iter().position(|&s| s == sequence) {
            self.lost.remove(position);
            return Answer::Late;
        }
        Answer::Wrong
    }

    /// After a timeout: this batch's unanswered messages may still be
    /// answered later, and that is not an error.
    fn forget_unanswered(&mut self) {
        self.lost.extend(self.unanswered.drain(..));
        while self.lost.len() > MAX_LOST_REMEMBERED {
            self.lost.pop_front();
        }
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
    } else if errors.connect > 0 || errors.io > 0 {
        Verdict::Unreachable
    } else if requests == 0 {
        // Nothing failed, yet nothing came back within the run.
        Verdict::TimedOut
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
        assert_eq!(first[0][16..], first[1][16..], "same block after the stamp");
        assert_eq!(batch.answer(&first[2]), Answer::Expected);
        assert_eq!(batch.answer(&first[2]), Answer::Wrong, "answered twice");
        batch.forget_unanswered();
        batch.stamp();
        assert_eq!(batch.answer(&first[0]), Answer::Late);
        assert_eq!(batch.answer(&first[0]), Answer::Wrong, "late twice");
    }

    #[test]
    fn corrupted_udp_answers_are_wrong_wherever_the_damage_is() {
        let mut batch = Batch::new(16, 2, 1);
        batch.stamp();
        batch.forget_unanswered();
        batch.stamp();
        // The neighbour of a lost message's number is not a late answer.
        let mut next = batch.message(0).to_vec();
        next[0] ^= 0x01;
        assert_eq!(batch.answer(&next), Answer::Wrong);
        let message = batch.message(1).to_vec();
        for byte in [0, 7, 8, 15] {
            let mut corrupt = message.clone();
            corrupt[byte] ^= 0x10;
            assert_eq!(batch.answer(&corrupt), Answer::Wrong, "byte {byte}");
        }
        assert_eq!(batch.answer(&message[..15]), Answer::Wrong, "short");
    }

    #[test]
    fn tiny_tcp_messages_still_work() {
        let mut batch = Batch::new(1, 2, 1);
        batch.stamp();
        assert_eq!(batch.bytes().len(), 2);
        assert_ne!(batch.message(0), batch.message(1));
    }

    #[test]
    fn limits_keep_runs_finite_and_bounded() {
        let options = BenchOptions {
            target: "127.0.0.1:7".parse().unwrap(),
            udp: false,
            connections: 10,
            duration: Duration::from_secs(1),
            size: 64,
            rate: None,
            pipeline: 1,
            timeout: Duration::from_secs(1),
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
