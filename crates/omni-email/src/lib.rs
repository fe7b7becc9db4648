//! The email connector: IMAP mailboxes into `omni.raw.email.v1`.
//!
//! For each configured mailbox it logs in, selects the folder, stores every message it has not
//! stored yet (the backfill), then waits with IDLE (re-issued every `idle_renew_secs`) or polls
//! where the server has no IDLE, and stores what arrives.
//!
//! Checkpoints cannot lose or double mail:
//! - per mailbox, the UIDVALIDITY and the highest UID whose raw record the broker acknowledged
//!   (with every lower UID) live in the compacted topic `omni.state.email.v1`;
//! - a batch's records are all acknowledged before the checkpoint moves past them; a dropped
//!   connection, an empty or failed FETCH, or a crash never moves it, so the next session
//!   fetches the same messages again, and their deterministic event ids (Message-ID, or a digest
//!   of the bytes) make the copies recognisable downstream;
//! - a UIDVALIDITY change (the folder was recreated) starts over from UID 1, relying on the
//!   event ids likewise.
//!
//! Messages are fetched with `BODY.PEEK[]`: nothing is marked seen, flagged or deleted.
//!
//! Each mailbox connects with `security = "plain" | "tls" | "starttls"` (rustls; the system's
//! roots plus an optional `ca_file`) and logs in with `auth = "password" | "xoauth2"`.

pub mod config;
mod connect;
mod mailbox;

use std::collections::HashMap;
use std::time::Duration;

use omni_kafka::{Producer, topics};
use omni_proto::v1::EmailCheckpoint;
use omni_runtime::ServiceContext;
use prost::Message as _;

pub use config::{EmailConfig, EmailServiceConfig, MailboxConfig};

/// The checkpoint key of a mailbox.
pub fn checkpoint_key(connector_id: &str, mailbox: &str) -> String {
    format!("mailbox/{connector_id}/{mailbox}")
}

/// Runs the connector until shutdown: one task per mailbox.
pub async fn run(config: EmailServiceConfig, context: ServiceContext) -> anyhow::Result<()> {
    let client_id = format!("omni-email-{}", config.service.connector_id);
    context.readiness.register("kafka");
    context.readiness.register("checkpoints");
    topics::ensure_topics_until_ready(&config.kafka, &client_id, &context).await?;
    let producer = Producer::new(&config.kafka, &client_id)?;
    let restored = omni_kafka::state::read_all(&config.kafka, &client_id, topics::STATE_EMAIL, Duration::from_secs(120)).await?;
    let checkpoints: HashMap<String, EmailCheckpoint> = restored
        .into_iter()
        .filter_map(|(key, value)| Some((String::from_utf8(key).ok()?, EmailCheckpoint::decode(value.as_slice()).ok()?)))
        .collect();
    context.readiness.ready("checkpoints");
    let objects = omni_objects::Objects::open(&config.objects.url)?;
    let mut tasks = tokio::task::JoinSet::new();
    for (name, mailbox) in &config.service.mailboxes {
        let key = checkpoint_key(&config.service.connector_id, name);
        let reader = mailbox::MailboxReader {
            name: name.clone(),
            mailbox: mailbox.clone(),
            settings: config.service.clone(),
            producer: producer.clone(),
            checkpoint: checkpoints.get(&key).cloned().unwrap_or_default(),
            checkpoint_key: key,
            source: format!("omni/email/{}", config.service.connector_id),
            partition_key: omni_channels::ids::partition_key(&["email", name]),
            readiness: context.readiness.clone(),
            objects: objects.clone(),
        };
        context.readiness.register(&format!("mailbox:{name}"));
        tasks.spawn(reader.run(context.shutdown.clone()));
    }
    while let Some(joined) = tasks.join_next().await {
        joined?;
    }
    producer.flush(Duration::from_secs(5)).ok();
    Ok(())
}

/// Appends messages to a folder of a configured mailbox with IMAP APPEND, the way a mail client
/// files mail (`omni mail append`). Connects with the mailbox's security and login; `progress`
/// is called with the number appended so far. Returns the number appended.
pub async fn append_messages(
    mailbox: &config::MailboxConfig,
    folder: &str,
    messages: impl IntoIterator<Item = Vec<u8>>,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<usize> {
    let mut appender = Appender::open(mailbox).await?;
    let mut appended = 0;
    for message in messages {
        appender
            .append(folder, &message)
            .await
            .map_err(|error| anyhow::anyhow!("{error:#} (after {appended} messages)"))?;
        appended += 1;
        progress(appended);
    }
    appender.logout().await;
    Ok(appended)
}

/// One logged-in IMAP session that files messages with APPEND, kept open across messages as a
/// mail client keeps it (a new session per message costs a TCP and login round trip each).
pub struct Appender {
    session: connect::ImapSession,
}

impl Appender {
    /// Opens a session with the mailbox's security and login.
    pub async fn open(mailbox: &config::MailboxConfig) -> anyhow::Result<Self> {
        Ok(Self {
            session: connect::open(mailbox).await?,
        })
    }

    /// Files one message into `folder`. After an error the session may be unusable: open another.
    pub async fn append(&mut self, folder: &str, message: &[u8]) -> anyhow::Result<()> {
        self.session
            .append(folder, None, None, message)
            .await
            .map_err(|error| anyhow::anyhow!("APPEND to `{folder}` failed: {error}"))
    }

    /// Logs out (errors ignored: the server closes the connection either way).
    pub async fn logout(mut self) {
        self.session.logout().await.ok();
    }
}
