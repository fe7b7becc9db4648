//! WhatsApp out: the request built by the WhatsApp channel folder (24-hour window, template).

use std::collections::BTreeMap;
use std::time::SystemTime;

use omni_channels::whatsapp::send::{self as whatsapp, Account, Template};
use omni_proto::v1::{OutboundMessage, ReplyAddress};

use crate::config::WhatsAppConfig;
use crate::{SendError, http};

/// The Cloud API accounts by name.
pub struct WhatsAppSender {
    accounts: BTreeMap<String, (WhatsAppConfig, Option<Template>, reqwest::Client)>,
}

impl WhatsAppSender {
    /// One HTTP client per account (its own timeout).
    pub fn new(config: &BTreeMap<String, WhatsAppConfig>) -> Result<Self, reqwest::Error> {
        let accounts = config
            .iter()
            .map(|(name, account)| {
                let template = account.template.as_ref().map(|name| Template {
                    name: name.clone(),
                    language: account.template_language.clone(),
                });
                Ok((name.clone(), (account.clone(), template, http::client(account.timeout_secs)?)))
            })
            .collect::<Result<_, reqwest::Error>>()?;
        Ok(Self { accounts })
    }

    /// Sends the answer; returns its wamid.
    pub async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let name = address.provider.as_ref().map(|p| p.account.as_str()).unwrap_or_default();
        let (config, template, client) = self
            .accounts
            .get(name)
            .ok_or_else(|| SendError::Refused(format!("no [sender.whatsapp.{name}] account to answer with")))?;
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
