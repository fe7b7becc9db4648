//! `[calllog]` configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use omni_channels::asterisk::{self, CdrSettings, Timezone};
use omni_kafka::KafkaService;
use omni_runtime::settings::check_socket_addr;
use omni_runtime::{Problems, Validate};
use serde::Deserialize;

/// `[calllog]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallLogConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub admin_listen: String,
    /// This connector's id: in raw records, checkpoint keys and the CloudEvents source.
    pub connector_id: String,
    /// Seconds to finish the batch in hand after SIGTERM.
    pub drain_timeout_secs: u64,
    /// Milliseconds between looks at a file that had nothing new.
    pub poll_interval_ms: u64,
    /// CDR files by account name; the name is the account recorded with each call.
    pub files: BTreeMap<String, FileConfig>,
}

/// One CDR file: where it is and how the PBX writes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file `cdr_csv` appends to, usually `/var/log/asterisk/cdr-csv/Master.csv`. A relative
    /// path is relative to the connector's working directory.
    pub path: PathBuf,
    /// `loguniqueid` of `[csv]` in `cdr.conf`: lines end with `uniqueid`.
    #[serde(default)]
    pub loguniqueid: bool,
    /// `loguserfield` of `[csv]` in `cdr.conf`: then `userfield`.
    #[serde(default)]
    pub loguserfield: bool,
    /// `newcdrcolumns` of `[csv]` in `cdr.conf`: then `peeraccount`, `linkedid`, `sequence`.
    #[serde(default)]
    pub newcdrcolumns: bool,
    /// The time zone of the times in the file: `UTC` with `usegmtime = yes` in `cdr.conf`, else
    /// the PBX's fixed UTC offset (`+03:00`).
    #[serde(default = "utc")]
    pub timezone: String,
    /// `dcontext` values of inbound calls.
    #[serde(default = "default_inbound_contexts")]
    pub inbound_contexts: Vec<String>,
    /// Channel name prefixes of trunks (`PJSIP/provider-`): a call from one is inbound whatever
    /// context it ended in.
    #[serde(default)]
    pub trunk_prefixes: Vec<String>,
    /// The business number of every call in the file; unset: `dst` of inbound and `src` of
    /// outbound calls.
    #[serde(default)]
    pub business_number: Option<String>,
}

fn utc() -> String {
    "UTC".to_owned()
}

fn default_inbound_contexts() -> Vec<String> {
    asterisk::DEFAULT_INBOUND_CONTEXTS.iter().map(|c| (*c).to_owned()).collect()
}

impl FileConfig {
    /// How the normalizer reads this file's lines (it gets them as raw record attributes).
    pub fn cdr_settings(&self) -> Result<CdrSettings, String> {
        Ok(CdrSettings {
            columns: Some(asterisk::columns(self.loguniqueid, self.loguserfield, self.newcdrcolumns)),
            timezone: Timezone::parse(&self.timezone)?,
            inbound_contexts: self.inbound_contexts.clone(),
            trunk_prefixes: self.trunk_prefixes.clone(),
            business_number: self.business_number.clone(),
        })
    }

    fn validate(&self, key: &str, problems: &mut Problems) {
        problems.check(!self.path.as_os_str().is_empty(), format!("{key}.path"), "must not be empty");
        if let Err(problem) = Timezone::parse(&self.timezone) {
            problems.push(
                format!("{key}.timezone"),
                format!("{problem}; with daylight saving time set usegmtime = yes in cdr.conf and timezone = \"UTC\""),
            );
        }
        problems.check(
            !self.inbound_contexts.is_empty() || !self.trunk_prefixes.is_empty(),
            format!("{key}.inbound_contexts"),
            "set inbound_contexts or trunk_prefixes, or every call is read as outbound",
        );
        for (field, values) in [
            ("inbound_contexts", &self.inbound_contexts),
            ("trunk_prefixes", &self.trunk_prefixes),
        ] {
            problems.check(
                values.iter().all(|v| !v.trim().is_empty() && !v.contains(',')),
                format!("{key}.{field}"),
                "entries must not be empty or contain a comma",
            );
        }
        if let Some(number) = &self.business_number {
            problems.check(
                number.chars().any(|c| c.is_ascii_digit()),
                format!("{key}.business_number"),
                "must be a phone number, for example +31201234567",
            );
        }
    }
}

impl Validate for CallLogConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        check_socket_addr(&self.admin_listen, format!("{prefix}.admin_listen"), problems);
        problems.check(!self.connector_id.is_empty(), format!("{prefix}.connector_id"), "must not be empty");
        problems.check(
            (10..=60_000).contains(&self.poll_interval_ms),
            format!("{prefix}.poll_interval_ms"),
            "must be between 10 and 60000",
        );
        problems.check(!self.files.is_empty(), format!("{prefix}.files"), "name at least one CDR file");
        let mut paths = BTreeMap::new();
        for (account, file) in &self.files {
            let key = format!("{prefix}.files.{account}");
            file.validate(&key, problems);
            if let Some(other) = paths.insert(file.path.clone(), account) {
                problems.push(
                    format!("{key}.path"),
                    format!("{} is already read as account `{other}`", file.path.display()),
                );
            }
        }
    }
}

omni_kafka::service_section!(CallLogConfig, "calllog");

/// Everything the call-log connector reads: `[kafka]` and `[calllog]`.
pub type CallLogServiceConfig = KafkaService<CallLogConfig>;

#[cfg(test)]
mod tests {
    use omni_runtime::Settings;

    use super::*;

    fn load(env: &[(&str, &str)]) -> (Option<CallLogConfig>, Vec<String>) {
        let env = env
            .iter()
            .map(|(k, v)| (format!("OMNI__CALLLOG__{}", k.to_uppercase()), v.to_string()));
        let settings = Settings::load_from(None, env).unwrap();
        let mut problems = Problems::default();
        let config = settings.section("calllog", &mut problems);
        let found = problems.items().iter().map(|(key, problem)| format!("{key}: {problem}")).collect();
        (config, found)
    }

    #[test]
    fn the_default_file_is_a_local_master_csv_in_utc() {
        let (config, problems) = load(&[]);
        assert!(problems.is_empty(), "{problems:?}");
        let config = config.unwrap();
        let file = &config.files["pbx"];
        assert_eq!(file.path, PathBuf::from("var/asterisk/Master.csv"));
        let settings = file.cdr_settings().unwrap();
        assert_eq!(settings.timezone, Timezone::UTC);
        assert_eq!(settings.columns.unwrap().len(), 18, "uniqueid and userfield");
        assert_eq!(settings.inbound_contexts, ["from-external", "from-trunk", "from-pstn"]);
    }

    #[test]
    fn bad_values_are_named() {
        let (_, problems) = load(&[
            ("files__pbx__timezone", "Europe/Istanbul"),
            ("files__pbx__business_number", "reception"),
            ("poll_interval_ms", "0"),
        ]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("calllog.poll_interval_ms"), "{problems:?}");
        assert!(
            problems[1].starts_with("calllog.files.pbx.timezone: `Europe/Istanbul` is not UTC"),
            "{problems:?}"
        );
        assert!(problems[2].starts_with("calllog.files.pbx.business_number"), "{problems:?}");
        let (_, problems) = load(&[("files__second__path", "var/asterisk/Master.csv")]);
        assert_eq!(
            problems,
            ["calllog.files.second.path: var/asterisk/Master.csv is already read as account `pbx`"]
        );
        let (config, problems) = load(&[("files__pbx__timezone", "+03:00")]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            config.unwrap().files["pbx"].cdr_settings().unwrap().timezone.offset_seconds(),
            10_800
        );
    }
}
