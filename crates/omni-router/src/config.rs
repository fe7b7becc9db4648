//! `[router]` configuration.

use omni_kafka::KafkaService;
use omni_runtime::settings::check_socket_addr;
use omni_runtime::{Problems, Validate};
use serde::Deserialize;
use std::collections::BTreeMap;

use crate::helpdesk::Destination;
use crate::rules::{RouterHours, RuleConfig, Rules};

/// `[router]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub admin_listen: String,
    /// Consumer group shared by the router replicas.
    pub group_id: String,
    /// This replica's id: its static consumer group member id (`group.instance.id`) and part of
    /// the CloudEvents source. Unique per replica (for example the pod name).
    pub instance_id: String,
    /// Seconds to finish the event in hand after SIGTERM.
    pub drain_timeout_secs: u64,
    /// Longest time to read the state topic at start-up, in seconds.
    pub state_restore_timeout_secs: u64,
    /// Events each destination's pipeline delivers at once (see [`omni_kafka::keyed`]): events of
    /// different conversations are delivered concurrently, one conversation's in order.
    /// 1 delivers one event at a time. `in_flight_limits` sets it per destination.
    pub max_in_flight: usize,
    /// `max_in_flight` per destination, where one differs from the rest (a self-hosted helpdesk
    /// with a few workers beside a hosted API); destinations not listed use `max_in_flight`.
    #[serde(default)]
    pub in_flight_limits: BTreeMap<String, usize>,
    /// Bytes of customers' files each destination's pipeline holds at once (see
    /// `crate::budget`): an event whose files do not fit waits for others to be delivered.
    pub max_file_bytes_in_flight: u64,
    /// How long the router remembers a delivered event and a conversation's ticket after the
    /// conversation's last event, in seconds (see [`crate::state`]); 0 keeps them forever.
    pub state_retention_secs: u64,
    /// Where events no rule matches go.
    pub default_destination: String,
    /// Routing rules, in order: the first match decides (see [`crate::rules`]).
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// The weekly window `business_hours` conditions refer to.
    #[serde(default)]
    pub business_hours: Option<RouterHours>,
    /// What becomes of auto-replies and bounces (events tagged `auto-reply` or `bounce`).
    pub automated_messages: AutomatedMessages,
    /// What becomes of what the team already handled or wrote: answered calls, outbound events
    /// (calls the team placed, notes from its phone system) and call updates without an outcome
    /// of their own (a recording): by default logged on the customer's existing ticket, opening
    /// none. Missed inbound calls and voicemails go through like messages.
    pub answered_calls: AutomatedMessages,
    /// Helpdesk operations per minute per destination and router replica (a token bucket;
    /// bursts up to a tenth of a minute's worth). One operation (a look-up, a create, an append)
    /// can be several HTTP requests in some adapters: leave headroom below the plan's limit.
    /// Destinations not listed are not limited here (429s with `Retry-After` are still honoured).
    #[serde(default)]
    pub rate_limits: BTreeMap<String, u32>,
    /// Helpdesk destinations by name.
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// Where the customers' files are fetched from (`[router.media]`).
    #[serde(default)]
    pub media: crate::media::MediaConfig,
}

impl RouterConfig {
    /// `state_retention_secs` as a duration.
    pub fn state_retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.state_retention_secs)
    }

    /// How many events `destination`'s pipeline delivers at once: its `in_flight_limits` entry, else
    /// `max_in_flight`.
    pub fn max_in_flight_for(&self, destination: &str) -> usize {
        self.in_flight_limits.get(destination).copied().unwrap_or(self.max_in_flight)
    }

    /// How often expired state is looked for: a tenth of the retention, between 1 s and an hour;
    /// `None` when state is kept forever.
    pub fn state_expiry_interval(&self) -> Option<std::time::Duration> {
        omni_kafka::state::expiry_interval(self.state_retention_secs)
    }
}

/// What becomes of auto-replies and bounces (`automated_messages`) or answered calls (`answered_calls`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AutomatedMessages {
    /// Added to their conversation's ticket when it has one; never open a ticket (outcome
    /// `SKIPPED` when there is none).
    AttachToExisting,
    /// Never delivered (outcome `SKIPPED`).
    Skip,
    /// Delivered like any message, opening a ticket when needed.
    Deliver,
}

/// Declares [`DestinationConfig`], one variant per helpdesk: the `kind` value is the variant's
/// name in snake case, the config is the adapter's own (in its folder), which builds and
/// validates itself through [`Destination`].
macro_rules! destinations {
    ($($(#[$doc:meta])* $variant:ident($config:ty),)*) => {
        /// One helpdesk destination; `kind` picks the adapter.
        #[derive(Clone, Debug, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum DestinationConfig {
            $($(#[$doc])* $variant($config),)*
        }

        impl DestinationConfig {
            /// The adapter's config, which validates itself and builds the adapter.
            pub fn destination(&self) -> &dyn Destination {
                match self {
                    $(Self::$variant(config) => config,)*
                }
            }
        }
    };
}

// Every helpdesk, explicitly listed: adding one is its folder and one line here.
destinations! {
    /// Request Tracker 5, REST2 API.
    RequestTracker(crate::helpdesk::request_tracker::RequestTrackerConfig),
    /// Zendesk Support, Ticketing API v2.
    Zendesk(crate::helpdesk::zendesk::ZendeskConfig),
    /// Freshdesk, API v2.
    Freshdesk(crate::helpdesk::freshdesk::FreshdeskConfig),
    /// Zammad, REST API.
    Zammad(crate::helpdesk::zammad::ZammadConfig),
    /// Help Scout, Mailbox API 2.0.
    HelpScout(crate::helpdesk::helpscout::HelpScoutConfig),
    /// Any HTTP receiver: CloudEvents HTTP binding, HMAC-signed body.
    Webhook(crate::helpdesk::webhook::WebhookConfig),
}

impl Validate for RouterConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        check_socket_addr(&self.admin_listen, format!("{prefix}.admin_listen"), problems);
        problems.check(!self.group_id.is_empty(), format!("{prefix}.group_id"), "must not be empty");
        problems.check(!self.instance_id.is_empty(), format!("{prefix}.instance_id"), "must not be empty");
        problems.check(
            (1..=10_000).contains(&self.max_in_flight),
            format!("{prefix}.max_in_flight"),
            "must be between 1 and 10000",
        );
        for (name, limit) in &self.in_flight_limits {
            let key = format!("{prefix}.in_flight_limits.{name}");
            problems.check(
                self.destinations.contains_key(name),
                key.clone(),
                "not one of [router.destinations]",
            );
            problems.check((1..=10_000).contains(limit), key, "must be between 1 and 10000");
        }
        problems.check(
            (1 << 20..=1 << 40).contains(&self.max_file_bytes_in_flight),
            format!("{prefix}.max_file_bytes_in_flight"),
            "must be between 1 MiB (1048576) and 1 TiB",
        );
        problems.check(
            self.destinations.contains_key(&self.default_destination),
            format!("{prefix}.default_destination"),
            format!("`{}` is not one of [router.destinations]", self.default_destination),
        );
        let names: Vec<&str> = self.destinations.keys().map(String::as_str).collect();
        self.rules().validate(prefix, &names, problems);
        self.media.validate(&format!("{prefix}.media"), problems);
        for (name, per_minute) in &self.rate_limits {
            problems.check(
                self.destinations.contains_key(name),
                format!("{prefix}.rate_limits.{name}"),
                "not one of [router.destinations]",
            );
            problems.check(
                *per_minute >= 1,
                format!("{prefix}.rate_limits.{name}"),
                "must be at least 1 request per minute",
            );
        }
        for (name, destination) in &self.destinations {
            problems.check(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                format!("{prefix}.destinations.{name}"),
                "names use letters, digits, `_` and `-` only",
            );
            destination
                .destination()
                .validate(&format!("{prefix}.destinations.{name}"), problems);
        }
    }
}

impl RouterConfig {
    /// The routing rules, ready to evaluate.
    pub fn rules(&self) -> Rules {
        Rules::new(
            self.rules.clone(),
            self.default_destination.clone(),
            self.business_hours.as_ref().map(|hours| hours.0.clone()),
        )
    }
}

/// Everything the router reads: `[kafka]` and `[router]`.
pub type RouterServiceConfig = KafkaService<RouterConfig>;

omni_kafka::service_section!(RouterConfig, "router");

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> (Option<RouterServiceConfig>, Problems) {
        let env = env.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned()));
        let settings = omni_runtime::Settings::load_from(None, env).unwrap();
        let mut problems = Problems::default();
        let config = <RouterServiceConfig as omni_runtime::service::ServiceConfig>::from_settings(&settings, &mut problems);
        (config, problems)
    }

    #[test]
    fn a_destination_can_hold_fewer_events_than_the_rest() {
        let (config, problems) = load(&[("OMNI__ROUTER__IN_FLIGHT_LIMITS__RT", "16")]);
        assert!(problems.is_empty(), "{problems}");
        let config = config.unwrap().service;
        assert_eq!(config.max_in_flight_for("rt"), 16);
        assert_eq!(config.max_in_flight_for("zendesk"), config.max_in_flight);

        let (_, problems) = load(&[
            ("OMNI__ROUTER__IN_FLIGHT_LIMITS__NOWHERE", "16"),
            ("OMNI__ROUTER__IN_FLIGHT_LIMITS__RT", "0"),
        ]);
        let problems = problems.to_string();
        assert!(
            problems.contains("router.in_flight_limits.nowhere: not one of [router.destinations]"),
            "{problems}"
        );
        assert!(
            problems.contains("router.in_flight_limits.rt: must be between 1 and 10000"),
            "{problems}"
        );
    }

    /// The commented destination examples of `config/default.toml`, uncommented with placeholder
    /// secrets, must deserialize and validate as they are documented.
    #[test]
    fn the_documented_destination_examples_are_valid() {
        let defaults = include_str!("../../../config/default.toml");
        let block = defaults
            .split("# Other destination kinds")
            .nth(1)
            .expect("the examples block of config/default.toml");
        let mut toml = String::new();
        for line in block.lines().skip(2) {
            let Some(line) = line.strip_prefix("# ").or_else(|| (line.trim() == "#").then_some("")) else {
                continue;
            };
            let line = line
                .replace(r#"api_token = """#, r#"api_token = "placeholder-token""#)
                .replace(r#"api_key = """#, r#"api_key = "placeholder-key""#)
                .replace(r#"token = """#, r#"token = "placeholder-token""#)
                .replace(r#"client_id = """#, r#"client_id = "placeholder-id""#)
                .replace(r#"client_secret = """#, r#"client_secret = "placeholder-secret""#)
                .replace(r#"secret = """#, r#"secret = "placeholder-secret-0123456789""#);
            toml.push_str(&line);
            toml.push('\n');
        }
        #[derive(Deserialize)]
        struct Router {
            destinations: BTreeMap<String, DestinationConfig>,
        }
        #[derive(Deserialize)]
        struct File {
            router: Router,
        }
        let file: File = config::Config::builder()
            .add_source(config::File::from_str(&toml, config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .unwrap_or_else(|error| panic!("{error}\n{toml}"));
        let kinds: Vec<&str> = file.router.destinations.keys().map(String::as_str).collect();
        assert_eq!(kinds, ["freshdesk", "helpscout", "hook", "zammad", "zendesk"]);
        let mut problems = Problems::default();
        for (name, destination) in &file.router.destinations {
            let prefix = format!("router.destinations.{name}");
            destination.destination().validate(&prefix, &mut problems);
        }
        assert!(problems.is_empty(), "{problems}");
    }
}
