//! Email out: the reply built by the email channel folder, handed to SMTP through lettre.

use std::collections::BTreeMap;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use omni_channels::email::send as email;
use omni_proto::v1::contact_identifier::Kind as IdentifierKind;
use omni_proto::v1::{Channel, OutboundMessage, ProviderReference, ReplyAddress};

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

    fn sends_files(&self) -> bool {
        true
    }
}

/// Answers to the HTTP API's customers: by email from `[sender] answer_api_by_email`, to the
/// address the customer gave (a new mail: the API message had no Message-ID to thread to).
pub struct ApiSender {
    email: Option<(std::sync::Arc<EmailSender>, String)>,
}

impl ApiSender {
    /// Through `email` from `mailbox`, when both are there.
    pub fn new(email: Option<std::sync::Arc<EmailSender>>, mailbox: Option<&str>) -> Self {
        Self {
            email: email.zip(mailbox.map(str::to_owned)),
        }
    }
}

#[async_trait::async_trait]
impl crate::ChannelSender for ApiSender {
    /// Mails the answer; returns its Message-ID.
    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let Some((email, mailbox)) = &self.email else {
            return Err(SendError::Refused(
                "no channel to reply on: HTTP API customers are answered by email, and [sender] answer_api_by_email names no mailbox (or [sender.email] is not set)".into(),
            ));
        };
        email.send(&by_email(address, mailbox)?, outbound).await
    }

    fn sends_files(&self) -> bool {
        true
    }
}

/// The address of a customer of another channel (the HTTP API, a website chat) as an email
/// conversation of `mailbox`, to the email address the customer gave.
pub(crate) fn by_email(address: &ReplyAddress, mailbox: &str) -> Result<ReplyAddress, SendError> {
    let customer_email = address
        .customer
        .iter()
        .flat_map(|customer| &customer.identifiers)
        .find(|identifier| identifier.kind == IdentifierKind::Email as i32)
        .map(|identifier| identifier.value.clone())
        .ok_or_else(|| SendError::Refused("no channel to reply on: the customer gave no email address".into()))?;
    Ok(mailed_to(address, mailbox, customer_email))
}

/// `address` as an email conversation of `mailbox` with `to`.
pub(crate) fn mailed_to(address: &ReplyAddress, mailbox: &str, to: String) -> ReplyAddress {
    ReplyAddress {
        channel: Channel::Email as i32,
        provider: Some(ProviderReference {
            provider: "email".into(),
            account: mailbox.to_owned(),
            reply_to: to,
            ..ProviderReference::default()
        }),
        ..address.clone()
    }
}

/// Whether an SMTP error is about this mail (a 5xx of the mail system: no such mailbox, message
/// refused), which no retry changes. A permanent error about the session (530/535: our login
/// refused, 5.x.x on connection) is the relay's or the operator's to fix: retried, not lost.
fn refuses_the_mail(error: &lettre::transport::smtp::Error) -> bool {
    use lettre::transport::smtp::response::Category;
    error.is_permanent() && error.status().is_some_and(|code| code.category == Category::MailSystem)
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::{ContactIdentifier, Participant};

    use super::*;

    fn api_customer(identifiers: &[(IdentifierKind, &str)]) -> ReplyAddress {
        ReplyAddress {
            channel: Channel::Api as i32,
            provider: Some(ProviderReference {
                provider: "http-api".into(),
                account: "shop".into(),
                message_id: "form-77".into(),
                thread_id: "order-1042".into(),
                reply_to: identifiers[0].1.into(),
                ..Default::default()
            }),
            customer: Some(Participant {
                display_name: "Ayşe Yılmaz".into(),
                identifiers: identifiers
                    .iter()
                    .map(|(kind, value)| ContactIdentifier {
                        kind: *kind as i32,
                        value: (*value).into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            subject: "Siparişim nerede?".into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_api_customer_with_an_email_is_answered_as_a_new_mail_from_the_mailbox() {
        let address = by_email(
            &api_customer(&[
                (IdentifierKind::Phone, "+905551112233"),
                (IdentifierKind::Email, "ayse@example.com"),
            ]),
            "support",
        )
        .unwrap();
        assert_eq!(address.channel(), Channel::Email);
        let provider = address.provider.unwrap();
        assert_eq!(
            (provider.account.as_str(), provider.reply_to.as_str()),
            ("support", "ayse@example.com")
        );
        assert!(
            provider.message_id.is_empty() && provider.thread_id.is_empty(),
            "no In-Reply-To to an API id"
        );
        assert_eq!(address.subject, "Siparişim nerede?");
    }

    #[test]
    fn an_api_customer_without_an_email_has_no_channel_to_reply_on() {
        let refused = by_email(&api_customer(&[(IdentifierKind::Phone, "+905551112233")]), "support").unwrap_err();
        assert!(
            matches!(refused, SendError::Refused(ref r) if r.contains("no email address")),
            "{refused:?}"
        );
    }
}
