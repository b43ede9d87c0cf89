//! Durations as people write them: "30s", "5m", "1h 30m", "250ms", or "0".
//!
//! Why shared: the daemon's configuration (`idle_timeout`, `shutdown_grace`)
//! and the client's options (`--timeout`, `--interval`, `--duration`) take
//! the same spelling, so an operator learns it once and both sides reject a
//! typo with the same advice.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration written for people: "30s", "5m", "1h 30m", "250ms", or "0".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// `None` for zero, which means "never" wherever a timeout is configured.
    pub fn as_timeout(self) -> Option<Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<HumanDuration, String> {
        if s.trim() == "0" {
            return Ok(HumanDuration(Duration::ZERO));
        }
        humantime::parse_duration(s)
            .map(HumanDuration)
            .map_err(|e| format!("`{s}` is not a duration ({e}): write it like \"30s\", \"5m\", \"1h 30m\" or \"0\""))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            f.write_str("0")
        } else {
            write!(f, "{}", humantime::format_duration(self.0))
        }
    }
}

super::serde_via_str!(HumanDuration);
