//! `[router.media]`: the limits every download keeps, and one table per provider account whose
//! files are fetched. Secrets print as `<redacted>` in `Debug`.

use std::collections::BTreeMap;

use omni_channels::{meta, slack, twilio_sms, viber, x};
use omni_runtime::{Problems, Validate};
use serde::Deserialize;

use super::checks::AllowedHosts;

/// `[router.media]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Largest file fetched, in bytes.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Media types fetched: exact (`application/pdf`) or a family (`image/*`).
    #[serde(default = "default_allowed_types")]
    pub allowed_types: Vec<String>,
    /// WhatsApp Cloud API accounts by `[gateway.webhooks.whatsapp]` account name.
    #[serde(default)]
    pub whatsapp: BTreeMap<String, WhatsAppMediaConfig>,
    /// Telegram bots by `[gateway.webhooks.telegram]` account name.
    #[serde(default)]
    pub telegram: BTreeMap<String, TelegramMediaConfig>,
    /// Slack apps by `[gateway.webhooks.slack]` account name.
    #[serde(default)]
    pub slack: BTreeMap<String, SlackMediaConfig>,
    /// Messenger Pages by `[gateway.webhooks.messenger]` account name.
    #[serde(default)]
    pub messenger: BTreeMap<String, MetaMediaConfig>,
    /// Instagram accounts by `[gateway.webhooks.instagram]` account name.
    #[serde(default)]
    pub instagram: BTreeMap<String, MetaMediaConfig>,
    /// Twilio accounts by `[gateway.webhooks.twilio-sms]` account name (MMS).
    #[serde(default)]
    pub twilio: BTreeMap<String, TwilioMediaConfig>,
    /// Viber bots by `[gateway.webhooks.viber]` account name.
    #[serde(default)]
    pub viber: BTreeMap<String, ViberMediaConfig>,
    /// X accounts by `[gateway.webhooks.x]` account name.
    #[serde(default)]
    pub x: BTreeMap<String, XMediaConfig>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: default_max_file_bytes(),
            allowed_types: default_allowed_types(),
            whatsapp: BTreeMap::new(),
            telegram: BTreeMap::new(),
            slack: BTreeMap::new(),
            messenger: BTreeMap::new(),
            instagram: BTreeMap::new(),
            twilio: BTreeMap::new(),
            viber: BTreeMap::new(),
            x: BTreeMap::new(),
        }
    }
}

fn default_max_file_bytes() -> u64 {
    16 * 1024 * 1024
}

fn default_allowed_types() -> Vec<String> {
    ["image/*", "audio/*", "video/*", "application/pdf", "text/plain"]
        .map(str::to_owned)
        .to_vec()
}

/// `[router.media.whatsapp.<account>]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppMediaConfig {
    /// A system user's access token with `whatsapp_business_messaging` (prefer
    /// `OMNI__ROUTER__MEDIA__WHATSAPP__<ACCOUNT>__ACCESS_TOKEN`).
    pub access_token: String,
    /// The Graph API's base URL.
    #[serde(default = "graph_api")]
    pub api_base_url: String,
    /// The Graph API version in the path.
    #[serde(default = "graph_version")]
    pub api_version: String,
    /// Hosts the download URLs may point at (https only), besides the API's own.
    #[serde(default = "whatsapp_hosts")]
    pub media_hosts: Vec<String>,
}

impl std::fmt::Debug for WhatsAppMediaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppMediaConfig")
            .field("access_token", &"<redacted>")
            .field("api_base_url", &self.api_base_url)
            .field("api_version", &self.api_version)
            .field("media_hosts", &self.media_hosts)
            .finish()
    }
}

/// `[router.media.telegram.<account>]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramMediaConfig {
    /// The bot's token (prefer `OMNI__ROUTER__MEDIA__TELEGRAM__<ACCOUNT>__BOT_TOKEN`).
    pub bot_token: String,
    /// The Bot API's base URL (files are served under `<api_base_url>/file/`).
    #[serde(default = "telegram_api")]
    pub api_base_url: String,
}

impl std::fmt::Debug for TelegramMediaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramMediaConfig")
            .field("bot_token", &"<redacted>")
            .field("api_base_url", &self.api_base_url)
            .finish()
    }
}

/// `[router.media.slack.<account>]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackMediaConfig {
    /// The app's bot token, with the `files:read` scope (prefer
    /// `OMNI__ROUTER__MEDIA__SLACK__<ACCOUNT>__BOT_TOKEN`).
    pub bot_token: String,
    /// Hosts `url_private` may be on and redirect to: a name (https only), `*.<domain>` (its
    /// subdomains, https only) or an origin `http://127.0.0.1:9000` (a local stand-in).
    #[serde(default = "slack_hosts")]
    pub media_hosts: Vec<String>,
}

impl std::fmt::Debug for SlackMediaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackMediaConfig")
            .field("bot_token", &"<redacted>")
            .field("media_hosts", &self.media_hosts)
            .finish()
    }
}

/// `[router.media.messenger.<account>]` and `[router.media.instagram.<account>]`: the table
/// alone (even empty) turns fetching on, since Meta's CDN URLs need no token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaMediaConfig {
    /// A Page access token sent as bearer with each download; none by default, as the CDN URLs
    /// are signed (prefer `OMNI__ROUTER__MEDIA__MESSENGER__<ACCOUNT>__PAGE_ACCESS_TOKEN`).
    #[serde(default)]
    pub page_access_token: Option<String>,
    /// Hosts `payload.url` may be on and redirect to (same forms as Slack's `media_hosts`).
    #[serde(default = "meta_hosts")]
    pub media_hosts: Vec<String>,
}

impl std::fmt::Debug for MetaMediaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaMediaConfig")
            .field("page_access_token", &self.page_access_token.as_ref().map(|_| "<redacted>"))
            .field("media_hosts", &self.media_hosts)
            .finish()
    }
}

/// `[router.media.viber.<account>]`: the table alone (even empty) turns fetching on, since
/// Viber's media URLs are signed and need no token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViberMediaConfig {
    /// Hosts `media` may be on and redirect to (same forms as Slack's `media_hosts`).
    #[serde(default = "viber_hosts")]
    pub media_hosts: Vec<String>,
}

fn viber_hosts() -> Vec<String> {
    hosts(&viber::media::MEDIA_HOSTS)
}

/// `[router.media.x.<account>]`: the OAuth 1.0a user context X wants on every DM media
/// download (the same four as `[sender.x.<account>]`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XMediaConfig {
    /// The app's API key.
    pub consumer_key: String,
    /// The app's API key secret (prefer `OMNI__ROUTER__MEDIA__X__<ACCOUNT>__CONSUMER_SECRET`).
    pub consumer_secret: String,
    /// The subscribed account's access token.
    pub access_token: String,
    /// Its secret (prefer `OMNI__ROUTER__MEDIA__X__<ACCOUNT>__ACCESS_TOKEN_SECRET`).
    pub access_token_secret: String,
    /// Hosts a medium may be on and redirect to (same forms as Slack's `media_hosts`).
    #[serde(default = "x_hosts")]
    pub media_hosts: Vec<String>,
}

fn x_hosts() -> Vec<String> {
    hosts(&x::media::MEDIA_HOSTS)
}

impl std::fmt::Debug for XMediaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XMediaConfig")
            .field("consumer_key", &self.consumer_key)
            .field("consumer_secret", &"<redacted>")
            .field("access_token", &self.access_token)
            .field("access_token_secret", &"<redacted>")
            .field("media_hosts", &self.media_hosts)
            .finish()
    }
}

/// `[router.media.twilio.<account>]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioMediaConfig {
    /// The Account SID (`AC...`), the HTTP Basic user; `MediaUrl`s of other accounts are refused.
    pub account_sid: String,
    /// The Auth Token, the HTTP Basic password (prefer
    /// `OMNI__ROUTER__MEDIA__TWILIO__<ACCOUNT>__AUTH_TOKEN`).
    pub auth_token: String,
    /// Twilio's REST API: `MediaUrl`s must be on it, and only it gets the credentials.
    #[serde(default = "twilio_api")]
    pub api_base_url: String,
    /// Hosts the API may redirect a download to (same forms as Slack's `media_hosts`).
    #[serde(default = "twilio_hosts")]
    pub media_hosts: Vec<String>,
}

impl std::fmt::Debug for TwilioMediaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioMediaConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("api_base_url", &self.api_base_url)
            .field("media_hosts", &self.media_hosts)
            .finish()
    }
}

fn telegram_api() -> String {
    "https://api.telegram.org".to_owned()
}

fn graph_api() -> String {
    "https://graph.facebook.com".to_owned()
}

fn graph_version() -> String {
    "v21.0".to_owned()
}

fn twilio_api() -> String {
    twilio_sms::media::API_BASE_URL.to_owned()
}

fn hosts(defaults: &[&str]) -> Vec<String> {
    defaults.iter().map(|host| (*host).to_owned()).collect()
}

fn whatsapp_hosts() -> Vec<String> {
    hosts(&["lookaside.fbsbx.com"])
}

fn slack_hosts() -> Vec<String> {
    hosts(&slack::media::FILE_HOSTS)
}

fn meta_hosts() -> Vec<String> {
    hosts(&meta::media::CDN_HOSTS)
}

fn twilio_hosts() -> Vec<String> {
    hosts(&twilio_sms::media::MEDIA_HOSTS)
}

impl Validate for MediaConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(self.max_file_bytes >= 1, format!("{prefix}.max_file_bytes"), "must be at least 1");
        for (account, whatsapp) in &self.whatsapp {
            let key = format!("{prefix}.whatsapp.{account}");
            not_blank(&whatsapp.access_token, &format!("{key}.access_token"), problems);
            check_base_url(&whatsapp.api_base_url, &format!("{key}.api_base_url"), problems);
        }
        for (account, telegram) in &self.telegram {
            problems.check(
                telegram.bot_token.contains(':'),
                format!("{prefix}.telegram.{account}.bot_token"),
                "is not a bot token (<bot id>:<secret>)",
            );
        }
        for (account, slack) in &self.slack {
            let key = format!("{prefix}.slack.{account}");
            not_blank(&slack.bot_token, &format!("{key}.bot_token"), problems);
            check_hosts(&slack.media_hosts, &format!("{key}.media_hosts"), problems);
        }
        for (kind, accounts) in [("messenger", &self.messenger), ("instagram", &self.instagram)] {
            for (account, meta) in accounts {
                check_hosts(&meta.media_hosts, &format!("{prefix}.{kind}.{account}.media_hosts"), problems);
            }
        }
        for (account, twilio) in &self.twilio {
            twilio.validate(&format!("{prefix}.twilio.{account}"), problems);
        }
        for (account, viber) in &self.viber {
            check_hosts(&viber.media_hosts, &format!("{prefix}.viber.{account}.media_hosts"), problems);
        }
        for (account, x) in &self.x {
            let key = format!("{prefix}.x.{account}");
            for (field, value) in [
                ("consumer_key", &x.consumer_key),
                ("consumer_secret", &x.consumer_secret),
                ("access_token", &x.access_token),
                ("access_token_secret", &x.access_token_secret),
            ] {
                not_blank(value, &format!("{key}.{field}"), problems);
            }
            check_hosts(&x.media_hosts, &format!("{key}.media_hosts"), problems);
        }
    }
}

impl Validate for TwilioMediaConfig {
    fn validate(&self, key: &str, problems: &mut Problems) {
        let sid = self.account_sid.len() == 34 && self.account_sid.starts_with("AC");
        problems.check(sid, format!("{key}.account_sid"), "is not an Account SID (AC and 32 characters)");
        not_blank(&self.auth_token, &format!("{key}.auth_token"), problems);
        check_base_url(&self.api_base_url, &format!("{key}.api_base_url"), problems);
        check_hosts(&self.media_hosts, &format!("{key}.media_hosts"), problems);
    }
}

fn not_blank(value: &str, key: &str, problems: &mut Problems) {
    problems.check(!value.trim().is_empty(), key, "must not be empty");
}

fn check_base_url(value: &str, key: &str, problems: &mut Problems) {
    let web = value.starts_with("https://") || value.starts_with("http://");
    problems.check(web, key, "is not an http(s) URL");
}

fn check_hosts(hosts: &[String], key: &str, problems: &mut Problems) {
    if let Err(problem) = AllowedHosts::parse(hosts) {
        problems.push(key, problem);
    }
}
