//! `[sender]` configuration.

use std::collections::BTreeMap;

use omni_kafka::KafkaService;
use omni_runtime::settings::check_socket_addr;
use omni_runtime::{Problems, Validate};
use serde::Deserialize;

/// `[sender]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub admin_listen: String,
    /// Consumer group shared by the sender replicas.
    pub group_id: String,
    /// This replica's id: its static consumer group member id and part of the CloudEvents source.
    pub instance_id: String,
    /// Seconds to finish the message in hand after SIGTERM.
    pub drain_timeout_secs: u64,
    /// Longest time to read `omni.state.sender.v1` at start-up, in seconds.
    pub state_restore_timeout_secs: u64,
    /// How long a reply address is kept after its customer's latest message, and an outbox
    /// entry after its last update, in seconds (see `state::expire`); 0 keeps them forever.
    pub state_retention_secs: u64,
    /// How long an answer waits for the sender to have read its conversation's customer
    /// message (both topics are read side by side; one may lag), in seconds; then it is a
    /// dead letter.
    pub conversation_wait_secs: u64,
    /// Answers handled at once: different conversations' concurrently, one conversation's one
    /// after the other in order (see `omni_kafka::keyed`). 1 sends one answer at a time.
    pub max_in_flight: usize,
    /// Email out through SMTP; without it an answer on an email conversation is a dead letter.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// Telegram bots by account (the `[gateway.webhooks.telegram]` account names); an answer on
    /// a Telegram conversation of an account not listed is a dead letter.
    #[serde(default)]
    pub telegram: BTreeMap<String, TelegramConfig>,
    /// WhatsApp Cloud API accounts by account (the `[gateway.webhooks.whatsapp]` names).
    #[serde(default)]
    pub whatsapp: BTreeMap<String, WhatsAppConfig>,
    /// Slack apps by account (the `[gateway.webhooks.slack]` names).
    #[serde(default)]
    pub slack: BTreeMap<String, SlackConfig>,
    /// Facebook Pages by account (the `[gateway.webhooks.messenger]` names).
    #[serde(default)]
    pub messenger: BTreeMap<String, MetaConfig>,
    /// Instagram accounts, through their linked Pages, by account (the
    /// `[gateway.webhooks.instagram]` names).
    #[serde(default)]
    pub instagram: BTreeMap<String, MetaConfig>,
    /// Twilio accounts for SMS by account (the `[gateway.webhooks.twilio-sms]` names).
    #[serde(default)]
    pub sms: BTreeMap<String, TwilioConfig>,
    /// X accounts by account (the `[gateway.webhooks.x]` names).
    #[serde(default)]
    pub x: BTreeMap<String, XConfig>,
    /// Viber bots by account (the `[gateway.webhooks.viber]` names).
    #[serde(default)]
    pub viber: BTreeMap<String, ViberConfig>,
    /// The `[sender.sms]` account that answers phone calls by SMS to the caller's number (from
    /// its `from`); none: an answer on a call is a dead letter "no channel to reply on".
    #[serde(default)]
    pub answer_calls_by_sms: Option<String>,
    /// The `[sender.email.from]` mailbox that answers the HTTP API's customers by email (those
    /// who gave an address); none: such answers are dead letters "no channel to reply on".
    #[serde(default)]
    pub answer_api_by_email: Option<String>,
    /// The `[sender.email.from]` mailbox that answers website chat visitors who left (no chat
    /// of theirs open for `chat_away_after_secs`) by email, when the shop signed their email;
    /// none: their answers wait in the chat for the next visit.
    #[serde(default)]
    pub answer_away_chats_by_email: Option<String>,
    /// How long after a visitor's last chat closed an answer goes by email instead (a page
    /// change or a reload closes the chat for a moment).
    #[serde(default = "default_chat_away_after_secs")]
    pub chat_away_after_secs: u64,
}

fn default_chat_away_after_secs() -> u64 {
    120
}

/// `[sender.sms.<account>]`: the Twilio account that answers by SMS.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// The account SID (`AC...`).
    pub account_sid: String,
    /// Its auth token (prefer `OMNI__SENDER__SMS__<ACCOUNT>__AUTH_TOKEN`).
    pub auth_token: String,
    /// The number (E.164) or Messaging Service SID (`MG...`) answers come from when the
    /// conversation names none (answers to calls); SMS answers come from the number the customer
    /// wrote to. (An environment variable `+14155550100` reaches omni as the number
    /// 14155550100: it is read as `+14155550100`.)
    #[serde(default, deserialize_with = "phone_number")]
    pub from: Option<String>,
    /// Where Twilio reports each answer's delivery (the gateway's
    /// `https://<gateway>/webhooks/twilio-sms/<account>`), so omni records it and notes failures;
    /// unset: Twilio reports to the Messaging Service's callback URL, if it has one.
    #[serde(default)]
    pub status_callback: Option<String>,
    /// Twilio's REST API base URL.
    #[serde(default = "twilio_api")]
    pub api_base_url: String,
    /// Seconds per request.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// A number or sender id given as text, or as a number (the environment's `+...` parsed as one).
fn phone_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrNumber {
        Text(String),
        Number(u64),
    }
    Ok(Option::<TextOrNumber>::deserialize(deserializer)?.map(|value| match value {
        TextOrNumber::Text(text) => text,
        TextOrNumber::Number(number) => format!("+{number}"),
    }))
}

fn twilio_api() -> String {
    "https://api.twilio.com".to_owned()
}

impl std::fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("from", &self.from)
            .field("status_callback", &self.status_callback)
            .field("api_base_url", &self.api_base_url)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl Validate for TwilioConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            self.account_sid.starts_with("AC") && self.account_sid.chars().all(|c| c.is_ascii_alphanumeric()),
            format!("{prefix}.account_sid"),
            "is not an account SID (AC...)",
        );
        problems.check(
            !self.auth_token.trim().is_empty(),
            format!("{prefix}.auth_token"),
            "must not be empty",
        );
        if let Some(from) = &self.from {
            let number = from.starts_with('+') && from[1..].chars().all(|c| c.is_ascii_digit()) && from.len() > 4;
            problems.check(
                number || from.starts_with("MG"),
                format!("{prefix}.from"),
                "is neither an E.164 number (+...) nor a Messaging Service SID (MG...)",
            );
        }
        check_api(&self.api_base_url, &self.auth_token, prefix, problems);
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
    }
}

/// `[sender.messenger.<account>]` and `[sender.instagram.<account>]`: the Page that answers
/// through Meta's Send API.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaConfig {
    /// The Page access token (`pages_messaging`; for Instagram also `instagram_manage_messages`;
    /// prefer `OMNI__SENDER__MESSENGER__<ACCOUNT>__PAGE_ACCESS_TOKEN`).
    pub page_access_token: String,
    /// The Graph API's base URL.
    #[serde(default = "graph_api")]
    pub api_base_url: String,
    /// The Graph API version in the path.
    #[serde(default = "graph_version")]
    pub api_version: String,
    /// Answer 24 hours to 7 days after the customer's last message with the `HUMAN_AGENT` tag
    /// (the app needs Meta's Human Agent permission); false: such answers are refused (a dead
    /// letter and a note on the ticket).
    #[serde(default)]
    pub human_agent: bool,
    /// Seconds per request.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl std::fmt::Debug for MetaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaConfig")
            .field("page_access_token", &"<redacted>")
            .field("api_base_url", &self.api_base_url)
            .field("api_version", &self.api_version)
            .field("human_agent", &self.human_agent)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl Validate for MetaConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            !self.page_access_token.trim().is_empty(),
            format!("{prefix}.page_access_token"),
            "must not be empty",
        );
        check_api(&self.api_base_url, &self.page_access_token, prefix, problems);
        check_graph_version(&self.api_version, &format!("{prefix}.api_version"), problems);
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
    }
}

fn check_graph_version(version: &str, key: &str, problems: &mut Problems) {
    problems.check(
        version.starts_with('v') && !version.contains('/'),
        key,
        "is a Graph API version such as v21.0",
    );
}

/// `[sender.slack.<account>]`: the app's bot that answers in the customer's thread.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The bot token (`xoxb-...`, scope `chat:write`; prefer
    /// `OMNI__SENDER__SLACK__<ACCOUNT>__BOT_TOKEN`).
    pub bot_token: String,
    /// Slack's Web API base URL; requests go to `<api_base_url>/api/chat.postMessage`.
    #[serde(default = "slack_api")]
    pub api_base_url: String,
    /// Seconds per request.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn slack_api() -> String {
    "https://slack.com".to_owned()
}

impl std::fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackConfig")
            .field("bot_token", &"<redacted>")
            .field("api_base_url", &self.api_base_url)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl Validate for SlackConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            self.bot_token.starts_with("xoxb-"),
            format!("{prefix}.bot_token"),
            "is not a bot token (xoxb-...)",
        );
        check_api(&self.api_base_url, &self.bot_token, prefix, problems);
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
    }
}

/// `[sender.whatsapp.<account>]`: the Cloud API credentials answers are sent with.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// A system user's access token with `whatsapp_business_messaging` (prefer
    /// `OMNI__SENDER__WHATSAPP__<ACCOUNT>__ACCESS_TOKEN`).
    pub access_token: String,
    /// The Graph API's base URL.
    #[serde(default = "graph_api")]
    pub api_base_url: String,
    /// The Graph API version in the path.
    #[serde(default = "graph_version")]
    pub api_version: String,
    /// An approved template with one body parameter, for answers outside the 24-hour customer
    /// service window; none: those answers are refused (a dead letter and a note on the ticket).
    #[serde(default)]
    pub template: Option<String>,
    /// The template's language code.
    #[serde(default = "template_language")]
    pub template_language: String,
    /// Seconds per request.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn graph_api() -> String {
    "https://graph.facebook.com".to_owned()
}

fn graph_version() -> String {
    "v21.0".to_owned()
}

fn template_language() -> String {
    "en".to_owned()
}

impl std::fmt::Debug for WhatsAppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppConfig")
            .field("access_token", &"<redacted>")
            .field("api_base_url", &self.api_base_url)
            .field("api_version", &self.api_version)
            .field("template", &self.template)
            .field("template_language", &self.template_language)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl Validate for WhatsAppConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            !self.access_token.trim().is_empty(),
            format!("{prefix}.access_token"),
            "must not be empty",
        );
        check_api(&self.api_base_url, &self.access_token, prefix, problems);
        check_graph_version(&self.api_version, &format!("{prefix}.api_version"), problems);
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
    }
}

/// The local sandbox `make run` starts, which the embedded config's accounts send to.
pub const SANDBOX: &str = "127.0.0.1:8095";
/// What the embedded config's sandbox tokens contain.
const SANDBOX_TOKEN: &str = "omni-sandbox";

/// An account's `api_base_url`, and that it is not half the sandbox's: a real token sent to the
/// sandbox (an account configured over the embedded one that kept its `api_base_url`), or the
/// sandbox's token sent to a provider.
fn check_api(url: &str, token: &str, prefix: &str, problems: &mut Problems) {
    check_http_url(url, &format!("{prefix}.api_base_url"), problems);
    problems.check(
        url.contains(SANDBOX) == token.contains(SANDBOX_TOKEN),
        format!("{prefix}.api_base_url"),
        format!("`{url}` with this token: set both the provider's api_base_url and a real token, or keep both sandbox values"),
    );
}

fn check_http_url(url: &str, key: &str, problems: &mut Problems) {
    if reqwest::Url::parse(url)
        .map(|url| !url.scheme().starts_with("http"))
        .unwrap_or(true)
    {
        problems.push(key, format!("`{url}` is not an http(s) URL"));
    }
}

/// `[sender.x.<account>]`: the X account that answers DMs, with OAuth 1.0a user context.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XConfig {
    /// The app's API key.
    pub consumer_key: String,
    /// The app's API key secret (prefer `OMNI__SENDER__X__<ACCOUNT>__CONSUMER_SECRET`).
    pub consumer_secret: String,
    /// The subscribed account's access token (scope: send DMs).
    pub access_token: String,
    /// Its secret (prefer `OMNI__SENDER__X__<ACCOUNT>__ACCESS_TOKEN_SECRET`).
    pub access_token_secret: String,
    /// The X API's base URL.
    #[serde(default = "x_api")]
    pub api_base_url: String,
    /// Seconds per request.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn x_api() -> String {
    "https://api.x.com".to_owned()
}

impl std::fmt::Debug for XConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XConfig")
            .field("consumer_key", &self.consumer_key)
            .field("consumer_secret", &"<redacted>")
            .field("access_token", &"<redacted>")
            .field("access_token_secret", &"<redacted>")
            .field("api_base_url", &self.api_base_url)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl Validate for XConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        for (key, value) in [
            ("consumer_key", &self.consumer_key),
            ("consumer_secret", &self.consumer_secret),
            ("access_token", &self.access_token),
            ("access_token_secret", &self.access_token_secret),
        ] {
            problems.check(!value.trim().is_empty(), format!("{prefix}.{key}"), "must not be empty");
        }
        check_api(&self.api_base_url, &self.access_token, prefix, problems);
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
    }
}

/// `[sender.viber.<account>]`: the bot that answers.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViberConfig {
    /// The bot's authentication token (the gateway account's `secret`; prefer
    /// `OMNI__SENDER__VIBER__<ACCOUNT>__AUTH_TOKEN`).
    pub auth_token: String,
    /// The sender name the customer sees (Viber requires one, at most 28 characters).
    pub sender_name: String,
    /// The REST Bot API's base URL.
    #[serde(default = "viber_api")]
    pub api_base_url: String,
    /// Seconds per request.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn viber_api() -> String {
    "https://chatapi.viber.com".to_owned()
}

impl std::fmt::Debug for ViberConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViberConfig")
            .field("auth_token", &"<redacted>")
            .field("sender_name", &self.sender_name)
            .field("api_base_url", &self.api_base_url)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl Validate for ViberConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            !self.auth_token.trim().is_empty(),
            format!("{prefix}.auth_token"),
            "must not be empty",
        );
        let name = self.sender_name.trim().chars().count();
        let most = omni_channels::viber::send::MAX_SENDER_NAME_CHARS;
        problems.check(
            (1..=most).contains(&name),
            format!("{prefix}.sender_name"),
            format!("must be 1 to {most} characters (Viber's limit)"),
        );
        check_api(&self.api_base_url, &self.auth_token, prefix, problems);
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
    }
}

/// `[sender.telegram.<account>]`: the bot that answers.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot's token from @BotFather (prefer `OMNI__SENDER__TELEGRAM__<ACCOUNT>__BOT_TOKEN`).
    pub bot_token: String,
    /// The Bot API's base URL; requests go to `<api_base_url>/bot<token>/<method>`.
    #[serde(default = "telegram_api")]
    pub api_base_url: String,
    /// Seconds per request.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn telegram_api() -> String {
    "https://api.telegram.org".to_owned()
}

fn default_timeout() -> u64 {
    20
}

impl std::fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("bot_token", &"<redacted>")
            .field("api_base_url", &self.api_base_url)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl Validate for TelegramConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            self.bot_token.contains(':') && !self.bot_token.contains(['/', ' ']),
            format!("{prefix}.bot_token"),
            "is not a bot token (<bot id>:<secret>, from @BotFather)",
        );
        check_api(&self.api_base_url, &self.bot_token, prefix, problems);
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
    }
}

/// `[sender.email]`: one SMTP relay for every mailbox.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The relay, as lettre reads it: `smtp://host:25` (plain), `smtp://host:587?tls=required`
    /// (STARTTLS), `smtps://host:465` (TLS from the first byte).
    pub smtp_url: String,
    /// SMTP AUTH user (with `password`); none: no AUTH.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP AUTH password.
    #[serde(default)]
    pub password: Option<String>,
    /// Seconds per SMTP conversation.
    pub timeout_secs: u64,
    /// The domain of the Message-IDs omni gives its replies (`<omni-reply.<id>@<domain>>`).
    pub message_id_domain: String,
    /// The From of answers per `[email.mailboxes]` name: the address the customer wrote to.
    pub from: BTreeMap<String, String>,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp_url", &redacted(&self.smtp_url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout_secs", &self.timeout_secs)
            .field("message_id_domain", &self.message_id_domain)
            .field("from", &self.from)
            .finish()
    }
}

impl SenderConfig {
    /// `<channel>.<account>` of every account that sends to the local sandbox.
    pub fn sandboxed_accounts(&self) -> Vec<String> {
        let urls = [
            (
                "telegram",
                self.telegram.iter().map(|(a, c)| (a, &c.api_base_url)).collect::<Vec<_>>(),
            ),
            ("whatsapp", self.whatsapp.iter().map(|(a, c)| (a, &c.api_base_url)).collect()),
            ("slack", self.slack.iter().map(|(a, c)| (a, &c.api_base_url)).collect()),
            ("messenger", self.messenger.iter().map(|(a, c)| (a, &c.api_base_url)).collect()),
            ("instagram", self.instagram.iter().map(|(a, c)| (a, &c.api_base_url)).collect()),
            ("sms", self.sms.iter().map(|(a, c)| (a, &c.api_base_url)).collect()),
            ("x", self.x.iter().map(|(a, c)| (a, &c.api_base_url)).collect()),
            ("viber", self.viber.iter().map(|(a, c)| (a, &c.api_base_url)).collect()),
        ];
        urls.iter()
            .flat_map(|(channel, accounts)| {
                accounts
                    .iter()
                    .filter(|(_, url)| url.contains(SANDBOX))
                    .map(move |(account, _)| format!("{channel}.{account}"))
            })
            .collect()
    }
}

impl Validate for SenderConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        check_socket_addr(&self.admin_listen, format!("{prefix}.admin_listen"), problems);
        problems.check(!self.group_id.is_empty(), format!("{prefix}.group_id"), "must not be empty");
        problems.check(!self.instance_id.is_empty(), format!("{prefix}.instance_id"), "must not be empty");
        problems.check(
            self.state_restore_timeout_secs >= 1,
            format!("{prefix}.state_restore_timeout_secs"),
            "must be at least 1",
        );
        problems.check(
            (1..=10_000).contains(&self.max_in_flight),
            format!("{prefix}.max_in_flight"),
            "must be between 1 and 10000",
        );
        problems.check(
            self.conversation_wait_secs >= 1,
            format!("{prefix}.conversation_wait_secs"),
            "must be at least 1",
        );
        if let Some(email) = &self.email {
            email.validate(&format!("{prefix}.email"), problems);
        }
        for (account, telegram) in &self.telegram {
            telegram.validate(&format!("{prefix}.telegram.{account}"), problems);
        }
        for (account, whatsapp) in &self.whatsapp {
            whatsapp.validate(&format!("{prefix}.whatsapp.{account}"), problems);
        }
        for (account, slack) in &self.slack {
            slack.validate(&format!("{prefix}.slack.{account}"), problems);
        }
        for (account, twilio) in &self.sms {
            twilio.validate(&format!("{prefix}.sms.{account}"), problems);
        }
        for (account, x) in &self.x {
            x.validate(&format!("{prefix}.x.{account}"), problems);
        }
        for (account, viber) in &self.viber {
            viber.validate(&format!("{prefix}.viber.{account}"), problems);
        }
        if let Some(account) = self.answer_calls_by_sms.as_ref().filter(|a| !a.is_empty()) {
            let usable = self.sms.get(account).is_some_and(|twilio| twilio.from.is_some());
            problems.check(
                usable,
                format!("{prefix}.answer_calls_by_sms"),
                format!("names no [sender.sms.{account}] with a `from` number to text callers from"),
            );
        }
        for (setting, mailbox) in [
            ("answer_api_by_email", &self.answer_api_by_email),
            ("answer_away_chats_by_email", &self.answer_away_chats_by_email),
        ] {
            if let Some(mailbox) = mailbox.as_ref().filter(|m| !m.is_empty()) {
                problems.check(
                    self.email.as_ref().is_some_and(|email| email.from.contains_key(mailbox)),
                    format!("{prefix}.{setting}"),
                    format!("names no [sender.email.from] mailbox `{mailbox}` to write from"),
                );
            }
        }
        for (channel, accounts) in [("messenger", &self.messenger), ("instagram", &self.instagram)] {
            for (account, meta) in accounts {
                meta.validate(&format!("{prefix}.{channel}.{account}"), problems);
            }
        }
    }
}

impl Validate for EmailConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        if let Err(error) = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&self.smtp_url) {
            problems.push(format!("{prefix}.smtp_url"), format!("`{}`: {error}", redacted(&self.smtp_url)));
        }
        problems.check(
            self.username.is_some() == self.password.is_some(),
            prefix,
            "set both `username` and `password`, or neither",
        );
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
        problems.check(
            !self.message_id_domain.is_empty() && !self.message_id_domain.contains(['@', '<', '>', ' ']),
            format!("{prefix}.message_id_domain"),
            "must be a domain name",
        );
        for (mailbox, from) in &self.from {
            if let Err(error) = from.parse::<lettre::message::Mailbox>() {
                problems.push(
                    format!("{prefix}.from.{mailbox}"),
                    format!("`{from}` is not a mail address: {error}"),
                );
            }
        }
    }
}

/// The URL without a password lettre would take from it (`smtp://user:password@host`).
fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if rest.contains('@') => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://<redacted>@{host}")
        }
        _ => url.to_owned(),
    }
}

/// Everything the sender reads: `[kafka]` and `[sender]`.
pub type SenderServiceConfig = KafkaService<SenderConfig>;

omni_kafka::service_section!(SenderConfig, "sender");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_smtp_url_is_never_shown() {
        assert_eq!(
            redacted("smtps://omni:s3cret@mail.example.com:465"),
            "smtps://<redacted>@mail.example.com:465"
        );
        assert_eq!(redacted("smtp://127.0.0.1:2525"), "smtp://127.0.0.1:2525");
        let config = EmailConfig {
            smtp_url: "smtp://u:s3cret@h:25".into(),
            username: None,
            password: Some("other-secret".into()),
            timeout_secs: 1,
            message_id_domain: "omni.local".into(),
            from: BTreeMap::new(),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("other-secret"), "{shown}");
    }
}
