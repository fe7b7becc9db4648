//! Email out: the reply built by the email channel folder, handed to SMTP through lettre.

use std::collections::BTreeMap;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use omni_channels::email::send as email;
use omni_proto::v1::{OutboundMessage, ReplyAddress};

use crate::SendError;
use crate::config::EmailConfig;

/// One SMTP relay and the From of each mailbox.
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: BTreeMap<String, Mailbox>,
    domain: String,
}

impl EmailSender {
    /// Builds the transport (no connection is made until the first mail).
    pub fn new(config: &EmailConfig) -> anyhow::Result<Self> {
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.smtp_url)?.timeout(Some(Duration::from_secs(config.timeout_secs)));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let from = config
            .from
            .iter()
            .map(|(mailbox, from)| Ok((mailbox.clone(), from.parse()?)))
            .collect::<Result<_, lettre::address::AddressError>>()?;
        Ok(Self {
            transport: builder.build(),
            from,
            domain: config.message_id_domain.clone(),
        })
    }
}

#[async_trait::async_trait]
impl crate::ChannelSender for EmailSender {
    /// Sends the answer; returns its Message-ID (always the same for the same outbound id).
    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let account = address.provider.as_ref().map(|p| p.account.as_str()).unwrap_or_default();
        let from = self
            .from
            .get(account)
            .ok_or_else(|| SendError::Refused(format!("no [sender.email.from] address for mailbox `{account}`")))?;
        let mail = email::build(address, outbound, from, &self.domain).map_err(|error| SendError::Refused(error.to_string()))?;
        match self.transport.send(mail).await {
            Ok(_) => Ok(email::message_id(&outbound.outbound_id, &self.domain)),
            Err(error) if refuses_the_mail(&error) => Err(SendError::Refused(format!("the SMTP server refused the mail: {error}"))),
            Err(error) => Err(SendError::Unavailable {
                reason: format!("SMTP: {error}"),
                retry_after: None,
            }),
        }
    }
}

/// Whether an SMTP error is about this mail (a 5xx of the mail system: no such mailbox, message
/// refused), which no retry changes. A permanent error about the session (530/535: our login
/// refused, 5.x.x on connection) is the relay's or the operator's to fix: retried, not lost.
fn refuses_the_mail(error: &lettre::transport::smtp::Error) -> bool {
    use lettre::transport::smtp::response::Category;
    error.is_permanent() && error.status().is_some_and(|code| code.category == Category::MailSystem)
}
