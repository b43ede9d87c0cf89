//! UDP path measurement: a stream of numbered, timestamped probes on one
//! socket, and the figures an operator reads from it (loss, late answers,
//! duplicates, reordering, round trips, jitter).
//!
//! Why a module of its own: a path's quality is a property of a stream, not
//! of one exchange. A fresh socket per probe cannot tell a late answer from
//! the answer to the next probe, nor a duplicate from an echo; a header with
//! a sequence number and a send time can. `check --udp` runs every UDP check
//! through here; the probe format leaves room (a version and a kind) for the
//! later MTU probes and for test tools that hold or reorder probes by their
//! sequence number. `bench --udp` sends its own messages, but counts late
//! and reordered answers and the jitter with this module's
//! [`StreamAccount`], so the two verbs never disagree on what they mean.
//!
//! The stream runs on two plain threads, not on the async runtime: the
//! sender sleeps to each probe's due time with the operating system's
//! high-resolution sleep and records how late it woke, and the receiver
//! blocks in `recv` and stamps each answer as it wakes. Both wake-ups are
//! the same scheduler's, so the sender's lateness is the client's own
//! measured timing error, and the jitter is flagged when that error is as
//! large as the jitter itself.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::bench::round_to_microseconds;
use super::udp_local_for;
use crate::shared::protocol::MAX_DATAGRAM;

/// Bytes of header at the start of every UDP probe, and so the smallest
/// `--size` over UDP.
pub const UDP_PROBE_HEADER: usize = 24;

/// The header's first bytes: an answer without them is not one of ours.
const MAGIC: [u8; 4] = *b"ECPQ";
/// The header's layout version.
const VERSION: u8 = 1;
/// The kind of probe: 0 is a path probe, 1 an MTU probe (`echo-client mtu`),
/// so a probe is never mistaken for another kind's.
const KIND_PATH: u8 = 0;
#[cfg(target_os = "linux")]
pub(crate) const KIND_MTU: u8 = 1;

/// How often the receiver looks whether the stream has ended, while no
/// answer comes.
const RECEIVER_POLL: Duration = Duration::from_millis(50);

/// What a probe says about itself. On the wire, big-endian: magic (4),
/// version (1), kind (1), two bytes reserved as zero, session (4),
/// sequence number (4), send time in nanoseconds since the stream began (8);
/// then the filler up to `--size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbeHeader {
    /// Random per stream: an answer to another run is not taken for ours.
    pub(crate) session: u32,
    pub(crate) sequence: u32,
    pub(crate) sent_ns: u64,
}

impl ProbeHeader {
    fn write_to(&self, datagram: &mut [u8]) {
        self.write_kind_to(datagram, KIND_PATH);
    }

    fn read_from(datagram: &[u8]) -> Option<ProbeHeader> {
        ProbeHeader::read_kind_from(datagram, KIND_PATH)
    }

    /// Writes the header of a probe of `kind` at the start of `datagram`.
    pub(crate) fn write_kind_to(&self, datagram: &mut [u8], kind: u8) {
        datagram[0..4].copy_from_slice(&MAGIC);
        datagram[4] = VERSION;
        datagram[5] = kind;
        datagram[6..8].fill(0);
        datagram[8..12].copy_from_slice(&self.session.to_be_bytes());
        datagram[12..16].copy_from_slice(&self.sequence.to_be_bytes());
        datagram[16..24].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// The header of a probe of `kind`, if `datagram` starts with one.
    pub(crate) fn read_kind_from(datagram: &[u8], kind: u8) -> Option<ProbeHeader> {
        let header = datagram.get(..UDP_PROBE_HEADER)?;
        if header[0..4] != MAGIC || header[4] != VERSION || header[5] != kind {
            return None;
        }
        let field = |range: std::ops::Range<usize>| &header[range];
        Some(ProbeHeader {
            session: u32::from_be_bytes(field(8..12).try_into().ok()?),
            sequence: u32::from_be_bytes(field(12..16).try_into().ok()?),
            sent_ns: u64::from_be_bytes(field(16..24).try_into().ok()?),
        })
    }
}

/// What to send: `count` probes of `size` bytes, one every `interval`, each
/// answered in time if its echo is back within `timeout`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamPlan {
    pub(crate) count: u32,
    pub(crate) size: usize,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

/// One probe as the sender saw it, in nanoseconds since the stream began.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sent {
    /// When it could have left at the earliest: its due time, or the end of
    /// the previous send if that was later.
    ready_ns: u64,
    sent_ns: u64,
}

/// One datagram that came back, as the receiver saw it.
#[derive(Debug, Clone, PartialEq)]
struct Arrival {
    received_ns: u64,
    /// The header, if the datagram is a whole, intact probe of this stream;
    /// else what is wrong with it.
    probe: Result<ProbeHeader, String>,
}

/// A stream's raw record, before any judgement.
#[derive(Debug, Default)]
struct Recording {
    sent: Vec<Sent>,
    arrivals: Vec<Arrival>,
    /// The peer answered with ICMP port unreachable at least once.
    refused: bool,
}

/// Sends the stream to `address` and records what comes back. Blocks for
/// about `count × interval`, and then until every probe is answered or the
/// last one's timeout has passed.
pub(crate) fn measure(address: SocketAddr, plan: StreamPlan) -> io::Result<PathFigures> {
    let recording = record(address, plan)?;
    Ok(analyse(&recording, plan.timeout))
}

fn record(address: SocketAddr, plan: StreamPlan) -> io::Result<Recording> {
    let socket = UdpSocket::bind(udp_local_for(address))?;
    socket.connect(address)?;
    let receiving = socket.try_clone()?;
    receiving.set_read_timeout(Some(RECEIVER_POLL))?;
    let session = fastrand::u32(..);
    let filler: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..))
        .take(plan.size - UDP_PROBE_HEADER)
        .collect();
    let stopped = AtomicBool::new(false);
    // How many probes have an answer, and whether the peer refused, so that
    // the wait for the last answers ends as soon as none is missing or the
    // peer has said that nothing listens.
    let progress = (Mutex::new(Progress::default()), Condvar::new());
    let start = Instant::now();
    let since_start = |instant: Instant| instant.duration_since(start).as_nanos() as u64;
    std::thread::scope(|scope| {
        let receiver = scope.spawn(|| {
            let mut arrivals = Vec::new();
            let mut seen = vec![false; plan.count as usize];
            let mut buf = vec![0u8; MAX_DATAGRAM];
            while !stopped.load(Ordering::Acquire) {
                match receiving.recv(&mut buf) {
                    Ok(len) => {
                        let received_ns = since_start(Instant::now());
                        let probe = judge_answer(&buf[..len], session, &filler, plan.size);
                        if let Ok(header) = &probe
                            && let Some(first) = seen
                                .get_mut(header.sequence as usize)
                                .filter(|seen| !**seen)
                        {
                            *first = true;
                            progress.0.lock().expect("not poisoned").answered += 1;
                            progress.1.notify_one();
                        }
                        arrivals.push(Arrival { received_ns, probe });
                    }
                    Err(e) if refusal(&e) => {
                        progress.0.lock().expect("not poisoned").refused = true;
                        progress.1.notify_one();
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(arrivals)
        });
        let sending = send_all(&socket, plan, session, &filler, start);
        if let Ok((_, _, last_sent)) = &sending {
            let deadline = *last_sent + plan.timeout;
            let guard = progress.0.lock().expect("not poisoned");
            let _ = progress.1.wait_timeout_while(
                guard,
                deadline.saturating_duration_since(Instant::now()),
                |progress| progress.answered < plan.count && !progress.refused,
            );
        }
        stopped.store(true, Ordering::Release);
        let arrivals = receiver.join().expect("the receiver does not panic")?;
        let (sent, refused_send, _) = sending?;
        let refused_answer = progress.0.lock().expect("not poisoned").refused;
        Ok(Recording {
            sent,
            arrivals,
            refused: refused_answer || refused_send,
        })
    })
}

/// What the receiver tells the sender while it waits for the last answers.
#[derive(Debug, Default)]
struct Progress {
    /// Probes with at least one answer, in time or late.
    answered: u32,
    refused: bool,
}

/// Whether a socket error is the peer's ICMP port unreachable: Linux
/// reports it as refused, Windows as a reset.
fn refusal(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

/// Sends every probe on schedule; returns what was sent, whether the peer
/// refused, and when the last send ended.
fn send_all(
    socket: &UdpSocket,
    plan: StreamPlan,
    session: u32,
    filler: &[u8],
    start: Instant,
) -> io::Result<(Vec<Sent>, bool, Instant)> {
    let since_start = |instant: Instant| instant.duration_since(start).as_nanos() as u64;
    let mut datagram = vec![0u8; plan.size];
    datagram[UDP_PROBE_HEADER..].copy_from_slice(filler);
    let mut sent = Vec::with_capacity(plan.count as usize);
    let mut refused = false;
    let mut previous_done = start;
    for sequence in 0..plan.count {
        let due = start + plan.interval * sequence;
        let ready = due.max(previous_done);
        let now = Instant::now();
        if ready > now {
            std::thread::sleep(ready - now);
        }
        let sent_at = Instant::now();
        let sent_ns = since_start(sent_at);
        ProbeHeader {
            session,
            sequence,
            sent_ns,
        }
        .write_to(&mut datagram);
        match socket.send(&datagram) {
            Ok(_) => {}
            // An earlier probe's ICMP port unreachable, reported here; this
            // probe did not leave, and counts as lost.
            Err(e) if refusal(&e) => refused = true,
            Err(e) => return Err(e),
        }
        sent.push(Sent {
            ready_ns: since_start(ready),
            sent_ns,
        });
        previous_done = Instant::now();
    }
    Ok((sent, refused, previous_done))
}

/// The header of an answer that is exactly a probe of this stream, or what
/// is wrong with it.
fn judge_answer(
    answer: &[u8],
    session: u32,
    filler: &[u8],
    size: usize,
) -> Result<ProbeHeader, String> {
    if answer.len() != size {
        return Err(format!(
            "an answer has {} bytes, the probes {size}",
            answer.len()
        ));
    }
    let header = ProbeHeader::read_from(answer)
        .filter(|header| header.session == session)
        .ok_or("an answer's header is not a probe's of this run")?;
    if let Some(at) = answer[UDP_PROBE_HEADER..]
        .iter()
        .zip(filler)
        .position(|(a, b)| a != b)
    {
        return Err(format!(
            "an answer differs from its probe at byte {} of {size}",
            UDP_PROBE_HEADER + at
        ));
    }
    Ok(header)
}

/// What a stream tells about the path, as `check` reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct PathFigures {
    pub(crate) sent: u32,
    /// Probes whose echo came back intact within the timeout.
    pub(crate) answered: u32,
    /// Round trips of the answered probes, in milliseconds.
    pub(crate) rtts_ms: Vec<f64>,
    pub(crate) details: PathDetails,
    /// Why an answer was wrong, if one was.
    pub(crate) mismatch: Option<String>,
    /// The peer answered with ICMP port unreachable.
    pub(crate) refused: bool,
}

/// The figures only a stream of numbered probes can give, as JSON shows
/// them under `path`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub(crate) struct PathDetails {
    /// Probes answered only after their timeout: counted as lost, never as
    /// answered.
    pub(crate) late: u32,
    /// Extra copies of an answer already received.
    pub(crate) duplicated: u32,
    /// Answers that arrived after one with a higher sequence number (RFC
    /// 4737's reordered packets), as a count and as a share of the probes
    /// that came back (its reordered-packet ratio, in percent).
    pub(crate) reordered: u32,
    pub(crate) reordered_percent: f64,
    /// RFC 3550's interarrival jitter, computed over the round-trip times of
    /// the answers in the order they arrived, in milliseconds.
    pub(crate) jitter_ms: Option<f64>,
    /// Whether the client can vouch for the jitter: its own timing error
    /// (`client_late_ms.max`) is below the jitter.
    pub(crate) jitter_reliable: bool,
    /// How late the client sent its probes after they were due: its own
    /// timer and scheduling error, which also delays its receive stamps.
    pub(crate) client_late_ms: Lateness,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub(crate) struct Lateness {
    pub(crate) max: f64,
    pub(crate) avg: f64,
}

/// The method the jitter is computed by, in words for the output.
pub(crate) const JITTER_METHOD: &str = "RFC 3550 interarrival jitter of the round trips";

/// The running account of one stream's answers, in the order they arrive:
/// which came late, which were reordered (RFC 4737) and the jitter (RFC
/// 3550). `check --udp` keeps one per target and `bench --udp` one per
/// socket, so both count these figures the same way. The caller tells a
/// first answer from a copy (each knows its own probes).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct StreamAccount {
    next_expected: u64,
    /// First answers, in time or late.
    pub(crate) arrived: u64,
    pub(crate) late: u64,
    pub(crate) reordered: u64,
    previous_rtt_ms: Option<f64>,
    jitter_ms: Option<f64>,
}

impl StreamAccount {
    /// The first answer to probe `sequence`, `rtt_ms` after it left; a late
    /// one (`in_time` false) counts toward reordering but not the jitter.
    pub(crate) fn first_answer(&mut self, sequence: u64, rtt_ms: f64, in_time: bool) {
        self.arrived += 1;
        // RFC 4737, section 3.3: reordered if it is below the next expected.
        if sequence < self.next_expected {
            self.reordered += 1;
        } else {
            self.next_expected = sequence + 1;
        }
        if !in_time {
            self.late += 1;
            return;
        }
        // RFC 3550, section 6.4.1: J += (|D| - J) / 16, where D is the
        // change in transit time between consecutive arrivals.
        if let Some(previous) = self.previous_rtt_ms {
            let jitter = self.jitter_ms.unwrap_or(0.0);
            self.jitter_ms = Some(jitter + ((rtt_ms - previous).abs() - jitter) / 16.0);
        }
        self.previous_rtt_ms = Some(rtt_ms);
    }

    /// RFC 4737's reordered-packet ratio over the answers that came, in
    /// percent with two decimals.
    pub(crate) fn reordered_percent(&self) -> f64 {
        percent_of(self.reordered, self.arrived)
    }

    /// The jitter in milliseconds, once two answers came in time.
    pub(crate) fn jitter_ms(&self) -> Option<f64> {
        self.jitter_ms.map(round_to_microseconds)
    }

    /// Several streams as one figure: the counts add up, and the jitter is
    /// the mean of the streams' own (RFC 3550 defines it per stream).
    pub(crate) fn combined(streams: &[StreamAccount]) -> StreamAccount {
        let jitters: Vec<f64> = streams.iter().filter_map(|s| s.jitter_ms).collect();
        StreamAccount {
            arrived: streams.iter().map(|s| s.arrived).sum(),
            late: streams.iter().map(|s| s.late).sum(),
            reordered: streams.iter().map(|s| s.reordered).sum(),
            jitter_ms: (!jitters.is_empty())
                .then(|| jitters.iter().sum::<f64>() / jitters.len() as f64),
            ..StreamAccount::default()
        }
    }
}

fn analyse(recording: &Recording, timeout: Duration) -> PathFigures {
    let sent = &recording.sent;
    let timeout_ns = timeout.as_nanos() as u64;
    let mut figures = PathFigures {
        sent: sent.len() as u32,
        refused: recording.refused,
        ..PathFigures::default()
    };
    let details = &mut figures.details;
    let mut seen = vec![false; sent.len()];
    let mut account = StreamAccount::default();
    for arrival in &recording.arrivals {
        let header = match &arrival.probe {
            Ok(header) => header,
            Err(why) => {
                figures.mismatch.get_or_insert_with(|| why.clone());
                continue;
            }
        };
        let sequence = header.sequence as usize;
        if sent.get(sequence).map(|s| s.sent_ns) != Some(header.sent_ns) {
            figures.mismatch.get_or_insert_with(|| {
                format!(
                    "an answer carries sequence number {} with a send time no probe had",
                    header.sequence
                )
            });
            continue;
        }
        if seen[sequence] {
            details.duplicated += 1;
            continue;
        }
        seen[sequence] = true;
        let rtt_ns = arrival.received_ns.saturating_sub(header.sent_ns);
        let rtt_ms = rtt_ns as f64 / 1e6;
        let in_time = rtt_ns <= timeout_ns;
        account.first_answer(u64::from(header.sequence), rtt_ms, in_time);
        if in_time {
            figures.answered += 1;
            figures.rtts_ms.push(rtt_ms);
        }
    }
    // At most one first answer per probe sent, so these fit.
    details.late = account.late as u32;
    details.reordered = account.reordered as u32;
    details.reordered_percent = account.reordered_percent();
    let lateness_ms: Vec<f64> = sent
        .iter()
        .map(|s| s.sent_ns.saturating_sub(s.ready_ns) as f64 / 1e6)
        .collect();
    if !lateness_ms.is_empty() {
        details.client_late_ms = Lateness {
            max: round_to_microseconds(lateness_ms.iter().copied().fold(0.0, f64::max)),
            avg: round_to_microseconds(lateness_ms.iter().sum::<f64>() / lateness_ms.len() as f64),
        };
    }
    details.jitter_ms = account.jitter_ms();
    details.jitter_reliable = details
        .jitter_ms
        .is_some_and(|jitter| details.client_late_ms.max < jitter);
    figures
}

/// `part` of `whole` in percent, to two decimals (finer is noise at a few
/// thousand probes); 0 of nothing is 0.
pub(crate) fn percent_of(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 10_000.0 / whole as f64).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn header(sequence: u32) -> ProbeHeader {
        ProbeHeader {
            session: 7,
            sequence,
            sent_ns: u64::from(sequence) * 10 * MS,
        }
    }

    /// Probes 10 ms apart, each sent `late_ns` after it was ready.
    fn sent(count: u32, late_ns: u64) -> Vec<Sent> {
        (0..count)
            .map(|sequence| Sent {
                ready_ns: header(sequence).sent_ns.saturating_sub(late_ns),
                sent_ns: header(sequence).sent_ns,
            })
            .collect()
    }

    fn answer(sequence: u32, rtt_ms: u64) -> Arrival {
        Arrival {
            received_ns: header(sequence).sent_ns + rtt_ms * MS,
            probe: Ok(header(sequence)),
        }
    }

    #[test]
    fn the_header_round_trips_and_foreign_datagrams_are_refused() {
        let mut datagram = vec![0u8; 30];
        header(5).write_to(&mut datagram);
        assert_eq!(ProbeHeader::read_from(&datagram), Some(header(5)));
        datagram[5] = 1;
        assert_eq!(ProbeHeader::read_from(&datagram), None, "another kind");
        assert_eq!(ProbeHeader::read_from(&[0u8; 23]), None, "too short");
        let filler = vec![9u8; 6];
        let mut probe = vec![9u8; 30];
        header(1).write_to(&mut probe);
        assert_eq!(judge_answer(&probe, 7, &filler, 30), Ok(header(1)));
        assert!(judge_answer(&probe, 8, &filler, 30).is_err(), "another run");
        probe[29] ^= 1;
        assert_eq!(
            judge_answer(&probe, 7, &filler, 30),
            Err("an answer differs from its probe at byte 29 of 30".into())
        );
        assert!(judge_answer(&probe[..29], 7, &filler, 30).is_err());
    }

    #[test]
    fn late_duplicated_and_reordered_answers_are_told_apart() {
        let recording = Recording {
            sent: sent(6, 0),
            arrivals: vec![
                answer(0, 2),
                answer(2, 2),
                answer(1, 13), // after 2: reordered
                answer(1, 14), // a copy
                answer(4, 2),
                answer(3, 120), // after its 100 ms timeout: late, and reordered
            ],
            refused: false,
        };
        let figures = analyse(&recording, Duration::from_millis(100));
        assert_eq!((figures.sent, figures.answered), (6, 4));
        assert_eq!(figures.rtts_ms, [2.0, 2.0, 13.0, 2.0]);
        let details = figures.details;
        assert_eq!(
            (details.late, details.duplicated, details.reordered),
            (1, 1, 2)
        );
        assert_eq!(details.reordered_percent, 40.0, "2 of the 5 that came back");
        // D = 0, 11, 11: J = 0, 11/16, 11/16 + (11 - 11/16)/16.
        let expected = 11.0 / 16.0 + (11.0 - 11.0 / 16.0) / 16.0;
        assert_eq!(details.jitter_ms, Some(round_to_microseconds(expected)));
        assert_eq!(figures.mismatch, None);
    }

    #[test]
    fn an_answer_with_a_send_time_never_sent_is_a_mismatch() {
        let mut forged = answer(1, 1);
        if let Ok(header) = &mut forged.probe {
            header.sent_ns += 1;
        }
        let recording = Recording {
            sent: sent(2, 0),
            arrivals: vec![answer(0, 1), forged],
            refused: false,
        };
        let figures = analyse(&recording, Duration::from_secs(1));
        assert_eq!(figures.answered, 1);
        assert!(
            figures.mismatch.unwrap().contains("sequence number 1"),
            "named"
        );
    }

    #[test]
    fn streams_combine_into_sums_and_a_mean_jitter() {
        let mut one = StreamAccount::default();
        for (sequence, rtt_ms) in [(0, 1.0), (2, 3.0), (1, 1.0)] {
            one.first_answer(sequence, rtt_ms, true);
        }
        let mut two = StreamAccount::default();
        two.first_answer(5, 0.0, false);
        two.first_answer(6, 4.0, true);
        two.first_answer(7, 8.0, true);
        let both = StreamAccount::combined(&[one, two]);
        assert_eq!((both.arrived, both.late, both.reordered), (6, 1, 1));
        assert_eq!(both.reordered_percent(), 16.67);
        // One: D = 2, 2: J = 2/16 + (2 - 2/16)/16. Two: D = 4: J = 4/16.
        let first = 2.0 / 16.0 + (2.0 - 2.0 / 16.0) / 16.0;
        assert_eq!(
            both.jitter_ms(),
            Some(round_to_microseconds((first + 0.25) / 2.0))
        );
        assert_eq!(StreamAccount::combined(&[]).jitter_ms(), None);
    }

    #[test]
    fn jitter_below_the_clients_own_lateness_is_not_vouched_for() {
        let steady = |late_ns| Recording {
            sent: sent(3, late_ns),
            arrivals: vec![answer(0, 1), answer(1, 2), answer(2, 1)],
            refused: false,
        };
        let punctual = analyse(&steady(0), Duration::from_secs(1)).details;
        assert!(punctual.jitter_reliable, "{punctual:?}");
        let sluggish = analyse(&steady(MS), Duration::from_secs(1)).details;
        assert_eq!(sluggish.jitter_ms, punctual.jitter_ms);
        assert!(!sluggish.jitter_reliable, "{sluggish:?}");
        assert_eq!(sluggish.client_late_ms.max, 1.0);
    }
}
