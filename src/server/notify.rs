//! Telling whoever started the daemon how it is doing: systemd through the
//! notify protocol (`Type=notify`), and the waiting parent in `--daemon`
//! mode through a pipe.
//!
//! Both want the same moments: ready (every listener bound and served),
//! failed before that, reloading, stopping. Keeping them behind one type
//! means the server reports each moment once, in one place, and stays the
//! same whether it runs under systemd, as a classic daemon, or in a
//! terminal (where all of this is a no-op).

use std::io::{PipeWriter, Write};
use std::time::Duration;

use tracing::debug;

/// What the daemon's child tells the waiting parent: one line, either
/// `ready PID` or `failed EXIT_CODE MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParentReport {
    Ready { pid: u32 },
    Failed { exit_code: i32, message: String },
}

impl ParentReport {
    pub(crate) fn encode(&self) -> String {
        match self {
            ParentReport::Ready { pid } => format!("ready {pid}\n"),
            ParentReport::Failed { exit_code, message } => {
                format!("failed {exit_code} {}\n", message.replace('\n', " / "))
            }
        }
    }

    /// `None` for anything else, including nothing at all (the child died).
    pub(crate) fn decode(line: &str) -> Option<ParentReport> {
        let mut words = line.trim_end().splitn(3, ' ');
        match (words.next()?, words.next()?, words.next()) {
            ("ready", pid, None) => Some(ParentReport::Ready {
                pid: pid.parse().ok()?,
            }),
            ("failed", code, Some(message)) => Some(ParentReport::Failed {
                exit_code: code.parse().ok()?,
                message: message.to_string(),
            }),
            _ => None,
        }
    }
}

pub(crate) struct Notifier {
    /// `NOTIFY_SOCKET` is set: a service manager listens.
    systemd: bool,
    /// The `--daemon` parent, until it has been told the outcome.
    parent: Option<PipeWriter>,
}

impl Notifier {
    pub(crate) fn new(parent: Option<PipeWriter>) -> Notifier {
        Notifier {
            systemd: std::env::var_os("NOTIFY_SOCKET").is_some(),
            parent,
        }
    }

    /// A copy for background tasks, which only talk to systemd.
    pub(crate) fn without_parent(&self) -> Notifier {
        Notifier {
            systemd: self.systemd,
            parent: None,
        }
    }

    /// Every listener is bound and served.
    pub(crate) fn ready(&mut self, status: &str) {
        self.tell_parent(&ParentReport::Ready {
            pid: std::process::id(),
        });
        self.systemd(&[State::Ready, State::Status(status)]);
    }

    /// The daemon gives up before it was ready.
    pub(crate) fn failed(&mut self, exit_code: i32, message: &str) {
        self.tell_parent(&ParentReport::Failed {
            exit_code,
            message: message.to_string(),
        });
        self.systemd(&[State::Status(&format!("failed: {message}"))]);
    }

    pub(crate) fn status(&self, status: &str) {
        self.systemd(&[State::Status(status)]);
    }

    pub(crate) fn reloading(&self) {
        self.systemd(&[State::Reloading]);
    }

    pub(crate) fn reloaded(&self, status: &str) {
        self.systemd(&[State::Ready, State::Status(status)]);
    }

    pub(crate) fn stopping(&self) {
        self.systemd(&[State::Stopping, State::Status("stopping")]);
    }

    /// How often to ping the watchdog (`WatchdogSec=`): twice per period,
    /// as systemd recommends.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        watchdog_period().map(|period| period / 2)
    }

    pub(crate) fn watchdog(&self) {
        self.systemd(&[State::Watchdog]);
    }

    fn tell_parent(&mut self, report: &ParentReport) {
        if let Some(mut pipe) = self.parent.take() {
            // If the parent is gone there is nobody left to tell.
            let _ = pipe.write_all(report.encode().as_bytes());
        }
    }

    fn systemd(&self, states: &[State]) {
        if self.systemd
            && let Err(e) = send(states)
        {
            debug!(error = %e, "cannot notify the service manager");
        }
    }
}

/// The notify states this daemon sends.
enum State<'a> {
    Ready,
    Reloading,
    Stopping,
    Watchdog,
    // Only sd_notify, which exists on unix alone, reads the text.
    #[cfg_attr(not(unix), allow(dead_code))]
    Status(&'a str),
}

#[cfg(unix)]
fn send(states: &[State]) -> std::io::Result<()> {
    use sd_notify::NotifyState;

    let mut message = Vec::with_capacity(states.len() + 1);
    for state in states {
        match state {
            State::Ready => message.push(NotifyState::Ready),
            State::Reloading => {
                // systemd 253+ wants to know when the reload began.
                message.push(NotifyState::Reloading);
                message.push(NotifyState::monotonic_usec_now()?);
            }
            State::Stopping => message.push(NotifyState::Stopping),
            State::Watchdog => message.push(NotifyState::Watchdog),
            State::Status(status) => message.push(NotifyState::Status(status)),
        }
    }
    sd_notify::notify(&message)
}

#[cfg(not(unix))]
fn send(_states: &[State]) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

#[cfg(not(unix))]
fn watchdog_period() -> Option<Duration> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_reports_round_trip() {
        for report in [
            ParentReport::Ready { pid: 42 },
            ParentReport::Failed {
                exit_code: 73,
                message: "cannot open\nthe log".to_string(),
            },
        ] {
            let decoded = ParentReport::decode(&report.encode()).unwrap();
            if let ParentReport::Failed { message, .. } = &decoded {
                assert!(!message.contains('\n'));
            } else {
                assert_eq!(decoded, report);
            }
        }
        assert_eq!(ParentReport::decode(""), None);
        assert_eq!(ParentReport::decode("ready soon"), None);
    }
}
