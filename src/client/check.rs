//! `echo-client check`: is each target healthy, and how fast does it answer?
//!
//! Made for monitoring: every target is probed at the same time, so a fleet
//! is checked in about the time of its slowest host; each probe is bounded
//! by `--timeout`; and the exit code is the worst verdict of all targets.
//! Each probe uses a fresh connection (or UDP socket), so the accept path is
//! tested every time and a late answer to one probe cannot be taken for the
//! answer to the next.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::bench::round_to_microseconds;
use super::{Failure, Verdict, judge_echo, print_result, tcp_echo, udp_echo};
use crate::shared::address::HostPort;

#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub targets: Vec<HostPort>,
    pub udp: bool,
    /// Bytes per probe.
    pub size: usize,
    /// Probes per target.
    pub count: u32,
    /// Pause between the probes of one target.
    pub interval: Duration,
    /// Extra attempts for a probe that failed, before it counts as failed.
    pub retries: u32,
    /// Bound on one attempt: connecting, sending and receiving the echo.
    pub timeout: Duration,
    pub json: bool,
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
    pub(crate) size: usize,
    pub(crate) rtt_ms: Option<RttSummary>,
    /// Why the worst probe failed.
    pub(crate) error: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct RttSummary {
    pub(crate) min: f64,
    pub(crate) avg: f64,
    pub(crate) max: f64,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    exit_code: i32,
    targets: &'a [TargetReport],
}

/// Checks every target at once, prints the results and returns the exit code.
pub async fn run(options: CheckOptions) -> i32 {
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
    let output = if options.json {
        let report = Report {
            exit_code: worst.exit_code(),
            targets: &reports,
        };
        serde_json::to_string_pretty(&report).expect("a report serializes") + "\n"
    } else {
        reports
            .iter()
            .map(|report| human_line(report) + "\n")
            .collect()
    };
    print_result(output.as_bytes(), worst.exit_code())
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
    if let Some(rtt) = report.rtt_ms {
        line.push_str(&format!(
            ", rtt min/avg/max {:.3}/{:.3}/{:.3} ms",
            rtt.min, rtt.avg, rtt.max
        ));
    }
    if let Some(error) = &report.error {
        line.push_str(&format!(": {error}"));
    }
    line
}

async fn check_target(target: HostPort, options: CheckOptions) -> TargetReport {
    let mut report = TargetReport {
        target: target.to_string(),
        protocol: if options.udp { "UDP" } else { "TCP" },
        verdict: Verdict::Healthy,
        exit_code: 0,
        address: None,
        probes: options.count,
        healthy: 0,
        size: options.size,
        rtt_ms: None,
        error: None,
    };
    let mut rtts = Vec::new();
    for probe in 0..options.count {
        if probe > 0 {
            tokio::time::sleep(options.interval).await;
        }
        match probe_with_retries(&target, &options).await {
            Ok((address, rtt)) => {
                report.healthy += 1;
                report.address = Some(address);
                rtts.push(rtt.as_secs_f64() * 1000.0);
            }
            Err(failure) => {
                if failure.verdict.worst(report.verdict) != report.verdict || report.error.is_none()
                {
                    report.error = Some(failure.message);
                }
                report.verdict = report.verdict.worst(failure.verdict);
            }
        }
    }
    if !rtts.is_empty() {
        let sum: f64 = rtts.iter().sum();
        report.rtt_ms = Some(RttSummary {
            min: round_to_microseconds(rtts.iter().copied().fold(f64::INFINITY, f64::min)),
            avg: round_to_microseconds(sum / rtts.len() as f64),
            max: round_to_microseconds(rtts.iter().copied().fold(0.0, f64::max)),
        });
    }
    report.exit_code = report.verdict.exit_code();
    report
}

async fn probe_with_retries(
    target: &HostPort,
    options: &CheckOptions,
) -> Result<(SocketAddr, Duration), Failure> {
    let mut attempt = 0;
    loop {
        let payload: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..))
            .take(options.size)
            .collect();
        let exchange = if options.udp {
            udp_echo(target, &payload, options.timeout).await
        } else {
            tcp_echo(target, &payload, options.timeout).await
        };
        match exchange
            .and_then(|echo| judge_echo(&payload, &echo.bytes).map(|()| (echo.address, echo.rtt)))
        {
            // A wrong echo is an answer, not a transient failure: never retried.
            Err(failure) if failure.verdict != Verdict::Mismatch && attempt < options.retries => {
                attempt += 1
            }
            result => return result,
        }
    }
}
