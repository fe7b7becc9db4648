//! Layered, typed, validated configuration.
//!
//! Layers, later ones win:
//! 1. `config/default.toml`, embedded in every binary at build time, so a service starts with
//!    no file at all (the local defaults `make run` uses);
//! 2. the TOML file named by the `OMNI_CONFIG` environment variable, when set;
//! 3. environment variables `OMNI__<SECTION>__<KEY>`, for example
//!    `OMNI__KAFKA__BOOTSTRAP_SERVERS=kafka-1:9092` or `OMNI__GATEWAY__LISTEN=0.0.0.0:8080`.
//!
//! Each service reads the sections it needs as typed structs with `deny_unknown_fields`, then
//! [`Validate`] collects every problem before the service gives up, so an operator fixes a
//! config in one round.

use std::fmt;

use serde::de::DeserializeOwned;

/// The defaults every binary embeds.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// The environment variable naming an optional config file.
pub const CONFIG_FILE_ENV: &str = "OMNI_CONFIG";

/// The merged configuration layers, before any section is read.
#[derive(Clone, Debug)]
pub struct Settings {
    merged: config::Config,
    /// The file named by `OMNI_CONFIG`, if any, for messages.
    pub file: Option<String>,
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The layers could not be read or merged (unreadable file, TOML syntax).
    #[error("cannot read configuration: {0}")]
    Load(String),
    /// One or more values are missing, unknown or invalid; every problem is listed.
    #[error("invalid configuration:\n{0}")]
    Invalid(Problems),
}

impl Settings {
    /// Loads the layers from the process environment.
    pub fn load() -> Result<Self, SettingsError> {
        let file = std::env::var(CONFIG_FILE_ENV).ok().filter(|path| !path.is_empty());
        Self::load_from(file.as_deref(), std::env::vars())
    }

    /// Loads the layers from an optional file and the given environment (for tests).
    pub fn load_from(file: Option<&str>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(DEFAULT_TOML, config::FileFormat::Toml));
        if let Some(path) = file {
            if !std::path::Path::new(path).is_file() {
                return Err(SettingsError::Load(format!("{CONFIG_FILE_ENV}={path}: no such file")));
            }
            builder = builder.add_source(config::File::new(path, config::FileFormat::Toml));
        }
        let env: std::collections::HashMap<String, String> = env.into_iter().filter(|(key, _)| key.starts_with("OMNI__")).collect();
        builder = builder.add_source(
            config::Environment::with_prefix("OMNI")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        let merged = builder.build().map_err(|error| SettingsError::Load(error.to_string()))?;
        Ok(Self {
            merged,
            file: file.map(str::to_owned),
        })
    }

    /// Reads one section as a typed struct, recording a problem instead of failing so the
    /// caller can go on and report the other sections' problems too.
    pub fn section<T: DeserializeOwned + Validate>(&self, name: &str, problems: &mut Problems) -> Option<T> {
        match self.merged.get::<T>(name) {
            Ok(section) => {
                section.validate(name, problems);
                Some(section)
            }
            Err(error) => {
                problems.push(name, error.to_string());
                None
            }
        }
    }
}

/// Every problem found in a configuration, each with the key it concerns.
#[derive(Debug, Default)]
pub struct Problems(Vec<(String, String)>);

impl Problems {
    /// Records that `key` is wrong, and why.
    pub fn push(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.0.push((key.into(), problem.into()));
    }

    /// Records a problem when `ok` is false.
    pub fn check(&mut self, ok: bool, key: impl Into<String>, problem: impl Into<String>) {
        if !ok {
            self.push(key, problem);
        }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems found, as `(key, problem)`.
    pub fn items(&self) -> &[(String, String)] {
        &self.0
    }

    /// `Ok(())` when nothing was found, else every problem.
    pub fn into_result(self) -> Result<(), SettingsError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(SettingsError::Invalid(self))
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, problem) in &self.0 {
            writeln!(f, "  - {key}: {problem}")?;
        }
        Ok(())
    }
}

/// A config section that can check itself beyond what its types enforce.
pub trait Validate {
    /// Records every problem of this section, whose keys start with `prefix`.
    fn validate(&self, prefix: &str, problems: &mut Problems);
}

/// Checks that `value` parses as a socket address.
pub fn check_socket_addr(value: &str, key: String, problems: &mut Problems) {
    if value.parse::<std::net::SocketAddr>().is_err() {
        problems.push(key, format!("`{value}` is not an ip:port socket address"));
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        listen: String,
        limit: u32,
    }

    impl Validate for Sample {
        fn validate(&self, prefix: &str, problems: &mut Problems) {
            check_socket_addr(&self.listen, format!("{prefix}.listen"), problems);
            problems.check(self.limit > 0, format!("{prefix}.limit"), "must be above 0");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_embedded_defaults_parse() {
        Settings::load_from(None, Vec::new()).unwrap();
    }

    #[test]
    fn file_then_env_override_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("omni.toml");
        std::fs::write(&path, "[sample]\nlisten = \"127.0.0.1:1\"\nlimit = 5\n").unwrap();
        let settings = Settings::load_from(path.to_str(), env(&[("OMNI__SAMPLE__LIMIT", "7")])).unwrap();
        let mut problems = Problems::default();
        let sample: Sample = settings.section("sample", &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems}");
        assert_eq!(sample.listen, "127.0.0.1:1");
        assert_eq!(sample.limit, 7);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let env = env(&[
            ("OMNI__SAMPLE__LISTEN", "nowhere"),
            ("OMNI__SAMPLE__LIMIT", "0"),
            ("OMNI__OTHER__X", "1"),
        ]);
        let settings = Settings::load_from(None, env).unwrap();
        let mut problems = Problems::default();
        let _: Option<Sample> = settings.section("sample", &mut problems);
        let _: Option<Sample> = settings.section("other", &mut problems);
        let keys: Vec<&str> = problems.items().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["sample.listen", "sample.limit", "other"], "{problems}");
    }

    #[test]
    fn a_missing_config_file_is_named() {
        let error = Settings::load_from(Some("/nonexistent/omni.toml"), Vec::new()).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/omni.toml"), "{error}");
    }
}
