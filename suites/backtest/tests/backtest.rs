//! Integration tests: real files (CSV, Parquet) on disk, the engine in process and as a
//! real HTTP server on a loopback port, the phase and the CLI.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions fail loudly on purpose"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use clap::Parser;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use gauntlet_backtest::BacktestSuite;
use gauntlet_backtest::cli::BacktestArgs;
use gauntlet_backtest::config::{BacktestConfig, Gates, Plan};
use gauntlet_backtest::data::{
    self, Bars, ColumnNames, DataError, LoadOptions, TimeUnit, TimestampSource,
};
use gauntlet_backtest::exec::Fill;
use gauntlet_backtest::signals::{EngineModel, SignalError, Signals, TargetModel};
use gauntlet_backtest::suite::{
    Outcome, Verdict, evaluate, load_bars_and_run, run_plan, run_plan_with,
};
use gauntlet_engine::{EngineConfig, Model};
use gauntlet_harness::config::{ConfigFile, Profile, Settings};
use gauntlet_harness::suite::{PlannedCase, Suite, SuiteCtx};
use gauntlet_harness::{HttpOptions, HttpTarget, InProcess, Target};
use gauntlet_reports::Outcome as CaseOutcome;

const DAY_NS: i64 = 86_400_000_000_000;

fn sample() -> PathBuf {
    gauntlet_fixtures::ohlcv_sample_path()
}

fn load(path: &Path) -> Result<data::LoadedBars, DataError> {
    data::load(path, &LoadOptions::default())
}

fn write_csv(path: &Path, header: &str, rows: &[String]) {
    let mut text = format!("{header}\n");
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The sample's rows as CSV lines, timestamps formatted by `ts`.
fn sample_rows(bars: &Bars, ts: impl Fn(i64) -> String) -> Vec<String> {
    (0..bars.len())
        .map(|i| {
            format!(
                "{},{},{},{},{},{}",
                ts(bars.ts_ns[i]),
                bars.open[i],
                bars.high[i],
                bars.low[i],
                bars.close[i],
                bars.volume[i]
            )
        })
        .collect()
}

const HEADER: &str = "timestamp,open,high,low,close,volume";

#[test]
fn csv_and_parquet_give_the_same_bars() {
    let csv = load(&sample()).unwrap();
    assert_eq!(csv.bars.len(), gauntlet_fixtures::SAMPLE_BARS);
    assert_eq!(
        csv.timestamps,
        TimestampSource::Epoch {
            unit: TimeUnit::Seconds,
            inferred: true
        }
    );
    assert_eq!(csv.gaps.median_interval_ns, DAY_NS);
    assert_eq!(csv.gaps.count, 0);
    let generated = gauntlet_fixtures::generate_ohlcv(
        gauntlet_fixtures::SAMPLE_SEED,
        gauntlet_fixtures::SAMPLE_BARS,
    )
    .unwrap();
    assert_eq!(csv.bars, generated);

    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("bars.parquet");
    data::write_parquet(&csv.bars, &parquet).unwrap();
    let back = load(&parquet).unwrap();
    assert_eq!(back.timestamps, TimestampSource::Datetime);
    assert_eq!(back.bars, csv.bars);
}

/// The Parquet page path (PLAIN pages decoded into the columns, checked page by page) rejects
/// every broken rule with the same row and column as the row-by-row check, and reads back gaps.
#[test]
fn parquet_fast_path_names_the_same_row_and_column() {
    type Break = fn(&mut Bars);
    let breaks: [(&str, Break); 7] = [
        ("high", |b| {
            b.high[500] = b.open[500].max(b.close[500]) * 0.99
        }),
        ("low", |b| {
            b.low[4_100] = b.open[4_100].min(b.close[4_100]) * 1.01
        }),
        ("close", |b| b.close[1_200] = f64::NAN),
        ("open", |b| b.open[0] = -1.0),
        ("volume", |b| b.volume[1_999] = -0.5),
        ("timestamp", |b| b.ts_ns[4_096] = b.ts_ns[4_095]),
        ("timestamp", |b| b.ts_ns[1] = b.ts_ns[0] - 1),
    ];
    // Over 4,096 rows, so that breaks fall on both sides of a check chunk's edge.
    let bars = gauntlet_fixtures::generate_ohlcv(3, 10_000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (i, (column, broken)) in breaks.into_iter().enumerate() {
        let mut bad = bars.clone();
        broken(&mut bad);
        let expected = data::validate_bars(&bad).unwrap_err().to_string();
        assert!(
            expected.contains(&format!("column \"{column}\"")),
            "{expected}"
        );
        let path = dir.path().join(format!("bad-{i}.parquet"));
        data::write_parquet(&bad, &path).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.ends_with(&expected), "{err} / {expected}");
    }
    // Bars with a gap: not evenly spaced, the general gap scan.
    let mut gapped = bars.clone();
    for t in &mut gapped.ts_ns[1_000..] {
        *t += 10 * DAY_NS;
    }
    let path = dir.path().join("gapped.parquet");
    data::write_parquet(&gapped, &path).unwrap();
    let back = load(&path).unwrap();
    assert_eq!(back.bars, gapped);
    assert_eq!(back.gaps.median_interval_ns, DAY_NS);
    assert_eq!(back.gaps.count, 1);
    assert_eq!(back.gaps.largest, Some((1_001, 11 * DAY_NS)));
}

/// A Parquet file large enough for polars' writer to split into row groups (the 1M-bar bench
/// file reads back as 4 chunks a column): read back exactly, and a bad row late in it named.
#[test]
fn parquet_of_several_row_groups_reads_back_and_names_bad_rows() {
    let bars = gauntlet_fixtures::generate_ohlcv_every(5, 300_000, 60).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("groups.parquet");
    data::write_parquet(&bars, &path).unwrap();
    let back = load(&path).unwrap();
    assert_eq!(back.bars, bars);
    assert_eq!(back.gaps.median_interval_ns, 60_000_000_000);

    let mut bad = bars;
    bad.volume[290_000] = f64::NAN;
    data::write_parquet(&bad, &path).unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(
        err.contains("row 290001") && err.contains("column \"volume\""),
        "{err}"
    );
}

/// The layouts of real files — snappy (pyarrow's and Spark's default codec), zstd, none; one
/// row group or several — read back bit for bit (through the page path: `data::plain`'s tests
/// compare it with polars' reader on the same layouts).
#[test]
fn parquet_codecs_and_row_groups_read_back_exactly() {
    use polars::prelude::ParquetCompression;
    let bars = gauntlet_fixtures::generate_ohlcv_every(9, 100_000, 60).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (i, (codec, groups)) in [
        (ParquetCompression::Snappy, None),
        (ParquetCompression::Snappy, Some(100_000)),
        (ParquetCompression::Snappy, Some(7_000)),
        (ParquetCompression::Uncompressed, Some(100_000)),
        (ParquetCompression::default(), Some(30_000)),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("layout-{i}.parquet"));
        data::write_parquet_with(&bars, &path, codec, groups).unwrap();
        let back = load(&path).unwrap();
        assert!(back.bars == bars, "layout {i}: {codec:?}, {groups:?}");
        assert_eq!(back.gaps.median_interval_ns, 60_000_000_000);
        assert_eq!(back.gaps.count, 0);
    }
}

/// A large file of several row groups: a break in the middle, at a check chunk's edge (rows
/// 147,456 and 147,457), at the seam of two row groups, or in the last rows is named as the row-by-row check names it, and a
/// gap late in the file is found by the full gap scan (the bars are no longer evenly spaced).
#[test]
fn row_checks_find_breaks_anywhere_in_a_large_file() {
    type Break = fn(&mut Bars);
    let breaks: [(usize, &str, Break); 5] = [
        (120_001, "close", |b| b.close[120_000] = 0.0),
        // The first row of the second row group (polars writes 262,144 rows a group).
        (262_145, "timestamp", |b| {
            b.ts_ns[262_144] = b.ts_ns[262_143] - 1
        }),
        (147_457, "timestamp", |b| {
            b.ts_ns[147_456] = b.ts_ns[147_455]
        }),
        (147_458, "low", |b| b.low[147_457] = b.high[147_457] * 2.0),
        (299_999, "high", |b| b.high[299_998] = f64::INFINITY),
    ];
    let bars = gauntlet_fixtures::generate_ohlcv_every(4, 300_000, 60).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (i, (row, column, broken)) in breaks.into_iter().enumerate() {
        let mut bad = bars.clone();
        broken(&mut bad);
        let expected = data::validate_bars(&bad).unwrap_err().to_string();
        assert!(
            expected.contains(&format!("row {row},"))
                && expected.contains(&format!("column \"{column}\"")),
            "{expected}"
        );
        let path = dir.path().join(format!("bad-{i}.parquet"));
        data::write_parquet(&bad, &path).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.ends_with(&expected), "{err} / {expected}");
    }
    let mut gapped = bars;
    for t in &mut gapped.ts_ns[200_000..] {
        *t += 3_600_000_000_000;
    }
    let path = dir.path().join("gapped.parquet");
    data::write_parquet(&gapped, &path).unwrap();
    let back = load(&path).unwrap();
    assert_eq!(back.gaps.count, 1);
    assert_eq!(back.gaps.largest, Some((200_001, 3_660_000_000_000)));
}

#[test]
fn iso_millisecond_and_renamed_columns_read_the_same() {
    let bars = load(&sample()).unwrap().bars;
    let dir = tempfile::tempdir().unwrap();

    let iso = dir.path().join("iso.csv");
    let rows = sample_rows(&bars, |ns| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    });
    write_csv(&iso, HEADER, &rows);
    let got = load(&iso).unwrap();
    assert_eq!(got.timestamps, TimestampSource::Iso8601);
    assert_eq!(got.bars, bars);

    let ms = dir.path().join("ms.csv");
    write_csv(
        &ms,
        "ts,o,h,l,c,v",
        &sample_rows(&bars, |ns| (ns / 1_000_000).to_string()),
    );
    let options = LoadOptions {
        columns: ColumnNames {
            timestamp: "ts".into(),
            open: "o".into(),
            high: "h".into(),
            low: "l".into(),
            close: "c".into(),
            volume: "v".into(),
        },
        time_unit: None,
    };
    let got = data::load(&ms, &options).unwrap();
    assert_eq!(
        got.timestamps,
        TimestampSource::Epoch {
            unit: TimeUnit::Millis,
            inferred: true
        }
    );
    assert_eq!(got.bars, bars);
    // Declared seconds on millisecond data: read as declared, which overflows nanoseconds.
    let e = data::load(
        &ms,
        &LoadOptions {
            time_unit: Some(TimeUnit::Seconds),
            ..options.clone()
        },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "row 1 (line 2), column \"ts\": timestamp 1704067200000 seconds is out of range (years 1677 to 2262)"
    );
    let declared = data::load(
        &ms,
        &LoadOptions {
            time_unit: Some(TimeUnit::Millis),
            ..options
        },
    )
    .unwrap();
    assert_eq!(declared.bars, bars);
    assert!(declared.timestamps.to_string().contains("declared"));
}

/// The sample with row `row` (1-based) replaced by `edit` of its fields.
fn broken(dir: &Path, row: usize, edit: impl Fn(&mut Vec<String>)) -> PathBuf {
    let bars = load(&sample()).unwrap().bars;
    let mut rows = sample_rows(&bars, |ns| (ns / 1_000_000_000).to_string());
    let mut fields: Vec<String> = rows[row - 1].split(',').map(str::to_owned).collect();
    edit(&mut fields);
    rows[row - 1] = fields.join(",");
    static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("broken-{row}-{n}.csv"));
    write_csv(&path, HEADER, &rows);
    path
}

#[test]
fn bad_rows_are_named_by_row_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let previous_ts = |f: &mut Vec<String>, delta: i64| {
        let ts: i64 = f[0].parse().unwrap();
        f[0] = (ts - 86_400 + delta).to_string();
    };
    let cases: Vec<(PathBuf, &str, &str)> = vec![
        (
            broken(d, 7, |f| f[4] = "-1".into()),
            "column \"close\"",
            "must be positive and finite",
        ),
        (
            broken(d, 7, |f| f[1] = "inf".into()),
            "column \"open\"",
            "must be positive and finite",
        ),
        (
            broken(d, 7, |f| f[2] = "1".into()),
            "column \"high\"",
            "is below max(open, close)",
        ),
        (
            broken(d, 7, |f| f[3] = "1000".into()),
            "column \"low\"",
            "is above min(open, close)",
        ),
        (
            broken(d, 7, |f| f[5] = "-5".into()),
            "column \"volume\"",
            "must be finite and ≥ 0",
        ),
        (
            broken(d, 7, |f| previous_ts(f, 0)),
            "column \"timestamp\"",
            "a duplicate of",
        ),
        (
            broken(d, 7, |f| previous_ts(f, -10)),
            "column \"timestamp\"",
            "is before",
        ),
        (
            broken(d, 7, |f| f[4] = String::new()),
            "column \"close\"",
            "value is missing",
        ),
        (
            broken(d, 7, |f| f[0] = "noon".into()),
            "column \"timestamp\"",
            "cannot parse \"noon\"",
        ),
    ];
    for (path, column, what) in cases {
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("row 7 (line 8)"), "{e}");
        assert!(e.contains(column), "{e}");
        assert!(e.contains(what), "{e}");
    }
    // Past polars' schema inference window: the typed read fails, the text read names the row.
    let late = broken(d, 1_500, |f| f[4] = "abc".into());
    let e = load(&late).unwrap_err().to_string();
    assert_eq!(
        e,
        "row 1500 (line 1501), column \"close\": cannot parse \"abc\" as a number"
    );

    let missing = d.join("missing.csv");
    write_csv(
        &missing,
        "timestamp,open,high,low,volume",
        &["1,1,1,1,1".into()],
    );
    let e = load(&missing).unwrap_err().to_string();
    assert!(e.contains("column \"close\" not found"), "{e}");
    assert!(e.contains("timestamp, open, high, low, volume"), "{e}");

    let e = load(&d.join("bars.xlsx")).unwrap_err().to_string();
    assert!(e.contains("unknown format"), "{e}");
    let e = load(&d.join("absent.csv")).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e}");
}

fn fixture_bars(n: usize) -> Bars {
    gauntlet_fixtures::generate_ohlcv(3, n).unwrap()
}

fn plan(edit: impl FnOnce(&mut BacktestConfig)) -> Plan {
    let mut c = BacktestConfig::default();
    edit(&mut c);
    Plan::from_config(&c).unwrap()
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_numbers_in_process_through_the_router_and_by_url() {
    let bars = fixture_bars(6_000);
    let ensemble = gauntlet_fixtures::reference_ensemble();
    let direct =
        EngineModel::new(Arc::new(Model::from_artifact(ensemble.clone()).unwrap())).unwrap();
    let in_process: Arc<dyn Target> =
        Arc::new(InProcess::with_models(EngineConfig::default(), vec![ensemble]).unwrap());
    let routed = TargetModel::connect(in_process, "ref-ensemble", 1_000, 3)
        .await
        .unwrap();
    let (url, stop) = gauntlet_testkit::serve_reference_engine()
        .await
        .expect("engine on loopback");
    let http: Arc<dyn Target> = Arc::new(
        HttpTarget::connect(&url, HttpOptions::default())
            .await
            .unwrap(),
    );
    let remote = TargetModel::connect(http, "ref-ensemble", 1_000, 3)
        .await
        .unwrap();

    let a = direct.predict(&bars, 0).await.unwrap();
    let b = routed.predict(&bars, 0).await.unwrap();
    let c = remote.predict(&bars, 0).await.unwrap();
    assert_eq!(a.len(), bars.len());
    assert!(a[..gauntlet_fixtures::WARMUP].iter().all(|p| p.is_nan()));
    assert!(a[gauntlet_fixtures::WARMUP..].iter().all(|p| p.is_finite()));
    assert_eq!(bits(&a), bits(&b), "in-process engine model vs router JSON");
    assert_eq!(
        bits(&a),
        bits(&c),
        "in-process vs a real server on loopback"
    );

    let plan = plan(|_| {});
    let median = DAY_NS;
    let x = run_plan(&plan, &bars, median, Some(&direct), 5)
        .await
        .unwrap();
    let y = run_plan(&plan, &bars, median, Some(&remote), 5)
        .await
        .unwrap();
    assert_eq!(x.metrics, y.metrics);
    assert_eq!(x.deflated, y.deflated);
    assert_eq!(x.pbo, y.pbo);
    let _ = stop.send(());
}

/// Goes long when the next close is higher: it reads bar t+1 at bar t.
struct PeekOneBar;

#[async_trait]
impl Signals for PeekOneBar {
    fn describe(&self) -> String {
        "peeks one bar ahead".into()
    }
    async fn predict(&self, bars: &Bars, from: usize) -> Result<Vec<f64>, SignalError> {
        Ok((from..bars.len())
            .map(|t| {
                bars.close
                    .get(t + 1)
                    .map_or(0.0, |next| next - bars.close[t])
            })
            .collect())
    }
}

fn gate(outcome: &Outcome, gates: &Gates, name: &str) -> Verdict {
    evaluate(outcome, gates)
        .into_iter()
        .find(|g| g.name == name)
        .map(|g| g.verdict)
        .unwrap()
}

#[tokio::test]
async fn the_look_ahead_detector_catches_a_one_bar_peek() {
    let bars = fixture_bars(3_000);
    let p = plan(|_| {});
    let peek = run_plan(&p, &bars, DAY_NS, Some(&PeekOneBar), 9)
        .await
        .unwrap();
    // It looks wonderful...
    assert!(peek.metrics.sharpe > 5.0, "{}", peek.metrics.sharpe);
    // ...and is caught.
    assert_eq!(gate(&peek, &p.gates, "no_lookahead"), Verdict::Fail);
    let m = peek.lookahead.as_ref().unwrap().mismatch.unwrap();
    assert_eq!(
        m.bar + 1,
        m.cut,
        "the bar just before the cut changes: {m:?}"
    );

    let model = EngineModel::new(Arc::new(
        Model::from_artifact(gauntlet_fixtures::reference_ensemble()).unwrap(),
    ))
    .unwrap();
    let honest = run_plan(&p, &bars, DAY_NS, Some(&model), 9).await.unwrap();
    assert_eq!(gate(&honest, &p.gates, "no_lookahead"), Verdict::Pass);
    let ma = plan(|c| c.strategy = Some("ma-cross:10,50".into()));
    let ma = run_plan(&ma, &bars, DAY_NS, None, 9).await.unwrap();
    assert_eq!(gate(&ma, &p.gates, "no_lookahead"), Verdict::Pass);
    assert!(ma.lookahead.as_ref().unwrap().compared > 1_000);
}

/// A driftless random walk: no strategy has an edge on it.
fn random_walk(seed: u64, n: usize) -> Bars {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut normal = || {
        (0..12)
            .map(|_| (rng.next_u32() as f64) / 4_294_967_296.0)
            .sum::<f64>()
            - 6.0
    };
    let mut bars = Bars::default();
    let mut close = 100.0;
    for i in 0..n {
        let open = close;
        close *= 1.0 + 0.01 * normal();
        bars.ts_ns.push(i as i64 * DAY_NS);
        bars.open.push(open);
        bars.high.push(open.max(close) * 1.002);
        bars.low.push(open.min(close) * 0.998);
        bars.close.push(close);
        bars.volume.push(1_000.0);
    }
    data::validate_bars(&bars).unwrap();
    bars
}

#[tokio::test]
async fn the_dsr_gate_fails_a_strategy_that_only_looks_good_after_many_trials() {
    let bars = random_walk(4, 4_000);
    let gates = Gates {
        dsr_min: Some(0.95),
        ..Gates::default()
    };
    // The best of the 100-point moving-average sweep, reported as if it were the only try...
    let naive = plan(|c| {
        c.strategy = Some("ma-cross:10,50".into());
        c.pick_best = true;
        c.gates = gates;
    });
    let best = run_plan(&naive, &bars, DAY_NS, None, 3).await.unwrap();
    assert_eq!(best.deflated.trials, 100, "every trial of the sweep counts");
    assert_eq!(
        gate(&best, &gates, "dsr_min"),
        Verdict::Fail,
        "{:?}",
        best.deflated
    );
    // ...looks convincing on its own: the PSR against 0 is high.
    assert!(best.psr > 0.95, "PSR {}", best.psr);
    assert!(
        best.deflated.dsr < best.psr - 0.2,
        "{} vs {}",
        best.deflated.dsr,
        best.psr
    );

    // The model with a real edge passes the same gate.
    let fixture = fixture_bars(20_000);
    let model = EngineModel::new(Arc::new(
        Model::from_artifact(gauntlet_fixtures::reference_ensemble()).unwrap(),
    ))
    .unwrap();
    let honest = plan(|c| c.gates = gates);
    let good = run_plan(&honest, &fixture, DAY_NS, Some(&model), 3)
        .await
        .unwrap();
    assert_eq!(
        gate(&good, &gates, "dsr_min"),
        Verdict::Pass,
        "{:?}",
        good.deflated
    );
}

/// The reported run is the same whether the walk-forward's last re-run is handed back
/// (`--no-sweep`, a picked trial) or it is run afresh (the configured crossover not chosen
/// last): every return, position and trade of a fresh `run` of its predictions, and the
/// cost check's gross return that of a fresh run without costs.
#[tokio::test]
async fn the_reported_run_is_a_fresh_run_of_its_predictions() {
    use gauntlet_backtest::exec::Costs;
    use gauntlet_backtest::signals::MaCross;
    use gauntlet_backtest::sweep::{ExecParams, run};
    let bars = random_walk(6, 6_000);
    let fresh = |bars: &Bars, predictions: &[f64], params: &ExecParams| {
        let free = ExecParams {
            costs: Costs::default(),
            ..*params
        };
        let gross = run(&bars.open, &bars.close, predictions, &free);
        (
            run(&bars.open, &bars.close, predictions, params),
            gross.returns.iter().fold(1.0, |e, r| e * (1.0 + r)) - 1.0,
        )
    };
    let check = |o: &Outcome, predictions: &[f64], what: &str| {
        let (want, gross) = fresh(&bars, predictions, &o.exec);
        assert_eq!(bits(&o.execution.returns), bits(&want.returns), "{what}");
        assert_eq!(bits(&o.execution.held), bits(&want.held), "{what}");
        assert_eq!(o.execution.trades, want.trades, "{what}");
        assert_eq!(
            o.execution.traded.to_bits(),
            want.traded.to_bits(),
            "{what}"
        );
        assert_eq!(
            o.costs.gross_total_return.unwrap().to_bits(),
            gross.to_bits(),
            "{what}"
        );
    };
    for (sweep, pick_best) in [(false, false), (true, false), (true, true)] {
        let p = plan(|c| {
            c.strategy = Some("ma-cross:10,50".into());
            c.sweep = sweep;
            c.pick_best = pick_best;
            c.fees_bps = 5.0;
        });
        let o = run_plan(&p, &bars, DAY_NS, None, 3).await.unwrap();
        let m = MaCross::parse(o.signal.as_str()).unwrap();
        check(
            &o,
            &m.spread(&bars.close),
            &format!("sweep {sweep}, pick {pick_best}"),
        );
    }
    // One backtest alone, checks skipped: executed straight from the streamed spread, the
    // same run; no run without costs happened, so no gross figure; the one trial summed
    // from the stored returns is the streamed trial's, bit for bit.
    for sweep in [false, true] {
        let p = plan(|c| {
            c.strategy = Some("ma-cross:10,50".into());
            c.sweep = sweep;
            c.checks = false;
            c.fees_bps = 5.0;
        });
        let o = run_plan(&p, &bars, DAY_NS, None, 3).await.unwrap();
        let (want, _) = fresh(
            &bars,
            &MaCross::parse("ma-cross:10,50")
                .unwrap()
                .spread(&bars.close),
            &o.exec,
        );
        assert_eq!(
            bits(&o.execution.returns),
            bits(&want.returns),
            "sweep {sweep}"
        );
        assert_eq!(bits(&o.execution.held), bits(&want.held), "sweep {sweep}");
        assert_eq!(o.execution.trades, want.trades, "sweep {sweep}");
        assert_eq!(o.costs.gross_total_return, None);
        assert!(o.lookahead.is_none() && o.walk_forward.is_none());
        let streamed = gauntlet_backtest::sweep::sweep(
            &bars.open,
            &bars.close,
            std::iter::once((
                o.signal.clone(),
                MaCross::parse(&o.signal).unwrap().spread_iter(&bars.close),
            )),
            &o.exec,
            o.annualisation.periods_per_year,
            p.pbo_blocks,
            p.folds + 1,
        );
        let i = if sweep {
            o.sweep
                .trials
                .iter()
                .position(|t| t.label == o.signal)
                .unwrap()
        } else {
            0
        };
        let (a, b) = (&o.sweep.trials[i], &streamed.trials[0]);
        assert_eq!(a.moments.sharpe.to_bits(), b.moments.sharpe.to_bits());
        assert_eq!(a.sharpe.to_bits(), b.sharpe.to_bits());
        assert_eq!(a, b, "sweep {sweep}");
    }
    // The run executed on a file's close prices while the rest loads is the run executed
    // afterwards, bit for bit; only a next-close fill (which reads no open) runs early.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("walk.parquet");
    data::write_parquet(&bars, &file).unwrap();
    for fill in [Fill::NextClose, Fill::NextOpen] {
        let p = plan(|c| {
            c.file = Some(file.clone());
            c.strategy = Some("ma-cross:10,50".into());
            c.sweep = false;
            c.checks = false;
            c.fees_bps = 5.0;
            c.fill = fill;
        });
        let (loaded, info, early) = load_bars_and_run(&p).unwrap();
        assert_eq!(early.is_some(), fill == Fill::NextClose, "{fill}");
        let median = info.gaps.median_interval_ns;
        let with = run_plan_with(&p, &loaded, median, None, 3, early)
            .await
            .unwrap();
        let without = run_plan(&p, &loaded, median, None, 3).await.unwrap();
        let (a, b) = (&with.execution, &without.execution);
        assert_eq!(bits(&a.returns), bits(&b.returns), "{fill}");
        assert_eq!(bits(&a.held), bits(&b.held), "{fill}");
        assert_eq!(bits(&a.traded_by_bar), bits(&b.traded_by_bar), "{fill}");
        assert_eq!(a.trades, b.trades, "{fill}");
        assert_eq!(
            [a.fees.to_bits(), a.slippage.to_bits(), a.traded.to_bits()],
            [b.fees.to_bits(), b.slippage.to_bits(), b.traded.to_bits()]
        );
        assert!(a.trades.len() > 10, "{}", a.trades.len());
    }
    let model = EngineModel::new(Arc::new(
        Model::from_artifact(gauntlet_fixtures::reference_ensemble()).unwrap(),
    ))
    .unwrap();
    let fixture = fixture_bars(3_000);
    let predictions = model.predict(&fixture, 0).await.unwrap();
    let grid = gauntlet_backtest::suite::deadband_grid(&predictions);
    let p = plan(|c| c.pick_best = true);
    let o = run_plan(&p, &fixture, DAY_NS, Some(&model), 3)
        .await
        .unwrap();
    let d = grid[o.sweep.best().unwrap()];
    let deadbanded: Vec<f64> = predictions
        .iter()
        .map(|&x| if x.abs() > d { x } else { 0.0 })
        .collect();
    let (want, _) = fresh(&fixture, &deadbanded, &o.exec);
    assert_eq!(
        bits(&o.execution.returns),
        bits(&want.returns),
        "picked model"
    );
    assert_eq!(o.execution.trades, want.trades, "picked model");
}

#[tokio::test]
async fn each_threshold_gate_fails_on_a_strategy_without_an_edge() {
    let bars = random_walk(5, 4_000);
    let gates = Gates {
        sharpe_min: Some(0.5),
        max_drawdown: Some(0.1),
        hit_rate_min: Some(0.6),
        turnover_max: Some(1.0),
        walk_forward_sharpe_min: Some(0.5),
        dsr_min: Some(0.95),
        pbo_max: Some(0.2),
    };
    let p = plan(|c| {
        c.strategy = Some("ma-cross:10,50".into());
        c.gates = gates;
    });
    let o = run_plan(&p, &bars, DAY_NS, None, 1).await.unwrap();
    for name in [
        "sharpe_min",
        "max_drawdown",
        "hit_rate_min",
        "turnover_max",
        "walk_forward",
        "dsr_min",
        "pbo_max",
    ] {
        assert_eq!(
            gate(&o, &gates, name),
            Verdict::Fail,
            "{name}: {:?}",
            evaluate(&o, &gates)
        );
    }
    assert_eq!(gate(&o, &gates, "no_lookahead"), Verdict::Pass);
    assert_eq!(gate(&o, &gates, "costs_applied"), Verdict::Pass);
    // An unset gate is skipped, not passed.
    assert!(matches!(
        gate(&o, &Gates::default(), "sharpe_min"),
        Verdict::Skip(_)
    ));

    // The cost gate checks the cost model on the run: tamper with what it saw.
    let mut tampered = o.clone();
    tampered.costs.max_deviation = 1e-4;
    assert_eq!(gate(&tampered, &gates, "costs_applied"), Verdict::Fail);
    let mut free = o.clone();
    free.costs.net_total_return = free.costs.gross_total_return.unwrap();
    assert_eq!(gate(&free, &gates, "costs_applied"), Verdict::Fail);
}

/// Settings of the repository's gauntlet.toml, default profile.
fn repo_settings() -> Settings {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gauntlet.toml");
    let file = ConfigFile::read(&path).unwrap();
    Settings::resolve(Some((&file, &path)), "default", &Profile::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phase_meets_the_repository_gates_honestly_through_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = repo_settings();
    settings.report_dir = dir.path().to_owned();
    let phase = BacktestSuite;
    let planned = phase.gates(&settings).unwrap();
    assert_eq!(planned.len(), 9);
    let target: Arc<dyn Target> = Arc::new(
        InProcess::with_models(
            EngineConfig::default(),
            gauntlet_fixtures::load_embedded().unwrap(),
        )
        .unwrap(),
    );
    let ctx = SuiteCtx {
        target,
        settings,
        planned,
        progress: false,
    };
    let out = phase.run(ctx).await.unwrap();
    assert_eq!(out.cases.len(), 9);
    for case in &out.cases {
        assert_eq!(
            case.outcome,
            CaseOutcome::Pass,
            "{}: {:?}",
            case.id,
            case.message
        );
        assert!(
            case.message.as_deref().unwrap_or("").contains(" floor ")
                || case.message.as_deref().unwrap_or("").contains(" ceiling ")
                || case.name == "no_lookahead"
                || case.name == "costs_applied"
        );
    }
    let section = &out.sections[0];
    assert_eq!(section.suite, "backtest");
    assert!(
        section
            .charts
            .iter()
            .all(|c| c.series.iter().all(|s| s.points.len() <= 2_000))
    );
    let titles: Vec<&str> = section.charts.iter().map(|c| c.title.as_str()).collect();
    let expected = [
        "Equity (net of costs) against buy-and-hold",
        "Drawdown",
        "Rolling Sharpe (",
        "Distribution of daily returns (",
        "Walk-forward Sharpe per fold",
    ];
    assert_eq!(titles.len(), expected.len(), "{titles:?}");
    for (title, prefix) in titles.iter().zip(expected) {
        assert!(title.starts_with(prefix), "{title:?} vs {prefix:?}");
    }
    // Every time axis is calendar dates; the equity curve has buy-and-hold beside it and a
    // line at each walk-forward fold.
    for chart in &section.charts[..3] {
        assert_eq!(
            chart.x_axis,
            gauntlet_reports::XAxis::Time,
            "{}",
            chart.title
        );
    }
    let equity = &section.charts[0];
    assert_eq!(equity.series[1].name, "buy and hold (no costs)");
    assert_eq!(
        equity.markers.len(),
        section
            .tables
            .iter()
            .find(|t| t.title == "Walk-forward folds")
            .unwrap()
            .rows
            .len()
    );
    let tables: Vec<&str> = section.tables.iter().map(|t| t.title.as_str()).collect();
    for wanted in [
        "Worst 5 drawdowns",
        "Monthly and yearly returns",
        "Trades: the first and last",
    ] {
        assert!(
            tables.iter().any(|t| t.starts_with(wanted)),
            "{wanted}: {tables:?}"
        );
    }
    assert!(dir.path().join("trades.csv").exists() && dir.path().join("returns.parquet").exists());
    assert!(section.notes.iter().any(|n| n.contains("periods per year")));
}

#[tokio::test]
async fn the_phase_skips_every_gate_when_the_target_lacks_the_model() {
    let settings = repo_settings();
    let target: Arc<dyn Target> =
        Arc::new(InProcess::with_models(EngineConfig::default(), vec![]).unwrap());
    let ctx = SuiteCtx {
        target,
        settings,
        planned: vec![
            PlannedCase::new("sharpe_min", &["BT-METRICS"]),
            PlannedCase::new("dsr_min", &["BT-DSR"]),
        ],
        progress: false,
    };
    let out = BacktestSuite.run(ctx).await.unwrap();
    assert_eq!(out.cases.len(), 2);
    for case in &out.cases {
        let CaseOutcome::Skip { reason } = &case.outcome else {
            panic!("{case:?}");
        };
        assert!(
            reason.contains("does not serve model \"ref-ensemble\""),
            "{reason}"
        );
    }
}

#[test]
fn the_phase_names_a_bad_key() {
    let mut settings = Settings::default();
    let table: toml::Table = "fees-bps = -3".parse().unwrap();
    settings.sections.insert("backtest".into(), table);
    let e = BacktestSuite.gates(&settings).unwrap_err();
    assert_eq!(e.to_string(), "fees-bps = -3 is out of range: 0 to 1000");
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BacktestArgs,
}

/// `gauntlet backtest` through the composition root, as the binary runs it; `args[0]` is the
/// program name.
fn run_cli<'a>(args: impl IntoIterator<Item = &'a str>) -> u8 {
    let mut all = vec!["gauntlet", "backtest"];
    all.extend(args.into_iter().skip(1));
    gauntlet::main_with(&gauntlet::registry(), all, &mut Vec::new())
}

/// Daily-like bars with regimes: trends up and down, quiet and wild sideways stretches, and
/// flat stretches (every price equal, so the moving averages tie), seeded.
fn regime_bars(seed: u64, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut uniform = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    // (bars, drift per bar, volatility per bar); volatility 0 is a flat stretch.
    let regimes = [
        (300, 0.002, 0.010),
        (90, 0.0, 0.0),
        (250, -0.003, 0.012),
        (200, 0.0, 0.025),
        (60, 0.0, 0.0),
        (300, 0.001, 0.006),
        (150, -0.001, 0.020),
    ];
    let (mut open, mut close) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut price = 100.0_f64;
    for &(len, drift, vol) in regimes.iter().cycle() {
        for _ in 0..len {
            if close.len() == n {
                return (open, close);
            }
            if vol == 0.0 {
                open.push(price);
                close.push(price);
                continue;
            }
            // A sum of four uniforms: near-normal shocks.
            let z = ((0..4).map(|_| uniform()).sum::<f64>() - 2.0) * 3f64.sqrt();
            let o = price * (1.0 + 0.2 * vol * (uniform() - 0.5));
            price *= 1.0 + drift + vol * z;
            open.push(o);
            close.push(price);
        }
    }
    (open, close)
}

/// Relative agreement: `|a − b| ≤ tol · max(|a|, |b|)`.
fn agree(a: f64, b: f64, tol: f64) -> bool {
    a == b || (a - b).abs() <= tol * a.abs().max(b.abs())
}

/// The units model against vectorbt's `Portfolio.from_signals` (long/short and long-only,
/// both fills, with and without fees and slippage): total return, max drawdown, trade count
/// and every trade's return within 1e-9 relative. Needs python3 with vectorbt and pandas
/// (`GAUNTLET_PYTHON` names another interpreter); skipped with the reason when they are
/// missing, unless `GAUNTLET_REQUIRE_VECTORBT` is set (CI), where that is a failure.
#[test]
fn the_units_model_agrees_with_vectorbt() {
    use gauntlet_backtest::exec::{Costs, Fill, PositionModel, Sizing};
    use gauntlet_backtest::metrics::compute;
    use gauntlet_backtest::signals::MaCross;
    use gauntlet_backtest::sweep::{ExecParams, run};

    let Some(python) = python_with("vectorbt, pandas", "vectorbt") else {
        return;
    };

    let (open, close) = regime_bars(16, 2_400);
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("open,close\n");
    for (o, c) in open.iter().zip(&close) {
        csv.push_str(&format!("{o:?},{c:?}\n"));
    }
    std::fs::write(dir.path().join("prices.csv"), csv).unwrap();

    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (fast, slow) in [(10, 50), (5, 20)] {
        let spread = MaCross::new(fast, slow).unwrap().spread(&close);
        assert!(
            spread.iter().filter(|x| **x == 0.0).count() > 50,
            "the flat stretches must give ties"
        );
        for fill in [Fill::NextClose, Fill::NextOpen] {
            for long_only in [false, true] {
                for (fees_bps, slippage_bps) in [(0.0, 0.0), (10.0, 5.0)] {
                    let params = ExecParams {
                        fill,
                        model: PositionModel::Units,
                        costs: Costs {
                            fees_bps,
                            slippage_bps,
                        },
                        sizing: Sizing::default(),
                        long_only,
                    };
                    let targets: Vec<f64> = spread
                        .iter()
                        .map(|&p| gauntlet_backtest::exec::size_one(p, params.sizing, long_only))
                        .collect();
                    let name = format!(
                        "ma-cross:{fast},{slow} {fill} {} fees {fees_bps} slippage {slippage_bps}",
                        if long_only { "long-only" } else { "long/short" }
                    );
                    cases.push(serde_json::json!({
                        "name": name,
                        "fill": fill.to_string(),
                        "direction": if long_only { "longonly" } else { "both" },
                        "fees": fees_bps / 1e4,
                        "slippage": slippage_bps / 1e4,
                        "targets": targets,
                    }));
                    let e = run(&open, &close, &spread, &params);
                    ours.push((name, compute(&e, 252.0, 0.0), e.trades));
                }
            }
        }
    }
    std::fs::write(
        dir.path().join("cases.json"),
        serde_json::to_vec(&cases).unwrap(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectorbt_agreement.py");
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(theirs.len(), ours.len());
    let tol = 1e-9;
    for ((name, m, trades), v) in ours.iter().zip(&theirs) {
        assert_eq!(v["name"], name.as_str());
        let f = |k: &str| v[k].as_f64().unwrap();
        assert!(
            agree(m.total_return, f("total_return"), tol),
            "{name}: total return {} vs vectorbt {}",
            m.total_return,
            f("total_return")
        );
        assert!(
            agree(m.max_drawdown, f("max_drawdown"), tol),
            "{name}: max drawdown {} vs vectorbt {}",
            m.max_drawdown,
            f("max_drawdown")
        );
        assert_eq!(m.trades as u64, v["trades"].as_u64().unwrap(), "{name}");
        assert!(m.trades > 5, "{name}: {} trades", m.trades);
        let rets = v["trade_returns"].as_array().unwrap();
        for (k, (t, r)) in trades.iter().zip(rets).enumerate() {
            let r = r.as_f64().unwrap();
            assert!(
                agree(t.ret, r, tol),
                "{name}: trade {k} ({:?}) return {} vs vectorbt {r}",
                t,
                t.ret
            );
        }
        println!(
            "{name}: total return {:.6}, max drawdown {:.6}, {} trades — agree",
            m.total_return, m.max_drawdown, m.trades
        );
    }
}

fn report_values(dir: &Path) -> serde_json::Value {
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    report["sections"][0]["values"].clone()
}

fn case_message(dir: &Path, name: &str) -> String {
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Regression: the sort and duplicate errors printed raw nanoseconds; they show the file's
/// own timestamp text now. An empty file says so, not `column "timestamp" not found`.
#[test]
fn timestamp_errors_show_the_files_own_text_and_an_empty_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let bars = load(&sample()).unwrap().bars;
    let mut rows = sample_rows(&bars, |ns| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .format("%Y-%m-%d")
            .to_string()
    });
    rows[9] = rows[8].clone();
    let path = dir.path().join("dup.csv");
    write_csv(&path, HEADER, &rows);
    let e = load(&path).unwrap_err().to_string();
    assert!(e.contains("row 10 (line 11)"), "{e}");
    assert!(
        e.contains("timestamp \"2024-01-09\" is a duplicate of the previous row's \"2024-01-09\""),
        "{e}"
    );
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let e = load(&empty).unwrap_err().to_string();
    assert!(e.contains("the file is empty"), "{e}");
}

/// Regression: `--columns Date,Open,High,Low,Close,Volume` (the README's form) was refused;
/// `--fees-bps -5` said "unexpected argument '-5'" instead of naming the flag.
/// Parquet stores numbers, not text: its timestamp errors show the RFC 3339 rendering — a
/// duplicate, a step backwards, and a microsecond datetime in the year 3000, beyond Unix
/// nanoseconds (it once printed only the raw count of microseconds).
#[test]
fn parquet_timestamp_errors_show_rfc3339() {
    use polars::prelude::{Column, DataFrame, DataType, NamedFrom, ParquetWriter, Series};
    let rfc3339 = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    let dir = tempfile::tempdir().unwrap();
    let bars = load(&sample()).unwrap().bars;
    let mut dup = bars.clone();
    dup.ts_ns[9] = dup.ts_ns[8];
    let mut back = bars.clone();
    back.ts_ns[9] = back.ts_ns[8] - 3_600_000_000_000;
    for (name, broken, what) in [("dup", dup, "a duplicate of"), ("back", back, "before")] {
        let path = dir.path().join(format!("{name}.parquet"));
        data::write_parquet(&broken, &path).unwrap();
        let e = load(&path).unwrap_err().to_string();
        let expected = format!(
            "row 10, column \"timestamp\": timestamp {} is {what} the previous row's {}",
            rfc3339(broken.ts_ns[9]),
            rfc3339(broken.ts_ns[8])
        );
        assert!(e.contains(&expected), "{e}\n{expected}");
    }

    // 3000-01-01T00:00:00Z and the days after it, stored as microseconds.
    let year_3000_us = 32_503_680_000_000_000_i64;
    let micros: Vec<i64> = (0..bars.len() as i64)
        .map(|i| year_3000_us + i * 86_400_000_000)
        .collect();
    let ts = Series::new("timestamp".into(), &micros)
        .cast(&DataType::Datetime(
            polars::prelude::TimeUnit::Microseconds,
            None,
        ))
        .unwrap();
    let mut frame = DataFrame::new(
        bars.len(),
        vec![
            Column::from(ts),
            Column::from(Series::new("open".into(), &bars.open)),
            Column::from(Series::new("high".into(), &bars.high)),
            Column::from(Series::new("low".into(), &bars.low)),
            Column::from(Series::new("close".into(), &bars.close)),
            Column::from(Series::new("volume".into(), &bars.volume)),
        ],
    )
    .unwrap();
    let path = dir.path().join("year-3000.parquet");
    ParquetWriter::new(std::fs::File::create(&path).unwrap())
        .finish(&mut frame)
        .unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert!(
        e.ends_with(
            "row 1, column \"timestamp\": timestamp 3000-01-01T00:00:00Z \
             (32503680000000000 microseconds) is out of range (years 1677 to 2262)"
        ),
        "{e}"
    );
}

#[test]
fn columns_in_one_argument_and_a_negative_fee_named() {
    let dir = tempfile::tempdir().unwrap();
    let bars = load(&sample()).unwrap().bars;
    let renamed = dir.path().join("renamed.csv");
    write_csv(
        &renamed,
        "Date,Open,High,Low,Close,Volume",
        &sample_rows(&bars, |ns| (ns / 1_000_000_000).to_string()),
    );
    let out = dir.path().join("out");
    let parsed = Cli::try_parse_from([
        "gauntlet-backtest",
        "--columns",
        "Date,Open,High,Low,Close,Volume",
        "--fees-bps",
        "-5",
    ])
    .unwrap();
    assert_eq!(parsed.args.columns.as_ref().map(Vec::len), Some(6));
    assert_eq!(parsed.args.fees_bps, Some(-5.0));
    let e = Plan::from_config(&BacktestConfig {
        fees_bps: -5.0,
        ..BacktestConfig::default()
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "fees-bps = -5 is out of range: 0 to 1000");
    let config = dir.path().join("gauntlet.toml");
    std::fs::write(&config, "[profile.default]\n").unwrap();
    let run = |extra: &[&str]| {
        let mut all = vec!["gauntlet-backtest", "--config", config.to_str().unwrap()];
        all.extend_from_slice(extra);
        run_cli(all)
    };
    let code = run(&[
        "--data",
        renamed.to_str().unwrap(),
        "--columns",
        "Date,Open,High,Low,Close,Volume",
        "--strategy",
        "ma-cross:10,50",
        "--no-sweep",
        "--report-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let code = run(&[
        "--data",
        renamed.to_str().unwrap(),
        "--fees-bps",
        "-5",
        "--report-dir",
        dir.path().join("never").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(!dir.path().join("never").exists());
}

/// A warm-up longer than the data, or no trade at all: the gates on the undefined metrics
/// fail (exit 1) naming the metric and the reason, and report.json holds `null`, not a
/// number. `--no-sweep` runs one backtest (N = 1); the sweep's 100 trials count in N.
#[test]
fn degenerate_runs_exit_1_naming_the_undefined_metric() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gauntlet.toml");
    std::fs::write(&config, "[profile.default]\n").unwrap();
    let sample = sample();
    let run = |extra: &[&str], out: &Path| {
        let mut all = vec![
            "gauntlet-backtest",
            "--config",
            config.to_str().unwrap(),
            "--data",
            sample.to_str().unwrap(),
            "--report-dir",
            out.to_str().unwrap(),
        ];
        all.extend_from_slice(extra);
        run_cli(all)
    };
    let out = dir.path().join("warmup");
    let code = run(
        &[
            "--strategy",
            "ma-cross:10,5000",
            "--no-sweep",
            // The walk-forward is a check (skipped with --no-sweep alone).
            "--checks",
            "--sharpe-min",
            "0",
            "--walk-forward-sharpe-min",
            "0",
        ],
        &out,
    );
    assert_eq!(code, 1);
    let m = case_message(&out, "sharpe_min");
    assert!(
        m.contains("annualised Sharpe is undefined on this run"),
        "{m}"
    );
    assert!(
        m.contains("warm-up of the slow moving average (5000 bars)"),
        "{m}"
    );
    let m = case_message(&out, "walk_forward");
    assert!(m.contains("is undefined on this run"), "{m}");
    assert!(m.contains("made no trade"), "{m}");
    let v = report_values(&out);
    assert!(v["metrics.sharpe"].is_null(), "{v}");
    assert_eq!(v["metrics.trades"], 0.0);

    let alone = dir.path().join("alone");
    assert_eq!(
        run(&["--strategy", "ma-cross:10,50", "--no-sweep"], &alone),
        0
    );
    let v = report_values(&alone);
    assert_eq!(v["sweep.trials"], 1.0);
    assert_eq!(v["dsr.trials"], 1.0);
    assert!(v["pbo"].is_null());
    let swept = dir.path().join("swept");
    assert_eq!(
        run(&["--strategy", "ma-cross:10,50", "--trials", "5"], &swept),
        0
    );
    let v = report_values(&swept);
    assert_eq!(v["sweep.trials"], 100.0);
    assert_eq!(
        v["dsr.trials"], 104.0,
        "5 declared (this one among them) and 99 more swept"
    );
}

/// The Python interpreter (`GAUNTLET_PYTHON`, else python3), when it imports `modules`
/// (`module`'s version printed); `None`, with the reason printed, when it cannot, unless
/// `GAUNTLET_REQUIRE_VECTORBT` is set (CI's vectorbt lane, which installs the peers), where
/// that is a failure.
fn python_with(modules: &str, module: &str) -> Option<String> {
    let python = std::env::var("GAUNTLET_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = std::process::Command::new(&python)
        .args([
            "-c",
            &format!("import {modules}; print({module}.__version__)"),
        ])
        .output();
    match probe {
        Ok(o) if o.status.success() => {
            let version = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            println!("{module} {version}");
            Some(python)
        }
        other => {
            let why = match other {
                // Python's last line names the missing module.
                Ok(o) => String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .to_owned(),
                Err(e) => e.to_string(),
            };
            let reason = format!("{python} cannot import {modules}: {why}");
            assert!(
                std::env::var_os("GAUNTLET_REQUIRE_VECTORBT").is_none(),
                "{reason}"
            );
            println!("skipped: {reason}");
            None
        }
    }
}

/// returns.parquet, written through polars-parquet's own writer, reads in pyarrow (the
/// reader pandas, DuckDB and Spark users have) as polars reads it: the same columns, every
/// value's bits, the timestamps tagged UTC, one row group per 262,144 rows. Needs python3
/// with pyarrow; skipped like the vectorbt agreement.
#[test]
fn returns_parquet_reads_the_same_in_pyarrow() {
    let Some(python) = python_with("pyarrow.parquet", "pyarrow") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Two row groups and a part of a third.
    let bars = gauntlet_fixtures::generate_ohlcv_every(7, 600_000, 60).unwrap();
    let data = dir.path().join("bars.parquet");
    gauntlet_backtest::data::write_parquet(&bars, &data).unwrap();
    let config = dir.path().join("gauntlet.toml");
    std::fs::write(&config, "[profile.default]\n").unwrap();
    let out = dir.path().join("out");
    run_cli([
        "gauntlet-backtest",
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--strategy",
        "ma-cross:10,50",
        "--no-sweep",
        "--report-dir",
        out.to_str().unwrap(),
    ]);
    let file = out.join("returns.parquet");
    // Each column's values buffer, little-endian, as pyarrow decoded it.
    let script = r#"
import sys, pyarrow.parquet as pq
f = pq.ParquetFile(sys.argv[1])
t = f.read()
print(f.metadata.num_row_groups, t.schema.field("timestamp").type, f.schema.column(0).logical_type.to_json())
for name in t.column_names:
    a = t.column(name).combine_chunks()
    assert a.null_count == 0 and a.offset == 0, name
    open(sys.argv[2] + "/" + name + ".bin", "wb").write(a.buffers()[1].to_pybytes()[: 8 * len(a)])
"#;
    let output = std::process::Command::new(&python)
        .args([
            "-c",
            script,
            file.to_str().unwrap(),
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let periods = bars.len() - 1;
    assert!(
        stdout.starts_with("3 timestamp[ns, tz=UTC] ")
            && stdout.contains(r#""isAdjustedToUTC":true"#),
        "{stdout}"
    );
    use polars::prelude::{DataType, ParquetReader, SerReader};
    let frame = ParquetReader::new(std::fs::File::open(&file).unwrap())
        .finish()
        .unwrap();
    assert_eq!(frame.height(), periods);
    for name in ["timestamp", "position", "equity", "return", "drawdown"] {
        let theirs = std::fs::read(dir.path().join(format!("{name}.bin"))).unwrap();
        let column = frame.column(name).unwrap();
        let ours: Vec<u8> = if name == "timestamp" {
            let ts = column.cast(&DataType::Int64).unwrap();
            ts.i64()
                .unwrap()
                .into_no_null_iter()
                .flat_map(i64::to_le_bytes)
                .collect()
        } else {
            column
                .f64()
                .unwrap()
                .into_no_null_iter()
                .flat_map(f64::to_le_bytes)
                .collect()
        };
        assert_eq!(theirs.len(), 8 * periods, "{name}");
        assert!(
            theirs == ours,
            "{name}: pyarrow and polars read different values"
        );
    }
}

/// trades.csv and the returns read back, returns.parquet (the default) and returns.csv
/// alike: the total return recomputed from the returns equals report.json's to 1e-12, the
/// trades and their fees add up to its figures.
#[test]
fn exports_round_trip_to_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gauntlet.toml");
    std::fs::write(&config, "[profile.default]\n").unwrap();
    let out = dir.path().join("out");
    let sample = sample();
    let code = run_cli([
        "gauntlet-backtest",
        "--config",
        config.to_str().unwrap(),
        "--data",
        sample.to_str().unwrap(),
        "--strategy",
        "ma-cross:5,20",
        "--fees-bps",
        "10",
        "--slippage-bps",
        "5",
        "--report-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(out.join("returns.parquet").exists(), "Parquet by default");
    exports_match_the_report(&out);
    // The same run with the returns as CSV: the same figures from the text.
    let csv = dir.path().join("csv");
    let code = run_cli([
        "gauntlet-backtest",
        "--config",
        config.to_str().unwrap(),
        "--data",
        sample.to_str().unwrap(),
        "--strategy",
        "ma-cross:5,20",
        "--fees-bps",
        "10",
        "--slippage-bps",
        "5",
        "--returns-format",
        "csv",
        "--report-dir",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    exports_match_the_report(&csv);
    assert_eq!(exported_returns(&out), exported_returns(&csv));
}

/// `--no-sweep` runs one backtest alone: the look-ahead detector, the cost check and the
/// walk-forward (which re-run it) and PBO (which needs the sweep) are skipped, each with the
/// reason and how to run it, never passed, and report.json has no figure of theirs;
/// `--checks` runs the three again (PBO stays skipped), and the run's own figures are the
/// same either way.
#[test]
fn no_sweep_skips_the_re_runs_naming_how_to_run_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gauntlet.toml");
    std::fs::write(&config, "[profile.default]\n").unwrap();
    let sample = sample();
    let run = |extra: &[&str], out: &Path| {
        let mut all = vec![
            "gauntlet-backtest",
            "--config",
            config.to_str().unwrap(),
            "--data",
            sample.to_str().unwrap(),
            "--strategy",
            "ma-cross:5,20",
            "--no-sweep",
            "--pbo-max",
            "0.5",
            "--walk-forward-sharpe-min",
            "-100",
            "--report-dir",
            out.to_str().unwrap(),
        ];
        all.extend_from_slice(extra);
        run_cli(all)
    };
    let case = |out: &Path, name: &str| {
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        report["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    let alone = dir.path().join("alone");
    assert_eq!(run(&[], &alone), 0);
    for name in ["no_lookahead", "costs_applied", "walk_forward", "pbo_max"] {
        let c = case(&alone, name);
        assert_eq!(c["outcome"]["status"], "skip", "{name}: {c}");
        let why = c["outcome"]["reason"].as_str().unwrap();
        assert!(why.contains("--no-sweep"), "{name}: {why}");
        let how = if name == "pbo_max" {
            "drop --no-sweep"
        } else {
            "add --checks"
        };
        assert!(why.contains(how), "{name}: {why}");
    }
    let v = report_values(&alone);
    assert!(v["costs.gross_total_return"].is_null(), "{v}");
    assert!(v.get("walk_forward.oos_sharpe").is_none(), "{v}");
    assert!(v["pbo"].is_null(), "{v}");

    let checked = dir.path().join("checked");
    assert_eq!(run(&["--checks"], &checked), 0);
    for name in ["no_lookahead", "costs_applied", "walk_forward"] {
        let c = case(&checked, name);
        assert_eq!(c["outcome"]["status"], "pass", "{name}: {c}");
    }
    assert_eq!(case(&checked, "pbo_max")["outcome"]["status"], "skip");
    let w = report_values(&checked);
    assert!(
        w["costs.gross_total_return"].as_f64().unwrap()
            > w["metrics.total_return"].as_f64().unwrap()
    );
    assert!(w["walk_forward.oos_sharpe"].is_f64(), "{w}");
    // The run's own figures do not depend on the checks.
    for (key, x) in v.as_object().unwrap() {
        if !x.is_null() {
            assert_eq!(x, &w[key], "{key}");
        }
    }
    // --checks means nothing without --no-sweep (every check runs then): refused.
    assert_eq!(
        run_cli([
            "gauntlet-backtest",
            "--checks",
            "--report-dir",
            dir.path().join("x").to_str().unwrap()
        ]),
        2
    );
}

/// `--no-exports` writes the reports and no trades.csv or returns file.
#[test]
fn no_exports_writes_the_reports_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gauntlet.toml");
    std::fs::write(&config, "[profile.default]\n").unwrap();
    let out = dir.path().join("out");
    let sample = sample();
    let code = run_cli([
        "gauntlet-backtest",
        "--config",
        config.to_str().unwrap(),
        "--data",
        sample.to_str().unwrap(),
        "--strategy",
        "ma-cross:5,20",
        "--no-sweep",
        "--no-exports",
        "--report-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(out.join("report.json").exists() && out.join("report.html").exists());
    for f in ["trades.csv", "returns.csv", "returns.parquet"] {
        assert!(!out.join(f).exists(), "{f}");
    }
}

/// Regression: `gauntlet run` wrote no exports where `gauntlet backtest` did. Its backtest
/// phase now writes trades.csv and returns.csv beside report.json, and they round-trip.
#[test]
fn gauntlet_run_writes_the_exports_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gauntlet.toml");
    let code = gauntlet::main_with(
        &gauntlet::registry(),
        [
            "gauntlet",
            "run",
            "--suite",
            "backtest",
            "--config",
            config.to_str().unwrap(),
            "--report-dir",
            out.to_str().unwrap(),
        ],
        &mut Vec::new(),
    );
    assert_eq!(code, 0);
    exports_match_the_report(&out);
}

/// The per-period returns export in `out`, read back: `(timestamp text or ns, equity,
/// return)` of each row, from returns.parquet or returns.csv, whichever was written (never
/// both).
fn exported_returns(out: &Path) -> Vec<(String, f64, f64)> {
    let (parquet, csv) = (out.join("returns.parquet"), out.join("returns.csv"));
    assert!(parquet.exists() != csv.exists(), "exactly one returns file");
    if csv.exists() {
        let text = std::fs::read_to_string(csv).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("timestamp,position,equity,return,drawdown")
        );
        return lines
            .map(|line| {
                let f: Vec<&str> = line.split(',').collect();
                (
                    f[0].to_owned(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                )
            })
            .collect();
    }
    use polars::prelude::{DataType, ParquetReader, SerReader, TimeUnit as PlTimeUnit};
    let frame = ParquetReader::new(std::fs::File::open(parquet).unwrap())
        .finish()
        .unwrap();
    let names: Vec<&str> = frame
        .get_column_names()
        .iter()
        .map(|n| n.as_str())
        .collect();
    assert_eq!(
        names,
        ["timestamp", "position", "equity", "return", "drawdown"]
    );
    let ts = frame.column("timestamp").unwrap();
    // Written as UTC; polars without its `timezones` feature reads it back naive.
    assert!(
        matches!(ts.dtype(), DataType::Datetime(PlTimeUnit::Nanoseconds, _)),
        "{}",
        ts.dtype()
    );
    let ts = ts.cast(&DataType::Int64).unwrap();
    let ts = ts.i64().unwrap();
    let floats = |name: &str| -> Vec<f64> {
        frame
            .column(name)
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    };
    let (equity, returns) = (floats("equity"), floats("return"));
    ts.into_no_null_iter()
        .zip(equity)
        .zip(returns)
        .map(|((t, e), r)| {
            let text = chrono::DateTime::from_timestamp_nanos(t)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            (text, e, r)
        })
        .collect()
}

/// trades.csv and the returns export in `out` against its report.json: the total return
/// recomputed from the returns to 1e-12, every equity bit for bit, the trade count, fees
/// and hit rate.
fn exports_match_the_report(out: &Path) {
    let v = report_values(out);
    let mut equity = 1.0_f64;
    let rows = exported_returns(out);
    for (ts, written, r) in &rows {
        equity *= 1.0 + r;
        assert_eq!(written.to_bits(), equity.to_bits(), "{ts}");
    }
    assert_eq!(rows.len() as f64, v["metrics.periods"].as_f64().unwrap());
    assert!(rows[0].0.starts_with("2024-"), "{:?}", rows[0]);
    let total = v["metrics.total_return"].as_f64().unwrap();
    assert!(
        ((equity - 1.0) - total).abs() <= 1e-12,
        "{equity} vs {total}"
    );
    let trades = std::fs::read_to_string(out.join("trades.csv")).unwrap();
    let rows: Vec<Vec<&str>> = trades
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len() as f64, v["metrics.trades"].as_f64().unwrap());
    let fees: f64 = rows.iter().map(|r| r[8].parse::<f64>().unwrap()).sum();
    let paid = v["costs.fees_paid"].as_f64().unwrap();
    assert!(
        (fees - paid).abs() <= 1e-12 * paid.max(1.0),
        "{fees} vs {paid}"
    );
    assert!(rows[0][0].starts_with("2024-"), "{:?}", rows[0]);
    let wins = rows
        .iter()
        .filter(|r| r[10].parse::<f64>().unwrap() > 0.0)
        .count();
    let hit = v["metrics.hit_rate"].as_f64().unwrap();
    assert!((wins as f64 / rows.len() as f64 - hit).abs() < 1e-12);
}

/// Daily bars on weekdays only are an exchange's: 252 periods a year, weekends no gaps; a
/// month without bars is refused naming both timestamps unless gaps are allowed.
#[test]
fn weekends_are_not_gaps_and_a_long_gap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bars = load(&sample()).unwrap().bars;
    let monday = 1_704_067_200_i64; // 2024-01-01
    let mut day = 0;
    let mut stamps = Vec::new();
    while stamps.len() < bars.len() {
        if day % 7 < 5 && !(300..330).contains(&day) {
            stamps.push(monday + day * 86_400);
        }
        day += 1;
    }
    let rows: Vec<String> = (0..bars.len())
        .map(|i| {
            format!(
                "{},{},{},{},{},{}",
                stamps[i], bars.open[i], bars.high[i], bars.low[i], bars.close[i], bars.volume[i]
            )
        })
        .collect();
    let path = dir.path().join("weekdays.csv");
    write_csv(&path, HEADER, &rows);
    let mut c = BacktestConfig {
        file: Some(path.clone()),
        strategy: Some("ma-cross:10,50".into()),
        ..BacktestConfig::default()
    };
    let e = gauntlet_backtest::suite::load_bars(&Plan::from_config(&c).unwrap()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("2024-10-25T00:00:00Z to 2024-11-26T00:00:00Z"),
        "{text}"
    );
    assert!(text.contains("max-gap = 10"), "{text}");
    c.allow_gaps = true;
    let plan = Plan::from_config(&c).unwrap();
    let (loaded, info) = gauntlet_backtest::suite::load_bars(&plan).unwrap();
    let outcome = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(run_plan(
            &plan,
            &loaded,
            info.gaps.median_interval_ns,
            None,
            1,
        ))
        .unwrap();
    assert_eq!(outcome.annualisation.periods_per_year, 252.0);
    assert!(
        outcome.annualisation.source.contains("exchange"),
        "{}",
        outcome.annualisation.source
    );
    // Without the month's hole, weekends alone are no gap.
    let short = dir.path().join("short.csv");
    write_csv(&short, HEADER, &rows[..200]);
    c.file = Some(short);
    c.allow_gaps = false;
    assert!(gauntlet_backtest::suite::load_bars(&Plan::from_config(&c).unwrap()).is_ok());
}
