//! One mailbox: connect, backfill, wait for new mail, repeat; checkpoint after acknowledgement.

use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use omni_kafka::producer::Pending;
use omni_kafka::topics::raw_topic;
use omni_kafka::{CloudEvent, ProduceError, Producer, topics};
use omni_proto::v1::{Channel, EmailCheckpoint, RawRecord};
use omni_runtime::Readiness;
use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::config::{EmailConfig, MailboxConfig, Security, is_loopback};
use crate::connect::{self, ConnectError, ImapSession};

/// Why a mailbox session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("imap: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("folder has no UIDVALIDITY")]
    NoUidValidity,
    #[error("broker: {0}")]
    Broker(#[from] ProduceError),
}

pub(crate) struct MailboxReader {
    pub name: String,
    pub mailbox: MailboxConfig,
    pub settings: EmailConfig,
    pub producer: Producer,
    pub checkpoint: EmailCheckpoint,
    pub checkpoint_key: String,
    /// CloudEvents source of every record this reader writes.
    pub source: String,
    /// Key of this mailbox's raw records.
    pub partition_key: String,
    pub readiness: Readiness,
    /// Where the bytes of files cut out of a large message go (`[objects]`); none: they stay on
    /// the IMAP server only.
    pub objects: Option<omni_objects::Objects>,
}

impl MailboxReader {
    pub async fn run(mut self, shutdown: tokio_util::sync::CancellationToken) {
        let check = format!("mailbox:{}", self.name);
        if self.mailbox.security == Security::Plain && !is_loopback(&self.mailbox.host) {
            tracing::warn!(mailbox = %self.name, host = %self.mailbox.host, "security = plain: the login and the mail cross the network unencrypted (allow_plain_remote = true)");
        }
        let mut delay = Duration::from_secs(1);
        // At zero from the start, so an alert on `increase()` sees the first error.
        metrics::counter!("omni_email_session_errors_total", "mailbox" => self.name.clone()).increment(0);
        while !shutdown.is_cancelled() {
            let outcome = tokio::select! {
                outcome = self.session(&check) => outcome,
                () = shutdown.cancelled() => break,
            };
            if let Err(error) = outcome {
                self.readiness.not_ready(&check, error.to_string());
                tracing::warn!(mailbox = %self.name, %error, retry_in_ms = delay.as_millis() as u64, "mailbox session ended");
                metrics::counter!("omni_email_session_errors_total", "mailbox" => self.name.clone()).increment(1);
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => break,
            }
            delay = (delay * 2).min(Duration::from_secs(60));
        }
    }

    async fn session(&mut self, check: &str) -> Result<(), SessionError> {
        let mut session = connect::open(&self.mailbox).await?;
        let selected = session.select(&self.mailbox.folder).await?;
        let uid_validity = selected.uid_validity.ok_or(SessionError::NoUidValidity)?;
        if self.checkpoint.uid_validity != uid_validity {
            if self.checkpoint.uid_validity != 0 {
                tracing::warn!(mailbox = %self.name, old = self.checkpoint.uid_validity, new = uid_validity, "uidvalidity changed: reading the folder again; event ids keep it free of doubles");
            }
            self.checkpoint = EmailCheckpoint {
                uid_validity,
                last_uid: 0,
                updated_at: None,
            };
        }
        let idle = session.capabilities().await?.has_str("IDLE");
        self.readiness.ready(check);
        tracing::info!(mailbox = %self.name, folder = %self.mailbox.folder, security = %self.mailbox.security, auth = %self.mailbox.auth, uid_validity, last_uid = self.checkpoint.last_uid, idle, "mailbox selected");
        loop {
            self.store_new(&mut session).await?;
            if announced_new(&session.unsolicited_responses) {
                // Mail came while those commands ran: the server told us then, and IDLE would
                // not tell us again (it waited for `idle_renew_secs` before: up to 10 minutes).
                continue;
            }
            session = if idle {
                self.wait_idle(session).await?
            } else {
                self.wait_poll(session).await?
            };
        }
    }

    /// Stores every message above the checkpoint, in UID order, batch by batch.
    async fn store_new(&mut self, session: &mut ImapSession) -> Result<(), SessionError> {
        let mut uids: Vec<u32> = session
            .uid_search(format!("UID {}:*", self.checkpoint.last_uid + 1))
            .await?
            .into_iter()
            .collect();
        // "N:*" always matches the highest UID, even below N.
        uids.retain(|uid| *uid > self.checkpoint.last_uid);
        uids.sort_unstable();
        let total = uids.len();
        if total == 0 {
            return Ok(());
        }
        tracing::info!(mailbox = %self.name, messages = total, "storing new messages");
        let gauge = metrics::gauge!("omni_email_backlog_messages", "mailbox" => self.name.clone());
        gauge.set(total as f64);
        for (batch_index, batch) in uids.chunks(self.settings.fetch_batch as usize).enumerate() {
            let set = batch.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            let fetched: Vec<_> = session.uid_fetch(&set, "(UID BODY.PEEK[])").await?.try_collect().await?;
            let mut pending: Vec<(u32, Pending)> = Vec::with_capacity(fetched.len());
            for fetch in &fetched {
                let (Some(uid), Some(body)) = (fetch.uid, fetch.body()) else {
                    continue;
                };
                pending.push((uid, self.enqueue(uid, body).await?));
            }
            // Only UIDs that came back and were acknowledged, contiguous from the start of the
            // batch, move the checkpoint: a message the server did not return is fetched again.
            let mut stored_up_to = None;
            let mut acknowledged = pending
                .into_iter()
                .map(|(uid, p)| async move { (uid, p.acknowledged().await) })
                .collect::<futures::stream::FuturesOrdered<_>>();
            let mut expected = batch.iter();
            let mut contiguous = true;
            while let Some((uid, result)) = futures::StreamExt::next(&mut acknowledged).await {
                result?;
                if contiguous && expected.next() == Some(&uid) {
                    stored_up_to = Some(uid);
                } else {
                    contiguous = false;
                }
            }
            let Some(last) = stored_up_to else {
                tracing::warn!(mailbox = %self.name, "fetch returned nothing usable; will retry");
                return Ok(());
            };
            self.save_checkpoint(last).await?;
            let done = (batch_index * self.settings.fetch_batch as usize + batch.len()).min(total);
            gauge.set((total - done) as f64);
            tracing::info!(mailbox = %self.name, stored = done, of = total, last_uid = last, "backfill progress");
            if !contiguous {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn enqueue(&self, uid: u32, body: &[u8]) -> Result<Pending, ProduceError> {
        let ids = omni_channels::email::ids(&self.name, body);
        let now = SystemTime::now();
        let mut attributes = std::collections::HashMap::from([
            ("imap_uid".to_owned(), uid.to_string()),
            ("imap_uid_validity".to_owned(), self.checkpoint.uid_validity.to_string()),
            ("imap_folder".to_owned(), self.mailbox.folder.clone()),
            ("size_bytes".to_owned(), body.len().to_string()),
            (
                omni_channels::email::LIST_MAIL_ATTRIBUTE.to_owned(),
                self.mailbox.list_mail.as_str().to_owned(),
            ),
        ]);
        if let Some(subjects) = &self.mailbox.auto_reply_subjects {
            attributes.insert(omni_channels::email::AUTO_REPLY_SUBJECTS_ATTRIBUTE.to_owned(), subjects.join("\n"));
        }
        if let Some(charset) = &self.mailbox.default_charset {
            attributes.insert(omni_channels::email::header::DEFAULT_CHARSET_ATTRIBUTE.to_owned(), charset.clone());
        }
        let max = self.settings.max_inline_bytes;
        let stripped = (body.len() > max)
            .then(|| omni_channels::email::large::strip(body))
            .flatten()
            .filter(|(payload, _)| payload.len() <= max);
        let payload = if let Some((payload, parts)) = stripped {
            // Too large for a record: the text, HTML and file list stay; the large files' bytes
            // stay on the server, each named by its IMAP section, and go to the object store.
            self.keep_files(body).await;
            attributes.insert(
                omni_channels::email::large::STRIPPED_ATTRIBUTE.to_owned(),
                omni_channels::email::large::attribute(&parts),
            );
            payload
        } else if body.len() > max {
            // Even without its files too large (a huge text): keep the header, say so, and
            // point at the message on the server.
            attributes.insert("truncated".to_owned(), "true".to_owned());
            attributes.insert("sha256".to_owned(), hex::encode(Sha256::digest(body)));
            let end = body
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + 4)
                .unwrap_or(0)
                .min(self.settings.max_inline_bytes);
            body[..end].to_vec()
        } else {
            body.to_vec()
        };
        let record = RawRecord {
            event_id: ids.event_id.clone(),
            channel: Channel::Email as i32,
            provider: omni_channels::email::PROVIDER.to_owned(),
            account: self.name.clone(),
            connector_id: self.settings.connector_id.clone(),
            received_at: Some(now.into()),
            provider_message_id: ids.message_id.unwrap_or_default(),
            content_type: "message/rfc822".to_owned(),
            payload,
            attributes,
        };
        let headers = CloudEvent {
            id: &ids.event_id,
            kind: "omni.v1.RawRecord",
            source: &self.source,
            subject: None,
            time: now,
        }
        .to_headers();
        metrics::counter!("omni_email_messages_total", "mailbox" => self.name.clone()).increment(1);
        // Keyed by mailbox: its messages stay in UID order in one partition, so the normalizer
        // has seen a message before the reply that names it (threading by known events).
        self.producer.enqueue(
            &raw_topic(Channel::Email).expect("the email channel has a family"),
            self.partition_key.as_bytes(),
            &record.encode_to_vec(),
            headers,
        )
    }

    /// Puts the bytes of the file parts [`omni_channels::email::large::strip`] cuts out into the
    /// object store, before the record that names them is written. A store that fails loses
    /// nothing: the record still names each part on the IMAP server.
    async fn keep_files(&self, body: &[u8]) {
        let Some(objects) = &self.objects else { return };
        for contents in omni_channels::email::large::stripped_contents(body) {
            match objects.put(&contents).await {
                Ok(_) => metrics::counter!("omni_email_objects_stored_total", "mailbox" => self.name.clone()).increment(1),
                Err(error) => {
                    tracing::warn!(mailbox = %self.name, %error, bytes = contents.len(), "a large file not kept in the object store; the record names it on the IMAP server");
                    metrics::counter!("omni_email_object_errors_total", "mailbox" => self.name.clone()).increment(1);
                }
            }
        }
    }

    async fn save_checkpoint(&mut self, last_uid: u32) -> Result<(), ProduceError> {
        let checkpoint = EmailCheckpoint {
            uid_validity: self.checkpoint.uid_validity,
            last_uid,
            updated_at: Some(SystemTime::now().into()),
        };
        let headers = omni_kafka::state::headers();
        self.producer
            .send(
                topics::STATE_EMAIL,
                self.checkpoint_key.as_bytes(),
                &checkpoint.encode_to_vec(),
                headers,
            )
            .await?;
        metrics::gauge!("omni_email_checkpoint_uid", "mailbox" => self.name.clone()).set(f64::from(last_uid));
        self.checkpoint = checkpoint;
        Ok(())
    }

    async fn wait_idle(&self, session: ImapSession) -> Result<ImapSession, SessionError> {
        let mut handle = session.idle();
        handle.init().await?;
        let (wait, _interrupt) = handle.wait_with_timeout(Duration::from_secs(self.settings.idle_renew_secs));
        wait.await?;
        Ok(handle.done().await?)
    }

    async fn wait_poll(&self, mut session: ImapSession) -> Result<ImapSession, SessionError> {
        tokio::time::sleep(Duration::from_secs(self.settings.poll_interval_secs)).await;
        session.noop().await?;
        Ok(session)
    }
}

/// Whether the server announced new messages (EXISTS or RECENT) in the responses it sent
/// unasked since the last call; reads them all. A message delivered while the connector searches
/// or fetches is announced during that command, not again when IDLE begins.
fn announced_new(unsolicited: &async_channel::Receiver<async_imap::types::UnsolicitedResponse>) -> bool {
    use async_imap::types::UnsolicitedResponse;
    let mut announced = false;
    while let Ok(response) = unsolicited.try_recv() {
        announced |= matches!(response, UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_));
    }
    announced
}

#[cfg(test)]
mod tests {
    use async_imap::types::UnsolicitedResponse;

    use super::announced_new;

    #[test]
    fn new_mail_announced_during_a_command_is_seen_once_and_other_news_is_not_mail() {
        let (sender, receiver) = async_channel::bounded(100);
        assert!(!announced_new(&receiver), "nothing announced");
        sender.try_send(UnsolicitedResponse::Expunge(3)).unwrap();
        assert!(!announced_new(&receiver), "an expunge is no new mail");
        sender.try_send(UnsolicitedResponse::Exists(680)).unwrap();
        sender.try_send(UnsolicitedResponse::Expunge(3)).unwrap();
        assert!(announced_new(&receiver), "EXISTS among other responses");
        assert!(!announced_new(&receiver), "read once");
        sender.try_send(UnsolicitedResponse::Recent(1)).unwrap();
        assert!(announced_new(&receiver), "RECENT");
    }
}
