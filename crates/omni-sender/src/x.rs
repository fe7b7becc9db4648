//! X out: the DM request built by the X channel folder, signed as the account.

use std::collections::BTreeMap;

use omni_channels::x::send as x;
use omni_proto::v1::{OutboundMessage, ReplyAddress};

use crate::config::XConfig;
use crate::{SendError, http};

/// The X accounts that answer.
pub struct XSender {
    accounts: http::Accounts<XConfig>,
}

impl XSender {
    /// One HTTP client per account (its own timeout).
    pub fn new(config: &BTreeMap<String, XConfig>) -> Result<Self, reqwest::Error> {
        Ok(Self {
            accounts: http::Accounts::new("x", config, |account| account.timeout_secs)?,
        })
    }
}

#[async_trait::async_trait]
impl crate::ChannelSender for XSender {
    /// Sends the answer as a DM; returns X's DM event id.
    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let (account, client) = self.accounts.of(address)?;
        let credentials = x::Credentials {
            consumer_key: &account.consumer_key,
            consumer_secret: &account.consumer_secret,
            access_token: &account.access_token,
            access_token_secret: &account.access_token_secret,
        };
        let request = x::send_dm(&account.api_base_url, &credentials, address, outbound).map_err(http::refusal)?;
        let response = http::post(client, &request, "X").await?;
        x::read_response(&response).map_err(http::refusal)
    }
}
