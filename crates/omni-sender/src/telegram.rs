//! Telegram out: the request built by the Telegram channel folder.

use std::collections::BTreeMap;

use omni_channels::telegram::send as telegram;
use omni_proto::v1::{OutboundMessage, ReplyAddress};

use crate::config::TelegramConfig;
use crate::{SendError, http};

/// The bots of every configured account.
pub struct TelegramSender {
    bots: http::Accounts<TelegramConfig>,
}

impl TelegramSender {
    /// One HTTP client per bot (its own timeout).
    pub fn new(config: &BTreeMap<String, TelegramConfig>) -> Result<Self, reqwest::Error> {
        Ok(Self {
            bots: http::Accounts::new("telegram", config, |bot| bot.timeout_secs)?,
        })
    }
}

#[async_trait::async_trait]
impl crate::ChannelSender for TelegramSender {
    /// Sends the answer; returns Telegram's message id.
    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let (bot, client) = self.bots.of(address)?;
        let request = telegram::send_message(&bot.api_base_url, &bot.bot_token, address, outbound).map_err(http::refusal)?;
        let response = http::post(client, &request, "Telegram").await?;
        telegram::read_response(response.status, &response.body).map_err(http::refusal)
    }
}
