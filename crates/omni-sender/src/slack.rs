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
    apps: BTreeMap<String, (SlackConfig, reqwest::Client)>,
    pace: DefaultKeyedRateLimiter<String>,
}

impl SlackSender {
    /// One HTTP client per app (its own timeout).
    pub fn new(config: &BTreeMap<String, SlackConfig>) -> Result<Self, reqwest::Error> {
        let apps = config
            .iter()
            .map(|(account, app)| Ok((account.clone(), (app.clone(), http::client(app.timeout_secs)?))))
            .collect::<Result<_, reqwest::Error>>()?;
        let one_a_second = Quota::per_second(NonZeroU32::MIN);
        Ok(Self {
            apps,
            pace: RateLimiter::keyed(one_a_second),
        })
    }

    /// Posts the answer in the customer's thread; returns its `ts`.
    pub async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let provider = address.provider.clone().unwrap_or_default();
        let (app, client) = self
            .apps
            .get(&provider.account)
            .ok_or_else(|| SendError::Refused(format!("no [sender.slack.{}] app to answer with", provider.account)))?;
        let request = slack::post_message(&app.api_base_url, &app.bot_token, address, outbound).map_err(http::refusal)?;
        self.pace
            .until_key_ready(&format!("{}/{}", provider.account, provider.reply_to))
            .await;
        let response = http::post(client, &request, "Slack").await?;
        slack::read_response(&response).map_err(http::refusal)
    }
}
