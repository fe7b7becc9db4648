//! Which website chat visitors are there, from `omni.state.webchat.v1`: every gateway replica
//! writes how many chats it holds open per conversation (`omni.v1.ChatPresence`), when that
//! changes and every 30 s while chats are open. Read whole from the start on a thread of its
//! own, then followed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use omni_kafka::{KafkaConfig, topics};
use omni_proto::v1::ChatPresence;
use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::consumer::Consumer as _;
use tokio_util::sync::CancellationToken;

/// An open chat whose record is older than this is a gateway replica that is gone (it writes
/// its open chats every 30 s).
const STALE_AFTER: Duration = Duration::from_secs(90);
/// Records older than this are dropped from memory (the gateway tombstones them an hour after
/// the last chat closed).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// What one gateway replica last said of one conversation.
#[derive(Clone, Copy, Debug)]
struct Seen {
    open_chats: u32,
    at: SystemTime,
}

/// The visitors' open chats per conversation and gateway replica, and the replicas' heartbeats.
#[derive(Debug)]
pub struct Visitors {
    seen: Mutex<HashMap<String, HashMap<String, Seen>>>,
    /// When each gateway replica last said it is alive (its record without a conversation).
    alive: Mutex<HashMap<String, SystemTime>>,
    caught_up: tokio::sync::watch::Sender<bool>,
}

impl Default for Visitors {
    fn default() -> Self {
        Self {
            seen: Mutex::default(),
            alive: Mutex::default(),
            caught_up: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl Visitors {
    /// Takes one record of the topic (`None`: a tombstone).
    fn apply(&self, key: &str, value: Option<&[u8]>) {
        let mut seen = self.seen.lock().expect("not poisoned");
        let Some(value) = value else {
            if let Some(gateway) = key.strip_prefix('/') {
                self.alive.lock().expect("not poisoned").remove(gateway);
            } else if let Some((conversation, gateway)) = key.rsplit_once('/')
                && let Some(gateways) = seen.get_mut(conversation)
            {
                gateways.remove(gateway);
                if gateways.is_empty() {
                    seen.remove(conversation);
                }
            }
            return;
        };
        let Ok(record) = ChatPresence::decode(value) else {
            tracing::warn!(key, "unreadable chat presence skipped");
            return;
        };
        let at = record
            .updated_at
            .and_then(|at| SystemTime::try_from(at).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if record.conversation_id.is_empty() {
            self.alive.lock().expect("not poisoned").insert(record.gateway, at);
            return;
        }
        seen.entry(record.conversation_id).or_default().insert(
            record.gateway,
            Seen {
                open_chats: record.open_chats,
                at,
            },
        );
    }

    /// Whether the visitors of `conversation` left: no chat of theirs open on a replica that
    /// is alive, and the last one closed more than `away_after` before `now`. A conversation
    /// with no record (never seen, or closed over an hour ago) is away only while some gateway
    /// replica's heartbeat is fresh: with none, presence is not being written (an upgrade from
    /// a gateway without it, or no replica reaching the broker), and the answer is not mailed
    /// on a guess.
    pub fn away(&self, conversation: &str, now: SystemTime, away_after: Duration) -> bool {
        let seen = self.seen.lock().expect("not poisoned");
        let age = |at: SystemTime| now.duration_since(at).unwrap_or_default();
        match seen.get(conversation) {
            Some(gateways) => !gateways.values().any(|seen| {
                let limit = if seen.open_chats > 0 { STALE_AFTER } else { away_after };
                age(seen.at) <= limit
            }),
            None => self.alive.lock().expect("not poisoned").values().any(|at| age(*at) <= STALE_AFTER),
        }
    }

    /// Drops what is older than an hour.
    fn forget_old(&self, now: SystemTime) {
        self.alive
            .lock()
            .expect("not poisoned")
            .retain(|_, at| now.duration_since(*at).unwrap_or_default() < FORGET_AFTER);
        let mut seen = self.seen.lock().expect("not poisoned");
        seen.retain(|_, gateways| {
            gateways.retain(|_, seen| now.duration_since(seen.at).unwrap_or_default() < FORGET_AFTER);
            !gateways.is_empty()
        });
    }

    /// Whether the topic has been read up to where it ended at start, waiting up to `within`.
    pub async fn caught_up(&self, within: Duration) -> bool {
        let mut caught_up = self.caught_up.subscribe();
        tokio::time::timeout(within, caught_up.wait_for(|done| *done))
            .await
            .is_ok_and(|done| done.is_ok())
    }

    /// Reads the topic into a new `Visitors` until shutdown, on a thread of its own.
    pub fn follow(kafka: &KafkaConfig, client_id: &str, shutdown: CancellationToken) -> anyhow::Result<Arc<Self>> {
        let (consumer, mut ends) = omni_kafka::reader::follow_whole_topic(kafka, client_id, "presence", topics::STATE_WEBCHAT)?;
        let visitors = Arc::new(Self::default());
        let shared = visitors.clone();
        std::thread::Builder::new().name("webchat-presence".into()).spawn(move || {
            let mut last_sweep = std::time::Instant::now();
            while !shutdown.is_cancelled() {
                if ends.caught_up() {
                    shared.caught_up.send_replace(true);
                }
                match consumer.poll(Duration::from_millis(250)) {
                    Some(Ok(message)) => {
                        ends.read(message.partition(), message.offset());
                        if let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
                            shared.apply(key, message.payload());
                        }
                    }
                    Some(Err(error)) => tracing::warn!(%error, "reading the chat presence"),
                    None => {}
                }
                if last_sweep.elapsed() > Duration::from_secs(60) {
                    shared.forget_old(SystemTime::now());
                    last_sweep = std::time::Instant::now();
                }
            }
            drop(consumer.unassign());
        })?;
        Ok(visitors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(conversation: &str, gateway: &str, open_chats: u32, at: SystemTime) -> Vec<u8> {
        ChatPresence {
            conversation_id: conversation.into(),
            gateway: gateway.into(),
            open_chats,
            updated_at: Some(at.into()),
        }
        .encode_to_vec()
    }

    #[test]
    fn a_visitor_is_there_while_a_live_replica_holds_a_chat_and_a_moment_after_it_closed() {
        let visitors = Visitors::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let away_after = Duration::from_secs(120);
        assert!(!visitors.away("c1", t0, away_after), "never seen, and no gateway writes presence");
        visitors.apply("/gw-a", Some(&record("", "gw-a", 0, t0)));
        assert!(visitors.away("c1", t0, away_after), "never seen while a gateway writes presence");
        assert!(
            !visitors.away("c1", t0 + Duration::from_secs(91), away_after),
            "the heartbeat is old"
        );
        visitors.apply("/gw-a", None);
        assert!(!visitors.away("c1", t0, away_after), "the gateway shut down");
        visitors.apply("c1/gw-a", Some(&record("c1", "gw-a", 1, t0)));
        assert!(!visitors.away("c1", t0 + Duration::from_secs(60), away_after));
        // The replica stopped refreshing (it died): gone after 90 s.
        assert!(visitors.away("c1", t0 + Duration::from_secs(91), away_after));
        // Another replica's chat closed 100 s ago: still within the grace of a page change.
        visitors.apply("c1/gw-b", Some(&record("c1", "gw-b", 0, t0 + Duration::from_secs(10))));
        assert!(!visitors.away("c1", t0 + Duration::from_secs(110), away_after));
        assert!(visitors.away("c1", t0 + Duration::from_secs(131), away_after));
        // A tombstone forgets the replica's record.
        visitors.apply("c1/gw-b", None);
        visitors.apply("c1/gw-a", None);
        assert!(visitors.seen.lock().unwrap().is_empty());
    }

    #[test]
    fn what_is_older_than_an_hour_is_forgotten_and_garbage_is_skipped() {
        let visitors = Visitors::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        visitors.apply("c1/gw-a", Some(&record("c1", "gw-a", 0, t0)));
        visitors.apply("c2/gw-a", Some(&record("c2", "gw-a", 1, t0 + Duration::from_secs(3000))));
        visitors.apply("c3/gw-a", Some(b"\xff\xff not a record"));
        visitors.forget_old(t0 + Duration::from_secs(3700));
        let seen = visitors.seen.lock().unwrap();
        assert_eq!(seen.keys().collect::<Vec<_>>(), ["c2"]);
    }
}
