//! omni-sender: the team's answers (`omni.outbound.v1`) to the customer, on the channel the
//! customer used.
//!
//! It reads `omni.conversations.v1` beside `omni.outbound.v1` (both keyed by conversation id, so
//! one replica holds both sides of a conversation) and keeps, per conversation, where its
//! customer is answered: the provider ids of the customer's latest message (`ReplyAddress`, in
//! the compacted `omni.state.sender.v1`). An answer whose conversation it has not read yet waits
//! for it up to `conversation_wait_secs`.
//!
//! Outbox: `PENDING` is written (and acknowledged) before the provider call, `SENT` with the
//! provider's message id after it, and the offset is stored only then; an outbound id already
//! `SENT` is not sent again. A `PENDING` found at start means the sender stopped during the call:
//! email is sent again with the same Message-ID (at-least-once on the wire; the customer's
//! client shows one mail). A refusal (SMTP 5xx, no address) is `FAILED` and a dead letter with
//! the reason; an unreachable server is retried with backoff, holding the conversation's order.

mod config;
mod email;
mod state;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::{BoxFuture, OptionFuture};
use omni_kafka::consumer::{GroupConsumer, GroupMember};
use omni_kafka::{DeadLetterWriter, ProduceError, Producer, consumer, topics};
use omni_proto::v1::outbox_entry::Status;
use omni_proto::v1::participant::Role;
use omni_proto::v1::{Channel, ConversationEvent, Direction, OutboundMessage, ReplyAddress, dead_letter::Fault};
use omni_runtime::ServiceContext;
use prost::Message as _;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use tokio_util::sync::CancellationToken;

pub use config::{EmailConfig, SenderConfig, SenderServiceConfig};

/// Why a provider did not take a message.
#[derive(Debug)]
pub enum SendError {
    /// For good (SMTP 5xx, no address): a dead letter.
    Refused(String),
    /// Not now (unreachable, 4xx): retried with backoff.
    Unavailable(String),
}

/// Answers queued behind the one in hand, at most.
const QUEUE_BOUND: usize = 1000;

/// Runs the sender until shutdown.
pub async fn run(config: SenderServiceConfig, context: ServiceContext) -> anyhow::Result<()> {
    let client_id = format!("omni-sender-{}", config.service.instance_id);
    context.readiness.register("kafka");
    context.readiness.register("pipeline");
    topics::ensure_topics_until_ready(&config.kafka, &client_id, &context).await?;
    let email = config
        .service
        .email
        .as_ref()
        .map(email::EmailSender::new)
        .transpose()?
        .map(Arc::new);
    omni_kafka::supervise(&context, "pipeline", || async {
        run_pipeline(&config, &client_id, &context, email.clone())
            .await
            .map_err(|error| match error {
                PipelineError::Fatal(reason) => omni_kafka::Stopped::Fatal(reason),
                other => omni_kafka::Stopped::Restart(other.to_string()),
            })
    })
    .await
}

/// Why the pipeline stopped before shutdown.
#[derive(Debug, thiserror::Error)]
enum PipelineError {
    #[error("{0}")]
    Produce(#[from] ProduceError),
    #[error("{0}")]
    State(#[from] omni_kafka::state::StateError),
    #[error("{0}")]
    Fatal(String),
}

/// What became of one outbound record.
enum Outcome {
    Sent,
    /// Already sent or refused before.
    Duplicate,
    DeadLettered,
    /// Shutdown came while the provider was unreachable: the offset stays.
    Stopped,
}

/// What every outbound record's handling shares.
#[derive(Clone)]
struct Worker {
    producer: Producer,
    dead_letters: DeadLetterWriter,
    source: String,
    memory: Arc<Mutex<state::Memory>>,
    /// Wakes answers waiting for their conversation.
    learned: Arc<tokio::sync::Notify>,
    email: Option<Arc<email::EmailSender>>,
    conversation_wait: Duration,
    shutdown: CancellationToken,
}

async fn run_pipeline(
    config: &SenderServiceConfig,
    client_id: &str,
    context: &ServiceContext,
    email: Option<Arc<email::EmailSender>>,
) -> Result<(), PipelineError> {
    let fatal = |what: &str, error: rdkafka::error::KafkaError| PipelineError::Fatal(format!("cannot create {what}: {error}"));
    let producer = Producer::new(&config.kafka, client_id).map_err(|e| fatal("producer", e))?;
    let member = GroupMember::join(
        &config.kafka,
        client_id,
        &config.service.group_id,
        &config.service.instance_id,
        &[topics::CONVERSATIONS, topics::OUTBOUND],
        &context.readiness,
    )
    .map_err(|e| fatal("consumer", e))?;
    let source = format!("omni/sender/{}", config.service.instance_id);
    let memory = state::restore(config, client_id).await?;
    tracing::info!(
        conversations = memory.addresses.len(),
        outbox = memory.outbox.len(),
        "sender state restored"
    );
    let worker = Worker {
        dead_letters: DeadLetterWriter::new(producer.clone(), "sender", source.clone()),
        producer,
        source,
        memory: Arc::new(Mutex::new(memory)),
        learned: Arc::new(tokio::sync::Notify::new()),
        email,
        conversation_wait: Duration::from_secs(config.service.conversation_wait_secs),
        shutdown: context.shutdown.clone(),
    };
    context.readiness.ready("pipeline");
    let result = pump(&member, &worker, context).await;
    // Dropping the consumer closes it, which commits the offsets stored so far (and only those).
    drop(member);
    result
}

type InHand = BoxFuture<'static, (OwnedMessage, Result<Outcome, ProduceError>)>;

/// Receives both topics: conversation events update the reply addresses at once; answers are
/// handled one at a time, in order, the others queued behind.
async fn pump(member: &GroupMember, worker: &Worker, context: &ServiceContext) -> Result<(), PipelineError> {
    let mut queue: VecDeque<OwnedMessage> = VecDeque::new();
    let mut in_hand: Option<InHand> = None;
    loop {
        tokio::select! {
            biased;
            Some((message, outcome)) = OptionFuture::from(in_hand.as_mut()), if in_hand.is_some() => {
                if !finish(member.consumer(), &message, outcome)? || context.shutdown.is_cancelled() {
                    return Ok(());
                }
                in_hand = queue.pop_front().map(|next| Box::pin(worker.clone().handle(next)) as InHand);
            }
            () = context.shutdown.cancelled(), if in_hand.is_none() => return Ok(()),
            stall = member.stalled() => {
                member.rejoin(stall).map_err(|error| PipelineError::Fatal(format!("cannot subscribe again: {error}")))?;
            }
            received = member.consumer().recv(), if queue.len() < QUEUE_BOUND && !context.shutdown.is_cancelled() => match received {
                Ok(message) => {
                    let message = message.detach();
                    if message.topic() == topics::CONVERSATIONS {
                        worker.learn(&message).await?;
                        consumer::store_next(member.consumer(), message.topic(), message.partition(), message.offset());
                    } else if in_hand.is_none() {
                        in_hand = Some(Box::pin(worker.clone().handle(message)));
                    } else {
                        queue.push_back(message);
                    }
                }
                Err(error) => {
                    if let Some(fatal) = consumer::fatal_error(member.consumer()) {
                        return Err(PipelineError::Fatal(format!("consumer failed fatally: {fatal}")));
                    }
                    tracing::warn!(%error, "consumer error");
                }
            },
        }
    }
}

/// Stores the answer's offset once handled; `false` when it was not (shutdown).
fn finish(consumer: &GroupConsumer, message: &OwnedMessage, outcome: Result<Outcome, ProduceError>) -> Result<bool, ProduceError> {
    let label = match &outcome {
        Ok(Outcome::Sent) => "sent",
        Ok(Outcome::Duplicate) => "duplicate",
        Ok(Outcome::DeadLettered) => "dead_lettered",
        Ok(Outcome::Stopped) => "stopped",
        Err(_) => "failed",
    };
    metrics::counter!("omni_sender_outbound_total", "outcome" => label).increment(1);
    if matches!(outcome?, Outcome::Stopped) {
        return Ok(false);
    }
    consumer::store_next(consumer, message.topic(), message.partition(), message.offset());
    Ok(true)
}

/// Where an event's customer is answered, when it is a customer's own message.
fn reply_address(event: &ConversationEvent) -> Option<ReplyAddress> {
    let automated = event.tags.iter().any(|tag| tag == "auto-reply" || tag == "bounce");
    if event.direction() != Direction::Inbound || automated {
        return None;
    }
    let customer = event.participants.iter().find(|p| p.role == Role::Customer as i32)?;
    Some(ReplyAddress {
        channel: event.channel,
        provider: Some(event.provider.clone()?),
        customer: Some(customer.clone()),
        subject: event.subject.clone(),
        last_inbound_at: event.occurred_at.or(event.received_at),
    })
}

impl Worker {
    /// Takes in a conversation event: a customer's message moves where the conversation is answered.
    async fn learn(&self, message: &OwnedMessage) -> Result<(), ProduceError> {
        let Ok(event) = ConversationEvent::decode(message.payload().unwrap_or_default()) else {
            tracing::warn!(
                offset = message.offset(),
                "unreadable conversation event skipped (the router dead-letters it)"
            );
            return Ok(());
        };
        let Some(mut address) = reply_address(&event) else { return Ok(()) };
        if address.subject.is_empty() {
            // A chat message has no subject: keep the conversation's.
            let memory = self.memory.lock().expect("sender memory");
            address.subject = memory
                .addresses
                .get(&event.conversation_id)
                .map(|a| a.subject.clone())
                .unwrap_or_default();
        }
        state::write_address(&self.producer, &self.source, &event.conversation_id, &address).await?;
        let mut memory = self.memory.lock().expect("sender memory");
        memory.addresses.insert(event.conversation_id.clone(), address);
        metrics::gauge!("omni_sender_conversations").set(memory.addresses.len() as f64);
        drop(memory);
        self.learned.notify_waiters();
        Ok(())
    }

    /// Delivers one answer, or says why not.
    async fn handle(self, message: OwnedMessage) -> (OwnedMessage, Result<Outcome, ProduceError>) {
        let outcome = self.deliver(&message).await;
        (message, outcome)
    }

    async fn deliver(&self, message: &OwnedMessage) -> Result<Outcome, ProduceError> {
        let outbound = match OutboundMessage::decode(message.payload().unwrap_or_default()) {
            Ok(outbound) if !outbound.outbound_id.is_empty() => outbound,
            Ok(_) => return self.refuse(message, Fault::Input, "outbound message has no outbound_id", "").await,
            Err(error) => {
                let reason = format!("not an omni.v1.OutboundMessage: {error}");
                return self.refuse(message, Fault::Input, &reason, "").await;
            }
        };
        let id = outbound.outbound_id.clone();
        let before = self.memory.lock().expect("sender memory").outbox.get(&id).map(|e| e.status());
        match before {
            Some(Status::Sent | Status::Failed) => {
                tracing::debug!(outbound_id = %id, "already handled; skipped");
                return Ok(Outcome::Duplicate);
            }
            Some(Status::Pending) => tracing::warn!(outbound_id = %id, "the sender stopped during this send; sending again"),
            _ => {}
        }
        let Some(address) = self.address_of(&outbound.conversation_id).await else {
            let reason = format!(
                "no customer message of conversation {} reached the sender within {}s",
                outbound.conversation_id,
                self.conversation_wait.as_secs()
            );
            return self.fail(message, &id, &reason).await;
        };
        self.write_outbox(&id, Status::Pending, "", "").await?;
        loop {
            match self.send(&address, &outbound).await {
                Ok(provider_id) => {
                    self.write_outbox(&id, Status::Sent, &provider_id, "").await?;
                    observe_latency(&address, &outbound);
                    tracing::info!(outbound_id = %id, channel = ?address.channel(), provider_message_id = %provider_id, "answer sent");
                    return Ok(Outcome::Sent);
                }
                Err(SendError::Refused(reason)) => return self.fail(message, &id, &reason).await,
                Err(SendError::Unavailable(reason)) => {
                    tracing::warn!(outbound_id = %id, %reason, "provider unavailable; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(2)) => {}
                        () = self.shutdown.cancelled() => return Ok(Outcome::Stopped),
                    }
                }
            }
        }
    }

    /// The conversation's reply address, waiting for it up to `conversation_wait`.
    async fn address_of(&self, conversation_id: &str) -> Option<ReplyAddress> {
        let deadline = tokio::time::Instant::now() + self.conversation_wait;
        loop {
            let learned = self.learned.notified();
            if let Some(address) = self.memory.lock().expect("sender memory").addresses.get(conversation_id) {
                return Some(address.clone());
            }
            if tokio::time::timeout_at(deadline, learned).await.is_err() {
                return None;
            }
        }
    }

    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        match address.channel() {
            Channel::Email => match &self.email {
                Some(email) => email.send(address, outbound).await,
                None => Err(SendError::Refused("email answers need [sender.email]".into())),
            },
            other => Err(SendError::Refused(format!("answers on {} are not sent yet", channel_name(other)))),
        }
    }

    async fn write_outbox(&self, id: &str, status: Status, provider_id: &str, reason: &str) -> Result<(), ProduceError> {
        let entry = state::write_outbox(&self.producer, &self.source, id, status, provider_id, reason).await?;
        self.memory.lock().expect("sender memory").outbox.insert(id.to_owned(), entry);
        Ok(())
    }

    /// Refused for good: `FAILED` in the outbox and a dead letter with the reason.
    async fn fail(&self, message: &OwnedMessage, id: &str, reason: &str) -> Result<Outcome, ProduceError> {
        tracing::warn!(outbound_id = %id, %reason, "answer not delivered");
        self.write_outbox(id, Status::Failed, "", reason).await?;
        self.refuse(message, Fault::External, reason, id).await
    }

    async fn refuse(&self, message: &OwnedMessage, fault: Fault, reason: &str, id: &str) -> Result<Outcome, ProduceError> {
        self.dead_letters
            .send(message, fault, reason, id)
            .await
            .map(|()| Outcome::DeadLettered)
    }
}

/// Helpdesk answer -> provider call, in seconds.
fn observe_latency(address: &ReplyAddress, outbound: &OutboundMessage) {
    let Some(written) = outbound.written_at.and_then(|t| SystemTime::try_from(t).ok()) else {
        return;
    };
    if let Ok(elapsed) = SystemTime::now().duration_since(written) {
        let channel = channel_name(address.channel());
        metrics::histogram!("omni_sender_reply_latency_seconds", "channel" => channel).record(elapsed.as_secs_f64());
    }
}

fn channel_name(channel: Channel) -> &'static str {
    omni_proto::channels::channel_info(channel).map_or("unspecified", |info| info.name)
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::{Participant, ProviderReference};

    use super::*;

    fn event(direction: Direction, tags: &[&str]) -> ConversationEvent {
        ConversationEvent {
            conversation_id: "c1".into(),
            channel: Channel::Email as i32,
            direction: direction as i32,
            subject: "Waar?".into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            participants: vec![Participant {
                role: Role::Customer as i32,
                display_name: "Jan".into(),
                identifiers: Vec::new(),
            }],
            provider: Some(ProviderReference {
                provider: "imap".into(),
                account: "support".into(),
                message_id: "m1@x".into(),
                reply_to: "jan@example.nl".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_customers_message_is_where_the_answer_goes() {
        let address = reply_address(&event(Direction::Inbound, &[])).unwrap();
        assert_eq!(address.channel(), Channel::Email);
        assert_eq!(address.provider.unwrap().message_id, "m1@x");
        assert_eq!(address.customer.unwrap().display_name, "Jan");
        assert_eq!(address.subject, "Waar?");
    }

    #[test]
    fn the_teams_own_events_and_automated_mail_move_nothing() {
        assert_eq!(reply_address(&event(Direction::Outbound, &[])), None);
        assert_eq!(reply_address(&event(Direction::Inbound, &["auto-reply"])), None);
        assert_eq!(reply_address(&event(Direction::Inbound, &["bounce"])), None);
        let mut no_provider = event(Direction::Inbound, &[]);
        no_provider.provider = None;
        assert_eq!(reply_address(&no_provider), None);
    }

    #[test]
    fn the_embedded_defaults_configure_the_sender() {
        let settings = omni_runtime::Settings::load_from(None, Vec::new()).unwrap();
        let mut problems = omni_runtime::Problems::default();
        let config = <SenderServiceConfig as omni_runtime::service::ServiceConfig>::from_settings(&settings, &mut problems);
        assert!(problems.is_empty(), "{problems}");
        let email = config.unwrap().service.email.unwrap();
        assert_eq!(email.from["support"], "Support <support@omni.local>");
    }
}
