//! `[replies]` configuration; the helpdesks themselves are `[router.destinations]`.

use std::net::SocketAddr;
use std::time::Duration;

use omni_kafka::KafkaConfig;
use omni_router::RouterConfig;
use omni_runtime::service::ServiceConfig;
use omni_runtime::settings::check_socket_addr;
use omni_runtime::{Problems, Settings, Validate};
use serde::Deserialize;

/// `[replies]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepliesConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub admin_listen: String,
    /// This replica's id, part of the CloudEvents source. Run one replica: two would poll the
    /// same helpdesks (harmless, the sender drops the copies by outbound id, but wasted).
    pub instance_id: String,
    /// Seconds to finish a poll after SIGTERM.
    pub drain_timeout_secs: u64,
    /// Longest time to read `omni.state.replies.v1` at start-up, in seconds.
    pub state_restore_timeout_secs: u64,
    /// Milliseconds between two polls of a helpdesk.
    pub poll_interval_ms: u64,
    /// The `[router.destinations]` whose agents' answers omni sends to customers.
    pub destinations: Vec<String>,
    /// Where helpdesks that call omni (Zendesk, Zammad, Help Scout, Freshdesk, the webhook
    /// destination) post their answers: `POST /replies/<destination>`.
    pub listen: String,
    /// Largest reply call accepted, in bytes; a larger one is answered 413.
    pub max_body_bytes: usize,
    /// How far a call's signed timestamp may lie from omni's clock, in seconds; outside it the
    /// call is a replay (403).
    pub replay_window_secs: u64,
    /// The oldest answer a call may announce, in seconds: long enough for a helpdesk's retries
    /// after an outage of omni's; an older answer is a replay (403, or not taken).
    pub max_answer_age_secs: u64,
}

/// Everything omni-replies reads: `[kafka]`, `[replies]` and `[router]` (for the destinations).
#[derive(Clone, Debug)]
pub struct RepliesServiceConfig {
    /// `[kafka]`.
    pub kafka: KafkaConfig,
    /// `[replies]`.
    pub service: RepliesConfig,
    /// `[router]`, whose destinations name the helpdesks and their credentials.
    pub router: RouterConfig,
}

impl Validate for RepliesConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        check_socket_addr(&self.admin_listen, format!("{prefix}.admin_listen"), problems);
        check_socket_addr(&self.listen, format!("{prefix}.listen"), problems);
        problems.check(
            (1024..=900 * 1024).contains(&self.max_body_bytes),
            format!("{prefix}.max_body_bytes"),
            "must be between 1024 and 921600 (an unreadable call is kept as a dead letter, which must fit a broker record)",
        );
        problems.check(
            (10..=86_400).contains(&self.replay_window_secs),
            format!("{prefix}.replay_window_secs"),
            "must be between 10 and 86400",
        );
        problems.check(
            (60..=30 * 86_400).contains(&self.max_answer_age_secs),
            format!("{prefix}.max_answer_age_secs"),
            "must be between 60 and 2592000",
        );
        problems.check(!self.instance_id.is_empty(), format!("{prefix}.instance_id"), "must not be empty");
        problems.check(
            (100..=3_600_000).contains(&self.poll_interval_ms),
            format!("{prefix}.poll_interval_ms"),
            "must be between 100 and 3600000",
        );
        problems.check(
            self.state_restore_timeout_secs >= 1,
            format!("{prefix}.state_restore_timeout_secs"),
            "must be at least 1",
        );
    }
}

impl ServiceConfig for RepliesServiceConfig {
    fn from_settings(settings: &Settings, problems: &mut Problems) -> Option<Self> {
        let kafka = settings.section("kafka", problems);
        let service: Option<RepliesConfig> = settings.section("replies", problems);
        let router: Option<RouterConfig> = settings.section("router", problems);
        if let (Some(service), Some(router)) = (&service, &router) {
            for name in &service.destinations {
                let prefix = format!("replies.destinations.{name}");
                match router.destinations.get(name) {
                    None => problems.push(prefix, "not one of [router.destinations]"),
                    Some(destination) => {
                        let destination = destination.destination();
                        let polled = destination.reply_poller().map(|poller| poller.is_some());
                        let called = destination.reply_webhook().map(|webhook| webhook.is_some());
                        problems.check(
                            polled.unwrap_or(true) || called.unwrap_or(true),
                            prefix,
                            "omni cannot take this helpdesk's answers: set its `reply_secret` (see README, \"Answers back to the customer\")",
                        );
                    }
                }
            }
        }
        Some(Self {
            kafka: kafka?,
            service: service?,
            router: router?,
        })
    }

    fn admin_listen(&self) -> SocketAddr {
        self.service.admin_listen.parse().expect("validated by the section")
    }

    fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.service.drain_timeout_secs)
    }
}
