//! omni-sender: the team's answers (`omni.outbound.v1`) to the customer, on the channel the
//! customer used.
//!
//! It reads `omni.conversations.v1` and `omni.receipts.v1` beside `omni.outbound.v1` (all keyed
//! by conversation id, so one replica holds every side of a conversation) and keeps, per conversation, where its
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
mod http;
mod meta;
mod receipts;
mod slack;
mod sms;
mod state;
mod telegram;
mod viber;
mod web_chat;
mod whatsapp;
mod x;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use omni_channels::meta::send::Platform;
use omni_kafka::consumer::GroupMember;
use omni_kafka::keyed::{self, InHand, KeyOrdered, Oldest, Position};
use omni_kafka::producer::Pending;
use omni_kafka::{DeadLetterWriter, ProduceError, Producer, Stopped, consumer, topics};
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
    /// For good (the recipient refused, no address): a dead letter.
    Refused(String),
    /// Not now (unreachable, 4xx or 429, the relay refusing our login): tried again.
    Unavailable {
        /// What went wrong.
        reason: String,
        /// The provider's own delay, when it gave one.
        retry_after: Option<Duration>,
    },
}

/// Between two tries of an unavailable provider, unless it says otherwise.
const RETRY_DELAY: Duration = Duration::from_secs(2);
/// At most, whatever the provider says.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// What waiting for a conversation's reply address gave.
enum Waited {
    Found(Box<ReplyAddress>),
    TimedOut,
    Stopped,
}

/// Whether a record is a dead letter replayed by `omni deadletter replay`.
fn is_replay(message: &OwnedMessage) -> bool {
    use rdkafka::Message as _;
    message
        .headers()
        .is_some_and(|headers| omni_kafka::headers::header_str(headers, "omni_replayed_from").is_some())
}

/// Whether an answer whose send was cut by a crash is sent again: only email (and HTTP API
/// customers, answered by email), whose copies the
/// customer's client collapses by Message-ID. Chat APIs take no idempotency key and cannot be
/// asked, so a second send could be a second message (at-most-once there). The website chat's
/// gateway shows an answer once by its outbound id.
fn resend_after_crash(channel: Channel) -> bool {
    // The HTTP API's customers are answered by email too.
    matches!(channel, Channel::Email | Channel::Api | Channel::WebChat)
}

/// Runs the sender until shutdown.
pub async fn run(config: SenderServiceConfig, context: ServiceContext) -> anyhow::Result<()> {
    let client_id = format!("omni-sender-{}", config.service.instance_id);
    context.readiness.register("kafka");
    context.readiness.register("pipeline");
    topics::ensure_topics_until_ready(&config.kafka, &client_id, &context).await?;
    let channels = Channels::new(&config.service)?.with_web_chat(&config, &client_id, &context)?;
    let sandboxed = config.service.sandboxed_accounts();
    if !sandboxed.is_empty() {
        // The embedded config's accounts, for `make run`: answers go to the local omni-sandbox.
        tracing::warn!(
            accounts = %sandboxed.join(", "),
            sandbox = config::SANDBOX,
            "answers on these accounts go to the local sandbox, not to a provider: configure real accounts before production"
        );
    }
    omni_kafka::supervise(&context, "pipeline", || async {
        run_pipeline(&config, &client_id, &context, channels.clone()).await
    })
    .await
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

/// One channel's way out: sends an answer to the customer at `address`, returns the provider's
/// id of the sent message.
#[async_trait::async_trait]
pub(crate) trait ChannelSender: Send + Sync {
    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError>;

    /// Whether the agent's files carried in the answer's record go with it on this channel; the
    /// agent is told on the ticket about those that do not.
    fn sends_files(&self) -> bool {
        false
    }
}

/// The channels the sender answers on: one line per channel.
#[derive(Clone)]
struct Channels {
    senders: BTreeMap<i32, Arc<dyn ChannelSender>>,
    /// Providers whose conversations are answered through them whatever the channel.
    by_provider: BTreeMap<&'static str, Arc<dyn ChannelSender>>,
}

impl Channels {
    fn new(config: &SenderConfig) -> anyhow::Result<Self> {
        let mut senders: BTreeMap<i32, Arc<dyn ChannelSender>> = BTreeMap::new();
        let email = config.email.as_ref().map(email::EmailSender::new).transpose()?.map(Arc::new);
        if let Some(email) = &email {
            senders.insert(Channel::Email as i32, email.clone());
        }
        let api_mailbox = config.answer_api_by_email.as_deref().filter(|m| !m.is_empty());
        senders.insert(Channel::Api as i32, Arc::new(email::ApiSender::new(email, api_mailbox)));
        senders.insert(Channel::Telegram as i32, Arc::new(telegram::TelegramSender::new(&config.telegram)?));
        senders.insert(Channel::Whatsapp as i32, Arc::new(whatsapp::WhatsAppSender::new(&config.whatsapp)?));
        senders.insert(Channel::Slack as i32, Arc::new(slack::SlackSender::new(&config.slack)?));
        let (messenger, instagram) = (&config.messenger, &config.instagram);
        senders.insert(
            Channel::Messenger as i32,
            Arc::new(meta::MetaSender::new(Platform::Messenger, "messenger", messenger)?),
        );
        senders.insert(
            Channel::Instagram as i32,
            Arc::new(meta::MetaSender::new(Platform::Instagram, "instagram", instagram)?),
        );
        senders.insert(Channel::X as i32, Arc::new(x::XSender::new(&config.x)?));
        senders.insert(Channel::Viber as i32, Arc::new(viber::ViberSender::new(&config.viber)?));
        let twilio: Arc<dyn ChannelSender> = Arc::new(sms::SmsSender::new(&config.sms)?);
        senders.insert(Channel::Sms as i32, twilio.clone());
        let by_provider = BTreeMap::from([(omni_channels::twilio_sms::PROVIDER, twilio)]);
        let calls = config.answer_calls_by_sms.as_deref().filter(|a| !a.is_empty());
        senders.insert(Channel::Voice as i32, Arc::new(sms::CallSender::new(&config.sms, calls)?));
        Ok(Self { senders, by_provider })
    }

    /// Adds the website chat, which answers through the broker (the gateway pushes them), or
    /// by email to visitors who left (read from the chat presence until shutdown).
    fn with_web_chat(mut self, config: &SenderServiceConfig, client_id: &str, context: &ServiceContext) -> anyhow::Result<Self> {
        let service = &config.service;
        let visitors = web_chat::presence::Visitors::follow(&config.kafka, client_id, context.shutdown.clone())?;
        let mailbox = service.answer_away_chats_by_email.clone().filter(|m| !m.is_empty());
        let by_email = self.senders.get(&(Channel::Email as i32)).cloned().zip(mailbox);
        let away_after = Duration::from_secs(service.chat_away_after_secs);
        let chat = web_chat::WebChatSender::new(&config.kafka, client_id, visitors, by_email, away_after)?;
        self.senders.insert(Channel::WebChat as i32, Arc::new(chat));
        Ok(self)
    }

    /// The sender of a conversation: WhatsApp and Messenger conversations that came through
    /// Twilio go back through Twilio, the others by their channel.
    fn sender_of(&self, address: &ReplyAddress) -> Option<&Arc<dyn ChannelSender>> {
        let provider = address.provider.as_ref().map(|p| p.provider.as_str()).unwrap_or_default();
        self.by_provider.get(provider).or_else(|| self.senders.get(&address.channel))
    }

    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        match (self.sender_of(address), address.channel()) {
            (Some(sender), _) => sender.send(address, outbound).await,
            (None, Channel::Email) => Err(SendError::Refused("email answers need [sender.email]".into())),
            (None, other) => Err(SendError::Refused(format!("answers on {} are not sent yet", channel_name(other)))),
        }
    }

    /// The agent's files that did not go with a sent answer: all of them where the channel sends
    /// text only, else those too large to be carried in the record.
    /// With whether the channel sends files at all.
    fn files_left_out<'a>(&self, address: &ReplyAddress, outbound: &'a OutboundMessage) -> (Vec<&'a omni_proto::v1::Attachment>, bool) {
        let sends_files = self.sender_of(address).is_some_and(|sender| sender.sends_files());
        let left_out = outbound
            .attachments
            .iter()
            .filter(|file| !sends_files || !omni_channels::email::send::carried(file))
            .collect();
        (left_out, sends_files)
    }
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
    channels: Channels,
    conversation_wait: Duration,
    shutdown: CancellationToken,
}

async fn run_pipeline(config: &SenderServiceConfig, client_id: &str, context: &ServiceContext, channels: Channels) -> Result<(), Stopped> {
    let producer = Producer::new(&config.kafka, client_id).map_err(|e| Stopped::fatal("cannot create producer", e))?;
    let member = GroupMember::join(
        &config.kafka,
        client_id,
        &config.service.group_id,
        &config.service.instance_id,
        &[topics::CONVERSATIONS, topics::OUTBOUND, topics::RECEIPTS],
        &context.readiness,
    )
    .map_err(|e| Stopped::fatal("cannot create consumer", e))?;
    member.before_revoke({
        let producer = producer.clone();
        move || {
            if let Err(error) = producer.flush(REVOKE_FLUSH) {
                tracing::warn!(%error, "writes still unacknowledged as partitions are revoked");
            }
        }
    });
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
        channels,
        conversation_wait: Duration::from_secs(config.service.conversation_wait_secs),
        shutdown: context.shutdown.clone(),
    };
    context.readiness.ready("pipeline");
    let sweeper = tokio::spawn(sweep_state(
        config.clone(),
        client_id.to_owned(),
        worker.producer.clone(),
        worker.memory.clone(),
        context.shutdown.clone(),
    ));
    let result = pump(&member, &worker, config.service.max_in_flight, context, || {
        state::restore(config, client_id)
    })
    .await;
    sweeper.abort();
    // Dropping the consumer closes it, which commits the offsets stored so far (and only those).
    drop(member);
    result
}

/// Every `state_retention_secs / 10` (1 s to an hour), one [`state::expire`] round, logged and
/// counted (`omni_sender_state_expired_total`); a full round is followed by another at once.
async fn sweep_state(
    config: SenderServiceConfig,
    client_id: String,
    producer: Producer,
    memory: Arc<Mutex<state::Memory>>,
    shutdown: CancellationToken,
) {
    let Some(every) = omni_kafka::state::expiry_interval(config.service.state_retention_secs) else {
        return;
    };
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    metrics::counter!("omni_sender_state_expired_total").increment(0);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match state::expire(&config, &client_id, &producer, &memory, SystemTime::now()).await {
            Ok(expired) => {
                metrics::counter!("omni_sender_state_expired_total").increment(expired as u64);
                if expired > 0 {
                    tracing::info!(expired, "sender state past its retention removed");
                }
                if expired >= omni_kafka::state::EXPIRE_BATCH {
                    ticks.reset_immediately();
                }
            }
            Err(error) => tracing::warn!(%error, "sender state not expired this round"),
        }
    }
}

/// Conversation events read whose offset is not stored yet (their address write, or one before
/// it, not acknowledged), at most: reading waits beyond it.
const MAX_LEARNING: usize = 1024;

/// Longest wait, before partitions are revoked, for the writes on their way to be acknowledged.
const REVOKE_FLUSH: Duration = Duration::from_secs(10);

/// Receives the three topics: conversation events update the reply addresses at once (their
/// writes acknowledged behind the reading, up to [`MAX_LEARNING`] outstanding, each event's offset
/// stored after its write) and receipts the outbox (see [`receipts`]); answers are
/// handled up to `max_in_flight` at a time ([`omni_kafka::keyed`]): different conversations'
/// concurrently, one conversation's one after the other in order, an answer's offset stored only
/// once every answer before it in its partition finished. The answers' partitions are paused
/// while four times the bound are held or those read ahead weigh [`keyed::MAX_WAITING_BYTES`],
/// never the conversations', which an answer may be waiting for.
/// Whenever partitions were assigned, the state is read again before the next record (after the
/// address writes in flight were acknowledged): another replica may have written it for them. On
/// shutdown the answers in hand finish (or stop at a safe point) and the address writes are
/// acknowledged before it returns.
///
/// Before partitions are revoked, the producer is flushed ([`REVOKE_FLUSH`], see
/// [`run_pipeline`]), so an address write this replica still retries lands before the new owner
/// writes the same conversation's. Past that wait (a broker down longer) the order is not kept:
/// the older address may then stay in the topic (the new owner's memory has the right one until
/// it restarts) until the customer writes again.
async fn pump<R, Fut>(
    member: &GroupMember,
    worker: &Worker,
    max_in_flight: usize,
    context: &ServiceContext,
    restore: R,
) -> Result<(), Stopped>
where
    R: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<state::Memory, omni_kafka::state::StateError>>,
{
    let mut held: KeyOrdered<OwnedMessage> = KeyOrdered::new(max_in_flight).weighing(keyed::MAX_WAITING_BYTES, keyed::message_bytes);
    // Answers read and not finished, for the outbox age (`omni_sender_oldest_answer_timestamp_seconds`).
    let mut oldest = Oldest::default();
    let show = |oldest: &Oldest| metrics::gauge!("omni_sender_oldest_answer_timestamp_seconds").set(oldest.oldest_seconds());
    let mut running: InHand<'static, (OwnedMessage, Result<Outcome, ProduceError>)> = InHand::default();
    let start = |running: &mut InHand<'static, _>, message: OwnedMessage| {
        let key = message.key().unwrap_or_default().to_vec();
        running.push(&key, Position::of(&message), worker.clone().handle(message));
    };
    // Conversation events whose reply address is being written, in the order read: an event's
    // offset is stored once its write and every one before it were acknowledged.
    let mut learning: FuturesOrdered<BoxFuture<'static, (Position, Result<(), ProduceError>)>> = FuturesOrdered::new();
    // An address write acknowledged (they finish in the order read): its event's offset is free.
    let learned = |(position, written): (Position, Result<(), ProduceError>)| -> Result<(), Stopped> {
        written?;
        consumer::store_next(member.consumer(), &position.topic, position.partition, position.offset);
        Ok(())
    };
    let mut rebalances = member.rebalances();
    let mut assignments = 0;
    let mut paused = false;
    let mut stopping = false;
    loop {
        let full = !held.has_room();
        if paused != full {
            paused = full;
            member.pause_reading(topics::OUTBOUND, paused);
        }
        if (stopping || context.shutdown.is_cancelled()) && running.is_empty() && learning.is_empty() {
            return Ok(());
        }
        tokio::select! {
            biased;
            (key, position, ended) = running.next(), if !running.is_empty() => {
                let cancelled = ended.is_none();
                if let Some((message, outcome)) = ended
                    && !finish(&message, outcome)?
                {
                    // Stopped at a safe point by shutdown: left unfinished, so neither its
                    // offset nor any above it in its partition is stored; it is handled again
                    // after the restart.
                    stopping = true;
                    continue;
                }
                // Handled, or cancelled by a rebalance (then it reports no offset).
                let finished = held.end(&key, &position, !cancelled);
                if !cancelled {
                    // A cancelled answer left `oldest` at the revoke; a copy read again since
                    // has its own entry at the same position.
                    oldest.finish(&position);
                }
                show(&oldest);
                if let Some(offset) = finished.handled_up_to {
                    consumer::store_next(member.consumer(), &position.topic, position.partition, offset);
                }
                match finished.next {
                    Some(next) if !context.shutdown.is_cancelled() && !stopping => start(&mut running, next),
                    _ => {}
                }
            }
            Some(done) = learning.next(), if !learning.is_empty() => learned(done)?,
            Ok(()) = rebalances.changed() => {
                // Answers of partitions another member reads now are dropped, not sent twice
                // side by side: their offsets were not stored, the new owner sends them.
                let holds = member.holds();
                let (waiting, cancelled) = (held.revoke(&holds), running.cancel_unless(&holds));
                oldest.revoke(&holds);
                show(&oldest);
                if waiting + cancelled > 0 {
                    tracing::info!(waiting, cancelled, "answers of revoked partitions dropped");
                }
                // Partitions assigned since the pause are paused too (and those assigned back
                // resumed when reading goes on).
                member.pause_reading(topics::OUTBOUND, paused);
                if !context.shutdown.is_cancelled() && !stopping {
                    for next in held.take_ready() {
                        start(&mut running, next);
                    }
                }
            }
            () = context.shutdown.cancelled(), if running.is_empty() && learning.is_empty() => return Ok(()),
            stall = member.stalled() => {
                member.rejoin(stall).map_err(|error| Stopped::fatal("cannot subscribe again", error))?;
            }
            received = member.recv(), if !context.shutdown.is_cancelled() && !stopping && learning.len() < MAX_LEARNING => match received {
                Ok(message) => {
                    let message = message.detach();
                    if member.assignments() != assignments {
                        assignments = member.assignments();
                        // What this replica is writing must be in the topic it reads again.
                        while let Some(done) = learning.next().await {
                            learned(done)?;
                        }
                        *worker.memory.lock().expect("sender memory") = restore().await?;
                    }
                    if message.topic() == topics::CONVERSATIONS {
                        let position = Position::of(&message);
                        let write = worker.learn(&message)?;
                        learning.push_back(Box::pin(async move {
                            let written = match write {
                                Some(write) => write.acknowledged().await.map(drop),
                                None => Ok(()),
                            };
                            (position, written)
                        }));
                    } else if message.topic() == topics::RECEIPTS {
                        worker.take_receipt(&message).await?;
                        consumer::store_next(member.consumer(), message.topic(), message.partition(), message.offset());
                    } else {
                        let key = message.key().unwrap_or_default().to_vec();
                        oldest.admit(&Position::of(&message), message.timestamp().to_millis());
                        show(&oldest);
                        if let Some(message) = held.admit(&key, &Position::of(&message), message) {
                            start(&mut running, message);
                        }
                    }
                }
                Err(error) => {
                    if let Some(fatal) = consumer::fatal_error(member.consumer()) {
                        return Err(Stopped::fatal("consumer failed fatally", fatal));
                    }
                    tracing::warn!(%error, "consumer error");
                }
            },
        }
    }
}

/// Counts how an answer went; `false` when it was not handled (stopped by shutdown), so its
/// offset must not be stored.
fn finish(message: &OwnedMessage, outcome: Result<Outcome, ProduceError>) -> Result<bool, ProduceError> {
    let label = match &outcome {
        Ok(Outcome::Sent) => "sent",
        Ok(Outcome::Duplicate) => "duplicate",
        Ok(Outcome::DeadLettered) => "dead_lettered",
        Ok(Outcome::Stopped) => "stopped",
        Err(_) => "failed",
    };
    metrics::counter!("omni_sender_outbound_total", "outcome" => label).increment(1);
    tracing::trace!(
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        outcome = label,
        "answer finished"
    );
    Ok(!matches!(outcome?, Outcome::Stopped))
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
        received_at: event.received_at,
    })
}

impl Worker {
    /// Takes in a conversation event: a customer's message moves where the conversation is
    /// answered, in memory at once (an answer waiting for it goes on) and in the state topic by
    /// the returned write, whose acknowledgement the caller awaits before it stores the event's
    /// offset (the event is read again after a crash before that).
    fn learn(&self, message: &OwnedMessage) -> Result<Option<Pending>, ProduceError> {
        let Ok(event) = ConversationEvent::decode(message.payload().unwrap_or_default()) else {
            tracing::warn!(
                offset = message.offset(),
                "unreadable conversation event skipped (the router dead-letters it)"
            );
            return Ok(None);
        };
        let Some(mut address) = reply_address(&event) else {
            return Ok(None);
        };
        if address.subject.is_empty() {
            // A chat message has no subject: keep the conversation's.
            let memory = self.memory.lock().expect("sender memory");
            address.subject = memory
                .addresses
                .get(&event.conversation_id)
                .map(|a| a.subject.clone())
                .unwrap_or_default();
        }
        let write = state::enqueue_address(&self.producer, &event.conversation_id, &address)?;
        let mut memory = self.memory.lock().expect("sender memory");
        memory.addresses.insert(event.conversation_id.clone(), address);
        metrics::gauge!("omni_sender_conversations").set(memory.addresses.len() as f64);
        drop(memory);
        self.learned.notify_waiters();
        Ok(Some(write))
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
            Some(Status::Sent) => {
                tracing::debug!(outbound_id = %id, "already sent; skipped");
                return Ok(Outcome::Duplicate);
            }
            // Refused before: only a dead letter replayed after a fix (`omni deadletter replay`)
            // is tried again, never a plain redelivery (that would undo at-most-once).
            Some(Status::Failed) if !is_replay(message) => {
                tracing::debug!(outbound_id = %id, "refused before; replay its dead letter to try again");
                return Ok(Outcome::Duplicate);
            }
            _ => {}
        }
        let address = match self.address_of(&outbound.conversation_id).await {
            Waited::Found(address) => *address,
            Waited::Stopped => return Ok(Outcome::Stopped),
            Waited::TimedOut => {
                let reason = format!(
                    "no customer message of conversation {} reached the sender within {}s",
                    outbound.conversation_id,
                    self.conversation_wait.as_secs()
                );
                return self.fail(message, &outbound, Channel::Unspecified, &reason).await;
            }
        };
        if before == Some(Status::Pending) {
            if !resend_after_crash(address.channel()) {
                let reason = format!(
                    "may not have reached the customer on {}: the sender stopped during the call, and {} cannot be asked; not sent again",
                    channel_name(address.channel()),
                    channel_name(address.channel())
                );
                return self.fail(message, &outbound, address.channel(), &reason).await;
            }
            tracing::warn!(outbound_id = %id, "the sender stopped during this send; sending again (same Message-ID)");
        }
        self.write_outbox(&outbound, Status::Pending, "", "").await?;
        loop {
            match self.send(&address, &outbound).await {
                Ok(provider_id) => {
                    self.write_outbox(&outbound, Status::Sent, &provider_id, "").await?;
                    self.note_files_left_out(&address, &outbound).await?;
                    self.apply_early_receipt(&id, &provider_id).await?;
                    observe_latency(&address, &outbound);
                    tracing::info!(outbound_id = %id, channel = ?address.channel(), provider_message_id = %provider_id, "answer sent");
                    return Ok(Outcome::Sent);
                }
                Err(SendError::Refused(reason)) => return self.fail(message, &outbound, address.channel(), &reason).await,
                Err(SendError::Unavailable { reason, retry_after }) => {
                    let delay = retry_after.unwrap_or(RETRY_DELAY).min(MAX_RETRY_DELAY);
                    tracing::warn!(outbound_id = %id, %reason, retry_in_ms = delay.as_millis() as u64, "provider unavailable; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.shutdown.cancelled() => return Ok(Outcome::Stopped),
                    }
                }
            }
        }
    }

    /// The conversation's reply address, waiting for it up to `conversation_wait`.
    async fn address_of(&self, conversation_id: &str) -> Waited {
        let deadline = tokio::time::Instant::now() + self.conversation_wait;
        loop {
            let learned = self.learned.notified();
            if let Some(address) = self.memory.lock().expect("sender memory").addresses.get(conversation_id) {
                return Waited::Found(Box::new(address.clone()));
            }
            tokio::select! {
                () = learned => {}
                () = tokio::time::sleep_until(deadline) => return Waited::TimedOut,
                () = self.shutdown.cancelled() => return Waited::Stopped,
            }
        }
    }

    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        self.channels.send(address, outbound).await
    }

    async fn write_outbox(&self, outbound: &OutboundMessage, status: Status, provider_id: &str, reason: &str) -> Result<(), ProduceError> {
        let id = &outbound.outbound_id;
        let entry = state::write_outbox(&self.producer, id, &outbound.conversation_id, status, provider_id, reason).await?;
        self.memory.lock().expect("sender memory").outbox.insert(id.clone(), entry);
        Ok(())
    }

    /// Refused for good: a dead letter with the reason, a note for the agent on the ticket, then
    /// `FAILED` in the outbox.
    async fn fail(
        &self,
        message: &OwnedMessage,
        outbound: &OutboundMessage,
        channel: Channel,
        reason: &str,
    ) -> Result<Outcome, ProduceError> {
        let id = &outbound.outbound_id;
        tracing::warn!(outbound_id = %id, %reason, "answer not delivered");
        let outcome = self.refuse(message, Fault::External, reason, id).await?;
        self.note_on_ticket(outbound, channel, reason).await?;
        self.write_outbox(outbound, Status::Failed, "", reason).await?;
        Ok(outcome)
    }

    /// Tells the agent which of their files the customer did not get with a sent answer.
    async fn note_files_left_out(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<(), ProduceError> {
        let (left_out, sends_files) = self.channels.files_left_out(address, outbound);
        if left_out.is_empty() {
            return Ok(());
        }
        let channel = address.channel();
        let names: Vec<String> = left_out
            .iter()
            .map(|file| format!("{} ({} bytes)", file.name, file.size_bytes))
            .collect();
        let why = if sends_files {
            "files above 512 KiB in all are not carried with an answer yet".to_owned()
        } else {
            format!("answers on {} carry text only so far", channel_name(channel))
        };
        let text = format!(
            "omni: the answer was sent on {}, without {}: {why}. Send them another way if the customer needs them.",
            channel_name(channel),
            names.join(", ")
        );
        metrics::counter!("omni_sender_files_left_out_total", "channel" => channel_name(channel)).increment(left_out.len() as u64);
        self.note_on_ticket_as(outbound, channel, &text, "sender-files").await
    }

    /// Tells the agent on the ticket: an outbound event on the conversation, which the router
    /// logs on the conversation's ticket as an internal note (`answered_calls`: what the team
    /// wrote itself never opens a ticket, and every helpdesk keeps it private).
    async fn note_on_ticket(&self, outbound: &OutboundMessage, channel: Channel, reason: &str) -> Result<(), ProduceError> {
        self.note_on_ticket_as(outbound, channel, &failure_text(outbound, channel, reason), "sender-failure")
            .await
    }

    /// A note `text` on the answer's ticket with the event id `<prefix>-<outbound id>` (one note
    /// per answer and kind, so a note written again after a crash is deduplicated).
    async fn note_on_ticket_as(&self, outbound: &OutboundMessage, channel: Channel, text: &str, prefix: &str) -> Result<(), ProduceError> {
        let event = note(outbound, channel, text, prefix);
        let headers = omni_kafka::CloudEvent {
            id: &event.event_id,
            kind: "omni.v1.ConversationEvent",
            source: &self.source,
            subject: Some(&event.conversation_id),
            time: SystemTime::now(),
        }
        .to_headers();
        self.producer
            .send(
                topics::CONVERSATIONS,
                event.conversation_id.as_bytes(),
                &event.encode_to_vec(),
                headers,
            )
            .await
            .map(|_| ())
    }

    async fn refuse(&self, message: &OwnedMessage, fault: Fault, reason: &str, id: &str) -> Result<Outcome, ProduceError> {
        self.dead_letters
            .send(message, fault, reason, id)
            .await
            .map(|()| Outcome::DeadLettered)
    }
}

/// What the agent reads on a ticket whose answer did not reach the customer.
fn failure_text(outbound: &OutboundMessage, channel: Channel, reason: &str) -> String {
    let on = match channel {
        Channel::Unspecified => String::new(),
        channel => format!(" on {}", channel_name(channel)),
    };
    let what = what_it_is(outbound);
    format!("omni: this {what} was not delivered to the customer{on}: {reason}.")
}

/// A note for the agent on the answer's ticket: an outbound system event on its conversation,
/// with the event id `<prefix>-<outbound id>`.
fn note(outbound: &OutboundMessage, channel: Channel, text: &str, prefix: &str) -> ConversationEvent {
    let text = text.to_owned();
    ConversationEvent {
        event_id: format!("{prefix}-{}", outbound.outbound_id),
        conversation_id: outbound.conversation_id.clone(),
        channel: channel as i32,
        direction: Direction::Outbound as i32,
        participants: vec![omni_proto::v1::Participant {
            role: Role::System as i32,
            display_name: "omni".into(),
            identifiers: Vec::new(),
        }],
        body: Some(omni_proto::v1::Body {
            new_text: text.clone(),
            text,
            html: String::new(),
        }),
        tags: vec!["omni-delivery-failure".into()],
        occurred_at: Some(SystemTime::now().into()),
        received_at: Some(SystemTime::now().into()),
        normalized_at: Some(SystemTime::now().into()),
        ..Default::default()
    }
}

/// Helpdesk answer -> provider call, in seconds.
fn observe_latency(address: &ReplyAddress, outbound: &OutboundMessage) {
    let Some(written) = outbound.written_at.and_then(|t| SystemTime::try_from(t).ok()) else {
        return;
    };
    if let Ok(elapsed) = SystemTime::now().duration_since(written) {
        let channel = channel_name(address.channel());
        metrics::histogram!("omni_sender_reply_latency_seconds", "channel" => channel, "kind" => what_it_is(outbound))
            .record(elapsed.as_secs_f64());
    }
}

/// `answer` (an agent's) or `acknowledgement` (omni-notifier's), for notes and metrics.
fn what_it_is(outbound: &OutboundMessage) -> &'static str {
    match outbound.kind() {
        omni_proto::v1::outbound_message::Kind::Acknowledgement => "acknowledgement",
        _ => "answer",
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
        let mut read_late = event(Direction::Inbound, &[]);
        let (sent, received) = (SystemTime::UNIX_EPOCH, SystemTime::now());
        (read_late.occurred_at, read_late.received_at) = (Some(sent.into()), Some(received.into()));
        let address = reply_address(&read_late).unwrap();
        // The reply windows count from the message, the retention from the later of the two.
        assert_eq!(address.last_inbound_at, Some(sent.into()));
        assert_eq!(address.received_at, Some(received.into()));
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
    fn a_failure_is_one_internal_note_on_the_conversation() {
        let outbound = OutboundMessage {
            outbound_id: "ab12".into(),
            conversation_id: "c9".into(),
            ..Default::default()
        };
        let reason = "Telegram refused the message (403): Forbidden: bot was blocked by the user";
        let note = note(
            &outbound,
            Channel::Telegram,
            &failure_text(&outbound, Channel::Telegram, reason),
            "sender-failure",
        );
        assert_eq!(note.event_id, "sender-failure-ab12");
        assert_eq!(note.conversation_id, "c9");
        assert_eq!(note.direction(), Direction::Outbound);
        assert_eq!(
            note.body.unwrap().text,
            "omni: this answer was not delivered to the customer on telegram: Telegram refused the message (403): Forbidden: bot was blocked by the user."
        );
        // The sender's own note never becomes where answers go.
        assert_eq!(reply_address(&super::note(&outbound, Channel::Email, "x", "sender-failure")), None);
    }

    #[test]
    fn only_a_replayed_dead_letter_is_a_replay() {
        use rdkafka::message::{Header, OwnedHeaders, Timestamp};
        let record = |headers: Option<OwnedHeaders>| {
            OwnedMessage::new(
                Some(Vec::new()),
                None,
                topics::OUTBOUND.into(),
                Timestamp::NotAvailable,
                0,
                7,
                headers,
            )
        };
        assert!(!is_replay(&record(None)));
        let cloud_event = OwnedHeaders::new().insert(Header {
            key: "ce_id",
            value: Some("x"),
        });
        assert!(!is_replay(&record(Some(cloud_event))));
        let replayed = OwnedHeaders::new().insert(Header {
            key: "omni_replayed_from",
            value: Some("omni.deadletter.v1/0/12"),
        });
        assert!(is_replay(&record(Some(replayed))));
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
