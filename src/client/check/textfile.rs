//! `check --format textfile`: a run's results in Prometheus's text format,
//! for node_exporter's textfile collector.
//!
//! Why: a cron job that runs `check` every minute is how many sites feed
//! Prometheus from hosts it does not scrape directly. The collector reads
//! every `*.prom` file in its directory at each scrape, so a file it reads
//! must never be half-written: [`write_atomically`] writes a hidden file
//! beside it and renames it over the old one. The text comes from the
//! `prometheus-client` crate, which gets the escaping and the format's rules
//! right; series of a target that never answered are left out rather than
//! given a made-up value.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::TargetReport;
use crate::shared::exit_code;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
    protocol: String,
}

type Gauges = Family<TargetLabels, Gauge<f64, AtomicU64>>;

/// Every series `check` writes, by name (after the `echo_check_` prefix),
/// unit and help text.
struct Series {
    up: Gauges,
    exit_code: Gauges,
    probes: Gauges,
    answered: Gauges,
    loss_ratio: Gauges,
    rtt_min: Gauges,
    rtt_avg: Gauges,
    rtt_max: Gauges,
    late: Gauges,
    duplicated: Gauges,
    reordered_ratio: Gauges,
    jitter: Gauges,
    client_late_max: Gauges,
    certificate_expiry: Gauges,
    last_run: Gauges,
}

impl Series {
    fn register(registry: &mut Registry) -> Series {
        let series = Series {
            up: Gauges::default(),
            exit_code: Gauges::default(),
            probes: Gauges::default(),
            answered: Gauges::default(),
            loss_ratio: Gauges::default(),
            rtt_min: Gauges::default(),
            rtt_avg: Gauges::default(),
            rtt_max: Gauges::default(),
            late: Gauges::default(),
            duplicated: Gauges::default(),
            reordered_ratio: Gauges::default(),
            jitter: Gauges::default(),
            client_late_max: Gauges::default(),
            certificate_expiry: Gauges::default(),
            last_run: Gauges::default(),
        };
        let plain = [
            (
                "up",
                "1 if every probe of the target came back unchanged, else 0",
                &series.up,
            ),
            (
                "exit_code",
                "echo-client's exit code for the target: 0 healthy, 1 mismatch, 2 unreachable, 3 timeout, 4 certificate refused",
                &series.exit_code,
            ),
            (
                "probes",
                "Probes sent to the target in the last run",
                &series.probes,
            ),
            (
                "answered",
                "Probes whose echo came back unchanged in the last run",
                &series.answered,
            ),
            (
                "loss_ratio",
                "Share of the probes that got no echo at all (0 to 1)",
                &series.loss_ratio,
            ),
            (
                "late",
                "UDP: probes answered only after the timeout (counted as lost)",
                &series.late,
            ),
            (
                "duplicated",
                "UDP: extra copies of answers already received",
                &series.duplicated,
            ),
            (
                "reordered_ratio",
                "UDP: share of the answers that came after a later probe's (RFC 4737, 0 to 1)",
                &series.reordered_ratio,
            ),
        ];
        for (name, help, gauges) in plain {
            registry.register(name, help, gauges.clone());
        }
        let timed = [
            (
                "rtt_min",
                "Shortest round trip of the last run",
                &series.rtt_min,
            ),
            (
                "rtt_avg",
                "Average round trip of the last run",
                &series.rtt_avg,
            ),
            (
                "rtt_max",
                "Longest round trip of the last run",
                &series.rtt_max,
            ),
            (
                "jitter",
                "UDP: RFC 3550 interarrival jitter of the round trips, only where the client's \
                 own timing error is below it",
                &series.jitter,
            ),
            (
                "client_late_max",
                "UDP: how late the client sent a probe at worst, its own timing error",
                &series.client_late_max,
            ),
            // A timestamp, as blackbox_exporter's probe_ssl_earliest_cert_expiry:
            // alert rules subtract time() and pick their own thresholds.
            (
                "tls_cert_expiry_timestamp",
                "TLS: when the server's certificate expires (its notAfter), in seconds since the Unix epoch",
                &series.certificate_expiry,
            ),
            // Per target, not per file: two jobs writing files into one
            // collector directory must not claim the same series.
            (
                "last_run_timestamp",
                "When the last run of echo-client check that probed the target started, in seconds since the Unix epoch",
                &series.last_run,
            ),
        ];
        for (name, help, gauges) in timed {
            registry.register_with_unit(name, help, Unit::Seconds, gauges.clone());
        }
        series
    }

    fn record(&self, report: &TargetReport, started: f64) {
        let labels = TargetLabels {
            target: report.target.clone(),
            protocol: report.protocol.to_ascii_lowercase(),
        };
        let set = |gauges: &Gauges, value: f64| {
            gauges.get_or_create(&labels).set(value);
        };
        set(&self.last_run, started);
        set(&self.up, if report.exit_code == 0 { 1.0 } else { 0.0 });
        set(&self.exit_code, f64::from(report.exit_code));
        set(&self.probes, f64::from(report.probes));
        set(&self.answered, f64::from(report.healthy));
        set(&self.loss_ratio, report.loss_percent / 100.0);
        if let Some(rtt) = report.rtt_ms {
            set(&self.rtt_min, rtt.min / 1000.0);
            set(&self.rtt_avg, rtt.avg / 1000.0);
            set(&self.rtt_max, rtt.max / 1000.0);
        }
        if let Some(not_after) = report
            .tls
            .as_ref()
            .and_then(|tls| tls.certificate_not_after_unix)
        {
            set(&self.certificate_expiry, not_after as f64);
        }
        if let Some(path) = &report.path {
            let details = &path.details;
            set(&self.late, f64::from(details.late));
            set(&self.duplicated, f64::from(details.duplicated));
            set(&self.reordered_ratio, details.reordered_percent / 100.0);
            set(&self.client_late_max, details.client_late_ms.max / 1000.0);
            if let Some(jitter) = details.jitter_ms.filter(|_| details.jitter_reliable) {
                set(&self.jitter, jitter / 1000.0);
            }
        }
    }
}

/// The text of a run that started at `started`.
pub(super) fn render(reports: &[TargetReport], started: SystemTime) -> String {
    let mut registry = Registry::with_prefix("echo_check");
    let series = Series::register(&mut registry);
    let started = started
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    for report in reports {
        series.record(report, started);
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String does not fail");
    text
}

/// Replaces `path` with `text` in one step, so that a reader sees the old
/// file or the new one, never a part; returns `code`, or
/// [`exit_code::IO_ERROR`] when the file cannot be written, whatever the
/// check found: a monitoring system would otherwise read stale results.
pub(super) fn write_atomically(path: &Path, text: &str, code: i32) -> i32 {
    match replace(path, text) {
        Ok(()) => code,
        Err(e) => {
            let _ = writeln!(
                io::stderr(),
                "echo-client: cannot write {}: {e} (is its directory there and writable?)",
                path.display()
            );
            exit_code::IO_ERROR
        }
    }
}

/// Writes `text` to a hidden file beside `path` and renames it over `path`
/// (a symbolic link at `path` is replaced, not followed). The new file gets
/// the old one's permissions, or 0644, whatever the umask: the collector
/// usually runs as another user than the cron job.
fn replace(path: &Path, text: &str) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    // Hidden and without the .prom ending, so the collector never reads it.
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary_name);
    // Left by a run that died, or planted: removed, never followed.
    let _ = fs::remove_file(&temporary);
    let permissions = fs::symlink_metadata(path)
        .ok()
        .filter(|old| old.is_file())
        .map(|old| old.permissions());
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            if let Some(permissions) = permissions.or_else(default_permissions) {
                file.set_permissions(permissions)?;
            }
            file.sync_all()
        });
    let renamed = written.and_then(|()| fs::rename(&temporary, path));
    if renamed.is_err() {
        let _ = fs::remove_file(&temporary);
        return renamed;
    }
    sync_directory_of(path);
    Ok(())
}

/// 0644 on Unix; on Windows, a new file's access comes from its directory.
fn default_permissions() -> Option<fs::Permissions> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(fs::Permissions::from_mode(0o644))
    }
    #[cfg(not(unix))]
    None
}

/// Makes the rename itself durable, so a crash right after it cannot bring
/// back the old file. Best effort: the file is already in place.
fn sync_directory_of(path: &Path) {
    #[cfg(unix)]
    if let Some(directory) = path.parent() {
        let directory = if directory.as_os_str().is_empty() {
            Path::new(".")
        } else {
            directory
        };
        if let Ok(handle) = fs::File::open(directory) {
            let _ = handle.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::super::RttSummary;
    use super::*;
    use crate::client::Verdict;

    fn report(target: &str, healthy: u32, rtts: &[f64]) -> TargetReport {
        TargetReport {
            target: target.to_string(),
            protocol: "TCP",
            verdict: if healthy == 2 {
                Verdict::Healthy
            } else {
                Verdict::Unreachable
            },
            exit_code: if healthy == 2 { 0 } else { 2 },
            address: None,
            probes: 2,
            healthy,
            lost: 2 - healthy,
            loss_percent: f64::from(2 - healthy) * 50.0,
            size: 64,
            rtt_ms: RttSummary::of(rtts),
            path: None,
            tls: None,
            error: None,
        }
    }

    #[test]
    fn udp_targets_have_the_stream_series_and_jitter_only_when_vouched_for() {
        use super::super::{PathDetails, PathReport};
        let udp = |target: &str, jitter_reliable: bool| TargetReport {
            protocol: "UDP",
            path: Some(PathReport {
                details: PathDetails {
                    late: 1,
                    duplicated: 2,
                    reordered: 1,
                    reordered_percent: 50.0,
                    jitter_ms: Some(0.25),
                    jitter_reliable,
                    ..PathDetails::default()
                },
                jitter_method: "",
            }),
            ..report(target, 2, &[1.0, 1.5])
        };
        let text = render(&[udp("a:1", true), udp("b:2", false)], UNIX_EPOCH);
        for line in [
            "echo_check_late{target=\"a:1\",protocol=\"udp\"} 1.0",
            "echo_check_duplicated{target=\"a:1\",protocol=\"udp\"} 2.0",
            "echo_check_reordered_ratio{target=\"a:1\",protocol=\"udp\"} 0.5",
            "echo_check_jitter_seconds{target=\"a:1\",protocol=\"udp\"} 0.00025",
            "echo_check_client_late_max_seconds{target=\"b:2\",protocol=\"udp\"} 0.0",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in {text}");
        }
        assert!(
            !text.contains("echo_check_jitter_seconds{target=\"b:2\""),
            "{text}"
        );
    }

    #[test]
    fn every_target_has_its_series_and_a_dead_one_no_round_trips() {
        let text = render(
            &[report("a:1", 2, &[1.0, 3.0]), report("b\"\\:2", 0, &[])],
            UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        );
        for line in [
            "echo_check_up{target=\"a:1\",protocol=\"tcp\"} 1.0",
            "echo_check_loss_ratio{target=\"a:1\",protocol=\"tcp\"} 0.0",
            "echo_check_rtt_avg_seconds{target=\"a:1\",protocol=\"tcp\"} 0.002",
            "echo_check_up{target=\"b\\\"\\\\:2\",protocol=\"tcp\"} 0.0",
            "echo_check_exit_code{target=\"b\\\"\\\\:2\",protocol=\"tcp\"} 2.0",
            "echo_check_loss_ratio{target=\"b\\\"\\\\:2\",protocol=\"tcp\"} 1.0",
            "echo_check_last_run_timestamp_seconds{target=\"a:1\",protocol=\"tcp\"} 1700000000.0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert!(!text.contains("rtt_avg_seconds{target=\"b"), "{text}");
    }

    #[test]
    fn a_file_is_replaced_whole_and_nothing_else_is_left() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("echo.prom");
        fs::write(&path, "old").unwrap();
        assert_eq!(write_atomically(&path, "new\n", 2), 2);
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        let names: Vec<_> = fs::read_dir(directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["echo.prom"]);
        let missing = directory.path().join("gone").join("echo.prom");
        assert_eq!(write_atomically(&missing, "x", 0), exit_code::IO_ERROR);
    }

    #[cfg(unix)]
    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_followed() {
        let directory = tempfile::tempdir().unwrap();
        let victim = directory.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let planted = directory
            .path()
            .join(format!(".echo.prom.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let path = directory.path().join("echo.prom");
        assert_eq!(write_atomically(&path, "new\n", 0), 0);
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
    }
}
