//! The open-model schedule: when each request is meant to be sent.
//!
//! A schedule is a list of stages, each a rate that goes linearly from `rate_from` to `rate_to`
//! over its duration (equal rates: a constant stage). Request `k` (from 0) is due at the time
//! `t` where the cumulative expected count `N(t)` reaches `k`, so arrivals are evenly spaced
//! at the instantaneous rate and no stage boundary bunches or loses requests.
//!
//! A shard `i/n` takes requests `k ≡ i (mod n)` of the whole schedule, so the union of `n`
//! shards is exactly the unsharded schedule.

use std::time::Duration;

/// One stage of a schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// Requests per second at the stage's start.
    pub rate_from: f64,
    /// Requests per second at the stage's end.
    pub rate_to: f64,
    /// How long the stage lasts.
    pub duration: Duration,
}

impl Stage {
    /// A constant-rate stage.
    pub fn constant(rate: f64, duration: Duration) -> Self {
        Stage {
            rate_from: rate,
            rate_to: rate,
            duration,
        }
    }

    /// Expected requests over the whole stage.
    fn count(&self) -> f64 {
        (self.rate_from + self.rate_to) / 2.0 * self.duration.as_secs_f64()
    }

    /// The time into the stage at which `n` requests (fractional) are expected.
    fn time_of(&self, n: f64) -> f64 {
        let d = self.duration.as_secs_f64();
        let b = self.rate_from;
        let a = (self.rate_to - self.rate_from) / (2.0 * d);
        if a.abs() < 1e-12 {
            return n / b;
        }
        // a·t² + b·t − n = 0, in the form that does not cancel when a is small.
        let disc = (b * b + 4.0 * a * n).max(0.0);
        2.0 * n / (b + disc.sqrt())
    }

    /// Instantaneous rate at `t` seconds into the stage.
    pub fn rate_at(&self, t: f64) -> f64 {
        let d = self.duration.as_secs_f64();
        if d <= 0.0 {
            return self.rate_to;
        }
        self.rate_from + (self.rate_to - self.rate_from) * (t / d).clamp(0.0, 1.0)
    }
}

/// A shard of a schedule: `index` of `count`, from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: u32,
    /// How many shards share the schedule.
    pub count: u32,
}

impl Shard {
    /// The whole schedule.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A bad shard argument (`--shard i/n`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--shard {given:?} is not i/n with 0 <= i < n <= 10000")]
pub struct ShardError {
    /// The text given.
    pub given: String,
}

impl std::str::FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ShardError {
            given: s.to_owned(),
        };
        let (i, n) = s.split_once('/').ok_or_else(err)?;
        let index: u32 = i.trim().parse().map_err(|_| err())?;
        let count: u32 = n.trim().parse().map_err(|_| err())?;
        if count == 0 || index >= count || count > 10_000 {
            return Err(err());
        }
        Ok(Shard { index, count })
    }
}

/// A sequence of stages.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    stages: Vec<Stage>,
}

impl Schedule {
    /// A schedule of `stages`, run in order. Stages with no requests are pauses.
    pub fn new(stages: Vec<Stage>) -> Self {
        Schedule { stages }
    }

    /// One constant-rate stage.
    pub fn constant(rate: f64, duration: Duration) -> Self {
        Schedule::new(vec![Stage::constant(rate, duration)])
    }

    /// The stages.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Total duration.
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// Expected requests of the whole schedule (all shards), rounded down.
    pub fn total(&self) -> u64 {
        // The cumulative count is a sum of non-negative finite terms.
        self.stages.iter().map(Stage::count).sum::<f64>().floor() as u64
    }

    /// Requests due in `[from, to)` offsets, for all shards: the number a perfect
    /// generator would send in that window.
    pub fn due_between(&self, from: Duration, to: Duration) -> f64 {
        self.cumulative(to) - self.cumulative(from)
    }

    /// Expected requests due before offset `t`.
    fn cumulative(&self, t: Duration) -> f64 {
        let mut t = t.as_secs_f64();
        let mut n = 0.0;
        for stage in &self.stages {
            let d = stage.duration.as_secs_f64();
            if t >= d {
                n += stage.count();
                t -= d;
            } else {
                n += (stage.rate_from + stage.rate_at(t)) / 2.0 * t;
                break;
            }
        }
        n
    }

    /// The intended offsets (from the schedule's start) of this shard's requests, in order.
    pub fn offsets(&self, shard: Shard) -> Offsets<'_> {
        Offsets {
            schedule: self,
            shard,
            next: u64::from(shard.index),
            stage: 0,
            stage_start_count: 0.0,
            stage_start_time: 0.0,
        }
    }
}

/// Iterator over a shard's intended send offsets; see [`Schedule::offsets`].
#[derive(Debug, Clone)]
pub struct Offsets<'a> {
    schedule: &'a Schedule,
    shard: Shard,
    /// The next request number of the whole schedule.
    next: u64,
    stage: usize,
    stage_start_count: f64,
    stage_start_time: f64,
}

impl Iterator for Offsets<'_> {
    /// `(k, offset)`: the request's number in the whole schedule and its intended offset.
    type Item = (u64, Duration);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let stage = self.schedule.stages.get(self.stage)?;
            let in_stage = self.next as f64 - self.stage_start_count;
            if in_stage < stage.count() {
                let t = self.stage_start_time + stage.time_of(in_stage);
                let k = self.next;
                self.next += u64::from(self.shard.count);
                return Some((k, Duration::from_secs_f64(t.max(0.0))));
            }
            self.stage_start_count += stage.count();
            self.stage_start_time += stage.duration.as_secs_f64();
            self.stage += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn constant_rate_spaces_requests_evenly() {
        let s = Schedule::constant(1000.0, secs(2.0));
        let offsets: Vec<_> = s.offsets(Shard::WHOLE).collect();
        assert_eq!(offsets.len(), 2000);
        assert_eq!(s.total(), 2000);
        for (i, (k, t)) in offsets.iter().enumerate() {
            assert_eq!(*k, i as u64);
            let want = i as f64 / 1000.0;
            assert!((t.as_secs_f64() - want).abs() < 1e-9, "{i}: {t:?}");
        }
    }

    #[test]
    fn linear_ramp_matches_the_integral_of_its_rate() {
        // 0 -> 1000 req/s over 10 s: N(t) = 50 t², 5000 requests in all.
        let s = Schedule::new(vec![Stage {
            rate_from: 0.0,
            rate_to: 1000.0,
            duration: secs(10.0),
        }]);
        let offsets: Vec<_> = s.offsets(Shard::WHOLE).collect();
        assert_eq!(offsets.len(), 5000);
        for (k, t) in &offsets {
            let want = (*k as f64 / 50.0).sqrt();
            assert!(
                (t.as_secs_f64() - want).abs() < 1e-9,
                "{k}: {t:?} vs {want}"
            );
        }
        assert!((s.due_between(secs(0.0), secs(5.0)) - 1250.0).abs() < 1e-6);
    }

    #[test]
    fn stages_continue_without_gap_or_overlap() {
        let s = Schedule::new(vec![
            Stage::constant(100.0, secs(1.0)),
            Stage::constant(0.0, secs(1.0)),
            Stage::constant(200.0, secs(1.0)),
        ]);
        let offsets: Vec<_> = s.offsets(Shard::WHOLE).map(|(_, t)| t).collect();
        assert_eq!(offsets.len(), 300);
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
        assert!((offsets[99].as_secs_f64() - 0.99).abs() < 1e-9);
        assert!((offsets[100].as_secs_f64() - 2.0).abs() < 1e-9);
        assert!((offsets[299].as_secs_f64() - 2.995).abs() < 1e-9);
    }

    #[test]
    fn shards_partition_the_whole_schedule() {
        let s = Schedule::new(vec![
            Stage {
                rate_from: 300.0,
                rate_to: 900.0,
                duration: secs(1.5),
            },
            Stage::constant(700.0, secs(1.0)),
        ]);
        let whole: Vec<_> = s.offsets(Shard::WHOLE).collect();
        let mut union: Vec<_> = (0..3)
            .flat_map(|index| s.offsets(Shard { index, count: 3 }).collect::<Vec<_>>())
            .collect();
        union.sort_by_key(|(k, _)| *k);
        assert_eq!(union, whole);
    }

    #[test]
    fn shard_text_is_checked() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["4/4", "1", "a/2", "0/0", "-1/2"] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
