//! Logs through `tracing`, as human-readable text or one JSON object per line.

use std::io::IsTerminal as _;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

use crate::settings::{Problems, Validate};

/// `[telemetry]`: how services log.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` for people, `json` for log pipelines.
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `info,omni_router=debug`; `RUST_LOG` overrides it.
    pub log_filter: String,
}

/// The log line format.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Validate for TelemetryConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        if let Err(error) = EnvFilter::try_new(&self.log_filter) {
            problems.push(format!("{prefix}.log_filter"), format!("not a valid filter: {error}"));
        }
    }
}

/// Installs the global log subscriber. Call once, early in `main`.
pub fn init(config: &TelemetryConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|value| EnvFilter::try_new(value).ok())
        .unwrap_or_else(|| EnvFilter::new(&config.log_filter));
    // Colours only on a terminal: `make run` and the tests write each service's log to a file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (tests running several services in one process) keeps the first subscriber.
    let _ = result;
}
