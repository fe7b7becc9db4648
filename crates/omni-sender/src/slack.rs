//! Slack out: the request built by the Slack channel folder, at most one message a second per
//! channel (Slack's limit for `chat.postMessage`).

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use omni_channels::slack::send as slack;
use omni_proto::v1::{OutboundMessage, ReplyAddress};

use crate::config::SlackConfig;
use crate::{SendError, http};

/// The app installations by account, and the pace per channel.
pub struct SlackSender {
    apps: http::Accounts<SlackConfig>,
    pace: DefaultKeyedRateLimiter<String>,
}

impl SlackSender {
    /// One HTTP client per app (its own timeout).
    pub fn new(config: &BTreeMap<String, SlackConfig>) -> Result<Self, reqwest::Error> {
        let apps = http::Accounts::new("slack", config, |app| app.timeout_secs)?;
        let one_a_second = Quota::per_second(NonZeroU32::MIN);
        Ok(Self {
            apps,
            pace: RateLimiter::keyed(one_a_second),
        })
    }
}

#[async_trait::async_trait]
impl crate::ChannelSender for SlackSender {
    /// Posts the answer in the customer's thread; returns its `ts`.
    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let (app, client) = self.apps.of(address)?;
        let provider = address.provider.clone().unwrap_or_default();
        let request = slack::post_message(&app.api_base_url, &app.bot_token, address, outbound).map_err(http::refusal)?;
        self.pace
            .until_key_ready(&format!("{}/{}", provider.account, provider.reply_to))
            .await;
        let response = http::post(client, &request, "Slack").await?;
        slack::read_response(&response).map_err(http::refusal)
    }
}
