//! The requirement catalogue: every id a case or gate may name.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::case::Case;

/// The catalogue shipped with the harness (`harness/requirements.toml`).
pub const BUILTIN_CATALOGUE: &str = include_str!("../requirements.toml");

/// One requirement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Stable id, e.g. `ENG-SWAP`.
    pub id: String,
    /// What must hold.
    pub title: String,
    /// Where the requirement comes from (regulation, standard, design).
    pub source: String,
    /// Whether a run with `require-traced = true` fails when no case checks it.
    #[serde(default)]
    pub required: bool,
}

/// All known requirements.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// The requirements, in catalogue order.
    #[serde(rename = "requirement")]
    pub requirements: Vec<Requirement>,
}

/// A catalogue that cannot be read, or a case that names an unknown id.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogueError {
    /// The TOML does not parse.
    #[error("failed to parse the requirement catalogue: {0}")]
    Parse(#[from] toml::de::Error),
    /// An id appears twice.
    #[error("requirement id {0:?} appears twice in the catalogue")]
    Duplicate(String),
    /// A case names no requirement.
    #[error("case {case} names no requirement id (at least one is required)")]
    NoRequirement {
        /// The case id.
        case: String,
    },
    /// A case names an id the catalogue does not have.
    #[error("case {case} names unknown requirement id {id:?}")]
    Unknown {
        /// The case id.
        case: String,
        /// The unknown id.
        id: String,
    },
    /// Two cases share an id.
    #[error("case id {0} is registered twice")]
    DuplicateCase(String),
}

impl Catalogue {
    /// Parses a catalogue from TOML text.
    pub fn parse(text: &str) -> Result<Self, CatalogueError> {
        let catalogue: Catalogue = toml::from_str(text)?;
        let mut seen = BTreeSet::new();
        for r in &catalogue.requirements {
            if !seen.insert(r.id.as_str()) {
                return Err(CatalogueError::Duplicate(r.id.clone()));
            }
        }
        Ok(catalogue)
    }

    /// The catalogue shipped with the harness.
    pub fn builtin() -> Result<Self, CatalogueError> {
        Self::parse(BUILTIN_CATALOGUE)
    }

    /// The requirement with this id.
    pub fn get(&self, id: &str) -> Option<&Requirement> {
        self.requirements.iter().find(|r| r.id == id)
    }

    /// Checks that every case names at least one requirement, all known, and
    /// that case ids are unique.
    pub fn check(&self, cases: &[Case]) -> Result<(), CatalogueError> {
        self.check_ids(cases.iter().map(|c| (c.id(), c.requirements.to_vec())))
    }

    /// [`Catalogue::check`] over `(case or gate id, requirement ids)` pairs.
    pub fn check_ids<'a>(
        &self,
        items: impl IntoIterator<Item = (String, Vec<&'a str>)>,
    ) -> Result<(), CatalogueError> {
        let mut ids = BTreeSet::new();
        for (id, requirements) in items {
            if requirements.is_empty() {
                return Err(CatalogueError::NoRequirement { case: id });
            }
            for req in requirements {
                if self.get(req).is_none() {
                    return Err(CatalogueError::Unknown {
                        case: id,
                        id: req.to_owned(),
                    });
                }
            }
            if !ids.insert(id.clone()) {
                return Err(CatalogueError::DuplicateCase(id));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{CaseCtx, CaseOutcome};

    async fn noop(_ctx: CaseCtx) -> CaseOutcome {
        Ok(())
    }

    #[test]
    fn builtin_parses_and_has_architecture_ids() {
        let c = Catalogue::builtin().unwrap();
        for id in ["ENG-SWAP", "SLA-LAT", "SEC-ENC", "CMP-AUDIT", "BT-DSR"] {
            assert!(c.get(id).is_some(), "{id}");
        }
    }

    #[test]
    fn unknown_and_duplicate_ids_are_named() {
        let c = Catalogue::builtin().unwrap();
        let bad = crate::case!("conformance", noop, ["NOPE-1"], []);
        let err = c.check(&[bad]).unwrap_err().to_string();
        assert!(
            err.contains("conformance::noop") && err.contains("NOPE-1"),
            "{err}"
        );
        let ok = crate::case!("conformance", noop, ["ENG-OIP"], []);
        let err = c.check(&[ok, ok]).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
        let dup = "[[requirement]]\nid='A'\ntitle='t'\nsource='s'\n".repeat(2);
        assert!(matches!(
            Catalogue::parse(&dup),
            Err(CatalogueError::Duplicate(_))
        ));
    }
}
