//! `gauntlet.toml`: profiles layered over compiled-in defaults.
//!
//! ```toml
//! [profile.default]
//! concurrency = 4
//! case-timeout = "30s"
//!
//! [profile.ci]
//! # CI machines are small and shared: fewer cases at once, more generated inputs.
//! concurrency = 2
//! property-cases = 256
//! ```
//!
//! Resolution order, later wins: compiled defaults, `[profile.default]`,
//! `[profile.<name>]`, then command-line flags (applied by the CLI).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::skips::SkipLimit;

/// Stands for the config path in messages when there is no config file.
const NO_CONFIG: &str = "(no config file)";

/// The seed used when neither the config nor the command line sets one.
pub const DEFAULT_SEED: u64 = 0x6A75_6E74_6C65_7400;

/// A parsed `gauntlet.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// Named profiles.
    #[serde(default)]
    pub profile: BTreeMap<String, Profile>,
}

/// One profile: every field optional, layered over the ones before it.
///
/// Every table-valued key is a suite's settings (`[profile.ci.load]`), kept in
/// [`Profile::sections`] for that suite to validate; the registry rejects a table that
/// names no registered suite. Any other key must be one of the fields below.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// Run seed.
    pub seed: Option<u64>,
    /// Cases running at once.
    pub concurrency: Option<usize>,
    /// Deadline of one case.
    pub case_timeout: Option<Duration>,
    /// Generated inputs per property case.
    pub property_cases: Option<u32>,
    /// Suites to run; empty or absent means all.
    pub suites: Option<Vec<String>>,
    /// Where reports go.
    pub report_dir: Option<PathBuf>,
    /// Deadline to reach an HTTP target.
    pub connect_timeout: Option<Duration>,
    /// Deadline of one HTTP request.
    pub request_timeout: Option<Duration>,
    /// The request-body limit the target is expected to enforce (413 above it).
    pub max_body_bytes: Option<usize>,
    /// Skipped cases a run may have and pass (`fail-on-skip = true` is `max-skipped = 0`).
    pub max_skipped: Option<SkipLimit>,
    /// Fail the run when a required requirement has no case that ran.
    pub require_traced: Option<bool>,
    /// `gauntlet coverage`: the engine's least line coverage, in percent.
    pub min_line_coverage: Option<f64>,
    /// `gauntlet mutants`: the engine's least mutation score, in percent.
    pub min_mutation_score: Option<f64>,
    /// `[profile.X.<suite>]` tables by suite name, each read by its suite.
    pub sections: BTreeMap<String, toml::Table>,
}

/// The scalar keys of a profile, as written.
const PROFILE_KEYS: &[&str] = &[
    "seed",
    "concurrency",
    "case-timeout",
    "property-cases",
    "suites",
    "report-dir",
    "connect-timeout",
    "request-timeout",
    "max-body-bytes",
    "max-skipped",
    "fail-on-skip",
    "require-traced",
    "min-line-coverage",
    "min-mutation-score",
];

/// A duration written the humantime way (`"30s"`, `"1m 30s"`).
#[derive(Deserialize)]
#[serde(transparent)]
struct HumanDuration(#[serde(with = "humantime_serde")] Duration);

/// A key that is not a scalar setting: a suite's table, or an error raised while toml still
/// knows where the value is, so the message points at the offending line.
struct SuiteTable<'a>(&'a str);

impl<'de> serde::de::DeserializeSeed<'de> for SuiteTable<'_> {
    type Value = toml::Table;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<toml::Table, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::Table(t) => Ok(t),
            _ => Err(serde::de::Error::custom(format_args!(
                "unknown field `{}`, expected one of {}, or a suite's table \
                 ([profile.<name>.<suite>])",
                self.0,
                PROFILE_KEYS
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// Reads a profile key by key, each value through its own type, so toml's error carries
/// the span of the line at fault (a whole-table pass would point at the `[profile.x]`
/// header instead).
struct ProfileVisitor;

impl<'de> serde::de::Visitor<'de> for ProfileVisitor {
    type Value = Profile;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a profile table")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Profile, A::Error> {
        let mut p = Profile::default();
        let mut fail_on_skip = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "seed" => p.seed = Some(map.next_value()?),
                "concurrency" => p.concurrency = Some(map.next_value()?),
                "case-timeout" => p.case_timeout = Some(map.next_value::<HumanDuration>()?.0),
                "property-cases" => p.property_cases = Some(map.next_value()?),
                "suites" => p.suites = Some(map.next_value()?),
                "report-dir" => p.report_dir = Some(map.next_value()?),
                "connect-timeout" => {
                    p.connect_timeout = Some(map.next_value::<HumanDuration>()?.0);
                }
                "request-timeout" => {
                    p.request_timeout = Some(map.next_value::<HumanDuration>()?.0);
                }
                "max-body-bytes" => p.max_body_bytes = Some(map.next_value()?),
                "max-skipped" => p.max_skipped = Some(map.next_value()?),
                "fail-on-skip" => fail_on_skip = Some(map.next_value::<bool>()?),
                "require-traced" => p.require_traced = Some(map.next_value()?),
                "min-line-coverage" => {
                    let v: f64 = map.next_value()?;
                    if !(0.0..=100.0).contains(&v) {
                        return Err(serde::de::Error::custom(format_args!(
                            "min-line-coverage = {v}: a percentage must be 0 to 100"
                        )));
                    }
                    p.min_line_coverage = Some(v);
                }
                "min-mutation-score" => {
                    let v: f64 = map.next_value()?;
                    if !(0.0..=100.0).contains(&v) {
                        return Err(serde::de::Error::custom(format_args!(
                            "min-mutation-score = {v}: a percentage must be 0 to 100"
                        )));
                    }
                    p.min_mutation_score = Some(v);
                }
                _ => {
                    let table = map.next_value_seed(SuiteTable(&key))?;
                    p.sections.insert(key, table);
                }
            }
        }
        match (fail_on_skip, p.max_skipped) {
            (Some(true), Some(limit)) => {
                return Err(serde::de::Error::custom(format_args!(
                    "fail-on-skip = true and max-skipped = {limit} contradict each other: \
                     fail-on-skip means max-skipped = 0; set one"
                )));
            }
            (Some(true), None) => p.max_skipped = Some(SkipLimit::Count(0)),
            _ => {}
        }
        Ok(p)
    }
}

impl<'de> Deserialize<'de> for Profile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ProfileVisitor)
    }
}

/// Fully resolved settings of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The profile these settings came from.
    pub profile: String,
    /// Run seed.
    pub seed: u64,
    /// Cases running at once (1 to 256).
    pub concurrency: usize,
    /// Deadline of one case (1 ms to 1 h).
    pub case_timeout: Duration,
    /// Generated inputs per property case (1 to 100,000).
    pub property_cases: u32,
    /// Suites to run; empty means all.
    pub suites: Vec<String>,
    /// Where reports go.
    pub report_dir: PathBuf,
    /// Deadline to reach an HTTP target (100 ms to 5 s).
    pub connect_timeout: Duration,
    /// Deadline of one HTTP request (1 ms to 10 min).
    pub request_timeout: Duration,
    /// The request-body limit the target is expected to enforce (1 KiB to 1 GiB).
    pub max_body_bytes: usize,
    /// Skipped cases a run may have and pass; `None`: any number.
    pub max_skipped: Option<SkipLimit>,
    /// Whether every `required` catalogue requirement must be checked by a case that ran.
    pub require_traced: bool,
    /// `gauntlet coverage`'s gate: the engine's least line coverage in percent; `None`: no gate.
    pub min_line_coverage: Option<f64>,
    /// `gauntlet mutants`' gate: the engine's least mutation score in percent; `None`: no gate.
    pub min_mutation_score: Option<f64>,
    /// Per-suite tables by suite name, merged key by key, nested tables too, from `[profile.default.<suite>]` then `[profile.<name>.<suite>]`.
    /// Each suite validates its own table.
    pub sections: BTreeMap<String, toml::Table>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            profile: "default".to_owned(),
            seed: DEFAULT_SEED,
            concurrency: 4,
            case_timeout: Duration::from_secs(60),
            property_cases: 64,
            suites: Vec::new(),
            report_dir: PathBuf::from("gauntlet-report"),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            // The reference engine's default limit.
            max_body_bytes: 1 << 20,
            max_skipped: None,
            require_traced: false,
            min_line_coverage: None,
            min_mutation_score: None,
            sections: BTreeMap::new(),
        }
    }
}

/// A config that cannot be read or resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("failed to read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown key.
    #[error("failed to parse config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with the key and line.
        message: String,
    },
    /// The requested profile does not exist.
    #[error("profile {name:?} is not defined in {path} (defined: {defined})")]
    UnknownProfile {
        /// The profile asked for.
        name: String,
        /// The file.
        path: String,
        /// The profiles that exist.
        defined: String,
    },
    /// A value is out of its range: the field, as written in the config (`concurrency`).
    #[error("{1} (set by --{0} or the config profile)")]
    OutOfRange(&'static str, crate::gate::RangeError),
}

/// Layers `over` onto `base`: keys of `over` win, tables present in both merge recursively.
fn merge_table(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over_inner)) => {
                merge_table(inner, over_inner);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

impl ConfigFile {
    /// Parses TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
    }

    /// Every `(profile, suite table)` pair the file names, in file order of profiles.
    pub fn suite_tables(&self) -> impl Iterator<Item = (&str, &str)> {
        self.profile.iter().flat_map(|(profile, p)| {
            p.sections
                .keys()
                .map(move |suite| (profile.as_str(), suite.as_str()))
        })
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }
}

impl Settings {
    /// Resolves `profile` from `file` (None: compiled defaults only) over the
    /// defaults, then `overrides` (the command line) over that, and validates the result.
    ///
    /// `default` always exists; any other name must be defined in the file.
    pub fn resolve(
        file: Option<(&ConfigFile, &Path)>,
        profile: &str,
        overrides: &Profile,
    ) -> Result<Settings, ConfigError> {
        let mut settings = Settings {
            profile: profile.to_owned(),
            ..Settings::default()
        };
        let empty = ConfigFile::default();
        let (file, path) = file.unwrap_or((&empty, Path::new(NO_CONFIG)));
        if let Some(base) = file.profile.get("default") {
            settings.apply(base);
        }
        if profile != "default" {
            let named = file
                .profile
                .get(profile)
                .ok_or_else(|| ConfigError::UnknownProfile {
                    name: profile.to_owned(),
                    path: if file.profile.is_empty() && path == Path::new(NO_CONFIG) {
                        "the config: no --config given and no ./gauntlet.toml".to_owned()
                    } else {
                        path.display().to_string()
                    },
                    defined: std::iter::once("default")
                        .chain(
                            file.profile
                                .keys()
                                .map(String::as_str)
                                .filter(|k| *k != "default"),
                        )
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            settings.apply(named);
        }
        settings.apply(overrides);
        settings.validate()?;
        Ok(settings)
    }

    /// Layers the fields `p` sets over these settings.
    pub fn apply(&mut self, p: &Profile) {
        let Profile {
            seed,
            concurrency,
            case_timeout,
            property_cases,
            suites,
            report_dir,
            connect_timeout,
            request_timeout,
            max_body_bytes,
            max_skipped,
            require_traced,
            min_line_coverage,
            min_mutation_score,
            sections,
        } = p.clone();
        self.seed = seed.unwrap_or(self.seed);
        self.concurrency = concurrency.unwrap_or(self.concurrency);
        self.case_timeout = case_timeout.unwrap_or(self.case_timeout);
        self.property_cases = property_cases.unwrap_or(self.property_cases);
        self.suites = suites.unwrap_or_else(|| self.suites.clone());
        self.report_dir = report_dir.unwrap_or_else(|| self.report_dir.clone());
        self.connect_timeout = connect_timeout.unwrap_or(self.connect_timeout);
        self.request_timeout = request_timeout.unwrap_or(self.request_timeout);
        self.max_body_bytes = max_body_bytes.unwrap_or(self.max_body_bytes);
        self.max_skipped = max_skipped.or(self.max_skipped);
        self.require_traced = require_traced.unwrap_or(self.require_traced);
        self.min_line_coverage = min_line_coverage.or(self.min_line_coverage);
        self.min_mutation_score = min_mutation_score.or(self.min_mutation_score);
        for (suite, table) in sections {
            merge_table(self.sections.entry(suite).or_default(), table);
        }
    }

    /// The merged `[profile.X.<suite>]` table, empty when no layer sets one.
    pub fn section(&self, suite: &str) -> toml::Table {
        self.sections.get(suite).cloned().unwrap_or_default()
    }

    /// Checks every value against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check<T: PartialOrd + std::fmt::Debug>(
            field: &'static str,
            value: T,
            lo: T,
            hi: T,
            limit: &'static str,
        ) -> Result<(), ConfigError> {
            let ok = value >= lo && value <= hi;
            crate::gate::ensure_range(field, format!("{value:?}"), ok, limit)
                .map_err(|e| ConfigError::OutOfRange(field, e))
        }
        check("concurrency", self.concurrency, 1, 256, "1 to 256")?;
        check(
            "property-cases",
            self.property_cases,
            1,
            100_000,
            "1 to 100000",
        )?;
        check(
            "case-timeout",
            self.case_timeout,
            Duration::from_millis(1),
            Duration::from_secs(3600),
            "1ms to 1h",
        )?;
        check(
            "connect-timeout",
            self.connect_timeout,
            Duration::from_millis(100),
            Duration::from_secs(5),
            "100ms to 5s (an unreachable target must fail within 5 s)",
        )?;
        check(
            "max-body-bytes",
            self.max_body_bytes,
            1 << 10,
            1 << 30,
            "1024 to 1073741824 (1 KiB to 1 GiB)",
        )?;
        check(
            "request-timeout",
            self.request_timeout,
            Duration::from_millis(1),
            Duration::from_secs(600),
            "1ms to 10min",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
[profile.default]
concurrency = 8
case-timeout = "5s"

[profile.ci]
concurrency = 2
property-cases = 256
"#;

    #[test]
    fn suite_sections_merge_key_by_key_and_nested_tables_too() {
        let text = r#"
[profile.default.load]
rate = 1000
duration = "5s"
[profile.default.load.gates]
p99 = "1ms"
p50 = "200us"

[profile.ci.load]
rate = 10000
[profile.ci.load.gates]
p99 = "2ms"

[profile.ci.backtest]
fees-bps = 1.5
"#;
        let file = ConfigFile::parse(text, Path::new("g.toml")).unwrap();
        let at = |profile| {
            Settings::resolve(
                Some((&file, Path::new("g.toml"))),
                profile,
                &Profile::default(),
            )
            .unwrap()
        };
        let ci = at("ci");
        let load = ci.section("load");
        assert_eq!(load["rate"].as_integer(), Some(10_000), "ci wins");
        assert_eq!(load["duration"].as_str(), Some("5s"), "default kept");
        let gates = load["gates"].as_table().unwrap();
        assert_eq!(gates["p99"].as_str(), Some("2ms"));
        assert_eq!(gates["p50"].as_str(), Some("200us"), "nested default kept");
        assert_eq!(ci.section("backtest")["fees-bps"].as_float(), Some(1.5));
        let default = at("default");
        assert!(default.section("backtest").is_empty());
        assert_eq!(default.section("load")["rate"].as_integer(), Some(1_000));
    }

    #[test]
    fn tables_are_suite_sections_and_other_unknown_keys_errors() {
        let file = ConfigFile::parse("[profile.ci.laod]\nrate = 1\n", Path::new("g.toml")).unwrap();
        assert_eq!(file.suite_tables().collect::<Vec<_>>(), [("ci", "laod")]);
        let err = ConfigFile::parse("[profile.ci]\nlaod = 1\n", Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("laod") && err.contains("g.toml"), "{err}");
    }

    #[test]
    fn skip_budgets_layer_and_fail_on_skip_means_none() {
        let text = "[profile.default]\nmax-skipped = \"10%\"\n[profile.ci]\nfail-on-skip = true\n";
        let file = ConfigFile::parse(text, Path::new("g.toml")).unwrap();
        let at =
            |p: &str| Settings::resolve(Some((&file, Path::new("g.toml"))), p, &Profile::default());
        assert_eq!(
            at("default").unwrap().max_skipped,
            Some(SkipLimit::Percent(10.0))
        );
        assert_eq!(at("ci").unwrap().max_skipped, Some(SkipLimit::Count(0)));
        assert_eq!(Settings::default().max_skipped, None);
        let err = ConfigFile::parse(
            "[profile.ci]\nfail-on-skip = true\nmax-skipped = 3\n",
            Path::new("g.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("fail-on-skip") && err.contains("max-skipped = 3"),
            "{err}"
        );
        let err = ConfigFile::parse(
            "[profile.ci]\nmax-skipped = \"200%\"\n",
            Path::new("g.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 2") && err.contains("0 to 100"), "{err}");
    }

    /// Regression: when profiles took suite tables, a bad key or value was reported at
    /// the `[profile.x]` header (line 1), not at its own line.
    #[test]
    fn a_bad_key_or_value_is_reported_at_its_own_line() {
        let parse = |text: &str| {
            ConfigFile::parse(text, Path::new("g.toml"))
                .unwrap_err()
                .to_string()
        };
        let err = parse("[profile.ci]\nseed = 1\nconcurency = 2\n");
        assert!(err.contains("line 3"), "{err}");
        assert!(
            err.contains("`concurency`") && err.contains("`concurrency`"),
            "{err}"
        );
        let err = parse("[profile.default]\ncase-timeout = \"soon\"\n");
        assert!(err.contains("line 2, column 16"), "{err}");
        let err = parse("[profile.default]\nconcurrency = \"four\"\n");
        assert!(err.contains("line 2"), "{err}");
    }
    #[test]
    fn profiles_layer_over_defaults() {
        let file = ConfigFile::parse(TOML, Path::new("g.toml")).unwrap();
        let d = Settings::resolve(
            Some((&file, Path::new("g.toml"))),
            "default",
            &Profile::default(),
        )
        .unwrap();
        assert_eq!(d.concurrency, 8);
        assert_eq!(d.case_timeout, Duration::from_secs(5));
        assert_eq!(d.property_cases, 64);
        let ci = Settings::resolve(
            Some((&file, Path::new("g.toml"))),
            "ci",
            &Profile::default(),
        )
        .unwrap();
        assert_eq!(ci.concurrency, 2);
        assert_eq!(ci.case_timeout, Duration::from_secs(5));
        assert_eq!(ci.property_cases, 256);
        assert_eq!(ci.profile, "ci");
        assert_eq!(
            Settings::resolve(None, "default", &Profile::default())
                .unwrap()
                .seed,
            DEFAULT_SEED
        );
    }

    #[test]
    fn command_line_layer_wins_before_validation() {
        let zero =
            ConfigFile::parse("[profile.default]\nconcurrency = 0\n", Path::new("g")).unwrap();
        let flags = Profile {
            concurrency: Some(2),
            ..Profile::default()
        };
        let s = Settings::resolve(Some((&zero, Path::new("g"))), "default", &flags).unwrap();
        assert_eq!(s.concurrency, 2);
    }

    #[test]
    fn errors_name_the_key_profile_and_limit() {
        let err = ConfigFile::parse("[profile.ci]\nconcurency = 2\n", Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("concurency") && err.contains("g.toml"),
            "{err}"
        );
        let file = ConfigFile::parse(TOML, Path::new("g.toml")).unwrap();
        let err = Settings::resolve(
            Some((&file, Path::new("g.toml"))),
            "nightly",
            &Profile::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nightly") && err.contains("ci"), "{err}");
        let zero =
            ConfigFile::parse("[profile.default]\nconcurrency = 0\n", Path::new("g")).unwrap();
        let err = Settings::resolve(
            Some((&zero, Path::new("g"))),
            "default",
            &Profile::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("concurrency") && err.contains("1 to 256"),
            "{err}"
        );
        let slow = ConfigFile::parse(
            "[profile.default]\nconnect-timeout = \"9s\"\n",
            Path::new("g"),
        )
        .unwrap();
        let err = Settings::resolve(
            Some((&slow, Path::new("g"))),
            "default",
            &Profile::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("connect-timeout") && err.contains("5s"),
            "{err}"
        );
    }
}
