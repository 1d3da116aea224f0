//! Engine micro-benchmarks: prediction, request validation + sanitising, and a whole infer
//! request through the router. Artifacts are built here from a fixed LCG, so the figures are
//! reproducible and the bench depends on no other workspace crate.
//!
//! Targets: 100-tree depth-6 ensemble predict ≤ 2 µs; whole 1-row infer handler ≤ 20 µs.
//! Figures, and the HTTP figures over a socket (`benches/http-bench.sh`), are recorded in
//! `benches/README.md`.
//!
//! `predict_batch/*` compares the one-row walk (`Model::predict` row after row) with the
//! interleaved batch (`Model::predict_batch`) on the backtest's 100-tree model (the same
//! artifact as `backtest/benches/backtest.rs::ensemble_100`: `ref-ensemble`'s features, seed
//! 100) and on `ref-ensemble` itself, both read from `fixtures/models/ref-ensemble.json`, and
//! the block size (`predict_batch/lanes_*`). These measure the bench thread's CPU time, not
//! wall time: on a machine shared with other builds, wall time says how much of a core the
//! bench was given more than how fast the code is.

use std::hint::black_box;

use axum::body::Body;
use criterion::{BenchmarkId, Criterion, Throughput};
use gauntlet_engine::artifact::{
    ARTIFACT_FORMAT, ARTIFACT_FORMAT_VERSION, FeatureSpec, ImputePolicy, ModelParams, Node,
    Objective, Tree,
};
use gauntlet_engine::oip::InferRequest;
use gauntlet_engine::{AppState, EngineConfig, Model, ModelArtifact, app};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tower::ServiceExt as _;

#[path = "support/cpu_time.rs"]
mod cpu_time;

use cpu_time::ThreadCpuTime;

const N_FEATURES: usize = 32;
const N_TREES: usize = 100;
const DEPTH: u32 = 6;

/// A 64-bit LCG (Knuth's MMIX constants): deterministic and dependency-free.
struct Lcg(u64);

impl Lcg {
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 11
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

fn artifact(name: &str, model: ModelParams) -> ModelArtifact {
    ModelArtifact {
        format: ARTIFACT_FORMAT.to_owned(),
        format_version: ARTIFACT_FORMAT_VERSION,
        name: name.to_owned(),
        version: "1".to_owned(),
        features: (0..N_FEATURES)
            .map(|i| FeatureSpec {
                name: format!("f{i:02}"),
                median: 0.0,
                mad: 0.5,
                min: -1.0,
                max: 1.0,
            })
            .collect(),
        impute: ImputePolicy::Median,
        clip_mads: Some(6.0),
        model,
    }
}

fn linear(rng: &mut Lcg) -> ModelArtifact {
    artifact(
        "linear",
        ModelParams::Linear {
            intercept: 0.1,
            weights: (0..N_FEATURES).map(|_| rng.unit()).collect(),
        },
    )
}

/// A full binary tree of `depth` levels of splits (2^depth leaves).
fn tree(rng: &mut Lcg) -> Tree {
    fn build(rng: &mut Lcg, depth: u32, nodes: &mut Vec<Node>) -> usize {
        let at = nodes.len();
        nodes.push(Node::Leaf {
            value: rng.unit() * 0.1,
        });
        if depth > 0 {
            let feature = rng.below(N_FEATURES);
            let threshold = rng.unit() * 0.8;
            let default_left = rng.below(2) == 0;
            let left = build(rng, depth - 1, nodes);
            let right = build(rng, depth - 1, nodes);
            nodes[at] = Node::Split {
                feature,
                threshold,
                left,
                right,
                default_left,
            };
        }
        at
    }
    let mut nodes = Vec::new();
    build(rng, DEPTH, &mut nodes);
    Tree { nodes }
}

fn ensemble(rng: &mut Lcg) -> ModelArtifact {
    artifact(
        "ensemble",
        ModelParams::TreeEnsemble {
            base_score: 0.0,
            objective: Objective::BinaryLogistic,
            trees: (0..N_TREES).map(|_| tree(rng)).collect(),
        },
    )
}

fn infer_body(row: &[f64]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "bench",
        "inputs": [{"name": "features", "shape": [1, N_FEATURES], "datatype": "FP64", "data": row}]
    }))
    .unwrap_or_default()
}

fn benches(c: &mut Criterion) {
    let mut rng = Lcg(42);
    let linear_artifact = linear(&mut rng);
    let linear = Model::from_artifact(linear_artifact.clone()).unwrap_or_else(|e| panic!("{e}"));
    let ensemble_artifact = ensemble(&mut rng);
    let ensemble =
        Model::from_artifact(ensemble_artifact.clone()).unwrap_or_else(|e| panic!("{e}"));
    let row: Vec<f64> = (0..N_FEATURES).map(|_| rng.unit()).collect();

    c.bench_function("predict/linear_32", |b| {
        b.iter(|| linear.predict(black_box(&row)))
    });
    c.bench_function("predict/ensemble_100x_depth6", |b| {
        b.iter(|| ensemble.predict(black_box(&row)))
    });

    // JSON parse with schema checks, then sanitising; the shape checks run in the handler bench.
    let body = infer_body(&row);
    c.bench_function("validate_sanitise/1_row", |b| {
        b.iter(|| {
            let request: InferRequest =
                serde_json::from_slice(black_box(&body)).unwrap_or_default();
            let values = request
                .inputs
                .first()
                .map(|input| input.data.as_slice())
                .unwrap_or_default();
            ensemble.sanitise(values).map(|s| s.values.len())
        })
    });

    // The whole infer route through the router (middleware, routing, parse, decode, sanitise,
    // predict, metrics, response JSON), without a socket. No tracing subscriber is installed,
    // and the bench runs on the system allocator, not the binary's mimalloc: the HTTP figures
    // (benches/http-bench.sh) measure those.
    let state = AppState::new(EngineConfig::default());
    for artifact in [linear_artifact, ensemble_artifact] {
        let loaded = state
            .registry()
            .load(artifact)
            .and_then(|(name, _)| state.registry().promote(&name));
        if let Err(e) = loaded {
            panic!("{e}");
        }
    }
    let router = app(state);
    let body = bytes::Bytes::from(body);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    for (bench, uri) in [
        ("handler/infer_1_row_ensemble", "/v2/models/ensemble/infer"),
        ("handler/infer_1_row_linear", "/v2/models/linear/infer"),
    ] {
        c.bench_function(bench, |b| {
            b.to_async(&runtime).iter(|| async {
                let request = http::Request::post(uri)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.clone()))
                    .unwrap_or_default();
                let response = router.clone().oneshot(request).await;
                let response = response.unwrap_or_else(|never| match never {});
                assert_eq!(response.status(), http::StatusCode::OK);
                response
            })
        });
    }
}

/// `fixtures/models/ref-ensemble.json`, read from disk: the engine depends on no other crate
/// of the workspace.
fn ref_ensemble() -> ModelArtifact {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/models/ref-ensemble.json"
    );
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `base`'s features and preprocessing with 100 full depth-6 regression trees, seed 100: the
/// same artifact as the backtest bench's.
fn ensemble_100(base: &ModelArtifact) -> ModelArtifact {
    gauntlet_fixtures::random_forest(base, 100, 6, 100)
}

/// `count` row-major rows of `artifact`'s features: each value its median plus a MAD times
/// a sum of three uniforms in [-1, 1) (bell-shaped, within ±3 MAD), seed 7.
fn rows_near_medians(artifact: &ModelArtifact, count: usize) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut rows = Vec::with_capacity(count * artifact.features.len());
    for _ in 0..count {
        for spec in &artifact.features {
            let z: f64 = (0..3).map(|_| rng.random_range(-1.0..1.0)).sum();
            rows.push(spec.median + spec.mad * z);
        }
    }
    rows
}

/// The one-row walk row after row: `predict_batch` before it stepped blocks of rows.
fn per_row(model: &Model, rows: &[f64]) -> Vec<f64> {
    rows.chunks_exact(model.n_features())
        .map(|row| model.predict(row))
        .collect()
}

fn batch_benches(c: &mut Criterion<ThreadCpuTime>) {
    let base = ref_ensemble();
    let reference = Model::from_artifact(base.clone()).unwrap_or_else(|e| panic!("{e}"));
    let hundred = Model::from_artifact(ensemble_100(&base)).unwrap_or_else(|e| panic!("{e}"));
    let small = rows_near_medians(&base, 16_384);
    let large = rows_near_medians(&base, 1_000_000);
    for (model, rows) in [(&hundred, &small), (&hundred, &large), (&reference, &small)] {
        assert_eq!(
            model.predict_batch(rows),
            per_row(model, rows),
            "the two ways differ"
        );
    }

    let mut group = c.benchmark_group("predict_batch");
    group.sample_size(10);
    for (name, model, rows) in [
        ("ensemble_100x6_16k", &hundred, &small),
        ("ref_ensemble_16k", &reference, &small),
        ("ensemble_100x6_1m", &hundred, &large),
    ] {
        group.throughput(Throughput::Elements((rows.len() / 8) as u64));
        group.bench_function(BenchmarkId::new(name, "per_row"), |b| {
            b.iter(|| per_row(model, black_box(rows)))
        });
        group.bench_function(BenchmarkId::new(name, "interleaved"), |b| {
            b.iter(|| model.predict_batch(black_box(rows)))
        });
    }
    group.throughput(Throughput::Elements(16_384));
    let lanes = |b: &mut criterion::Bencher<'_, ThreadCpuTime>,
                 f: fn(&Model, &[f64]) -> Vec<f64>| {
        b.iter(|| f(&hundred, black_box(&small)))
    };
    group.bench_function("lanes_4/ensemble_100x6_16k", |b| {
        lanes(b, Model::predict_batch_lanes::<4>)
    });
    group.bench_function("lanes_8/ensemble_100x6_16k", |b| {
        lanes(b, Model::predict_batch_lanes::<8>)
    });
    group.bench_function("lanes_16/ensemble_100x6_16k", |b| {
        lanes(b, Model::predict_batch_lanes::<16>)
    });
    group.bench_function("lanes_32/ensemble_100x6_16k", |b| {
        lanes(b, Model::predict_batch_lanes::<32>)
    });
    group.bench_function("lanes_64/ensemble_100x6_16k", |b| {
        lanes(b, Model::predict_batch_lanes::<64>)
    });
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
    let mut criterion = Criterion::default()
        .configure_from_args()
        .with_measurement(ThreadCpuTime);
    batch_benches(&mut criterion);
    criterion.final_summary();
}
