//! The input sanitiser: missing-value policy and robust outlier clipping, every change reported.
//!
//! For each value, in row-major order:
//! 1. missing (`None` or NaN): the feature's impute value (median or constant), or an error
//!    under the `reject` policy;
//! 2. infinite: an error, never silently clipped;
//! 3. outside `median ± clip_mads · MAD`: clipped to the nearer bound (skipped when MAD is 0).
//!
//! An imputed value is clipped too, so the output always lies within the clip bounds and
//! sanitising it again changes nothing (the sanitiser is idempotent).

use crate::model::Model;
use crate::oip::{SanitiserAction, SanitiserChange};

/// The sanitised batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Sanitised {
    /// Flat row-major values, all finite; `values.len() / n_features` rows.
    pub values: Vec<f64>,
    /// Every change made, in row-major order.
    pub changes: Vec<SanitiserChange>,
}

/// Why a batch could not be sanitised.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SanitiseError {
    /// The number of values is not a whole number of rows.
    #[error("values: {len} values are not a whole number of rows of {n_features} features")]
    RaggedBatch {
        /// Number of values given.
        len: usize,
        /// The model's feature count.
        n_features: usize,
    },
    /// A value is missing and the model's policy is `reject`.
    #[error(
        "row {row}, feature {feature:?}: value is missing and the model's impute policy is reject"
    )]
    Missing {
        /// Row index.
        row: usize,
        /// Feature name.
        feature: String,
    },
    /// A value is infinite.
    #[error("row {row}, feature {feature:?}: value {value:?} is not finite")]
    NotFinite {
        /// Row index.
        row: usize,
        /// Feature name.
        feature: String,
        /// The value found.
        value: f64,
    },
}

impl Model {
    /// Sanitises a flat row-major batch (`None` or NaN = missing).
    ///
    /// # Errors
    /// [`SanitiseError`] naming the row and feature of the first bad value.
    pub fn sanitise(&self, values: &[Option<f64>]) -> Result<Sanitised, SanitiseError> {
        let n = self.n_features();
        if !values.len().is_multiple_of(n) {
            return Err(SanitiseError::RaggedBatch {
                len: values.len(),
                n_features: n,
            });
        }
        let mut out = Vec::with_capacity(values.len());
        let mut changes = Vec::new();
        for (row, chunk) in values.chunks_exact(n).enumerate() {
            for (f, (value, plan)) in chunk.iter().zip(&self.plan).enumerate() {
                let feature = || self.feature_names()[f].clone();
                let x = match *value {
                    Some(x) if !x.is_nan() => {
                        if x.is_infinite() {
                            return Err(SanitiseError::NotFinite {
                                row,
                                feature: feature(),
                                value: x,
                            });
                        }
                        let clipped = clip(x, plan.lo, plan.hi);
                        if clipped != x {
                            changes.push(SanitiserChange {
                                row,
                                feature: feature(),
                                action: SanitiserAction::Clipped,
                                original: Some(x),
                                value: clipped,
                            });
                        }
                        clipped
                    }
                    _ => {
                        let Some(imputed) = plan.impute else {
                            return Err(SanitiseError::Missing {
                                row,
                                feature: feature(),
                            });
                        };
                        let imputed = clip(imputed, plan.lo, plan.hi);
                        changes.push(SanitiserChange {
                            row,
                            feature: feature(),
                            action: SanitiserAction::Imputed,
                            original: None,
                            value: imputed,
                        });
                        imputed
                    }
                };
                out.push(x);
            }
        }
        Ok(Sanitised {
            values: out,
            changes,
        })
    }
}

/// Clips to `[lo, hi]`; bounds are `±inf` when clipping is off, so nothing moves then.
#[inline]
fn clip(x: f64, lo: f64, hi: f64) -> f64 {
    if x > hi {
        hi
    } else if x < lo {
        lo
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{FeatureSpec, ImputePolicy, ModelArtifact};
    use crate::model::tests::{artifact, linear};
    use proptest::prelude::*;

    fn model(impute: ImputePolicy, clip_mads: Option<f64>) -> Model {
        let mut a = artifact("s", "1", 2, linear(0.0, vec![1.0, 1.0]));
        a.impute = impute;
        a.clip_mads = clip_mads;
        a.features[1].median = 5.0;
        a.features[1].mad = 0.0; // clipping skipped for f1
        Model::from_artifact(a).unwrap()
    }

    #[test]
    fn imputes_median_and_reports() {
        let m = model(ImputePolicy::Median, Some(3.0));
        let s = m
            .sanitise(&[None, Some(f64::NAN), Some(1.0), Some(2.0)])
            .unwrap();
        assert_eq!(s.values, vec![0.0, 5.0, 1.0, 2.0]);
        assert_eq!(s.changes.len(), 2);
        assert_eq!(s.changes[0].row, 0);
        assert_eq!(s.changes[0].feature, "f0");
        assert_eq!(s.changes[0].action, SanitiserAction::Imputed);
        assert_eq!(s.changes[0].original, None);
        assert_eq!(s.changes[1].feature, "f1");
        assert_eq!(s.changes[1].value, 5.0);
    }

    #[test]
    fn imputes_constant_and_clips_it() {
        let m = model(ImputePolicy::Constant { value: 100.0 }, Some(3.0));
        let s = m.sanitise(&[None, None]).unwrap();
        // f0 is clipped to 0 + 3·1; f1 has MAD 0 so the constant stands.
        assert_eq!(s.values, vec![3.0, 100.0]);
        assert!(
            s.changes
                .iter()
                .all(|c| c.action == SanitiserAction::Imputed)
        );
    }

    #[test]
    fn reject_policy_names_row_and_feature() {
        let m = model(ImputePolicy::Reject, None);
        let err = m
            .sanitise(&[Some(1.0), Some(1.0), Some(1.0), None])
            .unwrap_err();
        assert_eq!(
            err,
            SanitiseError::Missing {
                row: 1,
                feature: "f1".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "row 1, feature \"f1\": value is missing and the model's impute policy is reject"
        );
    }

    #[test]
    fn infinite_is_an_error() {
        let m = model(ImputePolicy::Median, Some(3.0));
        let err = m
            .sanitise(&[Some(f64::NEG_INFINITY), Some(0.0)])
            .unwrap_err();
        assert!(matches!(err, SanitiseError::NotFinite { row: 0, .. }));
        assert!(err.to_string().contains("not finite"));
    }

    #[test]
    fn clips_outliers_both_sides_and_skips_zero_mad() {
        let m = model(ImputePolicy::Median, Some(3.0));
        let s = m
            .sanitise(&[Some(7.0), Some(1e9), Some(-7.0), Some(-1e9)])
            .unwrap();
        assert_eq!(s.values, vec![3.0, 1e9, -3.0, -1e9]);
        assert_eq!(s.changes.len(), 2);
        assert_eq!(s.changes[0].action, SanitiserAction::Clipped);
        assert_eq!(s.changes[0].original, Some(7.0));
        assert_eq!(s.changes[1].row, 1);
        assert_eq!(s.changes[1].value, -3.0);
    }

    #[test]
    fn no_clipping_without_clip_mads() {
        let m = model(ImputePolicy::Median, None);
        let s = m.sanitise(&[Some(1e9), Some(1.0)]).unwrap();
        assert!(s.changes.is_empty());
    }

    #[test]
    fn ragged_batch_is_an_error_and_empty_is_fine() {
        let m = model(ImputePolicy::Median, None);
        assert!(matches!(
            m.sanitise(&[Some(1.0)]),
            Err(SanitiseError::RaggedBatch {
                len: 1,
                n_features: 2
            })
        ));
        assert_eq!(m.sanitise(&[]).unwrap().values, Vec::<f64>::new());
    }

    fn features() -> impl Strategy<Value = Vec<FeatureSpec>> {
        proptest::collection::vec(
            (-100.0f64..100.0, prop_oneof![Just(0.0), 0.0f64..10.0]),
            1..6,
        )
        .prop_map(|stats| {
            stats
                .into_iter()
                .enumerate()
                .map(|(i, (median, mad))| FeatureSpec {
                    name: format!("f{i}"),
                    median,
                    mad,
                    min: median - 1.0,
                    max: median + 1.0,
                })
                .collect()
        })
    }

    fn value() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            1 => Just(None),
            1 => Just(Some(f64::NAN)),
            8 => (-1e6f64..1e6).prop_map(Some),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn sanitising_is_idempotent(
            features in features(),
            clip_mads in proptest::option::of(0.1f64..10.0),
            constant in proptest::option::of(-1e4f64..1e4),
            values in proptest::collection::vec(value(), 0..40),
        ) {
            let n = features.len();
            let mut a: ModelArtifact = artifact("p", "1", n, linear(0.0, vec![1.0; n]));
            a.features = features;
            a.clip_mads = clip_mads;
            a.impute = constant.map_or(ImputePolicy::Median, |value| ImputePolicy::Constant { value });
            let m = Model::from_artifact(a).unwrap();
            let values = &values[..values.len() / n * n];
            let first = m.sanitise(values).unwrap();
            prop_assert!(first.values.iter().all(|v| v.is_finite()));
            let again: Vec<Option<f64>> = first.values.iter().copied().map(Some).collect();
            let second = m.sanitise(&again).unwrap();
            prop_assert_eq!(&second.values, &first.values);
            prop_assert!(second.changes.is_empty());
        }
    }
}
