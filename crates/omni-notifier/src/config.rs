//! `[notifier]` configuration.

use std::collections::BTreeMap;

use omni_kafka::KafkaService;
use omni_runtime::settings::check_socket_addr;
use omni_runtime::{Problems, Validate};
use serde::Deserialize;

use crate::hours::BusinessHoursConfig;
use crate::render::PLACEHOLDERS;

/// `[notifier]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub admin_listen: String,
    /// Consumer group shared by the notifier replicas.
    pub group_id: String,
    /// This replica's id: its static consumer group member id and part of the CloudEvents source.
    pub instance_id: String,
    /// Seconds to finish the delivery in hand after SIGTERM.
    pub drain_timeout_secs: u64,
    /// Longest time to read `omni.state.notifier.v1` or `omni.state.kpi.v1`, at start-up and in
    /// each expiry round, in seconds.
    pub state_restore_timeout_secs: u64,
    /// A customer gets at most one acknowledgement in this many seconds, however many tickets
    /// they open.
    pub window_secs: u64,
    /// A ticket opened longer ago than this (seconds) is not acknowledged: a new notifier reading
    /// the delivery history must not greet every customer of the past.
    pub max_age_secs: u64,
    /// The template language when the customer's language is unknown or has no template.
    pub default_language: String,
    /// The team's own addresses (compared case-insensitively): never acknowledged.
    #[serde(default)]
    pub own_addresses: Vec<String>,
    /// The team's own mail domains: no address in them is acknowledged.
    #[serde(default)]
    pub own_domains: Vec<String>,
    /// Local parts of robots' addresses (`noreply`, `mailer-daemon`, ...), compared lowercase
    /// with `-`, `_` and `.` removed; an address whose local part starts with one is never
    /// acknowledged.
    pub robot_local_parts: Vec<String>,
    /// The channels acknowledged, by config name (`email`, `whatsapp`, `telegram`, `slack`...);
    /// a channel not listed gets no acknowledgement.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelAcknowledgement>,
    /// When the team works; the expected first-response time counts only these hours.
    pub business_hours: BusinessHoursConfig,
    /// The support KPIs pipeline.
    pub kpi: KpiConfig,
    /// One template per language (ISO 639-1).
    pub templates: BTreeMap<String, Template>,
    /// Help articles by problem-area tag, then language: an acknowledgement of a message with
    /// that tag carries the link in the customer's language (or the default language's).
    #[serde(default)]
    pub articles: BTreeMap<String, BTreeMap<String, String>>,
}

/// `[notifier.kpi]`: the support KPIs (see `omni_notifier::kpi`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiConfig {
    /// Whether this replica runs the KPI pipeline.
    pub enabled: bool,
    /// Its consumer group (apart from the acknowledgements').
    pub group_id: String,
    /// Conversations with a message or answer within this many days are kept in memory; a
    /// conversation quiet for longer that gets a new message counts as a new contact.
    pub memory_days: u32,
    /// A conversation quiet for longer (seconds) is tombstoned in `omni.state.kpi.v1` and leaves
    /// `omni kpi`; 0 keeps every conversation forever.
    pub state_retention_secs: u64,
}

/// `[notifier.channels.<channel>]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelAcknowledgement {
    /// The accounts (mailbox, bot, phone number id) acknowledged; empty: every account.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// The team's first-response target on this channel, in business minutes.
    pub first_response_minutes: u32,
}

/// `[notifier.templates.<language>]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// The message; `{ticket}` is the ticket number, `{expected}` the expected first answer.
    pub text: String,
    /// How `{expected}` is written (strftime, as jiff reads it), in the team's time zone.
    pub time_format: String,
    /// The line before the help articles' links, when there are any.
    pub articles_intro: String,
}

impl Validate for NotifierConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        check_socket_addr(&self.admin_listen, format!("{prefix}.admin_listen"), problems);
        problems.check(!self.group_id.is_empty(), format!("{prefix}.group_id"), "must not be empty");
        problems.check(!self.instance_id.is_empty(), format!("{prefix}.instance_id"), "must not be empty");
        problems.check(
            self.state_restore_timeout_secs >= 1,
            format!("{prefix}.state_restore_timeout_secs"),
            "must be at least 1",
        );
        problems.check(self.max_age_secs >= 1, format!("{prefix}.max_age_secs"), "must be at least 1");
        problems.check(
            self.templates.contains_key(&self.default_language),
            format!("{prefix}.default_language"),
            format!("`{}` has no [{prefix}.templates.{}]", self.default_language, self.default_language),
        );
        for (name, channel) in &self.channels {
            let key = format!("{prefix}.channels.{name}");
            problems.check(
                omni_proto::channels::channel_named(name).is_some() && *name == name.to_lowercase(),
                key.clone(),
                format!("`{name}` is not a channel name, in lowercase ({})", channel_names()),
            );
            problems.check(
                channel.first_response_minutes >= 1,
                format!("{key}.first_response_minutes"),
                "must be at least 1",
            );
        }
        for robot in &self.robot_local_parts {
            problems.check(
                !crate::decide::robot_local_part(robot).is_empty(),
                format!("{prefix}.robot_local_parts"),
                format!("`{robot}` would match every address"),
            );
        }
        self.business_hours.validate(&format!("{prefix}.business_hours"), problems);
        problems.check(!self.kpi.group_id.is_empty(), format!("{prefix}.kpi.group_id"), "must not be empty");
        problems.check(
            self.kpi.group_id != self.group_id,
            format!("{prefix}.kpi.group_id"),
            "must differ from the acknowledgements' group_id",
        );
        problems.check(self.kpi.memory_days >= 1, format!("{prefix}.kpi.memory_days"), "must be at least 1");
        for (language, template) in &self.templates {
            template.validate(&format!("{prefix}.templates.{language}"), problems);
        }
        for (tag, links) in &self.articles {
            for (language, url) in links {
                problems.check(
                    url.starts_with("https://") || url.starts_with("http://"),
                    format!("{prefix}.articles.{tag}.{language}"),
                    "must be an http(s) URL",
                );
            }
        }
    }
}

impl Validate for Template {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(!self.text.trim().is_empty(), format!("{prefix}.text"), "must not be empty");
        for placeholder in crate::render::placeholders(&self.text) {
            problems.check(
                PLACEHOLDERS.contains(&placeholder),
                format!("{prefix}.text"),
                format!("unknown placeholder `{{{placeholder}}}` (known: {{ticket}}, {{expected}})"),
            );
        }
        let sample = jiff::Timestamp::UNIX_EPOCH.to_zoned_datetime(jiff::tz::TimeZone::UTC);
        problems.check(
            jiff::fmt::strtime::format(self.time_format.as_bytes(), &sample).is_ok(),
            format!("{prefix}.time_format"),
            "not a strftime format jiff can write",
        );
    }
}

fn channel_names() -> String {
    omni_proto::channels::channels()
        .iter()
        .map(|info| info.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `[kafka]` and `[notifier]`.
pub type NotifierServiceConfig = KafkaService<NotifierConfig>;

omni_kafka::service_section!(NotifierConfig, "notifier");
