//! Report sections of the load suite: tables and charts built once from the measurements.

use gauntlet_reports::{Chart, Section, Series, Table};

use crate::gates::{Verdict, ms};
use crate::histogram::{Latencies, SecondStats};
use crate::sampler::CpuSample;
use crate::scenario::{LabelledRun, ScenarioRun};

/// Most points per chart series (the HTML is self-contained).
const MAX_POINTS: usize = 2_000;

fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Pass => "pass".to_owned(),
        Verdict::Fail => "FAIL".to_owned(),
        Verdict::Invalid(r) => format!("INVALID: {r}"),
        Verdict::Skip(r) => format!("skip: {r}"),
    }
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

/// One row of the runs table.
fn run_row(run: &LabelledRun) -> Vec<String> {
    let s = &run.stats;
    let l = &s.latencies;
    let c = &s.counters;
    let v = &run.validity;
    vec![
        run.label.clone(),
        format!("{:.0}", s.target_rate),
        format!("{:.0}", s.achieved_rate()),
        ms(l.quantile(0.5)),
        ms(l.quantile(0.95)),
        ms(l.quantile(0.99)),
        ms(l.quantile(0.999)),
        ms(if l.is_empty() { 0 } else { l.max() }),
        c.ok.to_string(),
        c.errors.total().to_string(),
        c.dropped.to_string(),
        c.late.to_string(),
        pct(v.generator_busiest),
        v.target_cpu
            .map_or("-".to_owned(), |t| format!("{t:.2} cores")),
        pct(v.host_busy),
        pct(v.other_cpu),
        format!("{:.2}", v.max_loadavg),
        ms(v.hiccup_max_us),
        format!("{:.2} %", v.stalled_fraction * 100.0),
        match (&v.invalid, &v.host_busy_reason) {
            (Some(why), _) => why.clone(),
            (None, Some(busy)) => format!("valid, but {busy}: a gate that fails is invalid"),
            (None, None) => "valid".to_owned(),
        },
    ]
}

/// The table of driver runs.
pub fn runs_table(runs: &[LabelledRun]) -> Table {
    Table {
        title: "Runs (measured window, after the warm-up)".to_owned(),
        columns: [
            "run",
            "scheduled req/s",
            "achieved req/s",
            "p50",
            "p95",
            "p99",
            "p99.9",
            "max",
            "ok",
            "errors",
            "dropped",
            "late",
            "generator busiest thread",
            "target CPU",
            "host busy",
            "other processes",
            "max load avg",
            "host hiccup max",
            "time stalled",
            "validity",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows: runs.iter().map(run_row).collect(),
    }
}

/// Errors by class, one column per run.
pub fn errors_table(runs: &[LabelledRun]) -> Table {
    let mut columns = vec!["class".to_owned()];
    columns.extend(runs.iter().map(|r| r.label.clone()));
    let classes = [
        "connect",
        "timeout",
        "4xx",
        "5xx",
        "body mismatch",
        "transport",
    ];
    let mut rows: Vec<Vec<String>> = classes
        .iter()
        .enumerate()
        .map(|(i, class)| {
            let mut row = vec![(*class).to_owned()];
            row.extend(
                runs.iter()
                    .map(|r| r.stats.counters.errors.by_class()[i].1.to_string()),
            );
            row
        })
        .collect();
    for (name, get) in [
        (
            "dropped",
            (|r: &LabelledRun| r.stats.counters.dropped) as fn(&LabelledRun) -> u64,
        ),
        ("late", |r: &LabelledRun| r.stats.counters.late),
        ("scheduler behind", |r: &LabelledRun| {
            r.stats.counters.behind
        }),
    ] {
        let mut row = vec![name.to_owned()];
        row.extend(runs.iter().map(|r| get(r).to_string()));
        rows.push(row);
    }
    Table {
        title: "Failures by class (measured window)".to_owned(),
        columns,
        rows,
    }
}

/// The failures of each run by class: their status codes and the first distinct bodies
/// (at most 3 of 512 bytes each per class); `None` when nothing failed.
pub fn failures_table(runs: &[LabelledRun]) -> Option<Table> {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .flat_map(|r| {
            r.stats.counters.failures.0.iter().map(|c| {
                let statuses: Vec<String> = c
                    .statuses
                    .iter()
                    .map(|(s, n)| {
                        if *s == 0 {
                            format!("other ×{n}")
                        } else {
                            format!("{s} ×{n}")
                        }
                    })
                    .collect();
                let bodies: Vec<String> = c
                    .samples
                    .iter()
                    .map(|b| match b.status {
                        Some(s) => format!("[{s}] {}", b.body),
                        None => b.body.clone(),
                    })
                    .collect();
                vec![
                    r.label.clone(),
                    c.class.clone(),
                    c.count.to_string(),
                    if statuses.is_empty() {
                        "-".to_owned()
                    } else {
                        statuses.join(", ")
                    },
                    bodies.join(" | "),
                ]
            })
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        title: format!(
            "Failure detail (measured window): status codes and the first {} distinct bodies \
             of each class, {} bytes each",
            crate::recorder::MAX_BODIES_PER_CLASS,
            crate::recorder::MAX_BODY_BYTES
        ),
        columns: [
            "run",
            "class",
            "count",
            "status codes",
            "first distinct bodies",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows,
    })
}

/// Latency percentiles over time, with the generator host's largest hiccup of each second
/// (see [`crate::sampler`]): a latency spike that meets a hiccup spike is the machine's.
pub fn latency_chart(title: &str, seconds: &[SecondStats], cpu: &[CpuSample]) -> Chart {
    let series = |name: &str, f: fn(&SecondStats) -> u64| {
        let points: Vec<[f64; 2]> = seconds
            .iter()
            .filter(|s| s.ok > 0)
            .map(|s| [f64::from(s.second), f(s) as f64 / 1000.0])
            .collect();
        Series::downsampled(name, &points, MAX_POINTS)
    };
    let mut chart = Chart::line(title, "time (s)", "latency (ms)")
        .with_series(series("p50", |s| s.p50))
        .with_series(series("p99", |s| s.p99))
        .with_series(series("p99.9", |s| s.p999))
        .with_series(series("max", |s| s.max));
    // A sample taken at second k covers second k - 1 of the schedule.
    let hiccups: Vec<[f64; 2]> = cpu
        .iter()
        .filter(|s| s.second > 0 && s.hiccup_max_us > 0)
        .map(|s| [f64::from(s.second - 1), s.hiccup_max_us as f64 / 1000.0])
        .collect();
    if !hiccups.is_empty() {
        chart = chart.with_series(Series::downsampled(
            "host hiccup (largest, generator side)",
            &hiccups,
            MAX_POINTS,
        ));
    }
    chart.log_y = true;
    chart
}

/// Throughput over time, with the scheduled rate (`scheduled` req/s, constant) drawn first
/// as the line the others are read against.
pub fn throughput_chart(title: &str, seconds: &[SecondStats], scheduled: f64) -> Chart {
    let series = |name: &str, f: fn(&SecondStats) -> u64| {
        let points: Vec<[f64; 2]> = seconds
            .iter()
            .map(|s| [f64::from(s.second), f(s) as f64])
            .collect();
        Series::downsampled(name, &points, MAX_POINTS)
    };
    let span = seconds.iter().map(|s| s.second).max().unwrap_or(0);
    let scheduled_points: Vec<[f64; 2]> = (0..=span)
        .map(|second| [f64::from(second), scheduled])
        .collect();
    Chart::line(title, "time (s)", "requests per second")
        .with_series(Series::downsampled(
            format!("scheduled ({scheduled:.0} req/s)"),
            &scheduled_points,
            MAX_POINTS,
        ))
        .with_series(series("ok", |s| s.ok))
        .with_series(series("errors", |s| s.errors))
        .with_series(series("dropped", |s| s.dropped))
        .with_series(series("late", |s| s.late))
}

/// The percentile distribution, x in "nines" (1 = 90 %, 2 = 99 %, 3 = 99.9 %).
pub fn percentile_chart(title: &str, named: &[(&str, &Latencies)]) -> Chart {
    let mut chart = Chart::line(
        title,
        "percentile, in nines (1 = 90 %, 2 = 99 %, 3 = 99.9 %)",
        "latency (ms)",
    );
    chart.log_y = true;
    for (name, h) in named {
        let points: Vec<[f64; 2]> = h
            .percentile_curve()
            .into_iter()
            .filter(|(p, _)| *p < 100.0)
            .map(|(p, v)| [-(1.0 - p / 100.0).log10(), v as f64 / 1000.0])
            .collect();
        chart = chart.with_series(Series::downsampled(*name, &points, MAX_POINTS));
    }
    chart
}

/// Generator, target and host CPU over time.
pub fn cpu_chart(title: &str, cpu: &[CpuSample]) -> Chart {
    let series = |name: &str, f: &dyn Fn(&CpuSample) -> f64| {
        let points: Vec<[f64; 2]> = cpu.iter().map(|s| [f64::from(s.second), f(s)]).collect();
        Series::downsampled(name, &points, MAX_POINTS)
    };
    let mut chart = Chart::line(title, "time (s)", "cores")
        .with_series(series("generator (all threads)", &|s| s.generator_cpu))
        .with_series(series("generator busiest thread", &|s| s.generator_busiest));
    if cpu.iter().any(|s| s.target_cpu.is_some()) {
        chart = chart.with_series(series(
            "target (in-process, or its process on this host)",
            &|s| s.target_cpu.unwrap_or(0.0),
        ));
    }
    chart.with_series(series("host busy (fraction of all cores)", &|s| {
        s.host_busy
    }))
}

/// Resident memory over time.
pub fn memory_chart(title: &str, cpu: &[CpuSample]) -> Chart {
    let series = |name: &str, f: &dyn Fn(&CpuSample) -> Option<u64>| {
        let points: Vec<[f64; 2]> = cpu
            .iter()
            .filter_map(|s| {
                f(s).filter(|b| *b > 0)
                    .map(|b| [f64::from(s.second), b as f64 / (1024.0 * 1024.0)])
            })
            .collect();
        Series::downsampled(name, &points, MAX_POINTS)
    };
    let chart = Chart::line(title, "time (s)", "MiB");
    if cpu.iter().any(|s| s.target_rss_bytes.is_some()) {
        chart
            .with_series(series("target process", &|s| s.target_rss_bytes))
            .with_series(series("this process (the driver)", &|s| Some(s.rss_bytes)))
    } else {
        chart.with_series(series("resident memory", &|s| Some(s.rss_bytes)))
    }
}

/// Rate steps as bars: achieved rate and p99 per run.
pub fn steps_chart(title: &str, runs: &[LabelledRun]) -> Chart {
    let categories: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
    let achieved: Vec<[f64; 2]> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| [i as f64, r.stats.achieved_rate()])
        .collect();
    let scheduled: Vec<[f64; 2]> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| [i as f64, r.stats.target_rate])
        .collect();
    Chart::bar(title, "requests per second", categories)
        .with_series(Series::new("scheduled", scheduled))
        .with_series(Series::new("achieved", achieved))
}

/// The section of one scenario.
pub fn scenario_section(run: &ScenarioRun, settings_note: &str) -> Section {
    let mut section = Section::new(format!("load.{}", run.id), run.title.clone(), "load");
    section.notes.push(settings_note.to_owned());
    section.notes.extend(run.notes.iter().cloned());
    section.tables.push(Table {
        title: "Gates".to_owned(),
        columns: vec![
            "case".to_owned(),
            "verdict".to_owned(),
            "measured vs threshold".to_owned(),
        ],
        rows: run
            .gates
            .iter()
            .map(|g| {
                vec![
                    format!("load::{}", g.name),
                    verdict_text(&g.verdict),
                    g.message.clone(),
                ]
            })
            .collect(),
    });
    if run.runs.is_empty() {
        return section;
    }
    section.tables.push(runs_table(&run.runs));
    section.tables.push(errors_table(&run.runs));
    if let Some(detail) = failures_table(&run.runs) {
        section.tables.push(detail);
    }
    if let Some(first) = run.runs.first() {
        let label = &first.label;
        // Whole seconds of the schedule: the partial last second would read as a collapse.
        let span = (first.stats.warm_up + first.stats.measured).as_secs();
        let seconds: Vec<SecondStats> = first
            .stats
            .seconds
            .iter()
            .filter(|s| u64::from(s.second) < span.max(1))
            .cloned()
            .collect();
        section.charts.push(latency_chart(
            &format!("Latency over time ({label}), from intended send time"),
            &seconds,
            &first.stats.cpu,
        ));
        section.charts.push(throughput_chart(
            &format!("Throughput over time ({label})"),
            &seconds,
            first.stats.target_rate,
        ));
        section.charts.push(cpu_chart(
            &format!("CPU over time ({label})"),
            &first.stats.cpu,
        ));
        if run.id == "soak" {
            section.charts.push(memory_chart(
                &format!("Resident memory ({label})"),
                &first.stats.cpu,
            ));
        }
    }
    let named: Vec<(&str, &Latencies)> = run
        .runs
        .iter()
        .filter(|r| !r.stats.latencies.is_empty())
        .map(|r| (r.label.as_str(), &r.stats.latencies))
        .collect();
    if !named.is_empty() {
        section.charts.push(percentile_chart(
            "Latency percentiles (measured window)",
            &named,
        ));
    }
    if run.runs.len() > 1 {
        section.charts.push(steps_chart(
            "Scheduled and achieved rate per run",
            &run.runs,
        ));
    }
    section
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(second: u32, ok: u64) -> SecondStats {
        SecondStats {
            second,
            ok,
            ..SecondStats::default()
        }
    }

    /// Regression: the throughput chart had no scheduled rate, so a run that fell short of
    /// its schedule looked flat and fine.
    #[test]
    fn the_throughput_chart_draws_the_scheduled_rate_first() {
        let seconds = [second(0, 480), second(1, 500), second(2, 250)];
        let chart = throughput_chart("t", &seconds, 500.0);
        let first = &chart.series[0];
        assert_eq!(first.name, "scheduled (500 req/s)");
        assert_eq!(first.points, vec![[0.0, 500.0], [1.0, 500.0], [2.0, 500.0]]);
        assert_eq!(chart.series[1].name, "ok");
        assert_eq!(chart.series[1].points[2], [2.0, 250.0]);
        // And it is drawn: its legend entry is in the SVG.
        let svg = gauntlet_reports::html::chart_svg(&chart).unwrap();
        assert!(svg.contains("scheduled (500 req/s)"));
    }
}
