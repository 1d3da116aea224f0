//! The `[profile.X.load]` table of `gauntlet.toml`, read into typed settings.
//!
//! Every key is optional: compiled-in defaults (quick, for the README's first command) sit
//! under the file's `[profile.default.load]`, which sits under the chosen profile's table.
//! Unknown keys, wrong types and out-of-range values are errors that name the key.

use std::fmt::Display;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use gauntlet_harness::gate::RangeError;

/// Settings of the load suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LoadSettings {
    /// Requests per second of the sustained scenario (and of the SLA).
    pub rate: u32,
    /// Length of the sustained run, warm-up included.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Start of each run whose requests are not gated (connections, caches warm up).
    #[serde(with = "humantime_serde")]
    pub warm_up: Duration,
    /// HTTP/1.1 connections in the driver's pool.
    pub connections: usize,
    /// Worker threads of the driver's runtime.
    pub threads: usize,
    /// The model every infer request goes to.
    pub model: String,
    /// Rows per infer request (of the built-in body; a `payload` has its own).
    pub rows: usize,
    /// A file holding the infer request body, JSON or a template (see
    /// [`crate::payload`]), sent instead of the built-in body of the fixtures' eight
    /// features; a relative path is taken from the working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<std::path::PathBuf>,
    /// Bodies rendered from a payload template, sent in turn (1 to 1024).
    pub payload_variants: usize,
    /// p50 latency ceiling.
    #[serde(with = "humantime_serde")]
    pub p50: Duration,
    /// p95 latency ceiling.
    #[serde(with = "humantime_serde")]
    pub p95: Duration,
    /// p99 latency ceiling.
    #[serde(with = "humantime_serde")]
    pub p99: Duration,
    /// p99.9 latency ceiling.
    #[serde(with = "humantime_serde")]
    pub p999: Duration,
    /// Largest fraction of failed requests (errors and drops) of the measured window.
    pub max_error_rate: f64,
    /// Smallest achieved rate, as a fraction of the scheduled rate.
    pub min_achieved_rate: f64,
    /// Largest fraction of requests the scheduler may dispatch late before the run is invalid.
    pub max_late_fraction: f64,
    /// How many times a scenario whose measurement came out invalid (a saturated or late
    /// generator, a failed gate on a busy or stalled host) is measured again before its
    /// invalid verdict stands; each discarded attempt stays in the report. A failed or
    /// passed verdict is never measured again.
    pub invalid_retries: u32,
    /// Busiest generator thread's CPU (fraction of a core) at which the run is invalid.
    pub max_generator_cpu: f64,
    /// Other processes' mean CPU (host busy − generator − the target when it runs in this
    /// process or on this host; fraction of the host's cores) above which a gate that fails
    /// is invalid, blamed on the host.
    pub max_host_other_cpu: f64,
    /// A request sent more than this after its intended time is late.
    #[serde(with = "humantime_serde")]
    pub late_after: Duration,
    /// Deadline of one request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// A request that finds no free connection within this of its intended time is dropped.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Shortest time between two releases of due requests (see
    /// [`crate::driver::DEFAULT_PACING`]); `0s` releases every request at its own time.
    #[serde(with = "humantime_serde")]
    pub pacing: Duration,
    /// Run the sustained scenario.
    pub sustained: bool,
    /// Run swap under load.
    pub swap: bool,
    /// Rate during swap under load.
    pub swap_rate: u32,
    /// Length of swap under load.
    #[serde(with = "humantime_serde")]
    pub swap_duration: Duration,
    /// Time between two swaps (a promote or a rollback).
    #[serde(with = "humantime_serde")]
    pub swap_interval: Duration,
    /// Run the stress scenario (2× the historical peak, then the step ramp).
    pub stress: bool,
    /// The highest message rate seen in production, req/s (MiFID II RTS 6 Art. 10).
    pub historical_peak: u32,
    /// Length of the 2× peak run and of each ramp step.
    #[serde(with = "humantime_serde")]
    pub stress_duration: Duration,
    /// Rate added at each step of the knee ramp (the first step runs at this rate).
    pub knee_step: u32,
    /// Most steps of the knee ramp; it stops at the first step that breaks a gate.
    pub knee_steps: u32,
    /// Run the soak scenario.
    pub soak: bool,
    /// Rate of the soak.
    pub soak_rate: u32,
    /// Length of the soak.
    #[serde(with = "humantime_serde")]
    pub soak_duration: Duration,
    /// Largest growth of the target's resident memory over the soak, MiB.
    pub max_memory_growth_mib: f64,
    /// Run the goose scenario (closed model: users that check health, then infer batches).
    /// Needs gauntlet-load built with its `goose` feature; otherwise its cases are skipped.
    pub goose: bool,
    /// Goose users (each waits for its response before sending again).
    pub goose_users: usize,
    /// Length of the goose run.
    #[serde(with = "humantime_serde")]
    pub goose_duration: Duration,
    /// Goose's `--throttle-requests` cap in req/s; 0 for none. A cap, never the measured rate.
    pub goose_throttle: u32,
    /// Smallest achieved rate of the goose run, req/s (the gate reads the achieved rate).
    pub goose_min_rate: u32,
    /// Rows per infer batch of the goose journey.
    pub goose_batch_rows: usize,
}

impl Default for LoadSettings {
    /// Quick enough for the README's first command: about 12 s of load in all.
    fn default() -> Self {
        LoadSettings {
            rate: 1_000,
            duration: Duration::from_secs(4),
            warm_up: Duration::from_secs(1),
            connections: 32,
            threads: 1,
            model: "ref-linear".to_owned(),
            rows: 1,
            payload: None,
            payload_variants: crate::payload::DEFAULT_VARIANTS,
            p50: Duration::from_millis(5),
            p95: Duration::from_millis(10),
            p99: Duration::from_millis(25),
            p999: Duration::from_millis(50),
            max_error_rate: 0.0,
            min_achieved_rate: 0.99,
            // The quick default shares its machine with whatever else runs: a stall of a
            // few tens of milliseconds must not make a smoke run invalid.
            max_late_fraction: 0.05,
            invalid_retries: 1,
            max_generator_cpu: 0.9,
            max_host_other_cpu: 0.25,
            late_after: Duration::from_millis(10),
            request_timeout: Duration::from_secs(2),
            queue_timeout: Duration::from_secs(1),
            pacing: crate::driver::DEFAULT_PACING,
            sustained: true,
            swap: true,
            swap_rate: 1_000,
            swap_duration: Duration::from_secs(3),
            swap_interval: Duration::from_millis(100),
            stress: true,
            historical_peak: 500,
            stress_duration: Duration::from_secs(2),
            knee_step: 1_000,
            knee_steps: 2,
            soak: false,
            soak_rate: 500,
            soak_duration: Duration::from_secs(10),
            max_memory_growth_mib: 64.0,
            goose: false,
            goose_users: 8,
            goose_duration: Duration::from_secs(3),
            goose_throttle: 0,
            goose_min_rate: 100,
            goose_batch_rows: 16,
        }
    }
}

/// A load table that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// Unknown key, wrong type.
    #[error("{message}")]
    Parse {
        /// serde's message, with the key.
        message: String,
    },
    /// A value out of its range (the key as written, the value, the range).
    #[error(transparent)]
    OutOfRange(#[from] RangeError),
}

fn out_of_range(key: &str, value: impl Display, limit: impl Into<String>) -> SettingsError {
    SettingsError::OutOfRange(RangeError::new(key, value, limit))
}

impl LoadSettings {
    /// Reads a merged `load` table over the compiled defaults and validates it.
    pub fn from_table(table: &toml::Table) -> Result<Self, SettingsError> {
        let value = toml::Value::Table(table.clone());
        let settings: LoadSettings = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            SettingsError::Parse {
                message: if path == "." || inner.contains(&path) {
                    inner
                } else {
                    format!("key `{path}`: {inner}")
                },
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every range.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let rate = |key, v: u32| {
            if (1..=1_000_000).contains(&v) {
                Ok(())
            } else {
                Err(out_of_range(key, v, "1 to 1000000 req/s"))
            }
        };
        rate("rate", self.rate)?;
        rate("swap-rate", self.swap_rate)?;
        rate("historical-peak", self.historical_peak)?;
        rate("knee-step", self.knee_step)?;
        rate("soak-rate", self.soak_rate)?;
        let span = |key, d: Duration, lo: Duration, hi: Duration| {
            if d >= lo && d <= hi {
                Ok(())
            } else {
                Err(out_of_range(
                    key,
                    humantime::format_duration(d),
                    format!(
                        "{} to {}",
                        humantime::format_duration(lo),
                        humantime::format_duration(hi)
                    ),
                ))
            }
        };
        let ms = Duration::from_millis;
        let day = Duration::from_secs(86_400);
        span("duration", self.duration, ms(100), day)?;
        span("swap-duration", self.swap_duration, ms(100), day)?;
        span("stress-duration", self.stress_duration, ms(100), day)?;
        span("soak-duration", self.soak_duration, ms(100), day)?;
        span(
            "goose-duration",
            self.goose_duration,
            Duration::from_secs(1),
            day,
        )?;
        if !(1..=10_000).contains(&self.goose_users) {
            return Err(out_of_range("goose-users", self.goose_users, "1 to 10000"));
        }
        if self.goose_throttle > 1_000_000 {
            return Err(out_of_range(
                "goose-throttle",
                self.goose_throttle,
                "0 (none) to 1000000 req/s",
            ));
        }
        rate("goose-min-rate", self.goose_min_rate)?;
        if !(1..=10_000).contains(&self.goose_batch_rows) {
            return Err(out_of_range(
                "goose-batch-rows",
                self.goose_batch_rows,
                "1 to 10000",
            ));
        }
        span(
            "swap-interval",
            self.swap_interval,
            ms(1),
            Duration::from_secs(60),
        )?;
        span(
            "request-timeout",
            self.request_timeout,
            ms(1),
            Duration::from_secs(600),
        )?;
        span(
            "queue-timeout",
            self.queue_timeout,
            ms(1),
            Duration::from_secs(600),
        )?;
        span(
            "pacing",
            self.pacing,
            Duration::ZERO,
            Duration::from_millis(10),
        )?;
        span(
            "late-after",
            self.late_after,
            Duration::from_micros(10),
            Duration::from_secs(60),
        )?;
        for (key, d) in [
            ("p50", self.p50),
            ("p95", self.p95),
            ("p99", self.p99),
            ("p999", self.p999),
        ] {
            span(key, d, Duration::from_micros(1), Duration::from_secs(3600))?;
        }
        if self.warm_up >= self.duration {
            return Err(out_of_range(
                "warm-up",
                humantime::format_duration(self.warm_up),
                format!(
                    "less than duration ({})",
                    humantime::format_duration(self.duration)
                ),
            ));
        }
        // Only the scenarios that run: each starts with the same warm-up.
        for (key, d, on) in [
            ("swap-duration", self.swap_duration, self.swap),
            ("stress-duration", self.stress_duration, self.stress),
            ("soak-duration", self.soak_duration, self.soak),
        ] {
            if on && self.warm_up >= d {
                return Err(out_of_range(
                    "warm-up",
                    humantime::format_duration(self.warm_up),
                    format!("less than {key} ({})", humantime::format_duration(d)),
                ));
            }
        }
        if !(1..=10_000).contains(&self.connections) {
            return Err(out_of_range("connections", self.connections, "1 to 10000"));
        }
        if !(1..=crate::payload::MAX_VARIANTS).contains(&self.payload_variants) {
            return Err(out_of_range(
                "payload-variants",
                self.payload_variants,
                format!("1 to {}", crate::payload::MAX_VARIANTS),
            ));
        }
        if !(1..=64).contains(&self.threads) {
            return Err(out_of_range("threads", self.threads, "1 to 64"));
        }
        if !(1..=10_000).contains(&self.rows) {
            return Err(out_of_range("rows", self.rows, "1 to 10000"));
        }
        if self.invalid_retries > 5 {
            return Err(out_of_range(
                "invalid-retries",
                self.invalid_retries,
                "0 to 5",
            ));
        }
        if !(1..=100).contains(&self.knee_steps) {
            return Err(out_of_range("knee-steps", self.knee_steps, "1 to 100"));
        }
        // The ramp must be able to pass 2x the peak, or "no knee up to the top step" would
        // claim a capacity it never measured.
        let top = u64::from(self.knee_step) * u64::from(self.knee_steps);
        let peak2 = 2 * u64::from(self.historical_peak);
        if self.stress && top <= peak2 {
            return Err(out_of_range(
                "knee-step × knee-steps",
                format!("{} × {} = {top} req/s", self.knee_step, self.knee_steps),
                format!(
                    "more than 2 × historical-peak ({peak2} req/s): the knee ramp must go past \
                     2x peak (raise knee-step or knee-steps)"
                ),
            ));
        }
        let valid_name = !self.model.is_empty()
            && self.model.len() <= 64
            && self
                .model
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid_name {
            return Err(out_of_range(
                "model",
                format!("{:?}", self.model),
                "1 to 64 of [A-Za-z0-9_.-]",
            ));
        }
        for (key, v) in [
            ("max-error-rate", self.max_error_rate),
            ("min-achieved-rate", self.min_achieved_rate),
            ("max-late-fraction", self.max_late_fraction),
            ("max-generator-cpu", self.max_generator_cpu),
            ("max-host-other-cpu", self.max_host_other_cpu),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(out_of_range(key, v, "0 to 1"));
            }
        }
        if !(self.max_memory_growth_mib.is_finite() && self.max_memory_growth_mib >= 0.0) {
            return Err(out_of_range(
                "max-memory-growth-mib",
                self.max_memory_growth_mib,
                "0 or more",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LoadSettings, SettingsError> {
        LoadSettings::from_table(&toml::from_str(text).unwrap())
    }

    #[test]
    fn empty_table_is_the_defaults_and_keys_override_them() {
        assert_eq!(parse("").unwrap(), LoadSettings::default());
        let s = parse("rate = 10000\nduration = \"30s\"\np99 = \"1500us\"\nswap = false").unwrap();
        assert_eq!(s.rate, 10_000);
        assert_eq!(s.duration, Duration::from_secs(30));
        assert_eq!(s.p99, Duration::from_micros(1500));
        assert!(!s.swap);
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = parse("rtae = 5").unwrap_err().to_string();
        assert!(unknown.contains("rtae"), "{unknown}");
        let typed = parse("rate = \"fast\"").unwrap_err().to_string();
        assert!(typed.contains("rate"), "{typed}");
        let duration = parse("p99 = \"soon\"").unwrap_err().to_string();
        assert!(duration.contains("p99"), "{duration}");
        let range = parse("rate = 0").unwrap_err().to_string();
        assert_eq!(range, "rate = 0 is out of range: 1 to 1000000 req/s");
        let retries = parse("invalid-retries = 6").unwrap_err().to_string();
        assert_eq!(retries, "invalid-retries = 6 is out of range: 0 to 5");
        assert_eq!(parse("invalid-retries = 0").unwrap().invalid_retries, 0);
        let warm = parse("duration = \"2s\"\nwarm-up = \"2s\"")
            .unwrap_err()
            .to_string();
        assert!(
            warm.starts_with("warm-up = 2s is out of range: less than duration"),
            "{warm}"
        );
        // Against the durations of scenarios that run only.
        let stress = parse("swap = false\nwarm-up = \"3s\"\nstress-duration = \"3s\"")
            .unwrap_err()
            .to_string();
        assert!(
            stress.contains("less than stress-duration (3s)"),
            "{stress}"
        );
        parse("swap = false\nwarm-up = \"3s\"\nstress-duration = \"3s\"\nstress = false").unwrap();
        let frac = parse("max-error-rate = 1.5").unwrap_err().to_string();
        assert!(frac.contains("max-error-rate = 1.5"), "{frac}");
        let model = parse("model = \"a/b\"").unwrap_err().to_string();
        assert!(model.contains("model"), "{model}");
    }

    #[test]
    fn a_knee_ramp_that_cannot_pass_twice_the_peak_names_both_keys() {
        let e = parse("historical-peak = 1000\nknee-step = 500\nknee-steps = 4")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("knee-step × knee-steps")
                && e.contains("500 × 4 = 2000")
                && e.contains("2 × historical-peak (2000 req/s)"),
            "{e}"
        );
        parse("historical-peak = 1000\nknee-step = 500\nknee-steps = 5").unwrap();
        // Only when the stress scenario runs.
        parse("stress = false\nhistorical-peak = 1000\nknee-step = 500\nknee-steps = 4").unwrap();
    }
}
