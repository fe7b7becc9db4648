//! `[email]` configuration.

use std::collections::BTreeMap;

use omni_kafka::{KafkaService, ServiceSection};
use omni_runtime::settings::check_socket_addr;
use omni_runtime::{Problems, Validate};
use serde::Deserialize;

/// `[email]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub admin_listen: String,
    /// This connector's id: in raw records, checkpoints keys and the CloudEvents source.
    pub connector_id: String,
    /// Seconds to finish the batch in hand after SIGTERM.
    pub drain_timeout_secs: u64,
    /// Messages fetched and stored per batch; the checkpoint moves after each batch.
    pub fetch_batch: u32,
    /// Seconds before an IDLE is ended and re-issued (servers may drop it after 30 minutes).
    pub idle_renew_secs: u64,
    /// Seconds between polls of a server without IDLE.
    pub poll_interval_secs: u64,
    /// Messages up to this many bytes are stored whole; a larger one is stored as its header,
    /// with its size, SHA-256 and IMAP UID in the record's attributes (it stays on the server).
    pub max_inline_bytes: usize,
    /// Mailboxes by name; the name is the account recorded with each message.
    pub mailboxes: BTreeMap<String, MailboxConfig>,
}

/// One mailbox.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxConfig {
    /// IMAP server host.
    pub host: String,
    /// IMAP server port.
    pub port: u16,
    /// Connection security. Only `plain` is implemented yet; use it on loopback only.
    pub security: Security,
    /// Login user.
    pub username: String,
    /// Login password.
    pub password: String,
    /// Folder to read, for example `INBOX`.
    pub folder: String,
}

/// Connection security of a mailbox.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// No TLS (loopback or a trusted network only).
    Plain,
}

impl Validate for EmailConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        check_socket_addr(&self.admin_listen, format!("{prefix}.admin_listen"), problems);
        problems.check(!self.connector_id.is_empty(), format!("{prefix}.connector_id"), "must not be empty");
        problems.check(
            (1..=10_000).contains(&self.fetch_batch),
            format!("{prefix}.fetch_batch"),
            "must be between 1 and 10000",
        );
        problems.check(
            (10..=1740).contains(&self.idle_renew_secs),
            format!("{prefix}.idle_renew_secs"),
            "must be between 10 and 1740 (29 minutes)",
        );
        problems.check(
            self.poll_interval_secs >= 1,
            format!("{prefix}.poll_interval_secs"),
            "must be at least 1",
        );
        problems.check(
            self.max_inline_bytes >= 64 * 1024,
            format!("{prefix}.max_inline_bytes"),
            "must be at least 65536",
        );
        for (name, mailbox) in &self.mailboxes {
            let key = format!("{prefix}.mailboxes.{name}");
            problems.check(!mailbox.host.is_empty(), format!("{key}.host"), "must not be empty");
            problems.check(!mailbox.username.is_empty(), format!("{key}.username"), "must not be empty");
            problems.check(!mailbox.folder.is_empty(), format!("{key}.folder"), "must not be empty");
        }
    }
}

impl ServiceSection for EmailConfig {
    const NAME: &'static str = "email";

    fn admin_listen(&self) -> &str {
        &self.admin_listen
    }

    fn drain_timeout_secs(&self) -> u64 {
        self.drain_timeout_secs
    }
}

/// Everything the email connector reads: `[kafka]` and `[email]`.
pub type EmailServiceConfig = KafkaService<EmailConfig>;
