//! The customer's files from the provider that holds them, fetched once into the object store
//! (`[objects]`) when the router first delivers the message: a chat message carries only the
//! provider's media id, and the provider's links expire. Today: WhatsApp Cloud API media
//! (`[router.media.whatsapp.<account>]`, the business's access token); the channel folder
//! builds the requests (`omni_channels::whatsapp::media`), this module does the HTTP.
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
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: default_max_file_bytes(),
            allowed_types: default_allowed_types(),
            whatsapp: BTreeMap::new(),
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
        let account = match provider.provider.as_str() {
            omni_channels::whatsapp::PROVIDER => self.config.whatsapp.get(&provider.account)?,
            _ => return None,
        };
        let Some(omni_proto::v1::attachment::Content::Reference(id)) = &file.content else {
            return None;
        };
        let attempt = || self.whatsapp(account, id, file);
        let retries = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(300))
            .with_max_times(3);
        Some(attempt.retry(retries).when(MediaError::is_transient).await)
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

    /// GET with the token, the body read up to the size limit.
    async fn get(&self, url: &str, token: &str) -> Result<Downloaded, MediaError> {
        let response = self
            .http
            .get(url)
            .bearer_auth(token)
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
