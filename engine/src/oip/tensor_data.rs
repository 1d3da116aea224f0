//! Tensor `data` in either form the protocol allows: "in their natural multi-dimensional
//! representation, or as a flattened one-dimensional representation" (KServe V2).
//!
//! Nested arrays are flattened row-major while they are read, so the nested form costs no
//! intermediate tree. The nesting must be rectangular and at most [`MAX_NESTING`] deep; the
//! caller checks its dimensions against the tensor's shape.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

/// Deepest nesting of arrays accepted in tensor `data`.
pub const MAX_NESTING: usize = 32;

/// Row-major values (`None` for `null`) and the dimensions of the arrays they came in:
/// `[len]` for flat data, `[2, 3]` for `[[a, b, c], [d, e, f]]`.
pub(super) struct TensorData {
    pub(super) values: Vec<Option<f64>>,
    pub(super) dims: Vec<usize>,
}

impl<'de> de::Deserialize<'de> for TensorData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut values = Vec::new();
        let dims = deserializer.deserialize_seq(Level {
            out: &mut values,
            depth: 1,
        })?;
        Ok(TensorData { values, dims })
    }
}

/// One array at nesting `depth` (1 for the outermost); yields its dimensions.
struct Level<'a> {
    out: &'a mut Vec<Option<f64>>,
    depth: usize,
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = Vec<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of numbers and nulls, flat or nested")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<usize>, A::Error> {
        let mut len = 0usize;
        let mut inner: Option<Vec<usize>> = None;
        while let Some(dims) = seq.next_element_seed(Element {
            out: &mut *self.out,
            depth: self.depth,
        })? {
            match &inner {
                None => inner = Some(dims),
                Some(first) if !same_dims(first, &dims) => {
                    return Err(de::Error::custom(format_args!(
                        "element {len} is {} but element 0 is {}; nested data must be rectangular",
                        Describe(&dims),
                        Describe(first)
                    )));
                }
                Some(_) => {}
            }
            len += 1;
        }
        let mut dims = Vec::with_capacity(1 + inner.as_ref().map_or(0, Vec::len));
        dims.push(len);
        dims.extend(inner.unwrap_or_default());
        Ok(dims)
    }
}

/// `a == b`, without the `memcmp` call slice equality makes: this runs once per element, and
/// the call cost three times the parse of a flat tensor.
#[inline]
fn same_dims(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// One element of an array at nesting `depth`: a number, a null, or a deeper array.
/// Yields the element's dimensions (empty for a scalar).
struct Element<'a> {
    out: &'a mut Vec<Option<f64>>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = Vec<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<usize>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Element<'_> {
    type Value = Vec<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, null or a nested array")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Vec<usize>, E> {
        self.out.push(Some(v));
        Ok(Vec::new())
    }

    // JSON numbers are read as f64; INT64 tensors check the exactly representable range later.
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<usize>, E> {
        self.visit_f64(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<usize>, E> {
        self.visit_f64(v as f64)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<usize>, E> {
        self.out.push(None);
        Ok(Vec::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<Vec<usize>, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<usize>, A::Error> {
        if self.depth >= MAX_NESTING {
            return Err(de::Error::custom(format_args!(
                "arrays nested more than {MAX_NESTING} deep exceed the limit of {MAX_NESTING}"
            )));
        }
        Level {
            out: self.out,
            depth: self.depth + 1,
        }
        .visit_seq(seq)
    }
}

/// `a number` or `an array of dimensions [2, 3]`, for the rectangularity error.
struct Describe<'a>(&'a [usize]);

impl fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("a number or null")
        } else {
            write!(f, "an array of dimensions {:?}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::oip::{InferRequest, RequestInput};

    fn parse(data: &str, shape: &str) -> Result<RequestInput, String> {
        let body = format!(
            r#"{{"inputs": [{{"name": "x", "shape": {shape}, "datatype": "FP64", "data": {data}}}]}}"#
        );
        crate::json::parse::<InferRequest>(body.as_bytes())
            .map(|mut r| r.inputs.remove(0))
            .map_err(|e| e.to_string())
    }

    /// Regression: `"data": [[0, 0, 0, 0, 0, 0, 0, 0]]` with shape [1, 8] was a 400, though
    /// the protocol allows the natural multi-dimensional representation.
    #[test]
    fn nested_data_is_flattened_row_major() {
        let input = parse("[[0,0,0,0,0,0,0,0]]", "[1, 8]").unwrap();
        assert_eq!(input.data, vec![Some(0.0); 8]);
        let input = parse("[[1, null], [3, 4.5]]", "[2, 2]").unwrap();
        assert_eq!(input.data, [Some(1.0), None, Some(3.0), Some(4.5)]);
        let input = parse("[[[1], [2]], [[3], [4]]]", "[2, 2, 1]").unwrap();
        assert_eq!(input.data.len(), 4);
        // Flat data is unchanged, whatever the shape; and it is written back flat.
        let input = parse("[1, 2, null, -4]", "[2, 2]").unwrap();
        assert_eq!(input.data, [Some(1.0), Some(2.0), None, Some(-4.0)]);
        let nested = parse("[[1, 2], [null, -4]]", "[2, 2]").unwrap();
        assert_eq!(nested, input);
        assert_eq!(
            serde_json::to_value(&nested).unwrap()["data"],
            serde_json::json!([1.0, 2.0, null, -4.0])
        );
    }

    #[test]
    fn nesting_must_be_rectangular_and_match_the_shape() {
        for (data, shape, fragments) in [
            (
                "[[1, 2], [3]]",
                "[2, 2]",
                &[
                    "inputs[0].data",
                    "element 1 is an array of dimensions [1] but element 0 is an array of dimensions [2]",
                ][..],
            ),
            (
                "[1, [2]]",
                "[2]",
                &["element 1 is an array of dimensions [1] but element 0 is a number or null"],
            ),
            (
                "[[1, 2, 3, 4]]",
                "[2, 2]",
                &[
                    "inputs[0]",
                    "data: nested as [1, 4], which does not match shape [2, 2]",
                ],
            ),
            (
                "[[1, 2]]",
                "[2]",
                &["nested as [1, 2], which does not match shape [2]"],
            ),
            (
                "[[1, \"2\"]]",
                "[1, 2]",
                &[
                    "inputs[0].data[0][1]",
                    "invalid type: string \"2\", expected a number, null or a nested array",
                ],
            ),
            ("7", "[1]", &["inputs[0].data", "invalid type: integer `7`"]),
        ] {
            let msg = parse(data, shape).unwrap_err();
            for f in fragments {
                assert!(msg.contains(f), "{data}: {msg:?} lacks {f:?}");
            }
        }
    }

    #[test]
    fn nesting_depth_is_capped() {
        let nest = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let ones = |depth: usize| format!("[{}]", vec!["1"; depth].join(", "));
        let input = parse(&nest(super::MAX_NESTING), &ones(super::MAX_NESTING)).unwrap();
        assert_eq!(input.data, [Some(1.0)]);
        let msg = parse(&nest(super::MAX_NESTING + 1), &ones(super::MAX_NESTING + 1)).unwrap_err();
        assert!(
            msg.contains("arrays nested more than 32 deep exceed the limit of 32"),
            "{msg}"
        );
    }
}
