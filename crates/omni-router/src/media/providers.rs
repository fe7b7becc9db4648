//! Each provider's fetcher: the channel folder builds its requests
//! (`omni_channels::<channel>::media`), [`Checks`] does the HTTP and the checks. Adding a
//! provider is a config table, an impl here, and one line in [`fetchers`].

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use omni_channels::media::Download;
use omni_channels::{instagram, messenger, meta, slack, telegram, twilio_sms, viber, whatsapp, x};
use omni_proto::v1::Attachment;
use reqwest::StatusCode;

use super::checks::{AllowedHosts, Checks};
use super::config::{
    MediaConfig, MetaMediaConfig, SlackMediaConfig, TelegramMediaConfig, TwilioMediaConfig, ViberMediaConfig, WhatsAppMediaConfig,
    XMediaConfig,
};
use super::{Fetched, Fetcher, MediaError};

/// Fetchers by provider, then by account.
pub(crate) type Registry = BTreeMap<&'static str, BTreeMap<String, Box<dyn Fetcher>>>;

/// The fetcher of every configured account.
pub(crate) fn fetchers(config: &MediaConfig) -> Result<Registry, reqwest::Error> {
    let mut registry = Registry::new();
    add(&mut registry, whatsapp::PROVIDER, &config.whatsapp)?;
    add(&mut registry, telegram::PROVIDER, &config.telegram)?;
    add(&mut registry, slack::PROVIDER, &config.slack)?;
    add(&mut registry, messenger::PROVIDER, &config.messenger)?;
    add(&mut registry, instagram::PROVIDER, &config.instagram)?;
    add(&mut registry, twilio_sms::PROVIDER, &config.twilio)?;
    add(&mut registry, viber::PROVIDER, &config.viber)?;
    add(&mut registry, x::PROVIDER, &config.x)?;
    Ok(registry)
}

/// An account's config, made into its fetcher.
pub(super) trait IntoFetcher {
    /// The fetcher, with its own HTTP client where it follows redirects.
    fn fetcher(&self) -> Result<Box<dyn Fetcher>, reqwest::Error>;
}

fn add<C: IntoFetcher>(registry: &mut Registry, provider: &'static str, accounts: &BTreeMap<String, C>) -> Result<(), reqwest::Error> {
    for (account, config) in accounts {
        registry.entry(provider).or_default().insert(account.clone(), config.fetcher()?);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Providers whose reference is the download itself: one GET, redirects only among their hosts.

/// A provider whose file reference is a URL to GET with the account's credentials.
trait Direct: Clone + Send + Sync + 'static {
    /// The request for `reference`, or why it is none.
    fn download(&self, reference: &str) -> Result<Download, String>;
    /// The hosts the download, and every redirect, may be on.
    fn hosts(&self) -> Vec<String>;
    /// Statuses that mean the file is not there yet (tried again).
    fn not_yet(_status: StatusCode) -> bool {
        false
    }
}

struct DirectFetcher<C> {
    config: C,
    hosts: Arc<AllowedHosts>,
    http: reqwest::Client,
}

impl<C: Direct> IntoFetcher for C {
    fn fetcher(&self) -> Result<Box<dyn Fetcher>, reqwest::Error> {
        // Entries `validate()` refused never get here.
        let hosts = Arc::new(AllowedHosts::parse(&self.hosts()).unwrap_or_default());
        let http = Checks::following(hosts.clone())?;
        Ok(Box::new(DirectFetcher {
            config: self.clone(),
            hosts,
            http,
        }))
    }
}

#[async_trait]
impl<C: Direct> Fetcher for DirectFetcher<C> {
    async fn fetch(&self, checks: &Checks, reference: &str, file: &Attachment) -> Result<Fetched, MediaError> {
        let download = self.config.download(reference).map_err(MediaError::Refused)?;
        checks.download(&self.http, &self.hosts, download, file, C::not_yet).await
    }
}

impl Direct for SlackMediaConfig {
    fn download(&self, reference: &str) -> Result<Download, String> {
        slack::media::download(reference, &self.bot_token)
    }

    fn hosts(&self) -> Vec<String> {
        self.media_hosts.clone()
    }
}

impl Direct for MetaMediaConfig {
    fn download(&self, reference: &str) -> Result<Download, String> {
        meta::media::download(reference, self.page_access_token.as_deref())
    }

    fn hosts(&self) -> Vec<String> {
        self.media_hosts.clone()
    }
}

impl Direct for ViberMediaConfig {
    fn download(&self, reference: &str) -> Result<Download, String> {
        viber::media::download(reference)
    }

    fn hosts(&self) -> Vec<String> {
        self.media_hosts.clone()
    }
}

impl Direct for XMediaConfig {
    /// Signed when built: the fetcher builds it right before each request, retries included.
    fn download(&self, reference: &str) -> Result<Download, String> {
        let credentials = x::send::Credentials {
            consumer_key: &self.consumer_key,
            consumer_secret: &self.consumer_secret,
            access_token: &self.access_token,
            access_token_secret: &self.access_token_secret,
        };
        x::media::download(reference, &credentials)
    }

    fn hosts(&self) -> Vec<String> {
        self.media_hosts.clone()
    }
}

impl Direct for TwilioMediaConfig {
    fn download(&self, reference: &str) -> Result<Download, String> {
        twilio_sms::media::download(reference, &self.api_base_url, &self.account_sid, &self.auth_token)
    }

    /// The API (which `download` holds the URL to) and the CDN hosts it redirects to.
    fn hosts(&self) -> Vec<String> {
        let api = self.api_base_url.trim_end_matches('/').to_owned();
        self.media_hosts.iter().cloned().chain([api]).collect()
    }

    /// Twilio: a media URL may answer 404 for a moment after the webhook.
    fn not_yet(status: StatusCode) -> bool {
        status == StatusCode::NOT_FOUND
    }
}

// ---------------------------------------------------------------------------------------------
// Providers whose reference is an id, looked up through their API first.

impl IntoFetcher for WhatsAppMediaConfig {
    fn fetcher(&self) -> Result<Box<dyn Fetcher>, reqwest::Error> {
        Ok(Box::new(self.clone()))
    }
}

#[async_trait]
impl Fetcher for WhatsAppMediaConfig {
    async fn fetch(&self, checks: &Checks, id: &str, file: &Attachment) -> Result<Fetched, MediaError> {
        let info_url = whatsapp::media::info_url(&self.api_base_url, &self.api_version, id)
            .ok_or_else(|| MediaError::Refused(format!("`{id}` is not a WhatsApp media id")))?;
        let answer = checks.get(&info_url, &self.access_token).await?;
        let info = whatsapp::media::read_info(&answer.bytes).map_err(MediaError::Refused)?;
        if !whatsapp::media::allowed_url(&info.url, &self.api_base_url, &self.media_hosts) {
            return Err(MediaError::Refused("the media URL is not on WhatsApp's media host".into()));
        }
        checks.check_type(&info.mime_type)?;
        if info.file_size.is_some_and(|size| size > checks.max_file_bytes()) {
            return Err(MediaError::Refused("the file is larger than [router.media] max_file_bytes".into()));
        }
        let download = checks.get(&info.url, &self.access_token).await?;
        let served = download.content_type.split(';').next().unwrap_or_default().trim();
        if !served.eq_ignore_ascii_case(&info.mime_type) {
            return Err(MediaError::Refused(format!(
                "served as `{served}`, announced as `{}`",
                info.mime_type
            )));
        }
        checks.check_bytes(&download.bytes, &file.sha256)?;
        Ok(Fetched {
            bytes: download.bytes,
            media_type: info.mime_type,
        })
    }
}

impl IntoFetcher for TelegramMediaConfig {
    fn fetcher(&self) -> Result<Box<dyn Fetcher>, reqwest::Error> {
        Ok(Box::new(self.clone()))
    }
}

#[async_trait]
impl Fetcher for TelegramMediaConfig {
    async fn fetch(&self, checks: &Checks, file_id: &str, file: &Attachment) -> Result<Fetched, MediaError> {
        use telegram::media as telegram;
        // The message's own media type: Telegram's file server does not say one.
        checks.check_type(&file.media_type)?;
        let url = telegram::get_file_url(&self.api_base_url, &self.bot_token, file_id)
            .ok_or_else(|| MediaError::Refused(format!("`{file_id}` is not a Telegram file_id")))?;
        let answer = checks.get(&url, "").await?;
        let (download, size) = telegram::read_file(&self.api_base_url, &self.bot_token, &answer.bytes).map_err(MediaError::Refused)?;
        let limit = checks.max_file_bytes().min(telegram::MAX_DOWNLOAD_BYTES);
        if size.is_some_and(|size| size > limit) {
            return Err(MediaError::Refused(format!("the file is larger than {limit} bytes")));
        }
        let downloaded = checks.get(&download, "").await?;
        if size.is_some_and(|size| size != downloaded.bytes.len() as u64) {
            return Err(MediaError::Unavailable("the download is not the size getFile gave".into()));
        }
        checks.check_bytes(&downloaded.bytes, &file.sha256)?;
        Ok(Fetched {
            bytes: downloaded.bytes,
            media_type: file.media_type.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_account_has_a_fetcher_under_its_provider() {
        let config: MediaConfig = toml_config(
            r#"
            [slack.shop]
            bot_token = "xoxb-1"
            [messenger.shop]
            [instagram.brand]
            page_access_token = "EAAB"
            [twilio.shop]
            account_sid = "AC3f0b7c1e9d2a4b6c8e0f1a2b3c4d5e6f"
            auth_token = "t"
            [viber.bot]
            [x.brand]
            consumer_key = "ck"
            consumer_secret = "cs"
            access_token = "at"
            access_token_secret = "ats"
            "#,
        );
        let registry = fetchers(&config).unwrap();
        let listed: Vec<(&str, &str)> = registry
            .iter()
            .flat_map(|(provider, accounts)| accounts.keys().map(move |account| (*provider, account.as_str())))
            .collect();
        assert_eq!(
            listed,
            [
                ("instagram", "brand"),
                ("messenger", "shop"),
                ("slack", "shop"),
                ("twilio-sms", "shop"),
                ("viber", "bot"),
                ("x", "brand")
            ]
        );
    }

    #[test]
    fn twilio_redirects_go_to_its_cdn_and_only_the_api_is_asked_first() {
        let config: MediaConfig = toml_config("[twilio.shop]\naccount_sid = \"AC3f0b7c1e9d2a4b6c8e0f1a2b3c4d5e6f\"\nauth_token = \"t\"");
        let twilio = &config.twilio["shop"];
        let hosts = AllowedHosts::parse(&twilio.hosts()).unwrap();
        for (url, ok) in [
            ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1", true),
            ("https://mms.twiliocdn.com/AC1/abc", true),
            ("https://s3-external-1.amazonaws.com/media.twiliocdn.com/AC1/abc", true),
            ("https://evil.example/x", false),
        ] {
            assert_eq!(hosts.allows(&reqwest::Url::parse(url).unwrap()), ok, "{url}");
        }
        let cdn = "https://mms.twiliocdn.com/2010-04-01/Accounts/AC3f0b7c1e9d2a4b6c8e0f1a2b3c4d5e6f/Messages/MM6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d/Media/ME0a1b2c3d4e5f60718293a4b5c6d7e8f9";
        assert!(twilio.download(cdn).is_err(), "credentials only to the API");
        assert!(TwilioMediaConfig::not_yet(StatusCode::NOT_FOUND) && !SlackMediaConfig::not_yet(StatusCode::NOT_FOUND));
    }

    #[test]
    fn viber_media_comes_from_its_media_host_only_and_without_credentials() {
        let config: MediaConfig = toml_config("[viber.bot]");
        let viber = &config.viber["bot"];
        let hosts = AllowedHosts::parse(&viber.hosts()).unwrap();
        for (url, ok) in [
            ("https://dl-media.viber.com/1/share/2/long/vibes/bots/photo/jpg/3f9c.jpg", true),
            ("http://dl-media.viber.com/1/share/2/long/vibes/bots/photo/jpg/3f9c.jpg", false),
            ("https://content.cdn.viber.com/stickers/100/40100/00040138.png", false),
            ("https://evil.example/x", false),
        ] {
            assert_eq!(hosts.allows(&reqwest::Url::parse(url).unwrap()), ok, "{url}");
        }
        let download = viber.download("https://dl-media.viber.com/1/x.jpg?Expires=1&Signature=a").unwrap();
        assert_eq!(download.auth, omni_channels::media::Auth::None);
    }

    #[test]
    fn secrets_do_not_print() {
        let config: MediaConfig = toml_config(
            "[slack.a]\nbot_token = \"xoxb-secret\"\n[messenger.a]\npage_access_token = \"EAAB-secret\"\n\
             [twilio.a]\naccount_sid = \"AC3f0b7c1e9d2a4b6c8e0f1a2b3c4d5e6f\"\nauth_token = \"tw-secret\"\n\
             [x.a]\nconsumer_key = \"ck\"\nconsumer_secret = \"x-secret\"\naccess_token = \"at\"\naccess_token_secret = \"xt-secret\"",
        );
        let printed = format!("{config:?}");
        for secret in ["xoxb-secret", "EAAB-secret", "tw-secret", "x-secret", "xt-secret"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("AC3f0b7c1e9d2a4b6c8e0f1a2b3c4d5e6f"), "the SID is no secret");
    }

    fn toml_config(text: &str) -> MediaConfig {
        config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap()
    }
}
