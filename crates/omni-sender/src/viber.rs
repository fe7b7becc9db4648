//! Viber out: the request built by the Viber channel folder.

use std::collections::BTreeMap;

use omni_channels::viber::send as viber;
use omni_proto::v1::{OutboundMessage, ReplyAddress};

use crate::config::ViberConfig;
use crate::{SendError, http};

/// The bots of every configured account.
pub struct ViberSender {
    bots: http::Accounts<ViberConfig>,
}

impl ViberSender {
    /// One HTTP client per bot (its own timeout).
    pub fn new(config: &BTreeMap<String, ViberConfig>) -> Result<Self, reqwest::Error> {
        Ok(Self {
            bots: http::Accounts::new("viber", config, |bot| bot.timeout_secs)?,
        })
    }
}

#[async_trait::async_trait]
impl crate::ChannelSender for ViberSender {
    /// Sends the answer; returns Viber's message token.
    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let (bot, client) = self.bots.of(address)?;
        let request =
            viber::send_message(&bot.api_base_url, &bot.auth_token, &bot.sender_name, address, outbound).map_err(http::refusal)?;
        let response = http::post(client, &request, "Viber").await?;
        viber::read_response(&response).map_err(http::refusal)
    }
}
