//! Messenger and Instagram out: the Send API request built by the Meta channel folder (24-hour
//! window, `HUMAN_AGENT` up to 7 days).

use std::collections::BTreeMap;
use std::time::SystemTime;

use omni_channels::meta::send::{self as meta, Account, Platform};
use omni_proto::v1::{OutboundMessage, ReplyAddress};

use crate::config::MetaConfig;
use crate::{SendError, http};

/// The Pages of one platform's configured accounts.
pub struct MetaSender {
    platform: Platform,
    pages: http::Accounts<MetaConfig>,
}

impl MetaSender {
    /// One HTTP client per account (its own timeout); `channel` names the config section.
    pub fn new(platform: Platform, channel: &'static str, config: &BTreeMap<String, MetaConfig>) -> Result<Self, reqwest::Error> {
        Ok(Self {
            platform,
            pages: http::Accounts::new(channel, config, |page| page.timeout_secs)?,
        })
    }
}

#[async_trait::async_trait]
impl crate::ChannelSender for MetaSender {
    /// Sends the answer; returns its `message_id`.
    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let (page, client) = self.pages.of(address)?;
        let account = Account {
            api_base_url: &page.api_base_url,
            api_version: &page.api_version,
            page_access_token: &page.page_access_token,
            human_agent: page.human_agent,
        };
        let request = meta::request(self.platform, &account, address, outbound, SystemTime::now()).map_err(http::refusal)?;
        let response = http::post(client, &request, self.platform.name()).await?;
        meta::read_response(self.platform, response.status, &response.body).map_err(http::refusal)
    }
}
