//! Whether a visitor is there: every gateway replica writes how many chats it holds open per
//! conversation to `omni.state.webchat.v1` (`omni.v1.ChatPresence`, key
//! `<conversation id>/<connector id>`), when the count changes and every [`REFRESH`] while it
//! is above zero, so a replica that died stops counting once its records are old. omni-sender
//! reads the topic to answer a visitor who left by email rather than into a chat nobody reads.
//! An hour after a conversation's last chat here closed, its key is tombstoned, and every key of
//! the replica when it shuts down: the topic keeps the conversations of the last hour, not every
//! visitor ever. Each replica also writes a heartbeat (key `/<connector id>`, no conversation)
//! every [`REFRESH`]: a conversation the sender finds no record of counts as left only while a
//! replica that writes presence is alive (not during an upgrade from a gateway that does not, nor
//! while no replica can write).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use omni_kafka::{Producer, topics};
use omni_proto::v1::ChatPresence;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

/// How often the open chats' records are written again (omni-sender takes a record older than
/// three times this for a replica that is gone).
pub const REFRESH: Duration = Duration::from_secs(30);
/// How long after a conversation's last chat closed its record is tombstoned.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// This replica's open chats per conversation, and the conversations whose chats all closed.
pub struct Presence {
    producer: Producer,
    gateway: String,
    open: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    open: HashMap<String, u32>,
    closed_at: HashMap<String, Instant>,
    /// Set by [`Presence::forget_all`]: chats closing after it (the replica is going) write nothing.
    forgotten: bool,
}

/// An open chat, counted while it lives.
pub struct Here {
    presence: Arc<Presence>,
    conversation: String,
}

impl Drop for Here {
    fn drop(&mut self) {
        self.presence.change(&self.conversation, false);
    }
}

impl Presence {
    /// Writes through `producer` as replica `gateway` (its connector id).
    pub fn new(producer: Producer, gateway: &str) -> Arc<Self> {
        Arc::new(Self {
            producer,
            gateway: gateway.to_owned(),
            open: Mutex::default(),
        })
    }

    /// Counts an open chat of `conversation` until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>, conversation: &str) -> Here {
        self.change(conversation, true);
        Here {
            presence: self.clone(),
            conversation: conversation.to_owned(),
        }
    }

    fn change(&self, conversation: &str, opened: bool) {
        let mut counts = self.open.lock().expect("not poisoned");
        if counts.forgotten {
            return;
        }
        let count = counts.open.entry(conversation.to_owned()).or_default();
        *count = if opened { *count + 1 } else { count.saturating_sub(1) };
        let count = *count;
        if count == 0 {
            counts.open.remove(conversation);
            counts.closed_at.insert(conversation.to_owned(), Instant::now());
        } else {
            counts.closed_at.remove(conversation);
        }
        // Enqueued under the lock, so two sockets of one conversation opening and closing at
        // once write their counts in the order they changed.
        self.write(conversation, Some(count));
    }

    /// Tombstones every key of this replica (its conversations and its heartbeat), at shutdown:
    /// its visitors reconnect to another replica, which writes theirs.
    pub fn forget_all(&self) {
        let conversations: Vec<String> = {
            let mut counts = self.open.lock().expect("not poisoned");
            counts.forgotten = true;
            let mut all: Vec<String> = counts.open.drain().map(|(conversation, _)| conversation).collect();
            all.extend(counts.closed_at.drain().map(|(conversation, _)| conversation));
            all
        };
        for conversation in conversations.iter().map(String::as_str).chain([""]) {
            self.write(conversation, None);
        }
    }

    /// Writes the record of `conversation` (`None`: its tombstone; the empty conversation is
    /// this replica's heartbeat) without waiting; a write the broker does not take is logged
    /// (the next change or refresh writes it again).
    fn write(&self, conversation: &str, open_chats: Option<u32>) {
        let key = format!("{conversation}/{}", self.gateway);
        let headers = omni_kafka::state::headers();
        let enqueued = match open_chats {
            Some(open_chats) => {
                let record = ChatPresence {
                    conversation_id: conversation.to_owned(),
                    gateway: self.gateway.clone(),
                    open_chats,
                    updated_at: Some(SystemTime::now().into()),
                };
                self.producer
                    .enqueue(topics::STATE_WEBCHAT, key.as_bytes(), &record.encode_to_vec(), headers)
            }
            None => self.producer.enqueue_tombstone(topics::STATE_WEBCHAT, key.as_bytes(), headers),
        };
        let pending = match enqueued {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error, "chat presence not written");
                return;
            }
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = pending.acknowledged().await {
                    tracing::warn!(%error, "chat presence not written");
                }
            });
        }
    }

    /// Until shutdown, every [`REFRESH`]: writes the heartbeat and the open chats' records again
    /// and tombstones the conversations whose chats closed more than an hour ago.
    pub async fn refresh(self: Arc<Self>, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(REFRESH);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let (open, forgotten) = {
                let mut counts = self.open.lock().expect("not poisoned");
                let open: Vec<(String, u32)> = counts.open.iter().map(|(c, n)| (c.clone(), *n)).collect();
                let forgotten: Vec<String> = counts
                    .closed_at
                    .iter()
                    .filter(|(_, at)| at.elapsed() > FORGET_AFTER)
                    .map(|(c, _)| c.clone())
                    .collect();
                for conversation in &forgotten {
                    counts.closed_at.remove(conversation);
                }
                (open, forgotten)
            };
            metrics::gauge!("omni_gateway_chat_conversations_open").set(open.len() as f64);
            let total = open.iter().map(|(_, count)| count).sum();
            self.write("", Some(total));
            for (conversation, count) in open {
                self.write(&conversation, Some(count));
            }
            for conversation in forgotten {
                self.write(&conversation, None);
            }
        }
    }
}
