//! Every renderer run over one fixed report: snapshots of each format, and the
//! properties CI relies on (parseable JUnit, JSON round trip, atomic files).

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use gauntlet_reports::{
    CaseResult, Chart, HTML_FILE, JSON_FILE, JUNIT_FILE, Location, MARKDOWN_FILE, Outcome,
    ReportError, RunMeta, RunReport, SCHEMA_VERSION, Section, Series, Table, html, json, junit,
    markdown, terminal, write_all,
};

const TRICKY_MESSAGE: &str = "expected <price> & \"quote\" | got none\nsecond line";

fn case(
    suite: &str,
    name: &str,
    requirements: &[&str],
    outcome: Outcome,
    micros: u64,
    message: Option<&str>,
    line: Option<u32>,
) -> CaseResult {
    CaseResult {
        id: format!("{suite}::{name}"),
        suite: suite.into(),
        name: name.into(),
        requirements: requirements.iter().map(|r| (*r).into()).collect(),
        outcome,
        duration: Duration::from_micros(micros),
        message: message.map(Into::into),
        location: line.map(|line| Location {
            file: format!("suites/src/{suite}.rs"),
            line,
        }),
    }
}

/// Two suites interleaved in registry order; every outcome, a fail with and one
/// without a message, and a message full of XML and Markdown specials.
fn fixture() -> RunReport {
    let started_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let meta = RunMeta {
        tool: "gauntlet".into(),
        tool_version: "0.1.0".into(),
        git_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        crate_versions: BTreeMap::from([
            ("gauntlet-engine".into(), "0.1.0".into()),
            ("gauntlet-suites".into(), "0.1.0".into()),
        ]),
        seed: 42,
        target: "in-process gauntlet-engine 0.1.0".into(),
        profile: "ci".into(),
        started_at,
        finished_at: started_at + Duration::from_millis(1_234),
    };
    let skip = Outcome::Skip {
        reason: "target lacks capability `metrics`".into(),
    };
    RunReport::new(
        meta,
        vec![
            case(
                "unit",
                "health_live",
                &["ENG-VAL-001"],
                Outcome::Pass,
                12_300,
                None,
                Some(12),
            ),
            case(
                "unit",
                "predict_schema",
                &["ENG-VAL-002", "ENG-VAL-003"],
                Outcome::Fail,
                3_050,
                Some(TRICKY_MESSAGE),
                Some(40),
            ),
            case("sla", "p99_latency", &["ENG-VAL-010"], skip, 0, None, None),
            case(
                "unit",
                "model_swap",
                &["ENG-VAL-004"],
                Outcome::Fail,
                250_000,
                None,
                None,
            ),
            case(
                "sla",
                "throughput",
                &["ENG-VAL-011"],
                Outcome::Error,
                5_000_000,
                Some("timed out after 5s"),
                Some(88),
            ),
            case(
                "sla",
                "quote_freshness",
                &["ENG-VAL-012"],
                Outcome::Pass,
                840,
                Some("p99 staleness 3 ms"),
                Some(120),
            ),
            case(
                "load",
                "sustained_p99",
                &["SLA-LAT"],
                Outcome::Invalid {
                    reason: "generator fell behind: 4.2 % of sends late > 1 %".into(),
                },
                30_000_000,
                None,
                None,
            ),
        ],
    )
    .with_sections([section()])
}

/// A section with a table with markup in it, a line chart and a bar chart.
fn section() -> Section {
    let mut section = Section::new("load.sustained", "Load: sustained <10k/s>", "load");
    section
        .notes
        .push("latency from the intended send time & no CO".into());
    section.tables.push(Table {
        title: "Latency".into(),
        columns: vec!["percentile".into(), "latency".into()],
        rows: vec![
            vec!["p50".into(), "0.21 ms".into()],
            vec!["p99 | tail".into(), "1.84 ms".into()],
        ],
    });
    section.charts.push(
        Chart::line("Latency over time", "time (s)", "latency (ms)")
            .with_series(Series::new(
                "p50",
                vec![[1.0, 0.2], [2.0, 0.25], [3.0, 0.22]],
            ))
            .with_series(Series::new("p99", vec![[1.0, 1.1], [2.0, 1.9], [3.0, 1.4]])),
    );
    section.charts.push(
        Chart::bar(
            "Sharpe per fold",
            "Sharpe",
            vec!["fold 1".into(), "fold 2".into()],
        )
        .with_series(Series::new("out of sample", vec![[0.0, 1.2], [1.0, -0.4]])),
    );
    section
}

fn render(write: impl FnOnce(&mut Vec<u8>) -> Result<(), ReportError>) -> String {
    let mut out = Vec::new();
    write(&mut out).expect("rendering into a Vec cannot fail");
    String::from_utf8(out).expect("reports are UTF-8")
}

fn junit_xml() -> String {
    render(|out| junit::write(&fixture(), out))
}

/// A fresh directory per test under the system temp dir, never the working directory.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gauntlet-reports-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

#[test]
fn junit_snapshot() {
    insta::assert_snapshot!("junit", junit_xml());
}

#[test]
fn json_snapshot() {
    insta::assert_snapshot!("json", render(|out| json::write(&fixture(), out)));
}

#[test]
fn markdown_snapshot() {
    insta::assert_snapshot!("markdown", render(|out| markdown::write(&fixture(), out)));
}

#[test]
fn terminal_snapshot() {
    insta::assert_snapshot!(
        "terminal",
        render(|out| terminal::write(&fixture(), out, false))
    );
}

#[test]
fn terminal_color_snapshot() {
    let colored = render(|out| terminal::write(&fixture(), out, true));
    // Make the escape byte visible in the snapshot file.
    insta::assert_snapshot!("terminal_color", colored.replace('\x1b', "<ESC>"));
}

#[test]
fn junit_parses_back_with_the_same_counts_and_messages() {
    let parsed = quick_junit::Report::deserialize_from_str(&junit_xml()).unwrap();
    assert_eq!(parsed.name.as_deref(), Some("gauntlet"));
    assert_eq!(
        (parsed.tests, parsed.failures, parsed.errors, parsed.skipped),
        (7, 3, 1, 1),
        "the invalid case counts as a failure"
    );
    let suites: Vec<&str> = parsed.test_suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        suites,
        ["unit", "sla", "load"],
        "suites in first-seen order"
    );

    let predict = &parsed.test_suites[0].test_cases[1];
    assert_eq!(predict.name.as_str(), "predict_schema");
    assert_eq!(predict.classname.as_deref(), Some("unit"));
    let quick_junit::TestCaseStatus::NonSuccess {
        message,
        description,
        ..
    } = &predict.status
    else {
        panic!("predict_schema should fail: {:?}", predict.status);
    };
    // The escaped specials come back intact; the attribute holds the message on one line.
    assert_eq!(
        message.as_deref(),
        Some(TRICKY_MESSAGE.replace('\n', " ").as_str())
    );
    let description = description.as_deref().unwrap();
    assert!(description.starts_with(TRICKY_MESSAGE), "{description}");
    assert!(description.contains("requirements: ENG-VAL-002, ENG-VAL-003"));
    let properties: Vec<(&str, &str)> = predict
        .properties
        .iter()
        .map(|p| (p.name.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(
        properties,
        [
            ("requirements", "ENG-VAL-002, ENG-VAL-003"),
            ("location", "suites/src/unit.rs:40"),
        ]
    );
}

#[test]
fn junit_escapes_xml_specials() {
    let xml = junit_xml();
    assert!(
        xml.contains("message=\"expected &lt;price&gt; &amp; &quot;quote&quot; | got none"),
        "{xml}"
    );
    assert!(!xml.contains("<price>"));
    assert!(!xml.contains("\"quote\""));
}

#[test]
fn junit_every_failure_and_error_has_a_message() {
    let xml = junit_xml();
    let mut seen = 0;
    for tag in ["<failure", "<error"] {
        for (start, _) in xml.match_indices(tag) {
            let element = &xml[start..start + xml[start..].find('>').unwrap()];
            let message = element
                .split("message=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no message attribute in {element}"));
            assert!(!message.trim().is_empty(), "empty message in {element}");
            seen += 1;
        }
    }
    assert_eq!(seen, 4, "two failures, one invalid and one error");
    assert!(xml.contains("<failure message=\"case failed\">"));
}

#[test]
fn json_round_trips() {
    let report = fixture();
    let text = render(|out| json::write(&report, out));
    assert!(text.ends_with("}\n"));
    assert_eq!(json::read(text.as_bytes()).unwrap(), report);
}

#[test]
fn json_seed_is_exact_for_every_reader() {
    let mut report = fixture();
    report.meta.seed = 0xdead_beef_dead_beef;
    let text = render(|out| json::write(&report, out));
    // A hex string: JavaScript and jq would round a number this large.
    assert!(text.contains("\"seed\": \"0xdeadbeefdeadbeef\""), "{text}");
    assert_eq!(
        json::read(text.as_bytes()).unwrap().meta.seed,
        0xdead_beef_dead_beef
    );
    // Reports written with a numeric or decimal-string seed still read.
    let mut value = serde_json::to_value(&report).unwrap();
    value["meta"]["seed"] = serde_json::json!(42);
    assert_eq!(
        json::read(value.to_string().as_bytes()).unwrap().meta.seed,
        42
    );
    value["meta"]["seed"] = serde_json::json!("42");
    assert_eq!(
        json::read(value.to_string().as_bytes()).unwrap().meta.seed,
        42
    );
    value["meta"]["seed"] = serde_json::json!("0xzz");
    let err = json::read(value.to_string().as_bytes()).unwrap_err();
    // The cause (serde's message, with the path) is the error's source, not its text.
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("seed \"0xzz\""), "{cause}");
}

#[test]
fn json_rejects_an_unknown_schema_version() {
    let mut value = serde_json::to_value(fixture()).unwrap();
    value["schema_version"] = serde_json::json!(SCHEMA_VERSION + 1);
    let error = json::read(value.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(
            error,
            ReportError::UnsupportedSchema { found, supported, .. }
                if found == u64::from(SCHEMA_VERSION + 1) && supported == SCHEMA_VERSION
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "failed to read JSON report: schema_version 3 is not supported \
         (this build reads schema_version 1 to 2)"
    );
}

#[test]
fn json_reads_a_schema_1_report_as_schema_2() {
    let mut value = serde_json::to_value(fixture()).unwrap();
    value["schema_version"] = serde_json::json!(1);
    value["cases"].as_array_mut().unwrap().pop(); // schema 1 had no invalid outcome
    value["summary"].as_object_mut().unwrap().remove("invalid");
    value.as_object_mut().unwrap().remove("sections");
    let report = json::read(value.to_string().as_bytes()).unwrap();
    assert_eq!(report.schema_version, SCHEMA_VERSION);
    assert_eq!(report.summary.invalid, 0);
    assert!(report.sections.is_empty());
}

#[test]
fn html_is_self_contained_escaped_and_draws_every_chart() {
    let page = render(|out| html::write(&fixture(), out));
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.trim_end().ends_with("</html>"));
    for forbidden in ["<script", "src=\"http", "href=\"http", "<link", "@import"] {
        assert!(
            !page.contains(forbidden),
            "page must not fetch or run anything: {forbidden}"
        );
    }
    // Every case, and the tricky message escaped, never raw.
    for case in &fixture().cases {
        assert!(
            page.contains(&format!("<code>{}</code>", case.id)),
            "{}",
            case.id
        );
    }
    assert!(page.contains("expected &lt;price&gt; &amp; &quot;quote&quot; | got none"));
    assert!(!page.contains("<price>"));
    assert!(page.contains("Load: sustained &lt;10k/s&gt;"));
    assert!(page.contains("<td class=\"status\">INVALID</td>"));
    // Two charts, each an inline SVG with its title and series names.
    assert_eq!(page.matches("<svg").count(), 2, "one SVG per chart");
    for text in ["Latency over time", "Sharpe per fold", "p99", "fold 2"] {
        assert!(page.contains(text), "{text}");
    }
    assert!(!page.contains("not drawn"), "every chart drew");
}

#[test]
fn invalid_fails_the_run_and_reads_as_a_failure_in_junit() {
    let report = fixture();
    assert_eq!(report.summary.invalid, 1);
    assert_eq!(report.exit_code(), gauntlet_reports::ExitCode::Failed);
    let only_invalid = RunReport::new(
        report.meta.clone(),
        report
            .cases
            .iter()
            .filter(|c| c.suite == "load")
            .cloned()
            .collect(),
    );
    assert_eq!(only_invalid.exit_code(), gauntlet_reports::ExitCode::Failed);
    let xml = render(|out| junit::write(&only_invalid, out));
    assert!(
        xml.contains("<failure message=\"invalid measurement: generator fell behind: 4.2 % of sends late &gt; 1 %\""),
        "{xml}"
    );
}

#[test]
fn json_rejects_a_report_without_schema_version() {
    let error = json::read(&br#"{"meta": {}}"#[..]).unwrap_err();
    assert!(matches!(error, ReportError::Parse(_)), "{error:?}");
    let source = std::error::Error::source(&error).unwrap().to_string();
    assert!(source.contains("schema_version"), "{source}");
}

#[test]
fn write_all_writes_four_files_and_no_temp_files() {
    let dir = temp_dir("write-all").join("nested");
    let report = fixture();
    let paths = write_all(&report, &dir).unwrap();
    assert_eq!(
        paths,
        [JUNIT_FILE, JSON_FILE, MARKDOWN_FILE, HTML_FILE].map(|name| dir.join(name))
    );
    // Twice, to replace existing files as a re-run would.
    assert_eq!(write_all(&report, &dir).unwrap(), paths);

    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["junit.xml", "report.html", "report.json", "summary.md"]
    );

    let json = fs::read(dir.join(JSON_FILE)).unwrap();
    assert_eq!(json::read(json.as_slice()).unwrap(), report);
    assert_eq!(
        fs::read_to_string(dir.join(JUNIT_FILE)).unwrap(),
        junit_xml()
    );
    fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[test]
fn write_all_reports_a_directory_it_cannot_create() {
    let dir = temp_dir("write-all-blocked");
    fs::create_dir_all(&dir).unwrap();
    let blocker = dir.join("file");
    fs::write(&blocker, "not a directory").unwrap();

    let error = write_all(&fixture(), &blocker.join("reports")).unwrap_err();
    assert!(matches!(error, ReportError::CreateDir { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("failed to create report directory ")
    );
    fs::remove_dir_all(dir).unwrap();
}
