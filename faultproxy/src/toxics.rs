//! The faults a proxy applies, as its admin API reads and writes them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest `latency` or `jitter`: a longer one is a typo.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// Highest `bandwidth`, bytes a second (10 GB/s: more than loopback carries).
pub const MAX_BANDWIDTH: u64 = 10_000_000_000;

/// The proxy's faults. All off by default: the proxy forwards bytes unchanged.
///
/// Latency, jitter and bandwidth slow the downstream direction (upstream → client: the
/// answers), as Toxiproxy's toxics do by default; blackhole and reset act on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Toxics {
    /// `false` closes every open connection and each new one as soon as it is accepted
    /// (Toxiproxy's `enabled`); `true` by default.
    pub enabled: bool,
    /// Delay added to each chunk sent downstream, at most [`MAX_DELAY`] (`"0s"`).
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Each delay varies uniformly within ± this, at most [`MAX_DELAY`] (`"0s"`).
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// Downstream rate limit, bytes a second, 1 to [`MAX_BANDWIDTH`]; none by default.
    pub bandwidth: Option<u64>,
    /// Connections stay open but no byte gets through, either way (`false`).
    pub blackhole: bool,
    /// Once a connection has carried this many bytes (both ways together), the rest of the
    /// chunk is dropped and both sides are reset (TCP RST); none by default.
    pub reset_after: Option<u64>,
}

impl Default for Toxics {
    fn default() -> Self {
        Toxics {
            enabled: true,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            bandwidth: None,
            blackhole: false,
            reset_after: None,
        }
    }
}

/// A toxic out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct ToxicError {
    /// The kebab-case key.
    pub field: &'static str,
    /// What is wrong, with the limit.
    pub message: String,
}

impl Toxics {
    /// Checks every range.
    ///
    /// # Errors
    /// [`ToxicError`] naming the key and the limit.
    pub fn validate(&self) -> Result<(), ToxicError> {
        for (field, delay) in [("latency", self.latency), ("jitter", self.jitter)] {
            if delay > MAX_DELAY {
                return Err(ToxicError {
                    field,
                    message: format!("must be at most 60s, got {delay:?}"),
                });
            }
        }
        if let Some(rate) = self.bandwidth
            && !(1..=MAX_BANDWIDTH).contains(&rate)
        {
            return Err(ToxicError {
                field: "bandwidth",
                message: format!("must be between 1 and {MAX_BANDWIDTH} bytes/s, got {rate}"),
            });
        }
        Ok(())
    }

    /// The delay of one downstream chunk: `latency` ± `jitter`, from `random` in [0, 1).
    pub(crate) fn delay(&self, random: f64) -> Duration {
        if self.jitter.is_zero() {
            return self.latency;
        }
        let spread = self.jitter.as_secs_f64() * (2.0 * random - 1.0);
        Duration::from_secs_f64((self.latency.as_secs_f64() + spread).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_forward_unchanged_and_parse_from_json() {
        let t: Toxics = serde_json::from_str("{}").unwrap();
        assert_eq!(t, Toxics::default());
        assert!(t.enabled);
        let t: Toxics =
            serde_json::from_str(r#"{"latency": "150ms", "jitter": "50ms", "reset-after": 10}"#)
                .unwrap();
        assert_eq!(t.latency, Duration::from_millis(150));
        assert_eq!(t.reset_after, Some(10));
        assert_eq!(t.delay(0.5), Duration::from_millis(150));
        assert_eq!(t.delay(0.0), Duration::from_millis(100));
        let err = serde_json::from_str::<Toxics>(r#"{"latncy": "1s"}"#).unwrap_err();
        assert!(err.to_string().contains("latncy"), "{err}");
    }

    #[test]
    fn ranges_name_the_key() {
        let t = Toxics {
            bandwidth: Some(0),
            ..Toxics::default()
        };
        assert_eq!(
            t.validate().unwrap_err().to_string(),
            "bandwidth must be between 1 and 10000000000 bytes/s, got 0"
        );
        let t = Toxics {
            latency: Duration::from_secs(61),
            ..Toxics::default()
        };
        assert_eq!(t.validate().unwrap_err().field, "latency");
    }
}
