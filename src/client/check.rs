//! `echo-client check`: is each target healthy, and how fast does it answer?
//!
//! Made for monitoring: every target is probed at the same time, so a fleet
//! is checked in about the time of its slowest host; each probe is bounded
//! by `--timeout`; and the exit code is the worst verdict of all targets.
//! Over TCP each probe uses a fresh connection, so the accept path is tested
//! every time and a late answer to one probe cannot be taken for the answer
//! to the next. Over UDP the probes are one stream of numbered, timestamped
//! datagrams on one socket (`client::path`), even a single one: that is what
//! tells late answers, duplicates and reordering apart, and gives the same
//! figures for `-n 1` as for `-n 1000`.
//!
//! What a run found is one list of [`TargetReport`]s; how it is written out
//! is the `--format`'s business: a line per target for people, JSON for
//! scripts, a Nagios plugin's status line (`nagios`) or a Prometheus
//! textfile (`textfile`).

mod nagios;
mod textfile;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

pub use self::nagios::{NagiosState, NagiosThresholds, Range, Thresholds};
use super::bench::round_to_microseconds;
use super::path::{self, PathDetails, StreamPlan, percent_of};
use super::tls::{Session, Tls};
use super::{Echo, Failure, Verdict, judge_echo, print_result, resolve, tcp_echo};
use crate::shared::address::HostPort;

#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub targets: Vec<HostPort>,
    pub udp: bool,
    /// Over TLS, with this configuration.
    pub tls: Option<Arc<Tls>>,
    /// Bytes per probe.
    pub size: usize,
    /// Probes per target.
    pub count: u32,
    /// Pause between the probes of one target.
    pub interval: Duration,
    /// Extra attempts for a probe that failed, before it counts as failed
    /// (TCP only: over UDP every probe counts toward the loss).
    pub retries: u32,
    /// Bound on one attempt: connecting, sending and receiving the echo.
    pub timeout: Duration,
    pub format: Format,
}

/// How the results are written.
#[derive(Debug, Clone)]
pub enum Format {
    /// One line per target, for people.
    Human,
    /// One JSON document, for scripts.
    Json,
    /// A Nagios/Icinga plugin: one status line with performance data, and
    /// the plugin exit codes 0 to 3 instead of echo-client's own.
    Nagios(NagiosThresholds),
    /// Prometheus's text format for node_exporter's textfile collector, to
    /// standard output or written atomically to a file.
    Textfile(Option<PathBuf>),
}

/// The result for one target, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TargetReport {
    pub(crate) target: String,
    pub(crate) protocol: &'static str,
    pub(crate) verdict: Verdict,
    pub(crate) exit_code: i32,
    /// The address that answered last, once one did.
    pub(crate) address: Option<SocketAddr>,
    pub(crate) probes: u32,
    pub(crate) healthy: u32,
    /// Probes that got no echo at all (refused, reset, timed out), as a
    /// count and a share; a wrong echo is an answer, so it is not lost.
    pub(crate) lost: u32,
    pub(crate) loss_percent: f64,
    pub(crate) size: usize,
    pub(crate) rtt_ms: Option<RttSummary>,
    /// Over UDP: late, duplicated and reordered answers, jitter, and the
    /// client's own timing error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<PathReport>,
    /// Over TLS: the protocol version, cipher suite and certificate expiry
    /// of the last handshake that completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls: Option<Session>,
    /// Why the worst probe failed.
    pub(crate) error: Option<String>,
}

/// Round-trip times of the healthy probes, in milliseconds. The spread
/// (standard deviation and percentiles) only where there are several.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct RttSummary {
    pub(crate) min: f64,
    pub(crate) avg: f64,
    pub(crate) max: f64,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(crate) spread: Option<RttSpread>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct RttSpread {
    pub(crate) stddev: f64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
}

impl RttSummary {
    /// Summarises round trips in milliseconds; `None` for none.
    fn of(rtts: &[f64]) -> Option<RttSummary> {
        if rtts.is_empty() {
            return None;
        }
        let mut sorted = rtts.to_vec();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len() as f64;
        let avg = sorted.iter().sum::<f64>() / count;
        // The nearest-rank percentile: always a round trip that happened.
        let percentile = |p: f64| sorted[((p * count).ceil() as usize).clamp(1, sorted.len()) - 1];
        let spread = (sorted.len() > 1).then(|| RttSpread {
            stddev: round_to_microseconds(
                (sorted.iter().map(|rtt| (rtt - avg).powi(2)).sum::<f64>() / count).sqrt(),
            ),
            p50: round_to_microseconds(percentile(0.50)),
            p90: round_to_microseconds(percentile(0.90)),
            p99: round_to_microseconds(percentile(0.99)),
        });
        Some(RttSummary {
            min: round_to_microseconds(sorted[0]),
            avg: round_to_microseconds(avg),
            max: round_to_microseconds(sorted[sorted.len() - 1]),
            spread,
        })
    }
}

/// The stream figures of a UDP check, with the jitter's method named.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct PathReport {
    #[serde(flatten)]
    pub(crate) details: PathDetails,
    pub(crate) jitter_method: &'static str,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    exit_code: i32,
    targets: &'a [TargetReport],
}

/// Checks every target at once, prints the results and returns the exit code.
pub async fn run(options: CheckOptions) -> i32 {
    let started = SystemTime::now();
    let tasks: Vec<_> = options
        .targets
        .iter()
        .map(|target| tokio::spawn(check_target(target.clone(), options.clone())))
        .collect();
    let mut reports = Vec::with_capacity(tasks.len());
    for task in tasks {
        reports.push(task.await.expect("a check task does not panic"));
    }
    let worst = reports
        .iter()
        .fold(Verdict::Healthy, |worst, r| worst.worst(r.verdict));
    match &options.format {
        Format::Human => {
            let lines: String = reports
                .iter()
                .map(|report| human_line(report) + "\n")
                .collect();
            print_result(lines.as_bytes(), worst.exit_code())
        }
        Format::Json => {
            let report = Report {
                exit_code: worst.exit_code(),
                targets: &reports,
            };
            let json = serde_json::to_string_pretty(&report).expect("a report serializes") + "\n";
            print_result(json.as_bytes(), worst.exit_code())
        }
        Format::Nagios(thresholds) => {
            let (output, state) = nagios::render(&reports, thresholds);
            print_result(output.as_bytes(), state.exit_code())
        }
        Format::Textfile(path) => {
            let text = textfile::render(&reports, started);
            match path {
                None => print_result(text.as_bytes(), worst.exit_code()),
                Some(path) => textfile::write_atomically(path, &text, worst.exit_code()),
            }
        }
    }
}

fn human_line(report: &TargetReport) -> String {
    let mut line = format!(
        "{}: {}, {}/{} echoes of {} bytes over {}",
        report.target,
        report.verdict.label(),
        report.healthy,
        report.probes,
        report.size,
        report.protocol
    );
    if report.lost > 0 {
        line.push_str(&format!(
            ", {} lost ({}%)",
            report.lost, report.loss_percent
        ));
    }
    if let Some(path) = &report.path {
        line.push_str(&stream_counts(&path.details));
    }
    if let Some(rtt) = report.rtt_ms {
        line.push_str(&format!(
            ", rtt min/avg/max {:.3}/{:.3}/{:.3} ms",
            rtt.min, rtt.avg, rtt.max
        ));
    }
    if let Some(path) = &report.path {
        line.push_str(&jitter_words(&path.details));
    }
    if let Some(tls) = &report.tls {
        line.push_str(&format!(", {} {}", tls.version, tls.cipher_suite));
        let not_after = tls.certificate_not_after.as_deref().unwrap_or_default();
        match tls.certificate_expires_in_days {
            Some(days) if days < 0.0 => line.push_str(&format!(
                ", certificate expired {:.0} days ago ({not_after})",
                -days
            )),
            Some(days) => line.push_str(&format!(
                ", certificate expires in {days:.0} days ({not_after})"
            )),
            None => {}
        }
    }
    if let Some(error) = &report.error {
        line.push_str(&format!(": {error}"));
    }
    line
}

/// What went wrong on the path besides loss, in words; nothing if nothing.
fn stream_counts(details: &PathDetails) -> String {
    let mut words = String::new();
    for (count, what) in [(details.late, "late"), (details.duplicated, "duplicated")] {
        if count > 0 {
            words.push_str(&format!(", {count} {what}"));
        }
    }
    if details.reordered > 0 {
        words.push_str(&format!(
            ", {} reordered ({}%)",
            details.reordered, details.reordered_percent
        ));
    }
    words
}

/// The jitter, and whether the client can vouch for it.
fn jitter_words(details: &PathDetails) -> String {
    let mut words = String::new();
    if let Some(jitter) = details.jitter_ms {
        words.push_str(&format!(", jitter {jitter:.3} ms (RFC 3550"));
        if !details.jitter_reliable {
            words.push_str(&format!(
                ", not vouched for: the client itself ran up to {:.3} ms late",
                details.client_late_ms.max
            ));
        }
        words.push(')');
    }
    words
}

async fn check_target(target: HostPort, options: CheckOptions) -> TargetReport {
    let mut report = empty_report(&target, &options);
    if options.udp {
        check_path(&target, &options, &mut report).await;
    } else {
        check_by_connections(&target, &options, &mut report).await;
    }
    report.loss_percent = percent_of(u64::from(report.lost), u64::from(report.probes));
    report.exit_code = report.verdict.exit_code();
    report
}

fn empty_report(target: &HostPort, options: &CheckOptions) -> TargetReport {
    TargetReport {
        target: target.to_string(),
        protocol: match (options.udp, &options.tls) {
            (true, _) => "UDP",
            (false, None) => "TCP",
            (false, Some(_)) => "TLS",
        },
        verdict: Verdict::Healthy,
        exit_code: 0,
        address: None,
        probes: options.count,
        healthy: 0,
        lost: 0,
        loss_percent: 0.0,
        size: options.size,
        rtt_ms: None,
        path: None,
        tls: None,
        error: None,
    }
}

/// Over UDP: one stream of probes to the first of the target's addresses
/// that does not refuse.
async fn check_path(target: &HostPort, options: &CheckOptions, report: &mut TargetReport) {
    let addresses = match resolve(target).await {
        Ok(addresses) => addresses,
        Err(failure) => return fail_all(report, failure),
    };
    let plan = StreamPlan {
        count: options.count,
        size: options.size,
        interval: options.interval,
        timeout: options.timeout,
    };
    let mut refusal = None;
    for address in addresses {
        let measured = tokio::task::spawn_blocking(move || path::measure(address, plan))
            .await
            .expect("a path measurement does not panic");
        let figures = match measured {
            Ok(figures) => figures,
            Err(e) => return fail_all(report, Failure::io(&e)),
        };
        // Refused before anything came back: try the next address, as a
        // single UDP exchange does.
        if figures.refused && figures.rtts_ms.is_empty() && figures.details.late == 0 {
            refusal = Some(Failure::io(&std::io::ErrorKind::ConnectionRefused.into()));
            continue;
        }
        report.address = Some(address);
        report.healthy = figures.answered;
        report.lost = figures.sent - figures.answered;
        report.rtt_ms = RttSummary::of(&figures.rtts_ms);
        report.path = Some(PathReport {
            details: figures.details,
            jitter_method: path::JITTER_METHOD,
        });
        if let Some(why) = figures.mismatch {
            report.verdict = Verdict::Mismatch;
            report.error = Some(why);
        } else if report.lost > 0 {
            report.verdict = Verdict::TimedOut;
            report.error = Some(format!(
                "{} of {} probes got no echo within {}",
                report.lost,
                figures.sent,
                humantime::format_duration(options.timeout)
            ));
        }
        return;
    }
    fail_all(
        report,
        refusal.expect("resolve returns at least one address"),
    );
}

/// Every probe of a target failed the same way before any was sent.
fn fail_all(report: &mut TargetReport, failure: Failure) {
    report.lost = report.probes;
    report.verdict = failure.verdict;
    report.error = Some(failure.message);
}

/// Over TCP: a fresh connection per probe, `--interval` apart.
async fn check_by_connections(
    target: &HostPort,
    options: &CheckOptions,
    report: &mut TargetReport,
) {
    let mut rtts = Vec::new();
    for probe in 0..options.count {
        if probe > 0 {
            tokio::time::sleep(options.interval).await;
        }
        match probe_with_retries(target, options).await {
            Ok(echo) => {
                report.healthy += 1;
                report.address = Some(echo.address);
                rtts.push(echo.rtt.as_secs_f64() * 1000.0);
                report.tls = echo.tls.or(report.tls.take());
            }
            Err(failure) => {
                if failure.verdict != Verdict::Mismatch {
                    report.lost += 1;
                }
                if failure.verdict.worst(report.verdict) != report.verdict || report.error.is_none()
                {
                    report.error = Some(failure.message);
                }
                report.verdict = report.verdict.worst(failure.verdict);
            }
        }
    }
    report.rtt_ms = RttSummary::of(&rtts);
}

async fn probe_with_retries(target: &HostPort, options: &CheckOptions) -> Result<Echo, Failure> {
    let mut attempt = 0;
    loop {
        let payload: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..))
            .take(options.size)
            .collect();
        match tcp_echo(target, options.tls.as_deref(), &payload, options.timeout)
            .await
            .and_then(|echo| judge_echo(&payload, &echo.bytes).map(|()| echo))
        {
            // A wrong echo is an answer, not a transient failure: never retried.
            Err(failure) if failure.verdict != Verdict::Mismatch && attempt < options.retries => {
                attempt += 1
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_round_trip_has_no_spread() {
        let summary = RttSummary::of(&[1.5]).unwrap();
        assert_eq!((summary.min, summary.avg, summary.max), (1.5, 1.5, 1.5));
        assert_eq!(summary.spread, None);
        assert_eq!(RttSummary::of(&[]), None);
    }

    #[test]
    fn percentiles_are_round_trips_that_happened() {
        let rtts: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let summary = RttSummary::of(&rtts).unwrap();
        assert_eq!((summary.min, summary.avg, summary.max), (1.0, 5.5, 10.0));
        let spread = summary.spread.unwrap();
        assert_eq!((spread.p50, spread.p90, spread.p99), (5.0, 9.0, 10.0));
        assert_eq!(spread.stddev, 2.872);
    }
}
