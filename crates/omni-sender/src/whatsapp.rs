//! WhatsApp out: the request built by the WhatsApp channel folder (24-hour window, template).

use std::collections::BTreeMap;
use std::time::SystemTime;

use omni_channels::whatsapp::send::{self as whatsapp, Account, Template};
use omni_proto::v1::{OutboundMessage, ReplyAddress};

use crate::config::WhatsAppConfig;
use crate::{SendError, http};

/// The Cloud API accounts by name.
pub struct WhatsAppSender {
    accounts: http::Accounts<WhatsAppConfig>,
}

impl WhatsAppSender {
    /// One HTTP client per account (its own timeout).
    pub fn new(config: &BTreeMap<String, WhatsAppConfig>) -> Result<Self, reqwest::Error> {
        Ok(Self {
            accounts: http::Accounts::new("whatsapp", config, |account| account.timeout_secs)?,
        })
    }
}

#[async_trait::async_trait]
impl crate::ChannelSender for WhatsAppSender {
    /// Sends the answer; returns its wamid.
    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let (config, client) = self.accounts.of(address)?;
        let template = config.template.as_ref().map(|name| Template {
            name: name.clone(),
            language: config.template_language.clone(),
        });
        let account = Account {
            api_base_url: &config.api_base_url,
            api_version: &config.api_version,
            access_token: &config.access_token,
            template: template.as_ref(),
        };
        let request = whatsapp::request(&account, address, outbound, SystemTime::now()).map_err(http::refusal)?;
        let response = http::post(client, &request, "WhatsApp").await?;
        whatsapp::read_response(response.status, &response.body).map_err(http::refusal)
    }
}
