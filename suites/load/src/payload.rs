//! The user's request body for a load run: a JSON file sent as is, or a template whose
//! placeholders are filled from the run's seed.
//!
//! A template is the infer request's JSON text with `{{…}}` placeholders:
//!
//! | placeholder | renders |
//! |---|---|
//! | `{{rand}}` | a uniform float in [0, 1), a new one at each occurrence |
//! | `{{rand:LO:HI}}` | a uniform float in [LO, HI) |
//! | `{{randint:LO:HI}}` | a uniform integer in [LO, HI] |
//! | `{{row}}` | the 0-based iteration of the innermost `{{repeat}}` (0 outside any) |
//! | `{{variant}}` | which of the rendered bodies this is, from 0 |
//! | `{{repeat:N}}…{{end}}` | the text between, N times, separated by commas |
//! | `{{{{` | a literal `{{` |
//!
//! For a model of 5 FP32 features and batches of 4 rows, with an id column from the row
//! counter:
//!
//! ```json
//! {"id": "load-{{variant}}",
//!  "inputs": [{"name": "market", "shape": [4, 5], "datatype": "FP32",
//!              "data": [{{repeat:4}}[{{row}}, {{repeat:4}}{{rand:-1:1}}{{end}}]{{end}}]}]}
//! ```
//!
//! The bodies are rendered before the run — `payload-variants` of them (default 16), request
//! `k` of the schedule sending body `k mod variants` — so filling placeholders costs the
//! driver nothing while it runs; a file with no random placeholder is one body. Every body
//! must be a JSON object with an `inputs` array. The random values derive from the run's seed
//! and the body's number only (SplitMix64): the same seed gives the same bodies.

use std::path::Path;

use bytes::Bytes;

/// Bodies rendered from a template unless `payload-variants` says otherwise.
pub const DEFAULT_VARIANTS: usize = 16;
/// Most bodies rendered from a template.
pub const MAX_VARIANTS: usize = 1024;
/// Largest template file read, and largest rendered body.
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// Largest total of the rendered bodies (the driver keeps them all in memory).
pub const MAX_TOTAL_BYTES: usize = 64 << 20;
/// Deepest nesting of `{{repeat}}`.
const MAX_DEPTH: usize = 8;

/// A payload that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The file cannot be read.
    #[error("failed to read payload {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The template does not parse.
    #[error("payload template {path}: at byte {offset}: {reason}")]
    Template {
        /// The file.
        path: String,
        /// Where in it.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// A size or count past its limit.
    #[error("payload {path}: {what} {value} is past the limit of {limit}")]
    TooLarge {
        /// The file.
        path: String,
        /// What is too large.
        what: &'static str,
        /// Its value.
        value: usize,
        /// The limit.
        limit: usize,
    },
    /// A rendered body is not an infer request.
    #[error("payload {path}: body {variant} is not an infer request: {reason}")]
    NotRequest {
        /// The file.
        path: String,
        /// Which rendered body.
        variant: usize,
        /// Why.
        reason: String,
    },
}

/// The bodies of a payload and what they ask for.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The rendered bodies, in the order requests send them (never empty).
    pub bodies: Vec<Bytes>,
    /// The output names the request asks for (`"outputs": [{"name": …}]`), if it names any.
    pub outputs: Option<Vec<String>>,
    /// The rows of the first input (the first dimension of its shape), for notes.
    pub rows: Option<u64>,
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Rand(f64, f64),
    RandInt(i64, i64),
    Row,
    Variant,
    Repeat(u64, Vec<Node>),
}

/// Parses `{{…}}` placeholders; errors carry the byte offset.
fn parse(text: &str) -> Result<Vec<Node>, (usize, String)> {
    // A stack of open repeats: (count, nodes so far, offset of the tag).
    let mut stack: Vec<(u64, Vec<Node>, usize)> = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut text_start = 0;
    let mut pending = String::new();
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        if !text[i..].starts_with("{{") {
            i += 1;
            continue;
        }
        pending.push_str(&text[text_start..i]);
        if text[i..].starts_with("{{{{") {
            pending.push_str("{{");
            i += 4;
            text_start = i;
            continue;
        }
        let close = text[i + 2..]
            .find("}}")
            .ok_or((i, "`{{` without a closing `}}`".to_owned()))?;
        let tag = text[i + 2..i + 2 + close].trim();
        let at = i;
        i += 2 + close + 2;
        text_start = i;
        if !pending.is_empty() {
            nodes.push(Node::Text(std::mem::take(&mut pending)));
        }
        let mut parts = tag.split(':');
        let name = parts.next().unwrap_or("");
        let args: Vec<&str> = parts.collect();
        let number = |s: &str, what: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or((
                    at,
                    format!("{what} {s:?} of `{{{{{tag}}}}}` is not a finite number"),
                ))
        };
        let integer = |s: &str, what: &str| {
            s.trim().parse::<i64>().map_err(|_| {
                (
                    at,
                    format!("{what} {s:?} of `{{{{{tag}}}}}` is not an integer"),
                )
            })
        };
        match (name, args.as_slice()) {
            ("rand", []) => nodes.push(Node::Rand(0.0, 1.0)),
            ("rand", [lo, hi]) => {
                let (lo, hi) = (number(lo, "LO")?, number(hi, "HI")?);
                if lo >= hi {
                    return Err((at, format!("`{{{{{tag}}}}}`: LO must be below HI")));
                }
                nodes.push(Node::Rand(lo, hi));
            }
            ("randint", [lo, hi]) => {
                let (lo, hi) = (integer(lo, "LO")?, integer(hi, "HI")?);
                if lo > hi {
                    return Err((at, format!("`{{{{{tag}}}}}`: LO must not be above HI")));
                }
                nodes.push(Node::RandInt(lo, hi));
            }
            ("row", []) => nodes.push(Node::Row),
            ("variant", []) => nodes.push(Node::Variant),
            ("repeat", [n]) => {
                let n = n
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| (at, format!("`{{{{{tag}}}}}`: N must be a whole number")))?;
                if stack.len() >= MAX_DEPTH {
                    return Err((at, format!("repeats nest deeper than {MAX_DEPTH}")));
                }
                stack.push((n, std::mem::take(&mut nodes), at));
            }
            ("end", []) => {
                let (n, outer, _) = stack
                    .pop()
                    .ok_or((at, "`{{end}}` without a `{{repeat:N}}`".to_owned()))?;
                let body = std::mem::replace(&mut nodes, outer);
                nodes.push(Node::Repeat(n, body));
            }
            _ => {
                return Err((
                    at,
                    format!(
                        "unknown placeholder `{{{{{tag}}}}}` (rand, rand:LO:HI, randint:LO:HI, \
                         row, variant, repeat:N … end; `{{{{{{{{` for a literal `{{{{`)"
                    ),
                ));
            }
        }
    }
    pending.push_str(&text[text_start..]);
    if !pending.is_empty() {
        nodes.push(Node::Text(pending));
    }
    if let Some((_, _, at)) = stack.pop() {
        return Err((at, "`{{repeat:N}}` without its `{{end}}`".to_owned()));
    }
    Ok(nodes)
}

/// Whether rendering `nodes` twice can differ.
fn varies(nodes: &[Node]) -> bool {
    nodes.iter().any(|n| match n {
        Node::Rand(..) | Node::RandInt(..) | Node::Variant => true,
        Node::Repeat(_, body) => varies(body),
        Node::Text(_) | Node::Row => false,
    })
}

/// SplitMix64: a seeded generator small enough to keep here.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Renders `nodes` into `out`; `Err(())` once `out` passes [`MAX_BODY_BYTES`].
fn render_into(
    nodes: &[Node],
    rng: &mut SplitMix,
    variant: usize,
    row: u64,
    out: &mut String,
) -> Result<(), ()> {
    use std::fmt::Write as _;
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Rand(lo, hi) => {
                let v = lo + rng.unit() * (hi - lo);
                // Rounding can land on HI itself; the range is half-open.
                let v = if v >= *hi { *lo } else { v };
                let _ = write!(out, "{v:?}");
            }
            Node::RandInt(lo, hi) => {
                let span = (i128::from(*hi) - i128::from(*lo) + 1) as u128;
                let v = i128::from(*lo) + (u128::from(rng.next()) % span) as i128;
                let _ = write!(out, "{v}");
            }
            Node::Row => {
                let _ = write!(out, "{row}");
            }
            Node::Variant => {
                let _ = write!(out, "{variant}");
            }
            Node::Repeat(n, body) => {
                for r in 0..*n {
                    if r > 0 {
                        out.push_str(", ");
                    }
                    render_into(body, rng, variant, r, out)?;
                    if out.len() > MAX_BODY_BYTES {
                        return Err(());
                    }
                }
            }
        }
        if out.len() > MAX_BODY_BYTES {
            return Err(());
        }
    }
    Ok(())
}

/// Renders `template` into `variants` bodies (one when it has no random placeholder) from
/// `seed`, and checks each is an infer request. `path` names the template in errors.
///
/// # Errors
///
/// [`PayloadError`] naming the template, the byte or body, and the limit.
pub fn render(
    template: &str,
    path: &str,
    seed: u64,
    variants: usize,
) -> Result<Payload, PayloadError> {
    if variants == 0 || variants > MAX_VARIANTS {
        return Err(PayloadError::TooLarge {
            path: path.to_owned(),
            what: "payload-variants",
            value: variants,
            limit: MAX_VARIANTS,
        });
    }
    let nodes = parse(template).map_err(|(offset, reason)| PayloadError::Template {
        path: path.to_owned(),
        offset,
        reason,
    })?;
    let count = if varies(&nodes) { variants } else { 1 };
    let mut bodies = Vec::with_capacity(count);
    let mut total = 0usize;
    let mut outputs = None;
    let mut rows = None;
    for variant in 0..count {
        // Each body from its own stream: body k is the same whatever the variant count.
        let mut rng = SplitMix(seed ^ (variant as u64).wrapping_mul(0xd1b5_4a32_d192_ed03));
        let mut out = String::with_capacity(template.len());
        render_into(&nodes, &mut rng, variant, 0, &mut out).map_err(|()| {
            PayloadError::TooLarge {
                path: path.to_owned(),
                what: "a rendered body of at least",
                value: out.len(),
                limit: MAX_BODY_BYTES,
            }
        })?;
        total += out.len();
        if total > MAX_TOTAL_BYTES {
            return Err(PayloadError::TooLarge {
                path: path.to_owned(),
                what: "the rendered bodies' total bytes",
                value: total,
                limit: MAX_TOTAL_BYTES,
            });
        }
        let not_request = |reason: String| PayloadError::NotRequest {
            path: path.to_owned(),
            variant,
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| not_request(format!("not JSON: {e}")))?;
        let inputs = value
            .get("inputs")
            .and_then(serde_json::Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| not_request("no `inputs` array with a tensor in it".to_owned()))?;
        if variant == 0 {
            rows = inputs[0]
                .get("shape")
                .and_then(|s| s.get(0))
                .and_then(serde_json::Value::as_u64);
            outputs = value
                .get("outputs")
                .and_then(serde_json::Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|o| o.get("name").and_then(serde_json::Value::as_str))
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .filter(|names| !names.is_empty());
        }
        bodies.push(Bytes::from(out));
    }
    Ok(Payload {
        bodies,
        outputs,
        rows,
    })
}

/// Reads and renders the payload file at `path`; see [`render`].
///
/// # Errors
///
/// [`PayloadError::Read`] when the file cannot be read or is past [`MAX_BODY_BYTES`], and
/// those of [`render`].
pub fn load(path: &Path, seed: u64, variants: usize) -> Result<Payload, PayloadError> {
    let shown = path.display().to_string();
    let read = |reason: String| PayloadError::Read {
        path: shown.clone(),
        reason,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| read(e.to_string()))?
        .len();
    if len > MAX_BODY_BYTES as u64 {
        return Err(PayloadError::TooLarge {
            path: shown,
            what: "the file's size in bytes",
            value: usize::try_from(len).unwrap_or(usize::MAX),
            limit: MAX_BODY_BYTES,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
    render(&text, &shown, seed, variants)
}

/// The payload of `settings` (`payload`, `payload-variants`), rendered from `seed`; `None`
/// when they name none.
///
/// # Errors
///
/// Those of [`load`], prefixed with the setting.
pub fn for_settings(
    settings: &crate::settings::LoadSettings,
    seed: u64,
) -> Result<Option<Payload>, PayloadError> {
    settings
        .payload
        .as_deref()
        .map(|path| load(path, seed, settings.payload_variants))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(b: &Bytes) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn a_file_without_placeholders_is_one_body_sent_as_is() {
        let text = r#"{ "inputs": [ {"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]} ],
                        "outputs": [{"name": "y"}] }"#;
        let p = render(text, "p.json", 1, 16).unwrap();
        assert_eq!(p.bodies, vec![Bytes::from(text.to_owned())]);
        assert_eq!(p.outputs, Some(vec!["y".to_owned()]));
        assert_eq!(p.rows, Some(1));
    }

    #[test]
    fn a_template_renders_seeded_rows_and_counters() {
        let text = r#"{"id":"v{{variant}}","inputs":[{"name":"market","shape":[3,3],"datatype":"FP32",
            "data":[{{repeat:3}}[{{row}}, {{repeat:2}}{{rand:-1:1}}{{end}}]{{end}}]}]}"#;
        let p = render(text, "t.json", 42, 4).unwrap();
        assert_eq!(p.bodies.len(), 4);
        assert_eq!(
            p.bodies,
            render(text, "t.json", 42, 4).unwrap().bodies,
            "seeded"
        );
        assert_ne!(p.bodies, render(text, "t.json", 43, 4).unwrap().bodies);
        // Body k does not depend on how many are rendered.
        assert_eq!(
            p.bodies[1],
            render(text, "t.json", 42, 2).unwrap().bodies[1]
        );
        let v = json(&p.bodies[2]);
        assert_eq!(v["id"], "v2");
        let data = v["inputs"][0]["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        for (r, row) in data.iter().enumerate() {
            let row = row.as_array().unwrap();
            assert_eq!(row[0], serde_json::json!(r), "the row counter");
            assert_eq!(row.len(), 3);
            for x in &row[1..] {
                let x = x.as_f64().unwrap();
                assert!((-1.0..1.0).contains(&x), "{x}");
            }
        }
        let ints = render(
            r#"{"inputs":[{"data":[{{repeat:200}}{{randint:-2:2}}{{end}}]}]}"#,
            "i",
            7,
            1,
        )
        .unwrap();
        let values: Vec<i64> = json(&ints.bodies[0])["inputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert!(values.iter().all(|v| (-2..=2).contains(v)));
        for want in -2..=2 {
            assert!(values.contains(&want), "{want} in {values:?}");
        }
        // A literal `{{`, inside a JSON string.
        let lit = render(r#"{"id":"{{{{x","inputs":[{}]}"#, "l", 1, 1).unwrap();
        assert_eq!(json(&lit.bodies[0])["id"], "{{x");
    }

    #[test]
    fn bad_templates_name_the_byte_and_the_limit() {
        let err = |t: &str| render(t, "bad.json", 1, 4).unwrap_err().to_string();
        assert!(err("{{rand:1}}").contains("unknown placeholder `{{rand:1}}`"));
        assert!(err("[{{rand:2:1}}]").contains("at byte 1: `{{rand:2:1}}`: LO must be below HI"));
        assert!(err("[{{repeat:2}}1").contains("without its `{{end}}`"));
        assert!(err("[1{{end}}]").contains("at byte 2"));
        assert!(err("{{row").contains("without a closing"));
        assert!(err("[1, 2]").contains("no `inputs` array"));
        assert!(err("{\"inputs\": [1,}").contains("not JSON"));
        let huge = r#"{"inputs":[{"data":[{{repeat:10000000}}{{rand}}{{end}}]}]}"#;
        assert!(err(huge).contains(&format!("limit of {MAX_BODY_BYTES}")));
        let e = render("{\"inputs\":[1]}", "v.json", 1, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("payload-variants 0"), "{e}");
        let e = load(Path::new("/nonexistent/payload.json"), 1, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/payload.json"), "{e}");
    }
}
