//! Shard files and their exact merge.
//!
//! `gauntlet load --shard i/n --out shard-i.json` sends requests `k ≡ i (mod n)` of the whole
//! schedule and writes its counters and its serialised HDR histogram. `gauntlet report merge`
//! adds the histograms bucket by bucket and the counters one by one — never averaging
//! percentiles — so the merged percentiles are exactly those of one histogram of every
//! sample, and applies the gates to that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::driver::RunStats;
use crate::gates::Measurement;
use crate::histogram::{Latencies, SecondStats};
use crate::recorder::Counters;
use crate::settings::LoadSettings;
use crate::validity::Validity;

/// Version of the shard file format.
pub const SHARD_SCHEMA: u32 = 1;

/// Which shard a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardId {
    /// This shard, from 0.
    pub index: u32,
    /// Shards in all.
    pub count: u32,
}

/// One worker's measurement, as written by `gauntlet load --out`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardFile {
    /// Always [`SHARD_SCHEMA`].
    pub schema_version: u32,
    /// `gauntlet-load` version that wrote it.
    pub tool_version: String,
    /// Which shard.
    pub shard: ShardId,
    /// Wall-clock start of the shared schedule.
    #[serde(with = "humantime_serde")]
    pub started_at: SystemTime,
    /// The target (credentials removed).
    pub target: String,
    /// The run seed (the request rows derive from it).
    #[serde(with = "seed_hex")]
    pub seed: u64,
    /// The settings the shard ran with (the gates of a merge come from here).
    pub settings: LoadSettings,
    /// This shard's share of the scheduled rate over the measured window, req/s.
    pub target_rate: f64,
    /// The measured window.
    #[serde(with = "humantime_serde")]
    pub measured: Duration,
    /// Counters of the measured window.
    pub counters: Counters,
    /// Latencies of successful measured requests (HdrHistogram V2, base64).
    pub latencies: Latencies,
    /// Per-second rows.
    pub seconds: Vec<SecondStats>,
    /// The validity guard's figures.
    pub validity: Validity,
}

impl ShardFile {
    /// The file of a finished run.
    pub fn from_run(
        stats: &RunStats,
        validity: &Validity,
        settings: &LoadSettings,
        target: &str,
        seed: u64,
    ) -> Self {
        ShardFile {
            schema_version: SHARD_SCHEMA,
            tool_version: crate::VERSION.to_owned(),
            shard: ShardId {
                index: stats.shard.index,
                count: stats.shard.count,
            },
            started_at: stats.started_at,
            target: target.to_owned(),
            seed,
            settings: settings.clone(),
            target_rate: stats.target_rate,
            measured: stats.measured,
            counters: stats.counters.clone(),
            latencies: stats.latencies.clone(),
            seconds: stats.seconds.clone(),
            validity: validity.clone(),
        }
    }

    /// As a gate measurement.
    pub fn measurement(&self) -> Measurement {
        Measurement {
            target_rate: self.target_rate,
            measured: self.measured,
            counters: self.counters.clone(),
            latencies: self.latencies.clone(),
            invalid: self.validity.invalid.clone(),
            host_busy: self.validity.host_busy_reason.clone(),
            stall_max_us: self.validity.hiccup_max_us,
        }
    }

    /// Writes the file as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), ShardError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| ShardError::Write {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        std::fs::write(path, text).map_err(|e| ShardError::Write {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Reads a file.
    pub fn read(path: &Path) -> Result<Self, ShardError> {
        let text = std::fs::read_to_string(path).map_err(|e| ShardError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let file: ShardFile = serde_json::from_str(&text).map_err(|e| ShardError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if file.schema_version != SHARD_SCHEMA {
            return Err(ShardError::Read {
                path: path.to_owned(),
                reason: format!(
                    "schema_version {} is not {SHARD_SCHEMA}",
                    file.schema_version
                ),
            });
        }
        Ok(file)
    }
}

/// Shard files that cannot be read or merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// Unreadable or malformed.
    #[error("failed to read shard file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Unwritable.
    #[error("failed to write shard file {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The files do not make one run.
    #[error("shard files do not make one run: {0}")]
    Mismatch(String),
}

/// Merges the shards of one run exactly; every index `0..n` must appear once.
pub fn merge(files: &[(PathBuf, ShardFile)]) -> Result<ShardFile, ShardError> {
    let Some((first_path, first)) = files.first() else {
        return Err(ShardError::Mismatch("no shard files given".to_owned()));
    };
    let count = first.shard.count;
    let mut seen: BTreeMap<u32, &Path> = BTreeMap::new();
    for (path, f) in files {
        let differs = |what: &str| {
            ShardError::Mismatch(format!(
                "{} has a different {what} than {}",
                path.display(),
                first_path.display()
            ))
        };
        if f.shard.count != count {
            return Err(differs("shard count"));
        }
        if f.started_at != first.started_at {
            return Err(differs("start time (--start-at)"));
        }
        if f.measured != first.measured {
            return Err(differs("measured window"));
        }
        if f.settings != first.settings {
            return Err(differs("load settings"));
        }
        if let Some(other) = seen.insert(f.shard.index, path) {
            return Err(ShardError::Mismatch(format!(
                "shard {}/{count} appears twice: {} and {}",
                f.shard.index,
                other.display(),
                path.display()
            )));
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(ShardError::Mismatch(format!(
            "missing shards {}",
            missing.join(", ")
        )));
    }
    let mut latencies = Latencies::new();
    let mut counters = Counters::default();
    let mut target_rate = 0.0;
    let mut seconds: BTreeMap<u32, SecondStats> = BTreeMap::new();
    // Per second, the sum of the shards' histograms while every shard kept one.
    let mut second_histograms: BTreeMap<u32, Option<Latencies>> = BTreeMap::new();
    let mut invalid = Vec::new();
    for (path, f) in files {
        latencies
            .add(&f.latencies)
            .map_err(|e| ShardError::Mismatch(format!("{}: {e}", path.display())))?;
        counters.add(&f.counters);
        target_rate += f.target_rate;
        for s in &f.seconds {
            let row = seconds.entry(s.second).or_insert_with(|| SecondStats {
                second: s.second,
                ..SecondStats::default()
            });
            row.ok += s.ok;
            row.errors += s.errors;
            row.dropped += s.dropped;
            row.late += s.late;
            // Percentiles cannot be added: kept as the worst shard's unless every shard
            // has this second's histogram (files from before they were kept have none),
            // in which case they are recomputed from the sum below.
            row.p50 = row.p50.max(s.p50);
            row.p90 = row.p90.max(s.p90);
            row.p99 = row.p99.max(s.p99);
            row.p999 = row.p999.max(s.p999);
            row.max = row.max.max(s.max);
            let sum = second_histograms
                .entry(s.second)
                .or_insert_with(|| Some(Latencies::new()));
            let shard_histogram = match (&s.histogram, s.ok) {
                (Some(text), _) => Some(Latencies::from_base64(text).map_err(|e| {
                    ShardError::Mismatch(format!("{}: second {}: {e}", path.display(), s.second))
                })?),
                // No successful response: nothing to add.
                (None, 0) => Some(Latencies::new()),
                (None, _) => None,
            };
            *sum = match (sum.take(), shard_histogram) {
                (Some(mut total), Some(h)) => {
                    total.add(&h).map_err(|e| {
                        ShardError::Mismatch(format!(
                            "{}: second {}: {e}",
                            path.display(),
                            s.second
                        ))
                    })?;
                    Some(total)
                }
                _ => None,
            };
        }
        if let Some(reason) = &f.validity.invalid {
            invalid.push(format!("shard {}/{count}: {reason}", f.shard.index));
        }
    }
    // Exact percentiles for every second whose rows all kept their histograms (a shard
    // without a row for a second completed nothing in it).
    for (second, sum) in second_histograms {
        if let (Some(total), Some(row)) = (sum, seconds.get_mut(&second)) {
            *row = std::mem::take(row).with_latencies(&total);
        }
    }
    let n = files.len() as f64;
    let mean =
        |get: fn(&Validity) -> f64| files.iter().map(|(_, f)| get(&f.validity)).sum::<f64>() / n;
    let validity = Validity {
        generator_busiest: files
            .iter()
            .map(|(_, f)| f.validity.generator_busiest)
            .fold(0.0, f64::max),
        generator_cpu: files.iter().map(|(_, f)| f.validity.generator_cpu).sum(),
        target_cpu: None,
        host_busy: mean(|v| v.host_busy),
        max_loadavg: files
            .iter()
            .map(|(_, f)| f.validity.max_loadavg)
            .fold(0.0, f64::max),
        behind_fraction: counters.behind as f64 / counters.scheduled.max(1) as f64,
        hiccup_max_us: files
            .iter()
            .map(|(_, f)| f.validity.hiccup_max_us)
            .max()
            .unwrap_or(0),
        stalled_fraction: files
            .iter()
            .map(|(_, f)| f.validity.stalled_fraction)
            .fold(0.0, f64::max),
        other_cpu: files
            .iter()
            .map(|(_, f)| f.validity.other_cpu)
            .fold(0.0, f64::max),
        host_busy_reason: {
            let busy: Vec<&str> = files
                .iter()
                .filter_map(|(_, f)| f.validity.host_busy_reason.as_deref())
                .collect();
            (!busy.is_empty()).then(|| busy.join("; "))
        },
        invalid: (!invalid.is_empty()).then(|| invalid.join("; ")),
    };
    Ok(ShardFile {
        schema_version: SHARD_SCHEMA,
        tool_version: crate::VERSION.to_owned(),
        shard: ShardId { index: 0, count: 1 },
        started_at: first.started_at,
        target: first.target.clone(),
        seed: first.seed,
        settings: first.settings.clone(),
        target_rate,
        measured: first.measured,
        counters,
        latencies,
        seconds: seconds.into_values().collect(),
        validity,
    })
}

/// A seed as a `0x` hex string, exact in every JSON reader.
mod seed_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(seed: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{seed:#x}"))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        gauntlet_reports::parse_seed(&text)
            .map_err(|e| serde::de::Error::custom(format!("seed {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: u32, count: u32, values: &[u64]) -> (PathBuf, ShardFile) {
        let mut latencies = Latencies::new();
        for v in values {
            latencies.record(*v);
        }
        let n = values.len() as u64;
        let second = SecondStats {
            second: 1,
            ok: n,
            ..SecondStats::default()
        }
        .with_latencies(&latencies);
        let file = ShardFile {
            schema_version: SHARD_SCHEMA,
            tool_version: "t".into(),
            shard: ShardId { index, count },
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
            target: "http://127.0.0.1:1".into(),
            seed: 7,
            settings: LoadSettings::default(),
            target_rate: 100.0,
            measured: Duration::from_secs(1),
            counters: Counters {
                scheduled: n,
                sent: n,
                ok: n,
                ..Counters::default()
            },
            latencies,
            seconds: vec![second],
            validity: Validity {
                generator_busiest: 0.1,
                generator_cpu: 0.1,
                target_cpu: None,
                host_busy: 0.5,
                max_loadavg: 1.0,
                behind_fraction: 0.0,
                hiccup_max_us: 0,
                stalled_fraction: 0.0,
                other_cpu: 0.0,
                host_busy_reason: None,
                invalid: None,
            },
        };
        (PathBuf::from(format!("shard-{index}.json")), file)
    }

    #[test]
    fn merge_adds_counts_and_histograms_exactly() {
        let values: Vec<u64> = (0..9_000u64).map(|i| 50 + (i * 104_729) % 9_000).collect();
        let parts: Vec<Vec<u64>> = (0..3)
            .map(|s| values.iter().skip(s).step_by(3).copied().collect())
            .collect();
        let files: Vec<_> = (0..3).map(|i| shard(i, 3, &parts[i as usize])).collect();
        // Through JSON, as the files travel.
        let files: Vec<_> = files
            .into_iter()
            .map(|(p, f)| {
                (
                    p,
                    serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap(),
                )
            })
            .collect();
        let merged = merge(&files).unwrap();
        let mut reference = Latencies::new();
        for v in &values {
            reference.record(*v);
        }
        assert_eq!(merged.latencies, reference);
        assert_eq!(merged.counters.ok, 9_000);
        assert_eq!(merged.target_rate, 300.0);
        assert_eq!(merged.seconds.len(), 1);
        assert_eq!(merged.seconds[0].ok, 9_000);
        for q in [0.5, 0.99, 0.999] {
            assert_eq!(merged.latencies.quantile(q), reference.quantile(q));
        }
        // The second's percentiles too: recomputed from the summed histograms.
        let second = &merged.seconds[0];
        let exact = SecondStats {
            second: 1,
            ok: 9_000,
            ..SecondStats::default()
        }
        .with_latencies(&reference);
        assert_eq!(second, &exact);
        assert!(
            second.p99
                < parts
                    .iter()
                    .map(|p| *p.iter().max().unwrap())
                    .max()
                    .unwrap()
        );
    }

    #[test]
    fn seconds_without_histograms_keep_the_worst_shard_figures() {
        let (p0, f0) = shard(0, 2, &[100, 200, 300]);
        let (p1, mut f1) = shard(1, 2, &[1_000, 2_000, 9_000]);
        f1.seconds[0].histogram = None;
        let merged = merge(&[(p0, f0), (p1, f1.clone())]).unwrap();
        let second = &merged.seconds[0];
        assert_eq!(second.ok, 6);
        assert_eq!(second.p99, f1.seconds[0].p99);
        assert_eq!(second.max, f1.seconds[0].max);
        assert_eq!(second.histogram, None);
    }

    #[test]
    fn merge_refuses_files_that_are_not_one_run() {
        let a = shard(0, 2, &[1]);
        let b = shard(1, 2, &[2]);
        assert!(merge(&[a.clone(), b.clone()]).is_ok());
        let err = merge(std::slice::from_ref(&a)).unwrap_err().to_string();
        assert!(err.contains("missing shards 1/2"), "{err}");
        let err = merge(&[a.clone(), a.clone()]).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
        let mut late = b.clone();
        late.1.started_at += Duration::from_secs(1);
        let err = merge(&[a.clone(), late]).unwrap_err().to_string();
        assert!(err.contains("start time"), "{err}");
        let mut invalid = b;
        invalid.1.validity.invalid = Some("generator saturated".into());
        let merged = merge(&[a, invalid]).unwrap();
        assert_eq!(
            merged.validity.invalid.as_deref(),
            Some("shard 1/2: generator saturated")
        );
    }
}
