//! The router: `omni.conversations.v1` into the team's helpdesk, effectively once.
//!
//! Delivery to a helpdesk is at least once (a crash can come after the helpdesk took an event
//! and before the offset was stored); the router makes it effectively once with its state in
//! the compacted topic `omni.state.router.v1`:
//!
//! 1. an event marked `DONE` for the destination is skipped (outcome `DUPLICATE`);
//! 2. before calling the helpdesk, the event's partition is marked started up to past the event
//!    (acknowledged by the broker; one mark covers [`state::MARK_STEP`] offsets, so it is written
//!    once per step, not per event);
//! 3. when the conversation has no known ticket, the helpdesk is searched for one carrying the
//!    conversation id (so a ticket created just before a crash is found, not created again);
//! 4. an event found `PENDING` (at or below the started mark found at restore without a `DONE`
//!    record: a crash may have come after step 2) is looked up in the ticket before being
//!    appended again;
//! 5. after the helpdesk answered, the event is marked `DONE` and the conversation's ticket
//!    recorded, and the outcome goes to `omni.deliveries.v1`: both written at once, one round
//!    trip to the broker; only once both are acknowledged is the offset stored.
//!
//! Routing rules (`[[router.rules]]`, see [`rules`]) pick each event's destinations and what its
//! new ticket gets. Each destination has its own pipeline: its own consumer group on
//! `omni.conversations.v1` (the configured `group_id` for the default destination,
//! `<group_id>.<destination>` for the others), its own offsets and retries, so a helpdesk that is
//! down or rate-limiting only delays its own events while the others keep flowing; a pipeline
//! skips the events routed elsewhere. Within a pipeline up to `max_in_flight` events (per
//! destination: `in_flight_limits`) are delivered at once, and up to four times as many held
//! (the rest read ahead, at most 32 MiB of them): different conversations' concurrently,
//! one conversation's strictly one after the other in partition order (the record key is the
//! conversation id), so its follow-ups reach the ticket in order; a partition's offset is stored
//! only up to its lowest unfinished event ([`omni_kafka::keyed`]). Transient failures (helpdesk
//! down, 429, 5xx, broker unavailable) are retried with jittered exponential backoff, holding up
//! only that conversation; a helpdesk's permanent refusal (a 4xx other than 401/403/408/429)
//! sends the event to the dead-letter topic.
//!
//! A conversation with no ticket yet whose subject carries the helpdesk's own ticket reference
//! (RT: `[rtname #123]`) joins that ticket, so a reply from a client that broke the thread
//! headers still lands where the agent answered.
//!
//! Automated messages (tagged `auto-reply` or `bounce` by their channel adapter) follow
//! `automated_messages`: by default they are added to their conversation's ticket when it has one
//! and never open a ticket (outcome `SKIPPED`). Answered calls and calls the team placed
//! follow `answered_calls` the same way: logged on the customer's existing ticket, opening none;
//! missed inbound calls and voicemails open one.

mod budget;
pub mod config;
pub mod helpdesk;
pub mod media;
pub mod rules;
pub mod state;

use sha2::Digest as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use omni_kafka::consumer::GroupMember;
use omni_kafka::keyed::{self, InHand, KeyOrdered, Position};
use omni_kafka::{CloudEvent, DeadLetterWriter, ProduceError, Producer, consumer, topics};
use omni_proto::v1::{ConversationEvent, Delivery, dead_letter::Fault, delivery::Outcome, event_delivery::Status, participant::Role};
use omni_runtime::ServiceContext;
use prost::Message as _;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;

pub use config::{AutomatedMessages, DestinationConfig, RouterConfig, RouterServiceConfig};
use helpdesk::{Helpdesk, HelpdeskError, TicketRef};
use rules::Rules;
use state::{Done, StateStore};

/// Why delivering one event did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The helpdesk failed; see [`HelpdeskError::is_transient`].
    #[error(transparent)]
    Helpdesk(#[from] HelpdeskError),
    /// The state or delivery record could not be written: retry.
    #[error("cannot write router state: {0}")]
    Kafka(#[from] ProduceError),
}

impl DeliverError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Helpdesk(error) => error.is_transient(),
            Self::Kafka(error) => !matches!(error, ProduceError::Refused(_)),
        }
    }
}

/// Builds the configured helpdesk adapters.
pub fn destinations(config: &RouterConfig) -> anyhow::Result<BTreeMap<String, Arc<dyn Helpdesk>>> {
    config
        .destinations
        .iter()
        .map(|(name, destination)| {
            let helpdesk = destination.destination().build()?;
            let helpdesk = match config.rate_limits.get(name).and_then(|n| std::num::NonZeroU32::new(*n)) {
                Some(per_minute) => Arc::new(helpdesk::RateLimited::new(helpdesk, per_minute)) as Arc<dyn Helpdesk>,
                None => helpdesk,
            };
            Ok((name.clone(), helpdesk))
        })
        .collect()
}

/// Runs the router until shutdown: one delivery pipeline per destination, each with its own
/// consumer group, so a helpdesk that is down or slow only holds up its own pipeline.
pub async fn run(config: RouterServiceConfig, context: ServiceContext) -> anyhow::Result<()> {
    let client_id = format!("omni-router-{}", config.service.instance_id);
    context.readiness.register("kafka");
    for name in config.service.destinations.keys() {
        context.readiness.register(&format!("destination:{name}"));
        context.readiness.register(&format!("state:{name}"));
    }
    topics::ensure_topics_until_ready(&config.kafka, &client_id, &context).await?;
    let destinations = destinations(&config.service)?;
    if let Some(objects) = omni_objects::Objects::open(&config.objects.url)?
        && config.objects.retention_days > 0
    {
        let retention = Duration::from_secs(u64::from(config.objects.retention_days) * 86_400);
        tokio::spawn(expire_objects(objects, retention, context.shutdown.clone()));
    }
    let mut pipelines = tokio::task::JoinSet::new();
    for (name, helpdesk) in destinations {
        let config = config.clone();
        let context = context.clone();
        pipelines.spawn(async move {
            let result = run_destination(&config, &name, helpdesk, &context).await;
            (name, result)
        });
    }
    while let Some(joined) = pipelines.join_next().await {
        let (name, result) = joined?;
        if let Err(error) = result {
            // One pipeline failing for good stops the service (its supervisor restarts it).
            context.shutdown.cancel();
            return Err(error.context(format!("destination `{name}`")));
        }
    }
    Ok(())
}

/// Every hour, deletes the stored files last written longer than `retention` ago (`[objects]
/// retention_days`), and says what the store holds: `omni_objects_stored_bytes`,
/// `omni_objects_stored`, `omni_objects_expired_total`. Each router replica sweeps; deleting
/// what another already deleted is no error.
async fn expire_objects(objects: omni_objects::Objects, retention: Duration, shutdown: tokio_util::sync::CancellationToken) {
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = hourly.tick() => {}
        }
        let before = SystemTime::now() - retention;
        match objects.expire(before).await {
            Ok(sweep) => {
                metrics::counter!("omni_objects_expired_total").increment(sweep.expired);
                metrics::gauge!("omni_objects_stored").set(sweep.kept as f64);
                metrics::gauge!("omni_objects_stored_bytes").set(sweep.kept_bytes as f64);
                tracing::info!(
                    expired = sweep.expired,
                    expired_bytes = sweep.expired_bytes,
                    kept = sweep.kept,
                    kept_bytes = sweep.kept_bytes,
                    "stored files swept"
                );
            }
            Err(error) => tracing::warn!(%error, "stored files not swept; trying again in an hour"),
        }
    }
}

/// The consumer group and static member id of one destination's pipeline: the configured ones
/// for the default destination (so its committed offsets carry over from single-destination
/// versions), `<group_id>.<destination>` and `<instance_id>.<destination>` for the others.
pub fn pipeline_group(config: &RouterConfig, destination: &str) -> (String, String) {
    if destination == config.default_destination {
        (config.group_id.clone(), config.instance_id.clone())
    } else {
        (
            format!("{}.{destination}", config.group_id),
            format!("{}.{destination}", config.instance_id),
        )
    }
}

async fn run_destination(
    config: &RouterServiceConfig,
    destination: &str,
    helpdesk: Arc<dyn Helpdesk>,
    context: &ServiceContext,
) -> anyhow::Result<()> {
    let (group_id, instance_id) = pipeline_group(&config.service, destination);
    let client_id = format!("omni-router-{instance_id}");
    let source = format!("omni/router/{instance_id}");
    wait_for_helpdesk(destination, helpdesk.as_ref(), context).await;

    let producer = Producer::new(&config.kafka, &client_id)?;
    let timeout = Duration::from_secs(config.service.state_restore_timeout_secs);
    let restore_started = std::time::Instant::now();
    let state = StateStore::restore(&config.kafka, (&client_id, &instance_id), producer.clone(), destination, timeout).await?;
    let (conversations, events) = state.len();
    let restore_secs = restore_started.elapsed().as_secs_f64();
    metrics::gauge!("omni_router_state_restore_seconds", "destination" => destination.to_owned()).set(restore_secs);
    state_gauges(destination, &state);
    tracing::info!(destination, conversations, events, restore_secs, "router state restored");
    context.readiness.ready(&format!("state:{destination}"));

    let member = GroupMember::join(
        &config.kafka,
        &client_id,
        &group_id,
        &instance_id,
        &[topics::CONVERSATIONS],
        &context.readiness,
    )?;
    let dead_letters = DeadLetterWriter::new(producer.clone(), "router", source.clone());
    // At zero from the start, so the retry alert's `rate()` sees the first retry.
    metrics::counter!("omni_router_retries_total", "destination" => destination.to_owned()).increment(0);
    let router = Router {
        media_letters: DeadLetterWriter::new(producer.clone(), media::missed::STAGE, source.clone()),
        producer,
        source,
        destination: destination.to_owned(),
        helpdesk,
        rules: config.service.rules(),
        dead_letters,
        reports_bad_input: destination == config.service.default_destination,
        automated_messages: config.service.automated_messages,
        answered_calls: config.service.answered_calls,
        state_retention: config.service.state_retention(),
        objects: omni_objects::Objects::open(&config.objects.url)?,
        media: media::Media::new(config.service.media.clone())?,
        links: config.objects.links(),
        // Each destination its own: a helpdesk that is down holds only its own pipeline's files.
        file_budget: budget::FileBudget::new(config.service.max_file_bytes_in_flight, destination),
    };
    let result = router.consume(&member, &state, &config.service, context).await;
    if result.is_ok() {
        // Bounded like the flush below: a broker that is away must not hold up the stop.
        let error = match tokio::time::timeout(SETTLE_TIMEOUT, state.settle()).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(elapsed) => Some(elapsed.to_string()),
        };
        if let Some(error) = error {
            tracing::warn!(destination, %error, "started marks not moved back: the next start looks up a step more");
        }
    }
    router.producer.flush(Duration::from_secs(5)).ok();
    result
}

/// Sets `omni_router_state_entries{destination,kind}`; returns (conversations, events) held.
fn state_gauges(destination: &str, state: &StateStore) -> (usize, usize) {
    let (conversations, known) = state.len();
    metrics::gauge!("omni_router_state_entries", "destination" => destination.to_owned(), "kind" => "ticket").set(conversations as f64);
    metrics::gauge!("omni_router_state_entries", "destination" => destination.to_owned(), "kind" => "event").set(known as f64);
    (conversations, known)
}

/// One round of [`StateStore::expire`], logged and counted; a failure waits for the next round.
/// Whether more may be past at once (the round took as many candidates as it may).
async fn expire_state(destination: &str, state: &StateStore, retention: Duration) -> bool {
    match state.expire(retention, SystemTime::now()).await {
        Ok(state::Expired { events, tickets, more }) => {
            for (kind, expired) in [("event", events), ("ticket", tickets)] {
                metrics::counter!("omni_router_state_expired_total", "destination" => destination.to_owned(), "kind" => kind)
                    .increment(expired as u64);
            }
            let (conversations, known) = state_gauges(destination, state);
            if events + tickets > 0 {
                tracing::info!(
                    destination,
                    events,
                    tickets,
                    conversations,
                    known,
                    "router state past its retention removed"
                );
            }
            more
        }
        Err(error) => {
            tracing::warn!(destination, %error, "router state not expired this round");
            false
        }
    }
}

/// A round of [`expire_state`] in progress.
type ExpiryRound<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;

/// A pipeline's state expiry: when the next round is due, and the round in progress. A round
/// reads the state topic (seconds on a large one), so it runs beside the deliveries, polled with
/// them in the pipeline's loop, never awaited between them.
struct Expiry<'a> {
    /// `None` when state is kept forever.
    interval: Option<tokio::time::Interval>,
    round: Option<ExpiryRound<'a>>,
}

impl<'a> Expiry<'a> {
    fn new(config: &RouterConfig) -> Self {
        let interval = config.state_expiry_interval().map(|period| {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        Self { interval, round: None }
    }

    /// Waits for the next step: a round due (started with `start`), or the round in progress
    /// ended (the next one a period later, or at once when more may be past). Pending forever
    /// without retention. Safe to drop unfinished: the round in progress is kept.
    async fn step(&mut self, start: impl FnOnce() -> ExpiryRound<'a>) {
        let Some(interval) = self.interval.as_mut() else {
            return std::future::pending().await;
        };
        match self.round.as_mut() {
            Some(round) => {
                let more = round.await;
                self.round = None;
                if more { interval.reset_immediately() } else { interval.reset() }
            }
            None => {
                interval.tick().await;
                self.round = Some(start());
            }
        }
    }
}

async fn wait_for_helpdesk(name: &str, helpdesk: &dyn Helpdesk, context: &ServiceContext) {
    let check = format!("destination:{name}");
    let mut delay = Duration::from_millis(500);
    loop {
        match helpdesk.check().await {
            Ok(()) => {
                context.readiness.ready(&check);
                return;
            }
            Err(error) => {
                tracing::warn!(destination = name, %error, retry_in_ms = delay.as_millis() as u64, "helpdesk not ready");
                context.readiness.not_ready(&check, error.to_string());
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = context.shutdown.cancelled() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// One destination of an event's route.
struct Target<'a> {
    name: &'a str,
    helpdesk: &'a dyn Helpdesk,
    routing: &'a helpdesk::Routing,
}

/// The longest a clean stop waits for its started marks to be moved back.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The most bytes of stored files taken into one event (the helpdesk adapters apply their own,
/// lower limits: RT's 10 MB).
const MAX_STORED_FILE_BYTES: u64 = 25_000_000;

struct Router {
    producer: Producer,
    source: String,
    destination: String,
    helpdesk: Arc<dyn Helpdesk>,
    rules: Rules,
    dead_letters: DeadLetterWriter,
    /// Dead letters of the customers' files not fetched (stage `router-media`).
    media_letters: DeadLetterWriter,
    /// Whether this pipeline dead-letters records that are not conversation events: only the
    /// default destination's does, so a bad record is dead-lettered once, not once per destination.
    reports_bad_input: bool,
    automated_messages: AutomatedMessages,
    answered_calls: AutomatedMessages,
    /// `[objects]`: where the bytes of files that travel by reference are kept.
    objects: Option<omni_objects::Objects>,
    /// `[router.media]`: the providers the customers' files are fetched from.
    media: media::Media,
    /// `[objects]`' signed file links, for destinations that take links rather than bytes.
    links: Option<omni_objects::links::Links>,
    /// `[router] state_retention_secs`: an event older than that may have been delivered and
    /// forgotten, so it is looked for in the ticket before being appended.
    state_retention: Duration,
    /// `[router] max_file_bytes_in_flight`: this destination's pipeline's files in memory.
    file_budget: budget::FileBudget,
}

impl Router {
    /// Reads the destination's pipeline until shutdown with up to its `max_in_flight` (or
    /// `in_flight_limits` entry) records being delivered (see [`omni_kafka::keyed`]): events of
    /// different conversations are delivered concurrently, one conversation's events one after
    /// the other in partition order, and a
    /// partition's offset is stored only up to its lowest unfinished record. While the records
    /// held reach their bound the partitions are paused, and the consumer is still polled, so the
    /// member keeps its place in the group however long the helpdesk takes
    /// ([`GroupMember::pause_reading`]). Shutdown drops the deliveries in hand (their offsets
    /// are not stored: they are delivered again later).
    async fn consume(
        &self,
        member: &GroupMember,
        state: &StateStore,
        config: &RouterConfig,
        context: &ServiceContext,
    ) -> anyhow::Result<()> {
        let destination = self.destination.as_str();
        let in_flight = metrics::gauge!("omni_router_in_flight_events", "destination" => destination.to_owned());
        let limit = config.max_in_flight_for(destination);
        metrics::gauge!("omni_router_in_flight_limit", "destination" => destination.to_owned()).set(limit as f64);
        let mut held = KeyOrdered::new(limit).weighing(keyed::MAX_WAITING_BYTES, keyed::message_bytes);
        let mut running: InHand<'_, Result<(), ProduceError>> = InHand::default();
        let mut rebalances = member.rebalances();
        let mut expiry = Expiry::new(config);
        let mut paused = false;
        loop {
            in_flight.set(held.in_flight() as f64);
            let full = !held.has_room();
            if paused != full {
                paused = full;
                member.pause_reading(topics::CONVERSATIONS, paused);
            }
            tokio::select! {
                () = context.shutdown.cancelled() => return Ok(()),
                stall = member.stalled() => member.rejoin(stall)?,
                Ok(()) = rebalances.changed() => {
                    // Partitions another member reads now: what is in hand of them is dropped
                    // (its offsets were not stored, so the new owner handles it), not delivered
                    // twice side by side.
                    let holds = member.holds();
                    let (waiting, cancelled) = (held.revoke(&holds), running.cancel_unless(&holds));
                    if waiting + cancelled > 0 {
                        tracing::info!(destination, waiting, cancelled, "events of revoked partitions dropped");
                    }
                    // Partitions assigned since the pause are paused too.
                    member.pause_reading(topics::CONVERSATIONS, paused);
                    for message in held.take_ready() {
                        self.start(state, &mut running, message);
                    }
                }
                () = expiry.step(|| Box::pin(expire_state(destination, state, config.state_retention()))) => {}
                (key, position, outcome) = running.next(), if !running.is_empty() => {
                    if let Some(Err(error)) = outcome {
                        tracing::error!(destination, %error, "event not handled; stopping");
                        return Err(error.into());
                    }
                    // Handled, or cancelled by a rebalance (then it reports no offset).
                    let finished = held.end(&key, &position, outcome.is_some());
                    if let Some(next) = finished.next {
                        self.start(state, &mut running, next);
                    }
                    if let Some(offset) = finished.handled_up_to {
                        consumer::store_next(member.consumer(), &position.topic, position.partition, offset);
                    }
                }
                // Called while full too (reading is paused then): rebalances are served here.
                received = member.recv() => match received {
                    Ok(message) => {
                        let message = message.detach();
                        let key = message.key().unwrap_or_default().to_vec();
                        if let Some(message) = held.admit(&key, &Position::of(&message), message) {
                            self.start(state, &mut running, message);
                        }
                    }
                    Err(error) => {
                        if let Some(fatal) = consumer::fatal_error(member.consumer()) {
                            anyhow::bail!("consumer failed fatally: {fatal}");
                        }
                        tracing::warn!(destination, %error, "consumer error");
                    }
                },
            }
        }
    }

    /// Starts handling `message` among the events in hand.
    fn start<'a>(&'a self, state: &'a StateStore, running: &mut InHand<'a, Result<(), ProduceError>>, message: OwnedMessage) {
        let key = message.key().unwrap_or_default().to_vec();
        running.push(&key, Position::of(&message), async move { self.handle(state, &message).await });
    }

    /// Handles one record fully: delivered, or dead-lettered. Errors only on a dead-letter write
    /// refused for good.
    async fn handle(&self, state: &StateStore, message: &OwnedMessage) -> Result<(), ProduceError> {
        let event = match ConversationEvent::decode(message.payload().unwrap_or_default()) {
            Ok(event) if !event.event_id.is_empty() && !event.conversation_id.is_empty() => event,
            _ if !self.reports_bad_input => return Ok(()),
            Ok(_) => {
                return self
                    .dead_letter(message, Fault::Input, "conversation event without event_id or conversation_id", "")
                    .await;
            }
            Err(error) => {
                return self
                    .dead_letter(message, Fault::Input, &format!("not an omni.v1.ConversationEvent: {error}"), "")
                    .await;
            }
        };
        let route = self.rules.route(&event);
        // A conversation that already has a ticket here keeps getting its follow-ups here, whatever
        // rule a later message matches (a "thanks" after a refund request stays in the refund ticket).
        let sticky = state.ticket(&self.destination, &event.conversation_id).is_some();
        if media::missed::addressed_to(&event).is_some_and(|to| to != self.destination) {
            // Another destination's note or retry of a file it missed.
            return Ok(());
        }
        if !route.destinations.contains(&self.destination) && !sticky {
            // Another destination's event: its own pipeline delivers it.
            return Ok(());
        }
        tracing::debug!(destination = %self.destination, event_id = %event.event_id, rule = route.rule.as_deref().unwrap_or("(default)"), "event routed by rule");
        // Only for an event this destination delivers: the others' files are not fetched here.
        // Held until the event is delivered: its files are in memory until then.
        let max_stored = if self.objects.is_some() { MAX_STORED_FILE_BYTES } else { 0 };
        let _files = (self.file_budget)
            .reserve(budget::expected_bytes(&event, self.media.max_file_bytes(), max_stored))
            .await;
        let (event, missed) = self.with_stored_files(event).await;
        if media::missed::is_retry(&event)
            && let Some(reason) = media::missed::still_missing(&event, &missed)
        {
            // A file's retry, still not served: kept for the next replay, nothing delivered.
            return self.dead_letter_as(message, &event, &reason).await;
        }
        let event = self.with_file_links(event).await;
        let target = Target {
            name: &self.destination,
            helpdesk: self.helpdesk.as_ref(),
            routing: &route.routing,
        };
        let outcome = self.handle_for(state, message, &event, &target).await?;
        // Only a message that reached the ticket just now: a copy (DUPLICATE) was noted the
        // first time, a refused one has no ticket to note on.
        if matches!(outcome, Outcome::Created | Outcome::Appended) && !media::missed::is_retry(&event) {
            for file in &missed {
                self.note_missed_file(message, &event, file).await?;
            }
        }
        Ok(())
    }

    /// A file the provider did not serve (see [`media::missed`]): a note on the ticket, and its
    /// retry in a dead letter for `omni deadletter replay --stage router-media`.
    async fn note_missed_file(
        &self,
        message: &OwnedMessage,
        event: &ConversationEvent,
        missed: &media::missed::Missed,
    ) -> Result<(), ProduceError> {
        let note = media::missed::note(event, missed, &self.destination);
        let headers = CloudEvent {
            id: &note.event_id,
            kind: "omni.v1.ConversationEvent",
            source: &self.source,
            subject: Some(&note.conversation_id),
            time: SystemTime::now(),
        }
        .to_headers();
        let (key, value) = (message.key().unwrap_or_default(), note.encode_to_vec());
        (|| self.producer.send(topics::CONVERSATIONS, key, &value, headers.clone()))
            .retry(kafka_backoff())
            .when(ProduceError::is_transient)
            .await?;
        let retry = media::missed::retry(event, missed, &self.destination);
        let reason = media::missed::reason(std::slice::from_ref(missed));
        self.dead_letter_as(message, &retry, &reason).await
    }

    /// Dead-letters `event` in place of `message` (a file's retry this router made) under the
    /// stage `router-media`.
    async fn dead_letter_as(&self, message: &OwnedMessage, event: &ConversationEvent, reason: &str) -> Result<(), ProduceError> {
        let writer = &self.media_letters;
        let headers = [
            ("ce_id".to_owned(), event.event_id.clone()),
            ("ce_type".to_owned(), "omni.v1.ConversationEvent".to_owned()),
            ("ce_source".to_owned(), self.source.clone()),
        ]
        .into();
        let value = event.encode_to_vec();
        (|| {
            writer.send_instead(
                message,
                &value,
                std::collections::BTreeMap::clone(&headers),
                Fault::External,
                reason,
                &event.event_id,
            )
        })
        .retry(kafka_backoff())
        .when(ProduceError::is_transient)
        .await
    }

    /// The event with the bytes of its files that travel without them (referenced, or above an
    /// inline limit): from the object store by their SHA-256 (checked), else fetched from the
    /// provider (`[router.media]`) and kept in the store, up to [`MAX_STORED_FILE_BYTES`] in all,
    /// so the helpdesk gets the files and not a reference. A file neither has, or that cannot be
    /// had now, stays referenced: the ticket names it, and the message is not held up.
    async fn with_stored_files(&self, mut event: ConversationEvent) -> (ConversationEvent, Vec<media::missed::Missed>) {
        let mut missed = Vec::new();
        let Some(objects) = &self.objects else { return (event, missed) };
        let provider = event.provider.clone().unwrap_or_default();
        let mut total = 0u64;
        for file in &mut event.attachments {
            let carried = matches!(file.content, Some(omni_proto::v1::attachment::Content::Data(_)));
            if carried || total + file.size_bytes > MAX_STORED_FILE_BYTES {
                continue;
            }
            let before = file.clone();
            match self.stored_or_fetched(objects, &provider, file, &event.event_id).await {
                Ok(Some(bytes)) => {
                    total += bytes.len() as u64;
                    file.size_bytes = bytes.len() as u64;
                    file.sha256 = hex::encode(sha2::Sha256::digest(&bytes));
                    file.content = Some(omni_proto::v1::attachment::Content::Data(bytes));
                }
                Ok(None) => {}
                Err(reason) => missed.push(media::missed::Missed { file: before, reason }),
            }
        }
        (event, missed)
    }

    /// Files the destination gets as signed links rather than bytes (`[objects] public_url` and
    /// `link_secret` set): every file for a destination that takes links (see
    /// [`Helpdesk::takes_file_links`]), and for a helpdesk with an [`Helpdesk::attachment_limits`]
    /// the files beyond it, which it would otherwise only name. Each is kept in the store and
    /// replaced by its link, valid `link_ttl_secs` from when the message was received (so a
    /// redelivery carries the same link; from now when that is already past). A file the store
    /// does not take keeps its bytes.
    async fn with_file_links(&self, mut event: ConversationEvent) -> ConversationEvent {
        use omni_proto::v1::attachment::Content;
        let (Some(links), Some(objects)) = (&self.links, &self.objects) else {
            return event;
        };
        let linked: Vec<bool> = if self.helpdesk.takes_file_links() {
            vec![true; event.attachments.len()]
        } else if let Some(limits) = self.helpdesk.attachment_limits() {
            helpdesk::sent_as_files(&event.attachments, limits)
                .into_iter()
                .map(|sent| !sent)
                .collect()
        } else {
            return event;
        };
        let received = event.received_at.and_then(|at| SystemTime::try_from(at).ok());
        let from = received
            .filter(|at| links.valid_from(*at, SystemTime::now()))
            .unwrap_or_else(SystemTime::now);
        for (file, _) in event.attachments.iter_mut().zip(linked).filter(|(_, linked)| *linked) {
            let Some(Content::Data(bytes)) = &file.content else { continue };
            match objects.put(bytes).await {
                Ok(sha256) => {
                    file.size_bytes = bytes.len() as u64;
                    file.content = Some(Content::Reference(links.link(&sha256, &file.name, &file.media_type, from)));
                    file.sha256 = sha256;
                }
                Err(error) => {
                    tracing::warn!(destination = %self.destination, event_id = %event.event_id, %error, "a file not kept in the store: sent with its bytes instead of a link");
                }
            }
        }
        event
    }

    /// One file's bytes from the store, else from its provider (then kept in the store, and
    /// the file's media type made the one it was served as).
    async fn stored_or_fetched(
        &self,
        objects: &omni_objects::Objects,
        provider: &omni_proto::v1::ProviderReference,
        file: &mut omni_proto::v1::Attachment,
        event_id: &str,
    ) -> Result<Option<Vec<u8>>, String> {
        let destination = self.destination.clone();
        if file.sha256.len() == 64 {
            match objects.get(&file.sha256).await {
                Ok(Some(bytes)) => return Ok(Some(bytes)),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%destination, event_id, %error, "a stored file not read; the ticket names it instead");
                    metrics::counter!("omni_router_object_errors_total", "destination" => destination).increment(1);
                    return Ok(None);
                }
            }
        }
        let provider_name = provider.provider.clone();
        let Some(fetched) = self.media.fetch(provider, file).await else {
            return Ok(None);
        };
        match fetched {
            Ok(media::Fetched { bytes, media_type }) => {
                file.media_type = media_type;
                if let Err(error) = objects.put(&bytes).await {
                    tracing::warn!(%destination, event_id, %error, "a fetched file not kept in the store");
                }
                metrics::counter!("omni_router_media_fetched_total", "provider" => provider_name).increment(1);
                Ok(Some(bytes))
            }
            Err(error) => {
                tracing::warn!(%destination, event_id, provider = %provider_name, %error, "a customer's file not fetched; the ticket names it instead");
                metrics::counter!("omni_router_media_failures_total", "provider" => provider_name).increment(1);
                Err(error.to_string())
            }
        }
    }

    /// Delivers `event` to one destination with retries, then records the outcome; returns it.
    async fn handle_for(
        &self,
        state: &StateStore,
        message: &OwnedMessage,
        event: &ConversationEvent,
        target: &Target<'_>,
    ) -> Result<Outcome, ProduceError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times();
        let at = Position::of(message);
        let result = (|| self.deliver(state, event, target, &at))
            .retry(backoff)
            .when(DeliverError::is_transient)
            .adjust(|error, delay| match error {
                DeliverError::Helpdesk(HelpdeskError::RateLimited { retry_after: Some(wait) }) => Some(*wait),
                _ => delay,
            })
            .notify(|error, delay| {
                metrics::counter!("omni_router_retries_total", "destination" => target.name.to_owned()).increment(1);
                tracing::warn!(destination = %target.name, event_id = %event.event_id, %error, retry_in_ms = delay.as_millis() as u64, "delivery failed, retrying");
            })
            .await;
        let (Delivered { outcome, ticket, done }, error) = match result {
            Ok(delivered) => (delivered, None),
            Err(DeliverError::Kafka(error)) => return Err(error),
            Err(error) => {
                // The helpdesk may have taken it before refusing: a replay of the dead letter
                // comes at another offset, past any started mark, so it must find PENDING.
                if state.event(target.name, &event.event_id, &at) == Status::Pending {
                    state.keep_pending(target.name, &event.conversation_id, &event.event_id).await?;
                }
                let reason = format!("destination `{}`: {error}", target.name);
                self.dead_letter(message, Fault::External, &reason, &event.event_id).await?;
                (Delivered::without_record(Outcome::DeadLettered, None), Some(error.to_string()))
            }
        };
        // Whether this event opened the ticket, also when it is handled again after a stop between
        // opening the ticket and recording the delivery (then DUPLICATE): see Delivery.opened_ticket.
        let opened_ticket = state.opened(target.name, &event.conversation_id, &event.event_id, done.as_ref());
        metrics::counter!("omni_router_events_total", "destination" => target.name.to_owned(), "outcome" => outcome.as_str_name())
            .increment(1);
        tracing::debug!(destination = %target.name, event_id = %event.event_id, conversation_id = %event.conversation_id, outcome = outcome.as_str_name(), "event delivered");
        let opened_ticket = opened_ticket && matches!(outcome, Outcome::Created | Outcome::Duplicate);
        let delivery = self.delivery(event, target.name, (outcome, opened_ticket), ticket.as_ref(), error);
        self.record(state, event, done.as_ref(), &delivery).await?;
        Ok(outcome)
    }

    /// One attempt at delivering `event`, read `at` a place in its partition, following the
    /// steps in the crate docs.
    async fn deliver(
        &self,
        state: &StateStore,
        event: &ConversationEvent,
        target: &Target<'_>,
        at: &Position,
    ) -> Result<Delivered, DeliverError> {
        let destination = target.name;
        let (event_id, conversation_id) = (event.event_id.as_str(), event.conversation_id.as_str());
        let policy = if is_automated(event) {
            self.automated_messages
        } else if is_answered_call(event) {
            self.answered_calls
        } else {
            AutomatedMessages::Deliver
        };
        if policy == AutomatedMessages::Skip {
            return Ok(Delivered::without_record(Outcome::Skipped, None));
        }
        let status = state.event(destination, event_id, at);
        let mut ticket = state.ticket(destination, conversation_id);
        if status == Status::Done
            && let Some(ticket) = ticket
        {
            return Ok(Delivered::without_record(Outcome::Duplicate, Some(ticket)));
        }
        // Looked for in the ticket before being appended, like a PENDING event: a copy of an
        // event older than the state's retention (its record may have expired), and any event
        // whose ticket is found in the helpdesk rather than in our state (state lost or expired,
        // a destination renamed).
        let mut unknown_to_state = status == Status::Unspecified && self.older_than_retention(event);
        let mut origin = String::new();
        if ticket.is_none()
            && let Some(found) = target.helpdesk.find_ticket(conversation_id).await?
        {
            unknown_to_state = true;
            if found.origin_event_id == event_id {
                return Ok(Delivered::done(Outcome::Duplicate, found.ticket, event_id));
            }
            origin = found.origin_event_id;
            ticket = Some(found.ticket);
        }
        if ticket.is_none() && !event.subject.is_empty() {
            ticket = target.helpdesk.ticket_in_subject(&event.subject).await?;
        }
        match ticket {
            None if policy == AutomatedMessages::AttachToExisting => Ok(Delivered::without_record(Outcome::Skipped, None)),
            None => {
                state.mark_started(destination, conversation_id, event_id, at).await?;
                let ticket = target.helpdesk.create_ticket(event, target.routing).await?;
                fault_point("after_create").await;
                Ok(Delivered::done(Outcome::Created, ticket, event_id))
            }
            Some(ticket) => {
                if (status == Status::Pending || unknown_to_state) && target.helpdesk.has_event(&ticket, event_id).await? {
                    return Ok(Delivered::done(Outcome::Duplicate, ticket, &origin));
                }
                state.mark_started(destination, conversation_id, event_id, at).await?;
                target.helpdesk.append(&ticket, event).await?;
                fault_point("after_append").await;
                Ok(Delivered::done(Outcome::Appended, ticket, &origin))
            }
        }
    }

    fn older_than_retention(&self, event: &ConversationEvent) -> bool {
        let received = event.received_at.and_then(|at| SystemTime::try_from(at).ok());
        !self.state_retention.is_zero() && received.is_some_and(|at| at.elapsed().is_ok_and(|age| age > self.state_retention))
    }

    /// The delivery record of `event` (and its latency in the metrics).
    fn delivery(
        &self,
        event: &ConversationEvent,
        destination: &str,
        (outcome, opened_ticket): (Outcome, bool),
        ticket: Option<&TicketRef>,
        error: Option<String>,
    ) -> Delivery {
        let now = SystemTime::now();
        let ingest_to_delivery = event
            .received_at
            .and_then(|received| SystemTime::try_from(received).ok())
            .and_then(|received| now.duration_since(received).ok());
        if let Some(latency) = ingest_to_delivery
            && outcome != Outcome::Duplicate
        {
            metrics::histogram!("omni_router_ingest_to_delivery_seconds", "destination" => destination.to_owned())
                .record(latency.as_secs_f64());
        }
        Delivery {
            event_id: event.event_id.clone(),
            conversation_id: event.conversation_id.clone(),
            destination: destination.to_owned(),
            outcome: outcome as i32,
            ticket_id: ticket.map(|t| t.id.clone()).unwrap_or_default(),
            ticket_url: ticket.map(|t| t.url.clone()).unwrap_or_default(),
            delivered_at: Some(now.into()),
            ingest_to_delivery: ingest_to_delivery.and_then(|d| prost_types::Duration::try_from(d).ok()),
            channel: event.channel,
            customer: event.participants.iter().find(|p| p.role == Role::Customer as i32).cloned(),
            error: error.unwrap_or_default(),
            language: event.language.clone(),
            tags: event.tags.clone(),
            ticket_reference: ticket.map(|t| self.helpdesk.ticket_reference(&t.id)).unwrap_or_default(),
            account: event.provider.as_ref().map(|p| p.account.clone()).unwrap_or_default(),
            opened_ticket,
            reply_to: event.provider.as_ref().map(|p| p.reply_to.clone()).unwrap_or_default(),
        }
    }

    /// Writes the event's DONE mark (when the helpdesk took it just now) and its delivery
    /// record together, one round trip to the broker rather than two, retrying until both are
    /// acknowledged; only then is the event finished and its offset free to be stored.
    async fn record(
        &self,
        state: &StateStore,
        event: &ConversationEvent,
        done: Option<&Done>,
        delivery: &Delivery,
    ) -> Result<(), ProduceError> {
        let headers = CloudEvent {
            id: &event.event_id,
            kind: "omni.v1.Delivery",
            source: &self.source,
            subject: Some(&event.conversation_id),
            time: delivery
                .delivered_at
                .and_then(|at| SystemTime::try_from(at).ok())
                .unwrap_or_else(SystemTime::now),
        }
        .to_headers();
        let value = delivery.encode_to_vec();
        (|| async {
            let record = self
                .producer
                .enqueue(topics::DELIVERIES, event.event_id.as_bytes(), &value, headers.clone())?;
            match done {
                Some(done) => {
                    state
                        .mark_done(&self.destination, &event.conversation_id, &event.event_id, done, Some(record))
                        .await
                }
                None => record.acknowledged().await.map(drop),
            }
        })
        .retry(kafka_backoff())
        .when(ProduceError::is_transient)
        .await
    }

    async fn dead_letter(&self, message: &OwnedMessage, fault: Fault, reason: &str, event_id: &str) -> Result<(), ProduceError> {
        (|| self.dead_letters.send(message, fault, reason, event_id))
            .retry(kafka_backoff())
            .when(ProduceError::is_transient)
            .await
    }
}

/// What one delivery attempt ended with: the outcome, the ticket, and the DONE mark still to
/// be recorded (with the delivery record, see [`Router::record`]) when the helpdesk took the
/// event just now or the event was found in it.
struct Delivered {
    outcome: Outcome,
    ticket: Option<TicketRef>,
    done: Option<Done>,
}

impl Delivered {
    fn without_record(outcome: Outcome, ticket: Option<TicketRef>) -> Self {
        Self {
            outcome,
            ticket,
            done: None,
        }
    }

    fn done(outcome: Outcome, ticket: TicketRef, origin_event_id: &str) -> Self {
        let done = Done {
            ticket: ticket.clone(),
            origin_event_id: origin_event_id.to_owned(),
        };
        Self {
            outcome,
            ticket: Some(ticket),
            done: Some(done),
        }
    }
}

/// Retries of a broker write that failed transiently (broker unavailable, queue full): the
/// offset is not stored until the write succeeds, so the router waits rather than moves on.
fn kafka_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
}

/// Auto-replies and bounces (mail loops, noise), handled per `automated_messages`.
fn is_automated(event: &ConversationEvent) -> bool {
    event.tags.iter().any(|tag| tag == "auto-reply" || tag == "bounce")
}

/// What the team already handled or wrote itself: an answered call, a call the team placed, a
/// later update of a call (a recording, with no outcome of its own), a note from the team's
/// phone system. Such events join the customer's ticket but never open one by default.
fn is_answered_call(event: &ConversationEvent) -> bool {
    use omni_proto::v1::call_data::Outcome as CallOutcome;
    event.direction() == omni_proto::v1::Direction::Outbound
        || event
            .call
            .as_ref()
            .is_some_and(|call| matches!(call.outcome(), CallOutcome::Answered | CallOutcome::Unspecified))
}

/// Test hook for crash tests: with `OMNI_FAULT_PAUSE_AT=after_create,after_append` in the
/// environment, the router stops at those points (the helpdesk has the event, the router's
/// state does not say so yet, the offset is not stored) and logs it, so a test can SIGKILL it in
/// exactly that window. Without the variable it does nothing.
async fn fault_point(point: &str) {
    if std::env::var("OMNI_FAULT_PAUSE_AT").is_ok_and(|points| points.split(',').any(|p| p.trim() == point)) {
        tracing::warn!(point, "fault injection: paused until killed");
        std::future::pending::<()>().await;
    }
}
