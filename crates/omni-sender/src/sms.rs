//! SMS out through Twilio, built by the Twilio SMS channel folder: answers on SMS conversations,
//! and answers on phone calls texted to the caller.

use std::collections::BTreeMap;

use omni_channels::twilio_sms::send::{self as sms, Account};
use omni_proto::v1::{OutboundMessage, ReplyAddress};

use crate::config::TwilioConfig;
use crate::{SendError, http};

/// Sends one account's SMS.
async fn send_with(
    config: &TwilioConfig,
    client: &reqwest::Client,
    address: &ReplyAddress,
    outbound: &OutboundMessage,
) -> Result<String, SendError> {
    let account = Account {
        api_base_url: &config.api_base_url,
        account_sid: &config.account_sid,
        auth_token: &config.auth_token,
        from: config.from.as_deref(),
        status_callback: config.status_callback.as_deref(),
    };
    let request = sms::request(&account, address, outbound).map_err(http::refusal)?;
    let response = http::post(client, &request, "Twilio").await?;
    sms::read_response(response.status, &response.body).map_err(http::refusal)
}

/// Answers on SMS conversations, with the account the customer wrote to.
pub struct SmsSender {
    accounts: http::Accounts<TwilioConfig>,
}

impl SmsSender {
    /// One HTTP client per account (its own timeout).
    pub fn new(config: &BTreeMap<String, TwilioConfig>) -> Result<Self, reqwest::Error> {
        Ok(Self {
            accounts: http::Accounts::new("sms", config, |account| account.timeout_secs)?,
        })
    }
}

#[async_trait::async_trait]
impl crate::ChannelSender for SmsSender {
    /// Sends the answer; returns the message's sid.
    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let (config, client) = self.accounts.of(address)?;
        send_with(config, client, address, outbound).await
    }
}

/// Answers on phone calls, by SMS to the caller from `[sender] answer_calls_by_sms`.
pub struct CallSender {
    account: Option<(TwilioConfig, reqwest::Client)>,
}

impl CallSender {
    /// The named account, when there is one.
    pub fn new(config: &BTreeMap<String, TwilioConfig>, account: Option<&str>) -> Result<Self, reqwest::Error> {
        let account = account
            .and_then(|name| config.get(name))
            .map(|twilio| Ok::<_, reqwest::Error>((twilio.clone(), http::client(twilio.timeout_secs)?)))
            .transpose()?;
        Ok(Self { account })
    }
}

#[async_trait::async_trait]
impl crate::ChannelSender for CallSender {
    /// Texts the caller; returns the message's sid.
    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let Some((config, client)) = &self.account else {
            return Err(SendError::Refused(
                "no channel to reply on: a call is answered by SMS, and [sender] answer_calls_by_sms names no account".into(),
            ));
        };
        send_with(config, client, address, outbound).await
    }
}
