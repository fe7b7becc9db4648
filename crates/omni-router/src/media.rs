//! The customer's files from the provider that holds them, fetched once into the object store
//! (`[objects]`) when the router first delivers the message: a chat message carries only the
//! provider's media id, and the provider's links expire. Today: WhatsApp Cloud API media
//! (`[router.media.whatsapp.<account>]`, the business's access token) and Telegram files
//! (`[router.media.telegram.<account>]`, the bot's token); each channel folder builds the
//! requests (`omni_channels::<channel>::media`), this module does the HTTP.
//!
//! Safety: only the provider's API and its media CDN hosts are fetched (never a URL from a
//! payload), at most `max_file_bytes` per file, only the media types `allowed_types` lists, and
//! the bytes must hash to the SHA-256 the provider announced in the webhook. Tokens are never
//! logged. A file that cannot be fetched after the retries stays listed in the ticket with its
//! reference, and the message goes on.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use omni_channels::whatsapp::media as whatsapp;
use omni_proto::v1::{Attachment, ProviderReference};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

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
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: default_max_file_bytes(),
            allowed_types: default_allowed_types(),
            whatsapp: BTreeMap::new(),
            telegram: BTreeMap::new(),
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
    #[serde(default = "media_hosts")]
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

fn telegram_api() -> String {
    "https://api.telegram.org".to_owned()
}

fn graph_api() -> String {
    "https://graph.facebook.com".to_owned()
}

fn graph_version() -> String {
    "v21.0".to_owned()
}

fn media_hosts() -> Vec<String> {
    vec!["lookaside.fbsbx.com".to_owned()]
}

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

/// The fetchers of every configured provider account.
pub struct Media {
    config: MediaConfig,
    http: reqwest::Client,
}

impl Media {
    /// One HTTP client for all (30 s per request).
    pub fn new(config: MediaConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            // A redirect could lead anywhere: the download URL is checked, not followed further.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { config, http })
    }

    /// The bytes of `file` from the provider of the message, checked; `None` when no fetcher is
    /// configured for it.
    pub async fn fetch(&self, provider: &ProviderReference, file: &Attachment) -> Option<Result<Vec<u8>, MediaError>> {
        let Some(omni_proto::v1::attachment::Content::Reference(id)) = &file.content else {
            return None;
        };
        let retries = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(300))
            .with_max_times(3);
        let fetched = match provider.provider.as_str() {
            omni_channels::whatsapp::PROVIDER => {
                let account = self.config.whatsapp.get(&provider.account)?;
                (|| self.whatsapp(account, id, file))
                    .retry(retries)
                    .when(MediaError::is_transient)
                    .await
            }
            omni_channels::telegram::PROVIDER => {
                let bot = self.config.telegram.get(&provider.account)?;
                (|| self.telegram(bot, id, file))
                    .retry(retries)
                    .when(MediaError::is_transient)
                    .await
            }
            _ => return None,
        };
        Some(fetched)
    }

    async fn telegram(&self, bot: &TelegramMediaConfig, file_id: &str, file: &Attachment) -> Result<Vec<u8>, MediaError> {
        use omni_channels::telegram::media as telegram;
        // The message's own media type: Telegram's file server does not say one.
        self.check_type(&file.media_type)?;
        let url = telegram::get_file_url(&bot.api_base_url, &bot.bot_token, file_id)
            .ok_or_else(|| MediaError::Refused(format!("`{file_id}` is not a Telegram file_id")))?;
        let answer = self.get(&url, "").await?;
        let (download, size) = telegram::read_file(&bot.api_base_url, &bot.bot_token, &answer.bytes).map_err(MediaError::Refused)?;
        let limit = self.config.max_file_bytes.min(telegram::MAX_DOWNLOAD_BYTES);
        if size.is_some_and(|size| size > limit) {
            return Err(MediaError::Refused(format!("the file is larger than {limit} bytes")));
        }
        let downloaded = self.get(&download, "").await?;
        if size.is_some_and(|size| size != downloaded.bytes.len() as u64) {
            return Err(MediaError::Unavailable("the download is not the size getFile gave".into()));
        }
        self.check_bytes(&downloaded.bytes, &file.sha256)?;
        Ok(downloaded.bytes)
    }

    async fn whatsapp(&self, account: &WhatsAppMediaConfig, id: &str, file: &Attachment) -> Result<Vec<u8>, MediaError> {
        let info_url = whatsapp::info_url(&account.api_base_url, &account.api_version, id)
            .ok_or_else(|| MediaError::Refused(format!("`{id}` is not a WhatsApp media id")))?;
        let answer = self.get(&info_url, &account.access_token).await?;
        let info = whatsapp::read_info(&answer.bytes).map_err(MediaError::Refused)?;
        if !whatsapp::allowed_url(&info.url, &account.api_base_url, &account.media_hosts) {
            return Err(MediaError::Refused("the media URL is not on WhatsApp's media host".into()));
        }
        self.check_type(&info.mime_type)?;
        if info.file_size.is_some_and(|size| size > self.config.max_file_bytes) {
            return Err(MediaError::Refused(format!(
                "the file is larger than [router.media] max_file_bytes ({})",
                self.config.max_file_bytes
            )));
        }
        let download = self.get(&info.url, &account.access_token).await?;
        let served = download.content_type.split(';').next().unwrap_or_default().trim();
        if !served.eq_ignore_ascii_case(&info.mime_type) {
            return Err(MediaError::Refused(format!(
                "served as `{served}`, announced as `{}`",
                info.mime_type
            )));
        }
        self.check_bytes(&download.bytes, &file.sha256)?;
        Ok(download.bytes)
    }

    fn check_type(&self, media_type: &str) -> Result<(), MediaError> {
        let media_type = media_type.to_ascii_lowercase();
        let family = media_type.split('/').next().unwrap_or_default();
        let allowed = self
            .config
            .allowed_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&media_type) || t.strip_suffix("/*").is_some_and(|f| f.eq_ignore_ascii_case(family)));
        if allowed {
            Ok(())
        } else {
            Err(MediaError::Refused(format!(
                "`{media_type}` is not in [router.media] allowed_types"
            )))
        }
    }

    fn check_bytes(&self, bytes: &[u8], expected_sha256: &str) -> Result<(), MediaError> {
        if bytes.len() as u64 > self.config.max_file_bytes {
            return Err(MediaError::Refused("the file is larger than [router.media] max_file_bytes".into()));
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        if !expected_sha256.is_empty() && sha256 != expected_sha256 {
            return Err(MediaError::Refused(
                "the file does not match the SHA-256 the webhook announced".into(),
            ));
        }
        Ok(())
    }

    /// GET, with the token as bearer unless empty (Telegram's is in the URL, never logged).
    async fn get(&self, url: &str, token: &str) -> Result<Downloaded, MediaError> {
        let mut request = self.http.get(url);
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| MediaError::Unavailable(format!("media request failed: {}", e.without_url())))?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(MediaError::Unavailable(format!("the provider answered {status}")));
        }
        if !status.is_success() {
            return Err(MediaError::Refused(format!("the provider answered {status}")));
        }
        if response.content_length().is_some_and(|length| length > self.config.max_file_bytes) {
            return Err(MediaError::Refused("the file is larger than [router.media] max_file_bytes".into()));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| MediaError::Unavailable(format!("media body cut: {}", e.without_url())))?;
        Ok(Downloaded {
            content_type,
            bytes: bytes.to_vec(),
        })
    }
}

struct Downloaded {
    content_type: String,
    bytes: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_types_and_matching_bytes_pass() {
        let media = Media::new(MediaConfig::default()).unwrap();
        assert!(media.check_type("image/jpeg").is_ok());
        assert!(media.check_type("application/pdf").is_ok());
        assert!(media.check_type("application/x-msdownload").is_err());
        let bytes = b"photo";
        let sha = hex::encode(Sha256::digest(bytes));
        assert!(media.check_bytes(bytes, &sha).is_ok());
        assert!(media.check_bytes(bytes, &"0".repeat(64)).is_err());
    }
}
