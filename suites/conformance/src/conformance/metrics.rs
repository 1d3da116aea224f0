//! The Prometheus endpoint: the four metric families, moving with the traffic.

use http::{StatusCode, header};

use gauntlet_engine::oip::SanitiserAction;
use gauntlet_fixtures::REF_LINEAR;
use gauntlet_harness::{
    Capability, Case, CaseCtx, CaseError, CaseOutcome, TargetExt, case, ensure, infer_path,
};

use crate::repository::{Action, act, live_version_1, with_scratch};
use crate::support::{
    Layout, describe, expect_infer_ok, infer_request, present, scratch_name, typical_rows,
};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "conformance",
            metrics_expose_request_latency_version_and_sanitiser,
            ["ENG-POLICY", "ENG-OBS"],
            [Capability::Metrics]
        ),
        case!(
            "conformance",
            metrics_count_each_request_exactly,
            ["ENG-POLICY", "ENG-OBS"],
            [
                Capability::Metrics,
                Capability::Repository,
                Capability::ArtifactUpload
            ]
        ),
    ]
}

/// One sample of the text exposition format: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the samples of a Prometheus text exposition, skipping comments; a malformed line is an
/// error naming it.
fn parse_samples(text: &str) -> Result<Vec<Sample>, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| parse_line(line).ok_or_else(|| format!("malformed sample line {line:?}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Sum of the samples named `name` whose labels include every pair of `labels`.
fn total(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
        // fold from +0.0: `sum` starts at -0.0, which prints as "-0" in messages.
        .fold(0.0, |a, b| a + b)
}

/// `GET /metrics`: 200, a text content type, and parseable samples.
async fn scrape(ctx: &CaseCtx) -> Result<Vec<Sample>, CaseError> {
    let reply = ctx.target.get("/metrics").await?;
    ensure!(
        reply.status == StatusCode::OK,
        "GET /metrics: expected status 200 OK, got {}",
        describe(&reply)
    );
    let content_type = reply
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ensure!(
        content_type.starts_with("text/plain"),
        "GET /metrics: `content-type` expected text/plain (Prometheus text format), got {content_type:?}"
    );
    parse_samples(&reply.text()).map_err(|why| CaseError::Fail(format!("GET /metrics: {why}")))
}

async fn metrics_expose_request_latency_version_and_sanitiser(ctx: CaseCtx) -> CaseOutcome {
    crate::conformance::subject::policy_applies(&ctx, "the gauntlet_* metric families").await?;
    let artifact = ctx.reference(REF_LINEAR)?;
    let model = artifact.name.as_str();
    let ok = [("model", model), ("status", "200")];
    let before = scrape(&ctx).await?;

    // One request with a missing value: one 200 and at least one sanitiser change.
    let mut data = present(&typical_rows(artifact, ctx.seed, 1));
    data[0] = None;
    let request = infer_request(artifact, &data, Layout::Matrix);
    let line = format!("POST {}", infer_path(model, None));
    let reply = ctx.target.infer(model, None, &request).await?;
    let response = expect_infer_ok(&reply, &line)?;
    ensure!(
        !response.parameters.sanitiser_changes.is_empty(),
        "{line} with a missing value: expected a sanitiser change, got none"
    );

    let after = scrape(&ctx).await?;
    let requests = "gauntlet_requests_total";
    let (was, is) = (total(&before, requests, &ok), total(&after, requests, &ok));
    ensure!(
        is >= was + 1.0,
        "GET /metrics: {requests}{{model={model:?},status=\"200\"}} expected to grow by at least 1 after a request, went from {was} to {is}"
    );
    let count = "gauntlet_request_duration_seconds_count";
    let (was, is) = (
        total(&before, count, &[("model", model)]),
        total(&after, count, &[("model", model)]),
    );
    ensure!(
        is >= was + 1.0,
        "GET /metrics: {count}{{model={model:?}}} expected to grow by at least 1 after a request, went from {was} to {is}"
    );
    ensure!(
        after
            .iter()
            .any(|s| s.name == "gauntlet_request_duration_seconds_bucket"
                && s.label("le") == Some("+Inf")),
        "GET /metrics: expected a histogram gauntlet_request_duration_seconds with an le=\"+Inf\" bucket, found none"
    );
    let live = "gauntlet_model_live_version";
    let version = total(
        &after,
        live,
        &[("model", model), ("version", &artifact.version)],
    );
    ensure!(
        version == 1.0,
        "GET /metrics: {live}{{model={model:?},version={:?}}} expected 1, got {version}",
        artifact.version
    );
    // The exact series this request feeds, so that other cases running at the same time
    // (their clips and their other models) cannot make up for a missing count.
    let changes = "gauntlet_sanitiser_changes_total";
    let feature = artifact.features.first().map_or("", |f| f.name.as_str());
    let series = [
        ("model", model),
        ("feature", feature),
        ("action", "imputed"),
    ];
    let (was, is) = (
        total(&before, changes, &series),
        total(&after, changes, &series),
    );
    ensure!(
        is >= was + 1.0,
        "GET /metrics: {changes}{{model={model:?},feature={feature:?},action=\"imputed\"}} expected to grow by at least 1 after a request with a missing {feature:?}, went from {was} to {is}"
    );
    Ok(())
}

/// On a model of its own, no other case moves the series, so every count must move by exactly
/// what this case sent, and unloading the model must take its series away.
async fn metrics_count_each_request_exactly(ctx: CaseCtx) -> CaseOutcome {
    crate::conformance::subject::policy_applies(&ctx, "the gauntlet_* metric families").await?;
    let template = ctx.template(REF_LINEAR)?;
    let name = scratch_name("conf-metrics", ctx.seed);
    let target = ctx.target.as_ref();
    with_scratch(&ctx.target, &name, || async {
        let artifact = live_version_1(target, template, &name).await?;
        let model = name.as_str();
        let before = scrape(&ctx).await?;
        const REQUESTS: usize = 3;
        let mut imputed = 0.0;
        let feature = artifact.features.first().map_or("", |f| f.name.as_str());
        for i in 0..REQUESTS {
            let mut data = present(&typical_rows(&artifact, ctx.seed ^ i as u64, 1));
            data[0] = None;
            let request = infer_request(&artifact, &data, Layout::Matrix);
            let line = format!("POST {}", infer_path(model, None));
            let reply = ctx.target.infer(model, None, &request).await?;
            let response = expect_infer_ok(&reply, &line)?;
            imputed += response
                .parameters
                .sanitiser_changes
                .iter()
                .filter(|c| c.feature == feature && c.action == SanitiserAction::Imputed)
                .count() as f64;
        }
        let after = scrape(&ctx).await?;
        let sent = REQUESTS as f64;
        for (family, labels, expected) in [
            (
                "gauntlet_requests_total",
                vec![("model", model), ("status", "200")],
                sent,
            ),
            (
                "gauntlet_request_duration_seconds_count",
                vec![("model", model)],
                sent,
            ),
            (
                "gauntlet_sanitiser_changes_total",
                vec![("model", model), ("feature", feature), ("action", "imputed")],
                imputed,
            ),
        ] {
            let delta = total(&after, family, &labels) - total(&before, family, &labels);
            ensure!(
                delta == expected,
                "GET /metrics: {family}{labels:?} expected to grow by exactly {expected} after \
                 {REQUESTS} requests on a model no other case uses, grew by {delta}"
            );
        }
        let live = total(
            &after,
            "gauntlet_model_live_version",
            &[("model", model), ("version", "1")],
        );
        ensure!(
            live == 1.0,
            "GET /metrics: gauntlet_model_live_version{{model={model:?},version=\"1\"}} expected 1, got {live}"
        );
        let reply = act(target, &name, Action::Unload).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "POST /v2/repository/models/{model}/unload: expected 200 OK, got {}",
            describe(&reply)
        );
        let gone = scrape(&ctx).await?;
        let left: Vec<&str> = gone
            .iter()
            .filter(|s| s.label("model") == Some(model))
            .map(|s| s.name.as_str())
            .collect();
        ensure!(
            left.is_empty(),
            "GET /metrics after unloading {model:?}: expected no series for it, found {left:?}"
        );
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_escapes_and_infinities() {
        let text = "# HELP x y\n# TYPE a counter\na_total{model=\"m\",status=\"200\"} 3\n\
                    b_bucket{le=\"+Inf\",q=\"a\\\"b\"} 2 1700000000\nc 1.5e-3\nd{} +Inf\n";
        let samples = parse_samples(text).unwrap();
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].label("status"), Some("200"));
        assert_eq!(samples[1].label("q"), Some("a\"b"));
        assert_eq!(samples[2].value, 1.5e-3);
        assert_eq!(samples[3].value, f64::INFINITY);
        assert_eq!(total(&samples, "a_total", &[("model", "m")]), 3.0);
        assert_eq!(total(&samples, "a_total", &[("model", "other")]), 0.0);
        assert!(parse_samples("a{b=\"c} 1").is_err());
    }
}
