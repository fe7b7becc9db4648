//! The customer's files from the provider that holds them, fetched once into the object store
//! (`[objects]`) when the router first delivers the message: a chat message carries only the
//! provider's reference, and the provider's links expire. One table per provider account turns
//! fetching on:
//!
//! | provider | `[router.media.<table>.<account>]` | the reference | the request |
//! |---|---|---|---|
//! | WhatsApp Cloud API | `whatsapp`: `access_token` | media id | Graph API media URL, then the URL, bearer token |
//! | Telegram | `telegram`: `bot_token` | `file_id` | `getFile`, then `/file/bot<token>/<path>` |
//! | Slack | `slack`: `bot_token` | `url_private` | GET with the bot token as bearer |
//! | Messenger, Instagram | `messenger`, `instagram`: optional `page_access_token` | `payload.url` (Meta's CDN) | GET |
//! | Twilio MMS | `twilio`: `account_sid`, `auth_token` | `MediaUrl{N}` | GET with HTTP Basic, redirected to Twilio's CDN |
//! | Viber | `viber`: nothing required | `media` (a signed URL) | GET |
//! | X | `x`: the app's keys, the account's access token | `media_url_https` or a video variant | GET signed with OAuth 1.0a |
//!
//! Each channel folder builds the requests (`omni_channels::<channel>::media`); `providers.rs`
//! holds one fetcher per configured account, and `checks.rs` does the HTTP and the checks every
//! download keeps.
//!
//! Safety: only the provider's API and its media hosts (`media_hosts`) are fetched, redirects
//! only among them (none for WhatsApp and Telegram) and credentials never along a redirect to
//! another host; at most `max_file_bytes` per file; only the media types `allowed_types` lists;
//! the bytes must be served as the webhook announced them and match the size and SHA-256 it
//! announced. Tokens are never logged. A file that cannot be fetched after the retries (5xx,
//! 429, network errors; Twilio's 404 right after the webhook) stays listed in the ticket with
//! its reference, and the message goes on.

mod checks;
mod config;
pub mod missed;
mod providers;
#[cfg(test)]
mod tests;

use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable as _};
use omni_proto::v1::{Attachment, ProviderReference};

use checks::Checks;
pub use config::{
    MediaConfig, MetaMediaConfig, SlackMediaConfig, TelegramMediaConfig, TwilioMediaConfig, ViberMediaConfig, WhatsAppMediaConfig,
    XMediaConfig,
};

/// Why a file was not fetched.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Not now (network, 5xx, 429): tried again, then given up for this delivery.
    #[error("{0}")]
    Unavailable(String),
    /// For good: refused by policy or by the provider.
    #[error("{0}")]
    Refused(String),
}

impl MediaError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// A customer's file as fetched and checked.
#[derive(Debug)]
pub struct Fetched {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The media type it was served as (or announced as, where the provider serves none).
    pub media_type: String,
}

/// One provider account's way from a file's reference to its checked bytes.
#[async_trait]
pub(crate) trait Fetcher: Send + Sync {
    /// The bytes of `file`, whose reference is `reference`, checked by `checks`.
    async fn fetch(&self, checks: &Checks, reference: &str, file: &Attachment) -> Result<Fetched, MediaError>;
}

/// The fetchers of every configured provider account.
pub struct Media {
    checks: Checks,
    fetchers: providers::Registry,
}

impl Media {
    /// The fetchers of `config` (30 s per request).
    pub fn new(config: MediaConfig) -> Result<Self, reqwest::Error> {
        Ok(Self {
            checks: Checks::new(&config)?,
            fetchers: providers::fetchers(&config)?,
        })
    }

    /// `[router.media] max_file_bytes`: the most one fetched file may take.
    pub fn max_file_bytes(&self) -> u64 {
        self.checks.max_file_bytes()
    }

    /// The bytes of `file` from the provider of the message, checked; `None` when no fetcher is
    /// configured for it or the file carries no reference.
    pub async fn fetch(&self, provider: &ProviderReference, file: &Attachment) -> Option<Result<Fetched, MediaError>> {
        let Some(omni_proto::v1::attachment::Content::Reference(reference)) = &file.content else {
            return None;
        };
        let fetcher = self.fetchers.get(provider.provider.as_str())?.get(&provider.account)?;
        let retries = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(300))
            .with_max_times(3);
        let fetched = (|| fetcher.fetch(&self.checks, reference, file))
            .retry(retries)
            .when(MediaError::is_transient)
            .await;
        Some(fetched)
    }
}
