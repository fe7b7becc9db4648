//! Telegram out: the request built by the Telegram channel folder.

use std::collections::BTreeMap;

use omni_channels::telegram::send as telegram;
use omni_proto::v1::{OutboundMessage, ReplyAddress};

use crate::config::TelegramConfig;
use crate::{SendError, http};

/// The bots of every configured account.
pub struct TelegramSender {
    bots: BTreeMap<String, (TelegramConfig, reqwest::Client)>,
}

impl TelegramSender {
    /// One HTTP client per bot (its own timeout).
    pub fn new(config: &BTreeMap<String, TelegramConfig>) -> Result<Self, reqwest::Error> {
        let bots = config
            .iter()
            .map(|(account, bot)| Ok((account.clone(), (bot.clone(), http::client(bot.timeout_secs)?))))
            .collect::<Result<_, reqwest::Error>>()?;
        Ok(Self { bots })
    }

    /// Sends the answer; returns Telegram's message id.
    pub async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let account = address.provider.as_ref().map(|p| p.account.as_str()).unwrap_or_default();
        let (bot, client) = self
            .bots
            .get(account)
            .ok_or_else(|| SendError::Refused(format!("no [sender.telegram.{account}] bot to answer with")))?;
        let request = telegram::send_message(&bot.api_base_url, &bot.bot_token, address, outbound).map_err(http::refusal)?;
        let response = http::post(client, &request, "Telegram").await?;
        telegram::read_response(response.status, &response.body).map_err(http::refusal)
    }
}
