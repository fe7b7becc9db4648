//! The agents' answers for the website chat, pushed into the visitors' open chats.
//!
//! omni-sender writes each answer to a web chat conversation onto `omni.webchat.v1`, keyed by
//! conversation. Every gateway replica reads the whole topic (no consumer group: each needs every
//! answer, whichever replica holds the visitor's socket) from the beginning at start and keeps the
//! last [`KEPT_PER_CONVERSATION`] answers of each conversation, so a visitor who reconnects (or
//! comes back later, while the topic keeps the answer) gets what they missed after the last
//! `seq` they saw. An answer's `seq` is its offset in the topic (one conversation, one partition,
//! so it only grows); a copy with an outbound id already shown (the sender wrote it again after a
//! crash) is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omni_kafka::{KafkaConfig, topics};
use omni_proto::v1::OutboundMessage;
use prost::Message as _;
use rdkafka::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Answers kept per conversation for visitors who reconnect.
pub const KEPT_PER_CONVERSATION: usize = 50;

/// One agent answer as the widget shows it.
#[derive(Debug, PartialEq)]
pub struct Answer {
    /// Its offset in `omni.webchat.v1`.
    pub seq: i64,
    /// The sender's id of the answer.
    pub outbound_id: String,
    /// What the agent wrote.
    pub text: String,
    /// The agent's display name.
    pub agent: String,
    /// When the agent wrote it (RFC 3339), if known.
    pub at: Option<String>,
}

/// An open chat: where its answers go, and the last one it has.
struct Listener {
    sender: mpsc::Sender<Arc<Answer>>,
    after_seq: i64,
}

#[derive(Default)]
struct Conversation {
    answers: VecDeque<Arc<Answer>>,
    listeners: Vec<Listener>,
}

/// Every this many subscriptions, conversations with no answer and no open chat are dropped (a
/// flood of new visitors must not grow the map for good).
const SWEEP_EVERY: u64 = 1024;

/// The answers per conversation and the open chats listening for more.
#[derive(Default)]
pub struct Hub {
    conversations: Mutex<HashMap<String, Conversation>>,
    subscriptions: std::sync::atomic::AtomicU64,
}

impl Hub {
    /// Listens for `conversation`'s answers: those after `after_seq` kept so far, and a receiver
    /// of the ones to come.
    pub fn subscribe(&self, conversation: &str, after_seq: i64) -> (Vec<Arc<Answer>>, mpsc::Receiver<Arc<Answer>>) {
        let (sender, receiver) = mpsc::channel(64);
        let mut conversations = self.conversations.lock().expect("not poisoned");
        let count = self.subscriptions.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if count.is_multiple_of(SWEEP_EVERY) {
            conversations.retain(|_, c| !c.answers.is_empty() || c.listeners.iter().any(|l| !l.sender.is_closed()));
        }
        let entry = conversations.entry(conversation.to_owned()).or_default();
        entry.listeners.retain(|listener| !listener.sender.is_closed());
        entry.listeners.push(Listener { sender, after_seq });
        let missed = entry.answers.iter().filter(|answer| answer.seq > after_seq).cloned().collect();
        (missed, receiver)
    }

    /// Keeps an answer and hands it to every open chat of its conversation.
    pub fn publish(&self, conversation: &str, answer: Answer) {
        let mut conversations = self.conversations.lock().expect("not poisoned");
        let entry = conversations.entry(conversation.to_owned()).or_default();
        if entry
            .answers
            .iter()
            .any(|known| known.outbound_id == answer.outbound_id || known.seq >= answer.seq)
        {
            return;
        }
        let answer = Arc::new(answer);
        entry.answers.push_back(answer.clone());
        if entry.answers.len() > KEPT_PER_CONVERSATION {
            entry.answers.pop_front();
        }
        // A chat whose queue is full is too slow to keep up: it is let go (its session closes the
        // socket when the queue ends), and the widget's reconnect with its last seq gets the rest.
        entry.listeners.retain_mut(|listener| {
            if answer.seq <= listener.after_seq {
                return true;
            }
            listener.after_seq = answer.seq;
            listener.sender.try_send(answer.clone()).is_ok()
        });
        metrics::counter!("omni_gateway_chat_answers_total").increment(1);
    }
}

/// Reads `omni.webchat.v1` into `hub` until shutdown, on a thread of its own.
pub fn follow(kafka: &KafkaConfig, client_id: &str, hub: Arc<Hub>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (consumer, _) = omni_kafka::reader::follow_whole_topic(kafka, client_id, "webchat", topics::WEBCHAT)?;
    std::thread::Builder::new().name("webchat-answers".into()).spawn(move || {
        while !shutdown.is_cancelled() {
            match consumer.poll(Duration::from_millis(250)) {
                Some(Ok(message)) => {
                    let Some(conversation) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                        continue;
                    };
                    match OutboundMessage::decode(message.payload().unwrap_or_default()) {
                        Ok(outbound) => hub.publish(conversation, answer_of(message.offset(), outbound)),
                        Err(error) => tracing::warn!(%error, offset = message.offset(), "unreadable chat answer skipped"),
                    }
                }
                Some(Err(error)) => tracing::warn!(%error, "reading the chat answers"),
                None => {}
            }
        }
    })?;
    Ok(())
}

fn answer_of(seq: i64, outbound: OutboundMessage) -> Answer {
    Answer {
        seq,
        text: outbound.body.map(|body| body.text).unwrap_or_default(),
        agent: outbound.agent.map(|agent| agent.display_name).unwrap_or_default(),
        at: outbound.written_at.map(|at| at.to_string()),
        outbound_id: outbound.outbound_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(seq: i64, id: &str) -> Answer {
        Answer {
            seq,
            outbound_id: id.into(),
            text: format!("answer {id}"),
            agent: "Deniz".into(),
            at: None,
        }
    }

    #[tokio::test]
    async fn open_chats_get_new_answers_once_and_a_reconnect_gets_what_it_missed() {
        let hub = Hub::default();
        let (missed, mut first_tab) = hub.subscribe("c1", -1);
        assert!(missed.is_empty());
        let (_, mut second_tab) = hub.subscribe("c1", -1);
        let (_, mut other) = hub.subscribe("c2", -1);
        hub.publish("c1", answer(4, "a"));
        hub.publish("c1", answer(9, "a")); // the sender's copy after a crash
        hub.publish("c1", answer(11, "b"));
        for tab in [&mut first_tab, &mut second_tab] {
            assert_eq!(tab.recv().await.unwrap().outbound_id, "a");
            assert_eq!(tab.recv().await.unwrap().outbound_id, "b");
            assert!(tab.try_recv().is_err(), "an answer twice");
        }
        assert!(other.try_recv().is_err());
        // A widget that saw seq 4 reconnects: it gets b only.
        let (missed, _) = hub.subscribe("c1", 4);
        assert_eq!(missed.iter().map(|a| a.seq).collect::<Vec<_>>(), [11]);
    }

    #[tokio::test]
    async fn a_chat_too_slow_for_its_answers_is_let_go_and_a_listener_gets_nothing_it_had() {
        let hub = Hub::default();
        hub.publish("c1", answer(3, "old"));
        let (missed, mut slow) = hub.subscribe("c1", 3);
        assert!(missed.is_empty());
        for seq in 4..(4 + 64 + 1) {
            hub.publish("c1", answer(seq, &format!("n{seq}")));
        }
        let mut got = Vec::new();
        while let Some(answer) = slow.recv().await {
            got.push(answer.seq);
        }
        assert_eq!(got, (4..4 + 64).collect::<Vec<_>>(), "the queue's answers, then the end");
    }

    #[test]
    fn visitors_who_left_without_an_answer_are_forgotten() {
        let hub = Hub::default();
        hub.publish("answered", answer(1, "a"));
        for n in 0..SWEEP_EVERY {
            let (_, receiver) = hub.subscribe(&format!("visitor-{n}"), -1);
            drop(receiver);
        }
        let (_, _open) = hub.subscribe("still-here", -1);
        let kept = hub.conversations.lock().unwrap().len();
        assert!(kept <= 3, "{kept} conversations kept");
        assert_eq!(hub.subscribe("answered", -1).0.len(), 1);
    }

    #[test]
    fn a_conversation_keeps_its_latest_answers() {
        let hub = Hub::default();
        for seq in 0..(KEPT_PER_CONVERSATION as i64 + 10) {
            hub.publish("c1", answer(seq, &seq.to_string()));
        }
        let (kept, _) = hub.subscribe("c1", -1);
        assert_eq!(kept.len(), KEPT_PER_CONVERSATION);
        assert_eq!(kept[0].seq, 10);
    }
}
