//! The registry: the one list of suites a `gauntlet` binary runs, and everything derived
//! from it — `--suite` names (and deprecated aliases), the suites' subcommands, the cases and planned gates of a
//! profile, the requirement catalogue check over both, the selection, and the crate
//! versions a report records.
//!
//! The list itself lives in the composition root; this module holds only what every list
//! needs, so adding a suite touches no file here.

use std::collections::{BTreeMap, BTreeSet};

use crate::case::Case;
use crate::catalogue::{Catalogue, CatalogueError};
use crate::command::{BUILT_IN_COMMANDS, SuiteCommand};
use crate::config::{ConfigFile, Settings};
use crate::runner::Selection;
use crate::suite::{PlannedCase, Suite, SuiteError};

/// A registry that cannot be built, a config it rejects, or a selection it cannot make.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two suites (or a suite and an alias) share a name.
    #[error("suite name {0:?} is registered twice")]
    DuplicateSuite(String),
    /// A suite's subcommand has the name of `gauntlet`'s own or another suite's.
    #[error("suite {suite}'s subcommand `{command}` is already a gauntlet subcommand")]
    DuplicateCommand {
        /// The subcommand name.
        command: String,
        /// The suite that declared it second.
        suite: &'static str,
    },
    /// A case's `suite` is not the suite that returned it.
    #[error("case {case} is returned by suite {suite}, whose cases must be named {suite}::…")]
    ForeignCase {
        /// The case id.
        case: String,
        /// The suite that returned it.
        suite: &'static str,
    },
    /// `[profile.X.<table>]` names no registered suite.
    #[error(
        "[profile.{profile}.{table}] in {path}: `{table}` is not a suite (suite tables: {known})"
    )]
    UnknownTable {
        /// The profile.
        profile: String,
        /// The table name.
        table: String,
        /// The config file.
        path: String,
        /// The registered suite names.
        known: String,
    },
    /// A suite's settings are invalid.
    #[error("[profile.{profile}.{suite}] {source}")]
    Settings {
        /// The profile.
        profile: String,
        /// The suite.
        suite: &'static str,
        /// The suite's message, naming the key.
        source: SuiteError,
    },
    /// A case or gate names no requirement, or an unknown one.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// `--suite` (or the profile's `suites`) names no suite.
    #[error(
        "suite {name:?} (from --suite or the profile's `suites`) is not a suite (known: {known})"
    )]
    UnknownSuite {
        /// The name given.
        name: String,
        /// The registered names.
        known: String,
    },
    /// `--requirement` names an id the catalogue lacks.
    #[error("--requirement {0:?} is not in the requirement catalogue")]
    UnknownRequirement(String),
    /// Nothing matches.
    #[error("no case matches the selection")]
    Empty,
}

/// A deprecated suite name and the name it stands for: `(alias, name)`.
pub type Renamed = (&'static str, &'static str);

/// One suite of a plan: its selected cases or gates.
pub struct PlannedSuite<'r> {
    /// The suite.
    pub suite: &'r dyn Suite,
    /// Its selected cases (case suites).
    pub cases: Vec<Case>,
    /// Its selected gates (measured suites), in planned order.
    pub gates: Vec<PlannedCase>,
}

/// What a selection takes from the registry under a profile's settings.
pub struct Planned<'r> {
    /// The suites with at least one selected case or gate, in registry order.
    pub suites: Vec<PlannedSuite<'r>>,
}

impl Planned<'_> {
    /// Selected cases and gates in all.
    pub fn total(&self) -> usize {
        self.suites
            .iter()
            .map(|s| s.cases.len() + s.gates.len())
            .sum()
    }

    /// Every selected case of the case suites, in registry order (they run together).
    pub fn cases(&self) -> Vec<Case> {
        self.suites.iter().flat_map(|s| s.cases.clone()).collect()
    }

    /// `(id, requirements)` of every selected case and gate, in run order.
    pub fn listing(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = self
            .suites
            .iter()
            .flat_map(|s| &s.cases)
            .map(|c| {
                (
                    c.id(),
                    c.requirements.iter().map(|r| (*r).to_owned()).collect(),
                )
            })
            .collect();
        for s in &self.suites {
            for g in &s.gates {
                out.push((g.id(s.suite.name()), g.requirements.clone()));
            }
        }
        out
    }
}

/// The registered suites, in run order; see the [module docs](self).
pub struct Registry {
    suites: Vec<Box<dyn Suite>>,
    /// Every suite's subcommands, in registry order.
    commands: Vec<Box<dyn SuiteCommand>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Registry {
    /// A registry of `suites`, run in this order.
    ///
    /// # Errors
    ///
    /// [`RegistryError::DuplicateSuite`] when a name or alias repeats,
    /// [`RegistryError::DuplicateCommand`] when a subcommand's name is taken.
    pub fn new(suites: Vec<Box<dyn Suite>>) -> Result<Self, RegistryError> {
        let mut seen = BTreeSet::new();
        for s in &suites {
            for name in std::iter::once(s.name()).chain(s.aliases().iter().copied()) {
                if !seen.insert(name) {
                    return Err(RegistryError::DuplicateSuite(name.to_owned()));
                }
            }
        }
        let mut commands: Vec<Box<dyn SuiteCommand>> = Vec::new();
        let mut taken: BTreeSet<String> =
            BUILT_IN_COMMANDS.iter().map(|c| (*c).to_owned()).collect();
        for s in &suites {
            for c in s.commands() {
                let name = c.command().get_name().to_owned();
                if !taken.insert(name.clone()) {
                    return Err(RegistryError::DuplicateCommand {
                        command: name,
                        suite: s.name(),
                    });
                }
                commands.push(c);
            }
        }
        Ok(Registry { suites, commands })
    }

    /// The suites' subcommands, in registry order.
    pub fn commands(&self) -> impl Iterator<Item = &dyn SuiteCommand> {
        self.commands.iter().map(|c| c.as_ref())
    }

    /// The suite subcommand named `name`.
    pub fn command(&self, name: &str) -> Option<&dyn SuiteCommand> {
        self.commands().find(|c| c.command().get_name() == name)
    }

    /// The suites, in run order.
    pub fn suites(&self) -> impl Iterator<Item = &dyn Suite> {
        self.suites.iter().map(|s| s.as_ref())
    }

    /// The suite names, in run order.
    pub fn names(&self) -> Vec<&'static str> {
        self.suites.iter().map(|s| s.name()).collect()
    }

    /// The suite a `--suite` value names: `(name, Some(alias))` when by a deprecated alias.
    pub fn resolve(&self, name: &str) -> Option<(&'static str, Option<&'static str>)> {
        self.suites.iter().find_map(|s| {
            if s.name() == name {
                Some((s.name(), None))
            } else {
                s.aliases()
                    .iter()
                    .find(|a| **a == name)
                    .map(|a| (s.name(), Some(*a)))
            }
        })
    }

    /// Rejects a `[profile.X.<table>]` that names no suite (in any profile of the file).
    ///
    /// # Errors
    ///
    /// [`RegistryError::UnknownTable`] naming the profile and the table.
    pub fn check_tables(&self, file: &ConfigFile, path: &str) -> Result<(), RegistryError> {
        match file
            .suite_tables()
            .find(|(_, t)| !self.suites().any(|s| s.name() == *t))
        {
            None => Ok(()),
            Some((profile, table)) => Err(RegistryError::UnknownTable {
                profile: profile.to_owned(),
                table: table.to_owned(),
                path: path.to_owned(),
                known: self.names().join(", "),
            }),
        }
    }

    /// Every case and gate under `settings`, each suite's settings validated and every
    /// requirement id checked against `catalogue`; then the part `selection` takes.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] for bad settings, an unknown or missing requirement id, an
    /// unknown suite or requirement in the selection, or an empty selection.
    pub fn plan(
        &self,
        settings: &Settings,
        catalogue: &Catalogue,
        selection: &Selection,
    ) -> Result<Planned<'_>, RegistryError> {
        let mut all = Vec::new();
        for suite in self.suites() {
            let cases = suite.cases();
            if let Some(c) = cases.iter().find(|c| c.suite != suite.name()) {
                return Err(RegistryError::ForeignCase {
                    case: c.id(),
                    suite: suite.name(),
                });
            }
            let gates = suite
                .gates(settings)
                .map_err(|source| RegistryError::Settings {
                    profile: settings.profile.clone(),
                    suite: suite.name(),
                    source,
                })?;
            all.push(PlannedSuite {
                suite,
                cases,
                gates,
            });
        }
        catalogue.check_ids(all.iter().flat_map(|s| {
            let cases = s.cases.iter().map(|c| (c.id(), c.requirements.to_vec()));
            let gates = s.gates.iter().map(|g| {
                let reqs: Vec<&str> = g.requirements.iter().map(String::as_str).collect();
                (g.id(s.suite.name()), reqs)
            });
            cases.chain(gates)
        }))?;
        for r in &selection.requirements {
            if catalogue.get(r).is_none() {
                return Err(RegistryError::UnknownRequirement(r.clone()));
            }
        }
        let mut suites = Vec::new();
        for mut s in all {
            let name = s.suite.name();
            s.cases.retain(|c| selection.matches(c));
            s.gates
                .retain(|g| selection.matches_parts(name, &g.id(name), &g.requirements));
            if !s.cases.is_empty() || !s.gates.is_empty() {
                suites.push(s);
            }
        }
        let planned = Planned { suites };
        if planned.total() == 0 {
            return Err(RegistryError::Empty);
        }
        Ok(planned)
    }

    /// `--suite` values as canonical names, "" dropped; the aliases that were used.
    ///
    /// # Errors
    ///
    /// [`RegistryError::UnknownSuite`] naming the value and the known suites.
    pub fn canonical_suites(
        &self,
        given: &[String],
    ) -> Result<(Vec<String>, Vec<Renamed>), RegistryError> {
        let mut names = Vec::new();
        let mut aliases = Vec::new();
        for s in given.iter().filter(|s| !s.is_empty()) {
            let (name, alias) = self.resolve(s).ok_or_else(|| RegistryError::UnknownSuite {
                name: s.clone(),
                known: self.names().join(", "),
            })?;
            if let Some(a) = alias {
                aliases.push((a, name));
            }
            names.push(name.to_owned());
        }
        Ok((names, aliases))
    }

    /// The crate versions a report records: `base` (the binary and the framework crates)
    /// plus the crate of every suite named in `suites` (those that produced a case or gate).
    pub fn crate_versions<'a>(
        &self,
        base: &[(&str, &str)],
        suites: impl IntoIterator<Item = &'a str>,
    ) -> BTreeMap<String, String> {
        let used: BTreeSet<&str> = suites.into_iter().collect();
        base.iter()
            .copied()
            .chain(
                self.suites()
                    .filter(|s| used.contains(s.name()))
                    .map(|s| s.crate_version()),
            )
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}
