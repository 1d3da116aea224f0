//! The `[profile.X.backtest]` section of `gauntlet.toml`, and the validated [`Plan`] it
//! becomes (the CLI's flags become the same plan).
//!
//! ```toml
//! [profile.default.backtest]
//! fixture-seed = 1          # generated daily bars (no `file`)
//! fixture-bars = 20000
//! model = "ref-ensemble"    # or strategy = "ma-cross:10,50"
//! fees-bps = 1.0
//! slippage-bps = 1.0
//! folds = 4
//!
//! [profile.default.backtest.gates]
//! sharpe-min = 1.0
//! max-drawdown = 0.25
//! dsr-min = 0.95
//! pbo-max = 0.5
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use gauntlet_harness::gate::{RangeError, ensure_range};

use crate::data::{ColumnNames, LoadOptions, TimeUnit};
use crate::exec::{Costs, Fill, PositionModel, Sizing};
use crate::export::ReturnsFormat;
use crate::metrics::Calendar;
use crate::overfit::MAX_PBO_BLOCKS;
use crate::signals::{DEFAULT_BATCH_ROWS, DEFAULT_CONCURRENCY, MaCross};
use crate::sweep::{ExecParams, WalkMode};

/// A bad setting, naming the key (or flag) and the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The section does not deserialise (unknown key, wrong type).
    #[error("invalid [backtest] settings: {0}")]
    Parse(String),
    /// A value is out of range (the key or flag, the value, the accepted range).
    #[error(transparent)]
    OutOfRange(#[from] RangeError),
    /// The strategy spec does not parse.
    #[error("strategy: {0}")]
    Strategy(String),
}

/// Calendars a config can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum CalendarKind {
    /// Inferred from the timestamps (weekend bars, bars per day).
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// Around the clock.
    #[serde(rename = "24/7")]
    Continuous,
    /// Exchange sessions (`trading-days`, `session-hours`).
    #[serde(rename = "exchange")]
    Exchange,
}

impl std::str::FromStr for CalendarKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(CalendarKind::Auto),
            "24/7" => Ok(CalendarKind::Continuous),
            "exchange" => Ok(CalendarKind::Exchange),
            other => Err(format!(
                "unknown calendar {other:?} (auto, 24/7 or exchange)"
            )),
        }
    }
}

/// Gate thresholds; an unset gate is reported as skipped.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Gates {
    /// Lowest annualised Sharpe ratio.
    pub sharpe_min: Option<f64>,
    /// Largest max drawdown (fraction).
    pub max_drawdown: Option<f64>,
    /// Lowest hit rate over trades.
    pub hit_rate_min: Option<f64>,
    /// Largest turnover (position traded per year).
    pub turnover_max: Option<f64>,
    /// Lowest annualised Sharpe ratio of the joined walk-forward test periods.
    pub walk_forward_sharpe_min: Option<f64>,
    /// Lowest deflated Sharpe ratio.
    pub dsr_min: Option<f64>,
    /// Largest probability of backtest overfitting.
    pub pbo_max: Option<f64>,
}

/// The `[backtest]` section as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BacktestConfig {
    /// A CSV or Parquet file of bars; absent means generated fixture bars.
    pub file: Option<PathBuf>,
    /// Column names in the file.
    pub columns: ColumnNames,
    /// Unit of integer timestamps (`s`, `ms`, `us`, `ns`); inferred when absent.
    pub time_unit: Option<TimeUnit>,
    /// Seed of the generated bars.
    pub fixture_seed: u64,
    /// Number of generated bars.
    pub fixture_bars: usize,
    /// Model served by the target.
    pub model: String,
    /// A built-in strategy instead of the model, e.g. `ma-cross:10,50`.
    pub strategy: Option<String>,
    /// Fees in basis points of traded value.
    pub fees_bps: f64,
    /// Slippage in basis points of traded value.
    pub slippage_bps: f64,
    /// `next-close` or `next-open`.
    pub fill: Fill,
    /// `units` (held between target changes) or `target-weight` (rebalanced every bar).
    pub sizing: PositionModel,
    /// Positions in [0, 1].
    pub long_only: bool,
    /// Predictions with `|p| ≤ deadband` mean flat.
    pub deadband: f64,
    /// Periods per year; derived from the bars and `calendar` when absent.
    pub periods_per_year: Option<f64>,
    /// `auto` (inferred from the timestamps), `24/7` or `exchange`.
    pub calendar: CalendarKind,
    /// Trading days a year of the exchange calendar.
    pub trading_days: f64,
    /// Session hours of the exchange calendar.
    pub session_hours: f64,
    /// Annual risk-free rate.
    pub risk_free: f64,
    /// Walk-forward folds.
    pub folds: usize,
    /// `anchored` or `rolling`.
    pub walk_forward: WalkMode,
    /// CSCV blocks for PBO (even, 2 to [`MAX_PBO_BLOCKS`]).
    pub pbo_blocks: usize,
    /// Variants tried before this one (the `N` of the deflated Sharpe ratio).
    pub trials: u64,
    /// Report the sweep's best trial rather than the configured one.
    pub pick_best: bool,
    /// The longest interval between bars accepted, in median intervals of trading time
    /// (weekends and the hours between sessions left out when the bars have none).
    pub max_gap: f64,
    /// Accept longer gaps (they are then reported, not refused).
    pub allow_gaps: bool,
    /// Run the parameter sweep (PBO, walk-forward choice among trials); `false` runs the
    /// configured backtest alone.
    pub sweep: bool,
    /// Run the checks that re-run the backtest: the look-ahead detector, the walk-forward
    /// and the cost check's run without costs (`false` reports their gates as skipped, with
    /// the reason).
    pub checks: bool,
    /// Format of the per-period returns export: `parquet` (`returns.parquet`) or `csv`
    /// (`returns.csv`).
    pub returns_format: ReturnsFormat,
    /// Truncation points of the look-ahead detector.
    pub lookahead_cuts: usize,
    /// Rows per infer call.
    pub batch_rows: usize,
    /// Infer calls in flight.
    pub concurrency: usize,
    /// Gate thresholds.
    pub gates: Gates,
}

impl Default for BacktestConfig {
    fn default() -> Self {
        BacktestConfig {
            file: None,
            columns: ColumnNames::default(),
            time_unit: None,
            fixture_seed: 1,
            fixture_bars: 20_000,
            model: gauntlet_fixtures::REF_ENSEMBLE.into(),
            strategy: None,
            fees_bps: 1.0,
            slippage_bps: 1.0,
            fill: Fill::NextClose,
            sizing: PositionModel::Units,
            long_only: false,
            deadband: 0.0,
            periods_per_year: None,
            calendar: CalendarKind::Auto,
            trading_days: 252.0,
            session_hours: 6.5,
            risk_free: 0.0,
            folds: 4,
            walk_forward: WalkMode::Anchored,
            pbo_blocks: 10,
            trials: 1,
            pick_best: false,
            max_gap: 10.0,
            allow_gaps: false,
            sweep: true,
            checks: true,
            returns_format: ReturnsFormat::Parquet,
            lookahead_cuts: 6,
            batch_rows: DEFAULT_BATCH_ROWS,
            concurrency: DEFAULT_CONCURRENCY,
            gates: Gates::default(),
        }
    }
}

impl BacktestConfig {
    /// Reads the merged `[profile.X.backtest]` table.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] with toml's message naming the key.
    pub fn from_table(table: &toml::Table) -> Result<Self, ConfigError> {
        toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.message().to_owned()))
    }
}

/// Where the bars come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataPlan {
    /// A user file.
    File {
        /// The file.
        path: PathBuf,
        /// How to read it.
        options: LoadOptions,
    },
    /// Generated bars.
    Fixture {
        /// Seed.
        seed: u64,
        /// Bars.
        bars: usize,
    },
}

/// What gives the predictions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalPlan {
    /// A model, by name.
    Model(String),
    /// The moving-average crossover.
    Strategy(MaCross),
}

/// A validated backtest plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The bars.
    pub data: DataPlan,
    /// The signal.
    pub signal: SignalPlan,
    /// Execution.
    pub exec: ExecParams,
    /// Periods per year, when given.
    pub periods_per_year: Option<f64>,
    /// Calendar for deriving it from the median interval; `None`: inferred from the timestamps.
    pub calendar: Option<Calendar>,
    /// Annual risk-free rate.
    pub risk_free: f64,
    /// Walk-forward folds.
    pub folds: usize,
    /// Walk-forward mode.
    pub walk: WalkMode,
    /// CSCV blocks.
    pub pbo_blocks: usize,
    /// Declared trials.
    pub trials: u64,
    /// Report the sweep's best.
    pub pick_best: bool,
    /// Run the sweep.
    pub sweep: bool,
    /// Why the checks that re-run the backtest (look-ahead detector, walk-forward, the cost
    /// check's run without costs) are skipped, when they are; the text says how to run them.
    pub skip_checks: Option<String>,
    /// Format of the per-period returns export.
    pub returns_format: ReturnsFormat,
    /// Longest gap accepted, in median intervals; `None` when gaps are allowed.
    pub max_gap: Option<f64>,
    /// Look-ahead cut points.
    pub lookahead_cuts: usize,
    /// Rows per infer call.
    pub batch_rows: usize,
    /// Infer calls in flight.
    pub concurrency: usize,
    /// Gates.
    pub gates: Gates,
}

/// Why the checks are skipped when the config's `checks` is `false`.
pub const CONFIG_SKIP_CHECKS: &str =
    "checks = false in the backtest config; set checks = true to run it";

/// Most generated daily bars: from 2024 they must end before 2262, the end of Unix nanoseconds.
pub const MAX_FIXTURE_BARS: usize = 80_000;

/// A gate key, its value, its validity test and the range in words.
type GateBound = (&'static str, Option<f64>, fn(f64) -> bool, &'static str);

fn check(key: &'static str, value: f64, ok: bool, limit: &'static str) -> Result<(), ConfigError> {
    Ok(ensure_range(key, value, ok && value.is_finite(), limit)?)
}

impl Plan {
    /// Validates a config.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key and its limit.
    pub fn from_config(c: &BacktestConfig) -> Result<Plan, ConfigError> {
        check(
            "fees-bps",
            c.fees_bps,
            (0.0..=1_000.0).contains(&c.fees_bps),
            "0 to 1000",
        )?;
        check(
            "slippage-bps",
            c.slippage_bps,
            (0.0..=1_000.0).contains(&c.slippage_bps),
            "0 to 1000",
        )?;
        check("deadband", c.deadband, c.deadband >= 0.0, "≥ 0")?;
        check("max-gap", c.max_gap, c.max_gap >= 2.0, "at least 2")?;
        check(
            "risk-free",
            c.risk_free,
            (-0.5..=1.0).contains(&c.risk_free),
            "-0.5 to 1",
        )?;
        if let Some(p) = c.periods_per_year {
            check(
                "periods-per-year",
                p,
                p > 0.0 && p <= 1e8,
                "above 0, at most 1e8",
            )?;
        }
        check(
            "trading-days",
            c.trading_days,
            c.trading_days > 0.0 && c.trading_days <= 366.0,
            "above 0, at most 366",
        )?;
        check(
            "session-hours",
            c.session_hours,
            c.session_hours > 0.0 && c.session_hours <= 24.0,
            "above 0, at most 24",
        )?;
        let int =
            |key: &str, value: usize, ok: bool, limit: &str| ensure_range(key, value, ok, limit);
        int("folds", c.folds, (1..=50).contains(&c.folds), "1 to 50")?;
        int(
            "pbo-blocks",
            c.pbo_blocks,
            (2..=MAX_PBO_BLOCKS).contains(&c.pbo_blocks) && c.pbo_blocks.is_multiple_of(2),
            &format!("an even number from 2 to {MAX_PBO_BLOCKS}"),
        )?;
        int(
            "fixture-bars",
            c.fixture_bars,
            (crate::data::MIN_BARS..=MAX_FIXTURE_BARS).contains(&c.fixture_bars),
            "30 to 80000 (daily bars from 2024 must end before 2262)",
        )?;
        int(
            "lookahead-cuts",
            c.lookahead_cuts,
            (1..=100).contains(&c.lookahead_cuts),
            "1 to 100",
        )?;
        int(
            "batch-rows",
            c.batch_rows,
            (1..=100_000).contains(&c.batch_rows),
            "1 to 100000",
        )?;
        int(
            "concurrency",
            c.concurrency,
            (1..=64).contains(&c.concurrency),
            "1 to 64",
        )?;
        ensure_range("trials", c.trials, c.trials >= 1, "at least 1")?;
        let gates = c.gates;
        let fraction: fn(f64) -> bool = |x| (0.0..=1.0).contains(&x);
        let non_negative: fn(f64) -> bool = |x| x >= 0.0;
        let any: fn(f64) -> bool = |_| true;
        let bounded: [GateBound; 7] = [
            ("gates.max-drawdown", gates.max_drawdown, fraction, "0 to 1"),
            ("gates.hit-rate-min", gates.hit_rate_min, fraction, "0 to 1"),
            ("gates.dsr-min", gates.dsr_min, fraction, "0 to 1"),
            ("gates.pbo-max", gates.pbo_max, fraction, "0 to 1"),
            (
                "gates.turnover-max",
                gates.turnover_max,
                non_negative,
                "≥ 0",
            ),
            ("gates.sharpe-min", gates.sharpe_min, any, "finite"),
            (
                "gates.walk-forward-sharpe-min",
                gates.walk_forward_sharpe_min,
                any,
                "finite",
            ),
        ];
        for (key, v, ok, limit) in bounded {
            if let Some(v) = v {
                check(key, v, ok(v), limit)?;
            }
        }
        let signal = match &c.strategy {
            Some(spec) => SignalPlan::Strategy(
                MaCross::parse(spec).map_err(|e| ConfigError::Strategy(e.to_string()))?,
            ),
            None => SignalPlan::Model(c.model.clone()),
        };
        let data = match &c.file {
            Some(path) => DataPlan::File {
                path: path.clone(),
                options: LoadOptions {
                    columns: c.columns.clone(),
                    time_unit: c.time_unit,
                },
            },
            None => DataPlan::Fixture {
                seed: c.fixture_seed,
                bars: c.fixture_bars,
            },
        };
        Ok(Plan {
            data,
            signal,
            exec: ExecParams {
                fill: c.fill,
                model: c.sizing,
                costs: Costs {
                    fees_bps: c.fees_bps,
                    slippage_bps: c.slippage_bps,
                },
                sizing: Sizing::Sign {
                    deadband: c.deadband,
                },
                long_only: c.long_only,
            },
            periods_per_year: c.periods_per_year,
            calendar: match c.calendar {
                CalendarKind::Auto => None,
                CalendarKind::Continuous => Some(Calendar::Continuous),
                CalendarKind::Exchange => Some(Calendar::Exchange {
                    days_per_year: c.trading_days,
                    session_hours: c.session_hours,
                }),
            },
            risk_free: c.risk_free,
            folds: c.folds,
            walk: c.walk_forward,
            pbo_blocks: c.pbo_blocks,
            trials: c.trials,
            pick_best: c.pick_best,
            sweep: c.sweep,
            skip_checks: (!c.checks).then(|| CONFIG_SKIP_CHECKS.to_owned()),
            returns_format: c.returns_format,
            max_gap: (!c.allow_gaps).then_some(c.max_gap),
            lookahead_cuts: c.lookahead_cuts,
            batch_rows: c.batch_rows,
            concurrency: c.concurrency,
            gates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Plan, ConfigError> {
        let table: toml::Table = text.parse().unwrap();
        Plan::from_config(&BacktestConfig::from_table(&table)?)
    }

    #[test]
    fn defaults_and_a_full_section() {
        let plan = parse("").unwrap();
        assert_eq!(plan.signal, SignalPlan::Model("ref-ensemble".into()));
        assert_eq!(
            plan.data,
            DataPlan::Fixture {
                seed: 1,
                bars: 20_000
            }
        );
        let plan = parse(
            r#"
            file = "bars.csv"
            time-unit = "ms"
            strategy = "ma-cross:5,20"
            fees-bps = 2.5
            fill = "next-open"
            calendar = "exchange"
            walk-forward = "rolling"
            columns = { timestamp = "ts", close = "px" }
            [gates]
            sharpe-min = 0.5
            dsr-min = 0.9
            "#,
        )
        .unwrap();
        assert_eq!(
            plan.signal,
            SignalPlan::Strategy(MaCross { fast: 5, slow: 20 })
        );
        assert_eq!(plan.exec.fill, Fill::NextOpen);
        assert_eq!(plan.walk, WalkMode::Rolling);
        assert_eq!(plan.calendar, Some(Calendar::EXCHANGE));
        assert_eq!(plan.gates.dsr_min, Some(0.9));
        let DataPlan::File { options, .. } = plan.data else {
            panic!("expected a file");
        };
        assert_eq!(options.columns.timestamp, "ts");
        assert_eq!(options.columns.open, "open");
        assert_eq!(options.time_unit, Some(TimeUnit::Millis));
    }

    #[test]
    fn errors_name_the_key_and_the_limit() {
        let e = parse("feez-bps = 1").unwrap_err();
        assert!(e.to_string().contains("feez-bps"), "{e}");
        let e = parse("[gates]\ndsr-minimum = 1").unwrap_err();
        assert!(e.to_string().contains("dsr-minimum"), "{e}");
        let e = parse("fees-bps = -1").unwrap_err();
        assert_eq!(e.to_string(), "fees-bps = -1 is out of range: 0 to 1000");
        // The documented range, 2 to 24 (it was refused above 16).
        assert_eq!(parse("pbo-blocks = 24").unwrap().pbo_blocks, 24);
        let e = parse("pbo-blocks = 26").unwrap_err();
        assert_eq!(
            e.to_string(),
            "pbo-blocks = 26 is out of range: an even number from 2 to 24"
        );
        let e = parse("pbo-blocks = 7").unwrap_err();
        assert!(e.to_string().contains("pbo-blocks = 7"), "{e}");
        let e = parse("[gates]\npbo-max = 2").unwrap_err();
        assert!(e.to_string().contains("gates.pbo-max = 2"), "{e}");
        let e = parse("strategy = \"ma-cross:50,10\"").unwrap_err();
        assert!(e.to_string().contains("ma-cross:50,10"), "{e}");
        let e = parse("time-unit = \"hours\"").unwrap_err();
        assert!(e.to_string().contains("hours"), "{e}");
    }
}
