//! `[gateway.chat.<account>]`: the website chat accounts.

use omni_runtime::hours::BusinessHoursConfig;
use omni_runtime::{Problems, Validate as _};
use serde::Deserialize;

/// The published development secret (`make run`, the tests); refused off loopback.
pub const DEVELOPMENT_SECRET: &str = "omni-dev-chat-secret";

/// The most `max_image_bytes` may be.
pub const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;

/// One chat account: a shop's widget.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatAccount {
    /// Signs visitor tokens and checks the shop's identity hashes (HMAC-SHA256). Prefer
    /// `OMNI__GATEWAY__CHAT__<ACCOUNT>__SECRET`.
    pub secret: String,
    /// The origins (`https://shop.example`) whose pages may open the chat; the gateway's own
    /// origin (its demo page) always may.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Longest visitor message, in characters.
    #[serde(default = "default_max_message_chars")]
    pub max_message_chars: usize,
    /// Messages a visitor may send per minute (a burst of up to this many).
    #[serde(default = "default_messages_per_minute")]
    pub messages_per_minute: u32,
    /// Messages per minute from one IP address, all visitors together.
    #[serde(default = "default_ip_messages_per_minute")]
    pub ip_messages_per_minute: u32,
    /// Open chat connections per IP address.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Largest image a visitor may paste or drop, in bytes; 0 takes no images. Images need the
    /// object store (`[objects]`): without one none are taken.
    #[serde(default = "default_max_image_bytes")]
    pub max_image_bytes: usize,
    /// The image types taken, checked against the bytes themselves, not only the name or the
    /// browser's word.
    #[serde(default = "default_image_types")]
    pub image_types: Vec<String>,
    /// When the team answers the chat; outside these hours the widget says so in the visitor's
    /// language and asks for an email to answer at. None: always open.
    #[serde(default)]
    pub business_hours: Option<BusinessHoursConfig>,
    /// A visitor's message unanswered this long: the widget says the team is busy and asks for
    /// an email to answer at (0: never).
    #[serde(default = "default_busy_after_secs")]
    pub busy_after_secs: u64,
}

fn default_busy_after_secs() -> u64 {
    300
}

/// The types a widget may send: what every helpdesk shows inline.
pub const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

fn default_max_message_chars() -> usize {
    4000
}
fn default_messages_per_minute() -> u32 {
    20
}
fn default_ip_messages_per_minute() -> u32 {
    120
}
fn default_max_connections_per_ip() -> usize {
    20
}
fn default_max_image_bytes() -> usize {
    5 * 1024 * 1024
}
fn default_image_types() -> Vec<String> {
    IMAGE_TYPES.iter().map(|t| (*t).to_owned()).collect()
}

impl std::fmt::Debug for ChatAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatAccount")
            .field("secret", &"<redacted>")
            .field("allowed_origins", &self.allowed_origins)
            .field("max_message_chars", &self.max_message_chars)
            .field("messages_per_minute", &self.messages_per_minute)
            .field("ip_messages_per_minute", &self.ip_messages_per_minute)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("max_image_bytes", &self.max_image_bytes)
            .field("image_types", &self.image_types)
            .field("business_hours", &self.business_hours)
            .field("busy_after_secs", &self.busy_after_secs)
            .finish()
    }
}

impl ChatAccount {
    /// Checks one account; `loopback`: whether the gateway listens on loopback only.
    pub fn check(&self, name: &str, prefix: &str, loopback: bool, problems: &mut Problems) {
        problems.check(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            prefix,
            "account names are letters, digits, - and _ (they appear in URLs)",
        );
        problems.check(
            self.secret.len() >= 16,
            format!("{prefix}.secret"),
            "must be at least 16 characters",
        );
        problems.check(
            loopback || self.secret != DEVELOPMENT_SECRET,
            format!("{prefix}.secret"),
            "the published development secret is only accepted while the gateway listens on loopback",
        );
        for origin in &self.allowed_origins {
            let parsed = url::Url::parse(origin);
            let plain = parsed.as_ref().is_ok_and(|url| {
                matches!(url.scheme(), "http" | "https") && url.path() == "/" && url.query().is_none() && !origin.ends_with('/')
            });
            problems.check(
                plain,
                format!("{prefix}.allowed_origins"),
                format!("`{origin}` is not an origin like https://shop.example (scheme, host, optional port, no path)"),
            );
        }
        problems.check(
            (1..=100_000).contains(&self.max_message_chars),
            format!("{prefix}.max_message_chars"),
            "must be 1 to 100000",
        );
        problems.check(
            self.messages_per_minute >= 1,
            format!("{prefix}.messages_per_minute"),
            "must be at least 1",
        );
        problems.check(
            self.ip_messages_per_minute >= self.messages_per_minute,
            format!("{prefix}.ip_messages_per_minute"),
            "must be at least messages_per_minute",
        );
        problems.check(
            self.max_connections_per_ip >= 1,
            format!("{prefix}.max_connections_per_ip"),
            "must be at least 1",
        );
        problems.check(
            self.max_image_bytes <= MAX_IMAGE_BYTES,
            format!("{prefix}.max_image_bytes"),
            format!("must be at most {MAX_IMAGE_BYTES} (20 MiB)"),
        );
        for kind in &self.image_types {
            problems.check(
                IMAGE_TYPES.contains(&kind.as_str()),
                format!("{prefix}.image_types"),
                format!("`{kind}` is not one of {IMAGE_TYPES:?}"),
            );
        }
        problems.check(
            self.busy_after_secs <= 86_400,
            format!("{prefix}.busy_after_secs"),
            "must be at most 86400 (a day; 0 turns the busy notice off)",
        );
        if let Some(hours) = &self.business_hours {
            hours.validate(&format!("{prefix}.business_hours"), problems);
        }
    }

    /// The largest WebSocket message this account's widget may send: 64 KiB of text, or, when it
    /// takes images (`images`: a store is open and `max_image_bytes` > 0), an image of the limit
    /// base64-encoded plus those 64 KiB (an image up to about 48 KiB over the limit still gets a
    /// clear `too_large`; a larger frame closes the socket).
    pub fn max_frame_bytes(&self, images: bool) -> usize {
        const TEXT: usize = 64 * 1024;
        if images && self.max_image_bytes > 0 {
            self.max_image_bytes.div_ceil(3) * 4 + TEXT
        } else {
            TEXT
        }
    }
}
