//! `[normalizer]` configuration.

use omni_kafka::KafkaService;
use omni_runtime::settings::check_socket_addr;
use omni_runtime::{Problems, Validate};
use serde::Deserialize;

/// `[normalizer]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizerConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub admin_listen: String,
    /// Consumer group shared by the normalizer replicas.
    pub group_id: String,
    /// This replica's id: its static consumer group member id (`group.instance.id`) and part of
    /// the CloudEvents source. Unique per replica (for example the pod name).
    pub instance_id: String,
    /// Records handled concurrently; offsets are still stored in order.
    pub max_in_flight: usize,
    /// Seconds to finish in-flight records after SIGTERM.
    pub drain_timeout_secs: u64,
    /// Longest time to read the known events (`omni.state.normalizer.v1`) when the pipeline
    /// starts, in seconds.
    pub state_restore_timeout_secs: u64,
    /// How long an event id (and alias) is remembered, in seconds: for recognising copies and
    /// threading replies (see the `known` module); 0 keeps them forever.
    pub known_retention_secs: u64,
    /// `[normalizer.understanding]`: language, problem-area tags and order numbers.
    pub understanding: omni_understand::UnderstandingConfig,
}

impl Validate for NormalizerConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        check_socket_addr(&self.admin_listen, format!("{prefix}.admin_listen"), problems);
        problems.check(!self.group_id.is_empty(), format!("{prefix}.group_id"), "must not be empty");
        problems.check(!self.instance_id.is_empty(), format!("{prefix}.instance_id"), "must not be empty");
        problems.check(
            (1..=10_000).contains(&self.max_in_flight),
            format!("{prefix}.max_in_flight"),
            "must be between 1 and 10000",
        );
        problems.check(
            self.state_restore_timeout_secs >= 1,
            format!("{prefix}.state_restore_timeout_secs"),
            "must be at least 1",
        );
        self.understanding.validate(&format!("{prefix}.understanding"), problems);
    }
}

impl NormalizerConfig {
    /// `known_retention_secs` as a duration.
    pub fn known_retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.known_retention_secs)
    }

    /// How often expired known events are looked for: a tenth of the retention, between 1 s and
    /// an hour; `None` when they are kept forever.
    pub fn known_expiry_interval(&self) -> Option<std::time::Duration> {
        omni_kafka::state::expiry_interval(self.known_retention_secs)
    }
}

/// Everything the normalizer reads: `[kafka]` and `[normalizer]`.
pub type NormalizerServiceConfig = KafkaService<NormalizerConfig>;

omni_kafka::service_section!(NormalizerConfig, "normalizer");
