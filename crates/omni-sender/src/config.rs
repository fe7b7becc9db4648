//! `[sender]` configuration.

use std::collections::BTreeMap;

use omni_kafka::{KafkaService, ServiceSection};
use omni_runtime::settings::check_socket_addr;
use omni_runtime::{Problems, Validate};
use serde::Deserialize;

/// `[sender]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub admin_listen: String,
    /// Consumer group shared by the sender replicas.
    pub group_id: String,
    /// This replica's id: its static consumer group member id and part of the CloudEvents source.
    pub instance_id: String,
    /// Seconds to finish the message in hand after SIGTERM.
    pub drain_timeout_secs: u64,
    /// Longest time to read `omni.state.sender.v1` at start-up, in seconds.
    pub state_restore_timeout_secs: u64,
    /// How long an answer waits for the sender to have read its conversation's customer
    /// message (both topics are read side by side; one may lag), in seconds; then it is a
    /// dead letter.
    pub conversation_wait_secs: u64,
    /// Email out through SMTP; without it an answer on an email conversation is a dead letter.
    #[serde(default)]
    pub email: Option<EmailConfig>,
}

/// `[sender.email]`: one SMTP relay for every mailbox.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The relay, as lettre reads it: `smtp://host:25` (plain), `smtp://host:587?tls=required`
    /// (STARTTLS), `smtps://host:465` (TLS from the first byte).
    pub smtp_url: String,
    /// SMTP AUTH user (with `password`); none: no AUTH.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP AUTH password.
    #[serde(default)]
    pub password: Option<String>,
    /// Seconds per SMTP conversation.
    pub timeout_secs: u64,
    /// The domain of the Message-IDs omni gives its replies (`<omni-reply.<id>@<domain>>`).
    pub message_id_domain: String,
    /// The From of answers per `[email.mailboxes]` name: the address the customer wrote to.
    pub from: BTreeMap<String, String>,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp_url", &self.smtp_url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout_secs", &self.timeout_secs)
            .field("message_id_domain", &self.message_id_domain)
            .field("from", &self.from)
            .finish()
    }
}

impl Validate for SenderConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        check_socket_addr(&self.admin_listen, format!("{prefix}.admin_listen"), problems);
        problems.check(!self.group_id.is_empty(), format!("{prefix}.group_id"), "must not be empty");
        problems.check(!self.instance_id.is_empty(), format!("{prefix}.instance_id"), "must not be empty");
        problems.check(
            self.state_restore_timeout_secs >= 1,
            format!("{prefix}.state_restore_timeout_secs"),
            "must be at least 1",
        );
        problems.check(
            self.conversation_wait_secs >= 1,
            format!("{prefix}.conversation_wait_secs"),
            "must be at least 1",
        );
        if let Some(email) = &self.email {
            email.validate(&format!("{prefix}.email"), problems);
        }
    }
}

impl Validate for EmailConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        if let Err(error) = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&self.smtp_url) {
            problems.push(format!("{prefix}.smtp_url"), format!("`{}`: {error}", self.smtp_url));
        }
        problems.check(
            self.username.is_some() == self.password.is_some(),
            prefix,
            "set both `username` and `password`, or neither",
        );
        problems.check(self.timeout_secs >= 1, format!("{prefix}.timeout_secs"), "must be at least 1");
        problems.check(
            !self.message_id_domain.is_empty() && !self.message_id_domain.contains(['@', '<', '>', ' ']),
            format!("{prefix}.message_id_domain"),
            "must be a domain name",
        );
        for (mailbox, from) in &self.from {
            if let Err(error) = from.parse::<lettre::message::Mailbox>() {
                problems.push(
                    format!("{prefix}.from.{mailbox}"),
                    format!("`{from}` is not a mail address: {error}"),
                );
            }
        }
    }
}

/// Everything the sender reads: `[kafka]` and `[sender]`.
pub type SenderServiceConfig = KafkaService<SenderConfig>;

impl ServiceSection for SenderConfig {
    const NAME: &'static str = "sender";

    fn admin_listen(&self) -> &str {
        &self.admin_listen
    }

    fn drain_timeout_secs(&self) -> u64 {
        self.drain_timeout_secs
    }
}
