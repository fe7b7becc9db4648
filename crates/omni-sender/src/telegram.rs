//! Telegram out: the request built by the Telegram channel folder, sent with reqwest.

use std::collections::BTreeMap;
use std::time::Duration;

use omni_channels::telegram::send::{self as telegram, Refusal};
use omni_proto::v1::{OutboundMessage, ReplyAddress};

use crate::SendError;
use crate::config::TelegramConfig;

/// The bots of every configured account.
pub struct TelegramSender {
    bots: BTreeMap<String, (TelegramConfig, reqwest::Client)>,
}

impl TelegramSender {
    /// One HTTP client per bot (its own timeout).
    pub fn new(config: &BTreeMap<String, TelegramConfig>) -> Result<Self, reqwest::Error> {
        let mut bots = BTreeMap::new();
        for (account, bot) in config {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(bot.timeout_secs))
                .user_agent(concat!("omni-sender/", env!("CARGO_PKG_VERSION")))
                .build()?;
            bots.insert(account.clone(), (bot.clone(), client));
        }
        Ok(Self { bots })
    }

    /// Sends the answer; returns Telegram's message id.
    pub async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let account = address.provider.as_ref().map(|p| p.account.as_str()).unwrap_or_default();
        let (bot, client) = self
            .bots
            .get(account)
            .ok_or_else(|| SendError::Refused(format!("no [sender.telegram.{account}] bot to answer with")))?;
        let request = telegram::send_message(&bot.api_base_url, &bot.bot_token, address, outbound).map_err(refusal)?;
        let response = client
            .post(&request.url)
            .json(&request.body)
            .send()
            .await
            .map_err(|error| SendError::Unavailable {
                // The URL carries the bot token: never in a log line.
                reason: format!("Telegram unreachable: {}", error.without_url()),
                retry_after: None,
            })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|error| SendError::Unavailable {
            reason: format!("Telegram answer cut: {}", error.without_url()),
            retry_after: None,
        })?;
        telegram::read_response(status, &body).map_err(refusal)
    }
}

fn refusal(refusal: Refusal) -> SendError {
    match refusal {
        Refusal::Refused(reason) => SendError::Refused(reason),
        Refusal::Later(retry_after, reason) => SendError::Unavailable { reason, retry_after },
    }
}
