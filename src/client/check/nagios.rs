//! `check --format nagios`: echo-client as a Nagios or Icinga plugin.
//!
//! Why its own module: monitoring cores read a plugin by the Monitoring
//! Plugins Development Guidelines, not by echo-client's own conventions. The
//! exit code is the state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), the first
//! line of output is the status with performance data after a `|`, and
//! thresholds are written as the guidelines' ranges (`10`, `10:`, `~:10`,
//! `10:20`, `@10:20`). Everything that differs from the other formats is
//! here, so the other formats keep their exit codes.

use std::fmt;
use std::str::FromStr;

use super::TargetReport;
use crate::client::Verdict;

/// A plugin's state: its exit code and its name in the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NagiosState {
    // In the order in which several targets' states combine: the worst wins,
    // and a known problem is worse than an unknown state.
    Ok,
    Unknown,
    Warning,
    Critical,
}

impl NagiosState {
    pub fn exit_code(self) -> i32 {
        match self {
            NagiosState::Ok => 0,
            NagiosState::Warning => 1,
            NagiosState::Critical => 2,
            NagiosState::Unknown => 3,
        }
    }

    fn label(self) -> &'static str {
        match self {
            NagiosState::Ok => "OK",
            NagiosState::Warning => "WARNING",
            NagiosState::Critical => "CRITICAL",
            NagiosState::Unknown => "UNKNOWN",
        }
    }

    /// The plugin's whole output for `state` and a summary.
    pub fn status_line(self, summary: &str) -> String {
        format!("ECHO {} - {summary}", self.label())
    }
}

/// A threshold range in the guidelines' syntax: `[@]START:END`, where an
/// empty START is 0, `~` is minus infinity, an empty END is infinity, and
/// a lone number N is `0:N`. A value alerts when it is outside the range,
/// or inside it with `@`.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    start: f64,
    end: f64,
    inside: bool,
}

impl Range {
    fn alerts(&self, value: f64) -> bool {
        let within = self.start <= value && value <= self.end;
        within == self.inside
    }
}

impl FromStr for Range {
    type Err = String;

    fn from_str(text: &str) -> Result<Range, String> {
        let invalid = |why: &str| {
            format!(
                "`{text}` is not a threshold range ({why}); write N, N:, ~:N, N:M or @N:M, \
                 as in the Monitoring Plugins guidelines"
            )
        };
        let (inside, body) = match text.strip_prefix('@') {
            Some(body) => (true, body),
            None => (false, text),
        };
        let number = |part: &str| {
            part.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or_else(|| invalid(&format!("`{part}` is not a number")))
        };
        let (start, end) = match body.split_once(':') {
            None if body.is_empty() => return Err(invalid("it is empty")),
            None => (0.0, number(body)?),
            Some(("~", end)) => (f64::NEG_INFINITY, end_of(end, number)?),
            Some(("", end)) => (0.0, end_of(end, number)?),
            Some((start, end)) => (number(start)?, end_of(end, number)?),
        };
        if start > end {
            return Err(invalid("its start is above its end"));
        }
        Ok(Range { start, end, inside })
    }
}

/// A range's end: a number, or infinity when left out.
fn end_of(text: &str, number: impl Fn(&str) -> Result<f64, String>) -> Result<f64, String> {
    if text.is_empty() {
        Ok(f64::INFINITY)
    } else {
        number(text)
    }
}

/// The range in its plainest spelling, digits only (`1e3` is `1000`), since
/// some performance-data parsers take nothing else.
impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inside {
            f.write_str("@")?;
        }
        match (self.start, self.end) {
            (start, end) if start == 0.0 && end.is_finite() => write!(f, "{end}"),
            (start, end) if start.is_infinite() && end.is_finite() => write!(f, "~:{end}"),
            (start, _) if start.is_infinite() => write!(f, "~:"),
            (start, end) if end.is_infinite() => write!(f, "{start}:"),
            (start, end) => write!(f, "{start}:{end}"),
        }
    }
}

/// One level's thresholds, as `-w`/`-c` take them, in `check_ping`'s
/// shape: `RTT[,LOSS%]`, the round-trip range in milliseconds (judged on
/// the average) and the loss range in percent. Either may be left out
/// (`100`, `,20%`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    pub rtt_ms: Option<Range>,
    pub loss_percent: Option<Range>,
}

impl FromStr for Thresholds {
    type Err = String;

    fn from_str(text: &str) -> Result<Thresholds, String> {
        let (rtt, loss) = match text.split_once(',') {
            Some((rtt, loss)) => {
                let loss = loss.strip_suffix('%').ok_or_else(|| {
                    format!("`{text}`: the loss range after the comma ends in %, as in 100,20%")
                })?;
                (rtt, Some(loss))
            }
            None => (text, None),
        };
        let thresholds = Thresholds {
            rtt_ms: (!rtt.is_empty()).then(|| rtt.parse()).transpose()?,
            loss_percent: loss.map(str::parse).transpose()?,
        };
        if thresholds == Thresholds::default() {
            return Err(format!(
                "`{text}` sets no threshold; write RTT_MS[,LOSS%], e.g. 100,20%"
            ));
        }
        Ok(thresholds)
    }
}

/// The warning and critical thresholds of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct NagiosThresholds {
    pub warning: Thresholds,
    pub critical: Thresholds,
    /// Over TLS: WARNING when the server's certificate expires in fewer
    /// days than this.
    pub certificate_warning_days: f64,
    /// Over TLS: CRITICAL when it expires in fewer days than this.
    pub certificate_critical_days: f64,
}

impl NagiosThresholds {
    /// `check_ssl_cert`'s defaults, the plugin Nagios and Icinga sites
    /// already watch certificates with: 20 and 15 days.
    pub const CERTIFICATE_WARNING_DAYS: f64 = 20.0;
    pub const CERTIFICATE_CRITICAL_DAYS: f64 = 15.0;

    fn judges_loss(&self) -> bool {
        self.warning.loss_percent.is_some() || self.critical.loss_percent.is_some()
    }
}

impl Default for NagiosThresholds {
    fn default() -> NagiosThresholds {
        NagiosThresholds {
            warning: Thresholds::default(),
            critical: Thresholds::default(),
            certificate_warning_days: Self::CERTIFICATE_WARNING_DAYS,
            certificate_critical_days: Self::CERTIFICATE_CRITICAL_DAYS,
        }
    }
}

/// The plugin output for a run and its state: a status line for the worst
/// target (and a count of the others), performance data for every target,
/// and a line per target after the first when there are several.
pub(super) fn render(
    reports: &[TargetReport],
    thresholds: &NagiosThresholds,
) -> (String, NagiosState) {
    let judged: Vec<(NagiosState, String)> = reports
        .iter()
        .map(|report| judge(report, thresholds))
        .collect();
    let (worst, worst_summary) = judged
        .iter()
        .max_by_key(|(state, _)| *state)
        .expect("check has at least one target");
    let mut summary = worst_summary.clone();
    if reports.len() > 1 {
        let ok = judged
            .iter()
            .filter(|(state, _)| *state == NagiosState::Ok)
            .count();
        summary.push_str(&format!("; {ok} of {} targets OK", reports.len()));
    }
    let label = |report: &TargetReport, name: &str| {
        if reports.len() == 1 {
            name.to_string()
        } else {
            // Quoted, as the guidelines ask of labels with spaces; a quote
            // in a label is doubled.
            format!("'{} {name}'", report.target.replace('\'', "''"))
        }
    };
    let performance: Vec<String> = reports
        .iter()
        .flat_map(|report| {
            [
                performance_datum(
                    &label(report, "rtt"),
                    report.rtt_ms.map(|rtt| format!("{:.3}ms", rtt.avg)),
                    &thresholds.warning.rtt_ms,
                    &thresholds.critical.rtt_ms,
                    "0",
                    "",
                ),
                performance_datum(
                    &label(report, "loss"),
                    Some(format!("{}%", report.loss_percent)),
                    &thresholds.warning.loss_percent,
                    &thresholds.critical.loss_percent,
                    "0",
                    "100",
                ),
            ]
            .into_iter()
            .chain(certificate_days(report).map(|days| {
                // Ranges that alert below the thresholds: `20:`.
                format!(
                    "{}={days};{}:;{}:;;",
                    label(report, "cert_days"),
                    thresholds.certificate_warning_days,
                    thresholds.certificate_critical_days
                )
            }))
            .chain(report.path.map(|path| {
                // UDP only; unknown (U) where the client cannot vouch for it.
                let details = path.details;
                performance_datum(
                    &label(report, "jitter"),
                    details
                        .jitter_ms
                        .filter(|_| details.jitter_reliable)
                        .map(|jitter| format!("{jitter:.3}ms")),
                    &None,
                    &None,
                    "0",
                    "",
                )
            }))
        })
        .collect();
    let mut output = format!(
        "{}|{}\n",
        worst.status_line(&summary),
        performance.join(" ")
    );
    if reports.len() > 1 {
        for (state, summary) in &judged {
            output.push_str(&format!("{}: {summary}\n", state.label()));
        }
    }
    (output, *worst)
}

/// `label=value;warn;crit;min;max`, with `U` for a value there is none of
/// (no echo came back to time).
fn performance_datum(
    label: &str,
    value: Option<String>,
    warning: &Option<Range>,
    critical: &Option<Range>,
    min: &str,
    max: &str,
) -> String {
    let range = |range: &Option<Range>| range.as_ref().map(Range::to_string).unwrap_or_default();
    format!(
        "{label}={};{};{};{min};{max}",
        value.unwrap_or_else(|| "U".to_string()),
        range(warning),
        range(critical)
    )
}

/// One target's state and the words that say why.
fn judge(report: &TargetReport, thresholds: &NagiosThresholds) -> (NagiosState, String) {
    let mut summary = format!(
        "{} {}: {}/{} echoes, {}% lost",
        report.target, report.protocol, report.healthy, report.probes, report.loss_percent
    );
    if let Some(rtt) = report.rtt_ms {
        summary.push_str(&format!(", rtt avg {:.3} ms", rtt.avg));
    }
    let days = certificate_days(report);
    if let Some(days) = days {
        summary.push_str(&format!(", certificate expires in {days:.0} days"));
    }
    if let Some(error) = &report.error {
        summary.push_str(&format!(": {error}"));
    }
    let certificate = match days {
        Some(days) if days < thresholds.certificate_critical_days => NagiosState::Critical,
        Some(days) if days < thresholds.certificate_warning_days => NagiosState::Warning,
        _ => NagiosState::Ok,
    };
    let echo = if report.verdict == Verdict::Mismatch || report.healthy == 0 {
        NagiosState::Critical
    } else if report.lost > 0 && !thresholds.judges_loss() {
        // Without loss thresholds, as in the other formats, any lost probe
        // is a failed check.
        NagiosState::Critical
    } else if exceeds(report, &thresholds.critical) {
        NagiosState::Critical
    } else if exceeds(report, &thresholds.warning) {
        NagiosState::Warning
    } else {
        NagiosState::Ok
    };
    (echo.max(certificate), summary)
}

/// Days until the server's certificate expires, over TLS.
fn certificate_days(report: &TargetReport) -> Option<f64> {
    report.tls.as_ref()?.certificate_expires_in_days
}

fn exceeds(report: &TargetReport, level: &Thresholds) -> bool {
    let rtt = match (&level.rtt_ms, report.rtt_ms) {
        (Some(range), Some(rtt)) => range.alerts(rtt.avg),
        _ => false,
    };
    let loss = level
        .loss_percent
        .as_ref()
        .is_some_and(|range| range.alerts(report.loss_percent));
    rtt || loss
}

#[cfg(test)]
mod tests {
    use super::super::RttSummary;
    use super::*;

    fn range(text: &str) -> Range {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_alert_as_the_guidelines_say() {
        // (range, values that alert, values that do not)
        let cases: &[(&str, &[f64], &[f64])] = &[
            ("10", &[-1.0, 10.5], &[0.0, 10.0]),
            ("10:", &[9.9], &[10.0, 1e9]),
            ("~:10", &[10.1], &[-1e9, 10.0]),
            ("10:20", &[9.0, 21.0], &[10.0, 20.0]),
            ("@10:20", &[10.0, 15.0, 20.0], &[9.9, 20.1]),
            (":5", &[-0.1, 5.1], &[0.0, 5.0]),
            ("0.5:1.5", &[0.4, 1.6], &[1.0]),
        ];
        for (text, alerting, quiet) in cases {
            let range = range(text);
            for value in *alerting {
                assert!(range.alerts(*value), "{text} should alert on {value}");
            }
            for value in *quiet {
                assert!(!range.alerts(*value), "{text} should not alert on {value}");
            }
        }
    }

    #[test]
    fn ranges_are_written_back_in_digits() {
        for (written, plain) in [
            ("1e3", "1000"),
            ("+5", "5"),
            ("@~:1e1", "@~:10"),
            ("0:0.5", "0.5"),
            ("2.50:", "2.5:"),
            ("~:", "~:"),
            ("-1:1", "-1:1"),
        ] {
            assert_eq!(range(written).to_string(), plain, "{written}");
        }
    }

    #[test]
    fn bad_ranges_are_refused_with_the_syntax() {
        for text in ["", "@", "x", "10:5", "1:x", "nan", "inf", "10:20:30"] {
            let error = text.parse::<Range>().unwrap_err();
            assert!(error.contains("N:M"), "{text}: {error}");
        }
    }

    #[test]
    fn thresholds_take_check_pings_shape() {
        let both: Thresholds = "100,20%".parse().unwrap();
        assert_eq!(
            (
                both.rtt_ms.unwrap().to_string(),
                both.loss_percent.unwrap().to_string()
            ),
            ("100".to_string(), "20".to_string())
        );
        let loss_only: Thresholds = ",@5:10%".parse().unwrap();
        assert_eq!(loss_only.rtt_ms, None);
        assert_eq!(loss_only.loss_percent, Some(range("@5:10")));
        let rtt_only: Thresholds = "~:250".parse().unwrap();
        assert_eq!(rtt_only.loss_percent, None);
        assert!(
            "100,20"
                .parse::<Thresholds>()
                .unwrap_err()
                .contains("ends in %")
        );
        assert!(",".parse::<Thresholds>().is_err());
        assert!(
            "".parse::<Thresholds>()
                .unwrap_err()
                .contains("sets no threshold")
        );
    }

    fn report(target: &str, healthy: u32, probes: u32, avg: Option<f64>) -> TargetReport {
        let lost = probes - healthy;
        TargetReport {
            target: target.to_string(),
            protocol: "TCP",
            verdict: if lost > 0 {
                Verdict::TimedOut
            } else {
                Verdict::Healthy
            },
            exit_code: 0,
            address: None,
            probes,
            healthy,
            lost,
            loss_percent: f64::from(lost) * 100.0 / f64::from(probes),
            size: 64,
            rtt_ms: avg.map(|avg| RttSummary::of(&[avg]).unwrap()),
            path: None,
            tls: None,
            error: (lost > 0).then(|| "no complete echo within 1s".to_string()),
        }
    }

    fn thresholds(warning: &str, critical: &str) -> NagiosThresholds {
        NagiosThresholds {
            warning: warning.parse().unwrap(),
            critical: critical.parse().unwrap(),
            ..NagiosThresholds::default()
        }
    }

    #[test]
    fn udp_targets_add_their_jitter_unless_the_client_cannot_vouch_for_it() {
        use super::super::{PathDetails, PathReport};
        let udp = |jitter_reliable| TargetReport {
            protocol: "UDP",
            path: Some(PathReport {
                details: PathDetails {
                    jitter_ms: Some(0.25),
                    jitter_reliable,
                    ..PathDetails::default()
                },
                jitter_method: "",
            }),
            ..report("db1:7", 5, 5, Some(1.0))
        };
        let (output, _) = render(&[udp(true)], &NagiosThresholds::default());
        assert!(output.ends_with(" jitter=0.250ms;;;0;\n"), "{output}");
        let (output, _) = render(&[udp(false)], &NagiosThresholds::default());
        assert!(output.ends_with(" jitter=U;;;0;\n"), "{output}");
    }

    #[test]
    fn one_target_gets_a_status_line_with_performance_data() {
        let (output, state) = render(
            &[report("db1:7", 5, 5, Some(12.5))],
            &thresholds("10,20%", "100,60%"),
        );
        assert_eq!(state, NagiosState::Warning);
        assert_eq!(
            output,
            "ECHO WARNING - db1:7 TCP: 5/5 echoes, 0% lost, rtt avg 12.500 ms\
             |rtt=12.500ms;10;100;0; loss=0%;20;60;0;100\n"
        );
    }

    #[test]
    fn loss_is_judged_by_its_thresholds_or_else_is_critical() {
        let partly = [report("a:1", 4, 5, Some(1.0))];
        assert_eq!(
            render(&partly, &thresholds("10,10%", "100,50%")).1,
            NagiosState::Warning
        );
        assert_eq!(
            render(&partly, &thresholds("10,30%", "100,50%")).1,
            NagiosState::Ok
        );
        assert_eq!(
            render(&partly, &thresholds("10", "100")).1,
            NagiosState::Critical
        );
        let none = [report("a:1", 0, 5, None)];
        let (output, state) = render(&none, &thresholds("10,90%", "100,100:%"));
        assert_eq!(state, NagiosState::Critical);
        assert!(
            output.contains("|rtt=U;10;100;0; loss=100%;90;100:;0;100\n"),
            "{output}"
        );
    }

    #[test]
    fn several_targets_report_the_worst_and_each_one() {
        let (output, state) = render(
            &[report("a:1", 1, 1, Some(1.0)), report("it's:2", 0, 1, None)],
            &NagiosThresholds::default(),
        );
        assert_eq!(state, NagiosState::Critical);
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(
            lines,
            [
                "ECHO CRITICAL - it's:2 TCP: 0/1 echoes, 100% lost: no complete echo within 1s; \
                 1 of 2 targets OK|'a:1 rtt'=1.000ms;;;0; 'a:1 loss'=0%;;;0;100 \
                 'it''s:2 rtt'=U;;;0; 'it''s:2 loss'=100%;;;0;100",
                "OK: a:1 TCP: 1/1 echoes, 0% lost, rtt avg 1.000 ms",
                "CRITICAL: it's:2 TCP: 0/1 echoes, 100% lost: no complete echo within 1s",
            ]
        );
    }
}
