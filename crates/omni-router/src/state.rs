//! The router's durable state: which ticket holds each conversation, how far each event's
//! delivery got, and how far into each partition the helpdesk may have been called. Kept in the
//! compacted topic `omni.state.router.v1` (keys in `state.proto`) and a local map; every change is
//! acknowledged by the broker before the router acts on it.
//!
//! "About to call the helpdesk" is one record per partition, not per event: a started mark
//! ([`StateStore::mark_started`]) that runs [`MARK_STEP`] offsets ahead of the events handed to
//! the helpdesk, moved (and acknowledged) before an event past it starts. An event a run before
//! this one may have handed over, at or below the mark found at restore and without a DONE
//! record, counts as PENDING ([`StateStore::event`]) and is looked up in its ticket first. So a
//! delivery costs one state write (DONE) instead of two, and a restart after a crash looks up at
//! most the events in hand plus a step per partition; a clean stop moves the marks back to the
//! last event started ([`StateStore::settle`]), so a rolling restart looks up only those in hand.
//!
//! Bounded by `[router] state_retention_secs`: an event record older than that, and a
//! conversation's ticket record when none of the conversation's events is younger (whichever
//! replica wrote them, as far as the expiry's read of the topic sees), are removed from the map
//! and tombstoned in the topic ([`StateStore::expire`]), so memory follows the conversations
//! active within the window, not every event ever routed. What a late copy of an
//! expired event gets: the router no longer knows it was delivered, finds the conversation's
//! ticket in the helpdesk by its conversation id (as after a lost state) and looks for the event
//! in it (`has_event`), so the helpdesks that can say (all but the webhook) still skip it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use omni_kafka::keyed::Position;
use omni_kafka::producer::Pending;
use omni_kafka::state::ExpireError;
use omni_kafka::{KafkaConfig, ProduceError, Producer, topics};
use omni_proto::v1::{EventDelivery, RouterState, StartedMark, TicketRef as StoredTicket, event_delivery::Status, router_state::Entry};
use prost::Message as _;

use crate::helpdesk::TicketRef;

/// Most tombstones on their way at once (a round after a long stop writes them batch after
/// batch), so they do not fill the producer's queue: the same batch as every state topic's.
use omni_kafka::state::EXPIRE_BATCH;

/// Most keys one expiry round takes as candidates, so that the round's memory stays small beside
/// the map's (about 16 MB of keys and times) and a long stop's backlog goes in a few reads.
pub const MAX_CANDIDATES: usize = 10 * EXPIRE_BATCH;

/// How far a partition's started mark runs ahead of the events handed to the helpdesk: a mark
/// write per this many offsets, and at most this many events past those in hand looked up in
/// their tickets after a crash.
pub const MARK_STEP: i64 = 64;

/// An event the helpdesk has, to be recorded DONE ([`StateStore::mark_done`]): in `ticket`,
/// which holds the conversation and was opened by `origin_event_id` (empty when not known).
#[derive(Clone, Debug)]
pub struct Done {
    /// The ticket that has the event.
    pub ticket: TicketRef,
    /// The event that opened the ticket (empty when not known).
    pub origin_event_id: String,
}

/// The state of one destination's pipeline. Shared by the events in flight: they touch disjoint
/// keys (one conversation's events are handled one at a time), and the maps are locked only to
/// read or apply an entry, never across a broker write.
pub struct StateStore {
    producer: Producer,
    destination: String,
    maps: Mutex<Maps>,
    /// How the topic is read again for each expiry round.
    reader: Reader,
    /// This replica's `instance_id`, which names its started marks.
    instance_id: String,
    /// Partition -> the highest started mark the restore found: a run before this one (of any
    /// replica) may have handed the events up to it to the helpdesk.
    recovered: HashMap<i32, i64>,
    /// Held while a started mark is being moved, so one event moves it and the others wait only
    /// if they are past it.
    advancing: tokio::sync::Mutex<()>,
}

/// What reading the state topic takes: the broker, a client id, the longest wait.
struct Reader {
    kafka: KafkaConfig,
    client_id: String,
    timeout: Duration,
}

#[derive(Default)]
struct Maps {
    tickets: HashMap<String, TicketEntry>,
    events: HashMap<String, EventEntry>,
    /// Ticket key -> when the conversation last had an event or a ticket record written.
    activity: HashMap<String, SystemTime>,
    /// Events recorded before records named their conversation: (ticket id, when), credited to
    /// their ticket's conversation once the restore has read every ticket record.
    legacy: Vec<(String, SystemTime)>,
    /// Keys with a write on its way (enqueued or about to be, not yet applied here): an expiry
    /// round leaves them alone, so no tombstone lands after a write it did not see.
    writing: HashMap<String, usize>,
    /// Started mark key (every replica's) -> the offset it stands at (acknowledged).
    marks: HashMap<String, i64>,
    /// Partition -> the highest offset this replica handed to the helpdesk in this run.
    begun: HashMap<i32, i64>,
}

struct TicketEntry {
    ticket: TicketRef,
    /// The event that opened the ticket, where known.
    origin: Option<String>,
}

struct EventEntry {
    status: Status,
    updated: SystemTime,
}

fn ticket_key(destination: &str, conversation_id: &str) -> String {
    format!("ticket/{destination}/{conversation_id}")
}

fn event_key(destination: &str, event_id: &str) -> String {
    format!("event/{destination}/{event_id}")
}

fn started_prefix(destination: &str) -> String {
    format!("started/{destination}/")
}

/// One replica's started mark: each writes its own, so none moves another's back.
fn started_key(destination: &str, partition: i32, instance_id: &str) -> String {
    format!("{}{partition}/{instance_id}", started_prefix(destination))
}

/// Partition -> the highest started mark any replica left for it.
fn recovered_marks(destination: &str, marks: &HashMap<String, i64>) -> HashMap<i32, i64> {
    let prefix = started_prefix(destination);
    let mut recovered = HashMap::new();
    for (key, offset) in marks {
        let partition = key
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('/').next()?.parse::<i32>().ok());
        if let Some(partition) = partition {
            let mark = recovered.entry(partition).or_insert(*offset);
            *mark = (*mark).max(*offset);
        }
    }
    recovered
}

/// A record's time; records without one count as written now (they expire a window from now).
fn time_of(timestamp: Option<prost_types::Timestamp>) -> SystemTime {
    timestamp.and_then(|t| SystemTime::try_from(t).ok()).unwrap_or_else(SystemTime::now)
}

impl Maps {
    fn apply(&mut self, key: &str, value: &[u8]) {
        match RouterState::decode(value).map(|state| state.entry) {
            Ok(Some(Entry::Ticket(ticket))) => {
                self.touch(key.to_owned(), time_of(ticket.updated_at));
                let origin = Some(ticket.origin_event_id).filter(|origin| !origin.is_empty());
                let ticket = TicketRef {
                    id: ticket.ticket_id,
                    url: ticket.ticket_url,
                };
                self.tickets.insert(key.to_owned(), TicketEntry { ticket, origin });
            }
            Ok(Some(Entry::Event(event))) => {
                let updated = time_of(event.updated_at);
                let destination = key.split('/').nth(1).unwrap_or_default();
                let conversation = Some(event.conversation_id.as_str()).filter(|id| !id.is_empty());
                if conversation.is_none() && !event.ticket_id.is_empty() {
                    self.legacy.push((event.ticket_id.clone(), updated));
                }
                let conversation = conversation.map(|id| ticket_key(destination, id));
                self.note_event(key.to_owned(), conversation, event.status(), updated);
            }
            Ok(Some(Entry::Started(mark))) => {
                self.marks.insert(key.to_owned(), mark.offset);
            }
            Ok(None) | Err(_) => tracing::warn!(key, "unreadable state record skipped"),
        }
    }

    /// An event's status at `updated`, and its conversation (its ticket key) active then.
    fn note_event(&mut self, key: String, conversation: Option<String>, status: Status, updated: SystemTime) {
        if let Some(conversation) = conversation {
            self.touch(conversation, updated);
        }
        self.events.insert(key, EventEntry { status, updated });
    }

    /// This replica's started marks that stand past what it needs on a clean stop, with where
    /// they go back to: the highest offset it began, or the mark `recovered` for the partition
    /// if higher.
    fn settled(&self, destination: &str, instance_id: &str, recovered: &HashMap<i32, i64>) -> Vec<(String, i64)> {
        let mut settled = Vec::new();
        for (partition, begun) in &self.begun {
            let key = started_key(destination, *partition, instance_id);
            let keep = recovered.get(partition).map_or(*begun, |found| (*found).max(*begun));
            if self.marks.get(&key).is_some_and(|mark| *mark > keep) {
                settled.push((key, keep));
            }
        }
        settled
    }

    /// Gives memory back once a map holds less than a quarter of what it has room for.
    fn shrink(&mut self) {
        fn shrink<V>(map: &mut HashMap<String, V>) {
            if map.len() < map.capacity() / 4 {
                map.shrink_to_fit();
            }
        }
        shrink(&mut self.tickets);
        shrink(&mut self.events);
        shrink(&mut self.activity);
    }

    /// Credits the events of [`Maps::legacy`] to the conversations whose ticket they are in, so
    /// a conversation active lately through such events does not expire on its old ticket
    /// record's time (records written before the upgrade that added `conversation_id`).
    fn credit_legacy_events(&mut self) {
        if self.legacy.is_empty() {
            return;
        }
        let by_ticket: HashMap<String, String> = self
            .tickets
            .iter()
            .map(|(key, entry)| (entry.ticket.id.clone(), key.clone()))
            .collect();
        for (ticket_id, at) in std::mem::take(&mut self.legacy) {
            if let Some(key) = by_ticket.get(&ticket_id) {
                self.touch(key.clone(), at);
            }
        }
    }

    /// Takes in the times the topic has for candidates another replica went on with, so they
    /// are not candidates again next round.
    fn refresh(&mut self, judged: &Judged) {
        for (key, at) in &judged.live_events {
            if let Some(entry) = self.events.get_mut(key) {
                entry.updated = entry.updated.max(*at);
            }
        }
        for (key, at) in &judged.live_tickets {
            if self.activity.contains_key(key) {
                self.touch(key.clone(), *at);
            }
        }
    }

    /// Whether this map's copy of an event record, if any, was last written before `cutoff`.
    fn event_past(&self, key: &str, cutoff: SystemTime) -> bool {
        self.events.get(key).is_none_or(|entry| entry.updated < cutoff)
    }

    /// Whether this map's conversation, if known, last had a record written before `cutoff`.
    fn ticket_past(&self, key: &str, cutoff: SystemTime) -> bool {
        self.activity.get(key).is_none_or(|last| *last < cutoff)
    }

    fn touch(&mut self, ticket_key: String, at: SystemTime) {
        let last = self.activity.entry(ticket_key).or_insert(at);
        *last = (*last).max(at);
    }

    /// Keys of `destination` last written before `cutoff`: events, then conversations (their
    /// ticket records), at most `limit` in all.
    fn expired(&self, destination: &str, cutoff: SystemTime, limit: usize) -> (Vec<String>, Vec<String>) {
        let events_prefix = event_key(destination, "");
        let tickets_prefix = ticket_key(destination, "");
        let events: Vec<String> = self
            .events
            .iter()
            .filter(|(key, entry)| entry.updated < cutoff && key.starts_with(&events_prefix))
            .map(|(key, _)| key.clone())
            .take(limit)
            .collect();
        let tickets = self
            .activity
            .iter()
            .filter(|(key, last)| **last < cutoff && key.starts_with(&tickets_prefix))
            .map(|(key, _)| key.clone())
            .take(limit - events.len())
            .collect();
        (events, tickets)
    }
}

impl Reader {
    /// `destination`'s keys as the topic holds them now: what every replica wrote.
    async fn read(&self, destination: &str) -> Result<Maps, omni_kafka::state::StateError> {
        let prefixes = [ticket_key(destination, ""), event_key(destination, ""), started_prefix(destination)];
        let keep = move |key: &[u8]| prefixes.iter().any(|prefix| key.starts_with(prefix.as_bytes()));
        let records = omni_kafka::state::read_where(&self.kafka, &self.client_id, topics::STATE_ROUTER, self.timeout, keep).await?;
        let mut maps = Maps::default();
        for (key, value) in records {
            let Ok(key) = String::from_utf8(key) else { continue };
            maps.apply(&key, &value);
        }
        maps.credit_legacy_events();
        Ok(maps)
    }

    /// When the topic last had a record written for each of `candidates` (events by their own
    /// record, conversations by their ticket record and their events' records): what every
    /// replica wrote, keeping only the candidates' times in memory. A key whose latest record is
    /// a tombstone has no time.
    async fn last_written(&self, candidates: Candidates) -> Result<Candidates, omni_kafka::state::StateError> {
        omni_kafka::state::scan(
            &self.kafka,
            &self.client_id,
            topics::STATE_ROUTER,
            self.timeout,
            candidates,
            Candidates::visit,
        )
        .await
    }
}

/// Keys this replica's map says are past, with when the topic last had them written.
#[derive(Default)]
struct Candidates {
    /// Event key -> its latest record's time.
    events: HashMap<String, Option<SystemTime>>,
    /// Ticket key -> its conversation's latest record's time.
    tickets: HashMap<String, Option<SystemTime>>,
    /// Conversation id -> its ticket key (events name their conversation, not its key).
    conversations: HashMap<String, String>,
    /// `event/<destination>/`: the only other records worth decoding.
    events_prefix: String,
}

impl Candidates {
    fn new(destination: &str, events: Vec<String>, tickets: Vec<String>) -> Self {
        let prefix = ticket_key(destination, "");
        let conversations = tickets
            .iter()
            .filter_map(|key| Some((key.strip_prefix(&prefix)?.to_owned(), key.clone())))
            .collect();
        Self {
            events: events.into_iter().map(|key| (key, None)).collect(),
            tickets: tickets.into_iter().map(|key| (key, None)).collect(),
            conversations,
            events_prefix: event_key(destination, ""),
        }
    }

    fn visit(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Ok(key) = std::str::from_utf8(key) else { return };
        let (is_event, is_ticket) = (self.events.contains_key(key), self.tickets.contains_key(key));
        if !is_event && !is_ticket && !key.starts_with(&self.events_prefix) {
            return;
        }
        let entry = value
            .and_then(|value| RouterState::decode(value).ok())
            .and_then(|state| state.entry);
        let (time, conversation) = match &entry {
            Some(Entry::Event(event)) => (Some(time_of(event.updated_at)), Some(event.conversation_id.as_str())),
            Some(Entry::Ticket(ticket)) => (Some(time_of(ticket.updated_at)), None),
            Some(Entry::Started(_)) | None => (None, None),
        };
        if is_event {
            self.events.insert(key.to_owned(), time);
        }
        if is_ticket && let Some(time) = time {
            Self::later(self.tickets.get_mut(key), time);
        }
        if let (Some(conversation), Some(time)) = (conversation, time)
            && key.starts_with(&self.events_prefix)
            && let Some(ticket) = self.conversations.get(conversation)
        {
            Self::later(self.tickets.get_mut(ticket), time);
        }
    }

    fn later(last: Option<&mut Option<SystemTime>>, time: SystemTime) {
        if let Some(last) = last {
            *last = Some(last.map_or(time, |last| last.max(time)));
        }
    }

    /// The candidates the topic agrees are past `cutoff` (or gone), and those it keeps, with the
    /// time another replica wrote them at.
    fn judge(self, cutoff: SystemTime) -> Judged {
        fn split(map: HashMap<String, Option<SystemTime>>, cutoff: SystemTime) -> (Vec<String>, Vec<(String, SystemTime)>) {
            let (mut past, mut live) = (Vec::new(), Vec::new());
            for (key, last) in map {
                match last {
                    Some(last) if last >= cutoff => live.push((key, last)),
                    _ => past.push(key),
                }
            }
            (past, live)
        }
        let (events, live_events) = split(self.events, cutoff);
        let (tickets, live_tickets) = split(self.tickets, cutoff);
        Judged {
            events,
            tickets,
            live_events,
            live_tickets,
        }
    }
}

/// The candidates of a round, judged on the topic.
struct Judged {
    /// Event keys past the cutoff.
    events: Vec<String>,
    /// Ticket keys whose conversations are past the cutoff.
    tickets: Vec<String>,
    /// Event keys another replica wrote since, with that time.
    live_events: Vec<(String, SystemTime)>,
    /// Ticket keys whose conversations another replica went on with, with the latest time.
    live_tickets: Vec<(String, SystemTime)>,
}

impl StateStore {
    /// Reads the state topic, keeping `destination`'s keys; `instance_id` names this replica's
    /// started marks.
    pub async fn restore(
        kafka: &KafkaConfig,
        (client_id, instance_id): (&str, &str),
        producer: Producer,
        destination: &str,
        timeout: Duration,
    ) -> Result<Self, omni_kafka::state::StateError> {
        let reader = Reader {
            kafka: kafka.clone(),
            client_id: client_id.to_owned(),
            timeout,
        };
        let maps = reader.read(destination).await?;
        Ok(Self {
            producer,
            destination: destination.to_owned(),
            instance_id: instance_id.to_owned(),
            recovered: recovered_marks(destination, &maps.marks),
            maps: Mutex::new(maps),
            reader,
            advancing: tokio::sync::Mutex::new(()),
        })
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().expect("router state lock")
    }

    /// Number of conversations (with a ticket) and events known.
    pub fn len(&self) -> (usize, usize) {
        let maps = self.maps();
        (maps.tickets.len(), maps.events.len())
    }

    /// The ticket holding a conversation at a destination.
    pub fn ticket(&self, destination: &str, conversation_id: &str) -> Option<TicketRef> {
        self.maps()
            .tickets
            .get(&ticket_key(destination, conversation_id))
            .map(|entry| entry.ticket.clone())
    }

    /// Whether `event_id` opened the ticket holding the conversation at a destination, once
    /// `done` (not yet recorded, when given) is.
    pub fn opened(&self, destination: &str, conversation_id: &str, event_id: &str, done: Option<&Done>) -> bool {
        let maps = self.maps();
        let stored = maps.tickets.get(&ticket_key(destination, conversation_id));
        match done {
            // mark_done writes a ticket record only for a ticket other than the stored one.
            Some(done) if stored.is_none_or(|entry| entry.ticket != done.ticket) => done.origin_event_id == event_id,
            _ => stored
                .and_then(|entry| entry.origin.as_deref())
                .is_some_and(|origin| origin == event_id),
        }
    }

    /// How far delivery of an event, read `at` a place in its partition, to a destination got.
    /// One without a record of its own at or below the partition's started mark as the restore
    /// found it is PENDING: a run before this one may have handed it to the helpdesk.
    pub fn event(&self, destination: &str, event_id: &str, at: &Position) -> Status {
        let known = self.maps().events.get(&event_key(destination, event_id)).map(|entry| entry.status);
        match known {
            Some(status) if status != Status::Unspecified => status,
            _ if covered(self.recovered.get(&at.partition).copied(), at.offset) => Status::Pending,
            _ => Status::Unspecified,
        }
    }

    /// Records that the router is about to call the helpdesk for this event, read `at` a place
    /// in its partition: the partition's started mark is moved past it first if need be
    /// ([`MARK_STEP`]; acknowledged before this returns), and the event is PENDING in memory, so
    /// a copy read again in this run (after a rebalance dropped it mid-call) is looked up too.
    pub async fn mark_started(&self, destination: &str, conversation_id: &str, event_id: &str, at: &Position) -> Result<(), ProduceError> {
        let key = started_key(destination, at.partition, &self.instance_id);
        self.advance(&key, at.offset).await?;
        let mut maps = self.maps();
        let begun = maps.begun.entry(at.partition).or_insert(at.offset);
        *begun = (*begun).max(at.offset);
        let conversation = ticket_key(destination, conversation_id);
        maps.note_event(
            event_key(destination, event_id),
            Some(conversation),
            Status::Pending,
            SystemTime::now(),
        );
        Ok(())
    }

    /// Records the event PENDING in the topic, for a copy that comes at another offset (a dead
    /// letter's replay, after the helpdesk refused an event it was handed): looked up first.
    pub async fn keep_pending(&self, destination: &str, conversation_id: &str, event_id: &str) -> Result<(), ProduceError> {
        let entry = Entry::Event(EventDelivery {
            status: Status::Pending as i32,
            ticket_id: String::new(),
            updated_at: Some(SystemTime::now().into()),
            conversation_id: conversation_id.to_owned(),
        });
        self.write(vec![(event_key(destination, event_id), entry)], Vec::new()).await
    }

    /// Moves the started mark `key` to `offset` + [`MARK_STEP`] when `offset` is within half a
    /// step of it: waiting for the write when `offset` is past the mark, else only when no other
    /// event is moving it already (this one is covered either way).
    async fn advance(&self, key: &str, offset: i64) -> Result<(), ProduceError> {
        let mark = || self.maps().marks.get(key).copied();
        let seen = mark();
        if !near(seen, offset) {
            return Ok(());
        }
        let _advancing = if covered(seen, offset) {
            match self.advancing.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(()),
            }
        } else {
            self.advancing.lock().await
        };
        if !near(mark(), offset) {
            return Ok(());
        }
        self.write(vec![(key.to_owned(), started_entry(offset + MARK_STEP))], Vec::new())
            .await
    }

    /// On a clean stop, after the last event was started: moves this replica's started marks
    /// back to the highest offset this run handed to the helpdesk (or the mark the restore
    /// found, if higher: a run before may have started those), so the next run looks up only
    /// the events that were in hand, not a step past them.
    pub async fn settle(&self) -> Result<(), ProduceError> {
        let _advancing = self.advancing.lock().await;
        let settled = self.maps().settled(&self.destination, &self.instance_id, &self.recovered);
        let entries = settled.into_iter().map(|(key, offset)| (key, started_entry(offset))).collect();
        self.write(entries, Vec::new()).await
    }

    /// Records that the helpdesk has the event (`done`) together with `alongside`, a record of
    /// another topic the caller enqueued (its delivery record): both are on their way at once,
    /// and this returns when the broker acknowledged every one of them, then applies the state
    /// in memory. The offset comes after, so "DONE before the offset" holds; a crash between
    /// the two acknowledgements leaves the event PENDING (looked up in the ticket again) or its
    /// delivery record written twice (consumers of `omni.deliveries.v1` take copies).
    pub async fn mark_done(
        &self,
        destination: &str,
        conversation_id: &str,
        event_id: &str,
        done: &Done,
        alongside: Option<Pending>,
    ) -> Result<(), ProduceError> {
        let now = Some(SystemTime::now().into());
        let ticket = &done.ticket;
        let mut entries = vec![(
            event_key(destination, event_id),
            Entry::Event(EventDelivery {
                status: Status::Done as i32,
                ticket_id: ticket.id.clone(),
                updated_at: now,
                conversation_id: conversation_id.to_owned(),
            }),
        )];
        if self.ticket(destination, conversation_id).as_ref() != Some(ticket) {
            entries.push((
                ticket_key(destination, conversation_id),
                Entry::Ticket(StoredTicket {
                    ticket_id: ticket.id.clone(),
                    ticket_url: ticket.url.clone(),
                    updated_at: now,
                    origin_event_id: done.origin_event_id.clone(),
                }),
            ));
        }
        self.write(entries, alongside.into_iter().collect()).await
    }

    /// Writes `entries`, waits for their acknowledgements and those of `pending` (records the
    /// caller enqueued to go with them), then applies the entries in memory.
    async fn write(&self, entries: Vec<(String, Entry)>, mut pending: Vec<Pending>) -> Result<(), ProduceError> {
        let _writing = Writing::start(self, entries.iter().map(|(key, _)| key.clone()).collect());
        let mut encoded = Vec::with_capacity(entries.len());
        for (key, entry) in entries {
            let value = RouterState { entry: Some(entry) }.encode_to_vec();
            let headers = omni_kafka::state::headers();
            pending.push(self.producer.enqueue(topics::STATE_ROUTER, key.as_bytes(), &value, headers)?);
            encoded.push((key, value));
        }
        for acknowledgement in pending {
            acknowledgement.acknowledged().await?;
        }
        let mut maps = self.maps();
        for (key, value) in encoded {
            maps.apply(&key, &value);
        }
        Ok(())
    }

    /// Forgets what was last written before `now - retention` (see the module docs). The keys
    /// this replica's map says are past (at most [`MAX_CANDIDATES`] a round) are only
    /// candidates: the map is stale for conversations other replicas went on with since it
    /// started, so the topic is read again (keeping only the candidates' times); what another
    /// replica wrote since keeps its key, and its time is taken into the map. What both say is
    /// past is tombstoned a batch at a time: under the map's lock each key is checked again
    /// (still past, no write of this replica on its way), its tombstone enqueued and the key
    /// dropped from the map, so any later write of it lands after the tombstone. No
    /// candidates: no read. The read takes as long as a restore (the whole topic): run this
    /// beside the deliveries, not between them. Left: another replica's write during the read
    /// (it reads to the ends it found at its start) is not seen, and its key may be tombstoned
    /// (that replica keeps it in its map; after its restart the ticket is found in the helpdesk
    /// again).
    pub async fn expire(&self, retention: Duration, now: SystemTime) -> Result<Expired, ExpireError> {
        let Some(cutoff) = now.checked_sub(retention) else {
            return Ok(Expired::default());
        };
        let (events, tickets) = self.maps().expired(&self.destination, cutoff, MAX_CANDIDATES);
        if events.is_empty() && tickets.is_empty() {
            return Ok(Expired::default());
        }
        let capped = events.len() + tickets.len() >= MAX_CANDIDATES;
        let candidates = Candidates::new(&self.destination, events, tickets);
        let judged = self.reader.last_written(candidates).await?.judge(cutoff);
        self.maps().refresh(&judged);
        let mut expired = Expired::default();
        for batch in judged.events.chunks(EXPIRE_BATCH) {
            expired.events += self.tombstone(batch, cutoff, Kind::Event).await?;
        }
        for batch in judged.tickets.chunks(EXPIRE_BATCH) {
            expired.tickets += self.tombstone(batch, cutoff, Kind::Ticket).await?;
        }
        expired.more = capped && expired.events + expired.tickets > 0;
        Ok(expired)
    }

    /// Tombstones those of `keys` still past `cutoff` in the map and not being written, drops
    /// them from the map (both under its lock), then waits for the broker. Returns how many
    /// records went (for tickets: conversations whose ticket the map knew).
    async fn tombstone(&self, keys: &[String], cutoff: SystemTime, kind: Kind) -> Result<usize, ProduceError> {
        let (pending, removed) = {
            let mut maps = self.maps();
            let mut pending = Vec::new();
            let mut removed = 0;
            for key in keys {
                let past = match kind {
                    Kind::Event => maps.event_past(key, cutoff),
                    Kind::Ticket => maps.ticket_past(key, cutoff),
                };
                if !past || maps.writing.contains_key(key) {
                    continue;
                }
                pending.push(omni_kafka::state::enqueue_tombstone(&self.producer, topics::STATE_ROUTER, key)?);
                removed += usize::from(match kind {
                    Kind::Event => maps.events.remove(key).is_some(),
                    Kind::Ticket => {
                        maps.activity.remove(key);
                        maps.tickets.remove(key).is_some()
                    }
                });
            }
            maps.shrink();
            (pending, removed)
        };
        for acknowledgement in pending {
            acknowledgement.acknowledged().await?;
        }
        Ok(removed)
    }
}

fn started_entry(offset: i64) -> Entry {
    Entry::Started(StartedMark {
        offset,
        updated_at: Some(SystemTime::now().into()),
    })
}

/// Whether a started mark covers `offset`.
fn covered(mark: Option<i64>, offset: i64) -> bool {
    mark.is_some_and(|mark| offset <= mark)
}

/// Whether an event at `offset` should move the started mark: past it, or within half a step.
fn near(mark: Option<i64>, offset: i64) -> bool {
    mark.is_none_or(|mark| offset + MARK_STEP / 2 > mark)
}

/// Which kind of key a batch of tombstones is for.
#[derive(Clone, Copy)]
enum Kind {
    Event,
    Ticket,
}

/// Keys being written: marked in the map for as long as this lives (see [`Maps::writing`]).
struct Writing<'a> {
    store: &'a StateStore,
    keys: Vec<String>,
}

impl<'a> Writing<'a> {
    fn start(store: &'a StateStore, keys: Vec<String>) -> Self {
        let mut maps = store.maps();
        for key in &keys {
            *maps.writing.entry(key.clone()).or_default() += 1;
        }
        drop(maps);
        Self { store, keys }
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut maps = self.store.maps();
        for key in &self.keys {
            if let Some(count) = maps.writing.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    maps.writing.remove(key);
                }
            }
        }
    }
}

/// What an expiry round removed.
#[derive(Debug, Default)]
pub struct Expired {
    /// Event records tombstoned and forgotten.
    pub events: usize,
    /// Conversations whose ticket record was tombstoned and forgotten.
    pub tickets: usize,
    /// Whether the round took as many candidates as it may and removed some: more may be past
    /// (after a long stop), so the next round can come at once.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn event(conversation: &str, secs: u64) -> Vec<u8> {
        RouterState {
            entry: Some(Entry::Event(EventDelivery {
                status: Status::Done as i32,
                ticket_id: "7".into(),
                updated_at: Some(at(secs).into()),
                conversation_id: conversation.into(),
            })),
        }
        .encode_to_vec()
    }

    fn ticket(secs: u64) -> Vec<u8> {
        RouterState {
            entry: Some(Entry::Ticket(StoredTicket {
                ticket_id: "7".into(),
                ticket_url: String::new(),
                updated_at: Some(at(secs).into()),
                origin_event_id: "e1".into(),
            })),
        }
        .encode_to_vec()
    }

    fn mark(offset: i64) -> Vec<u8> {
        RouterState {
            entry: Some(started_entry(offset)),
        }
        .encode_to_vec()
    }

    #[test]
    fn the_highest_mark_any_replica_left_counts_for_a_partition() {
        let mut maps = Maps::default();
        maps.apply("started/zd/0/router-0", &mark(100));
        maps.apply("started/zd/0/router-1", &mark(150));
        maps.apply("started/zd/1/router-0", &mark(10));
        maps.apply("started/zd/1/router-0", &mark(70));
        // Another destination's mark is its own pipeline's.
        maps.apply("started/rt/0/router-0", &mark(999));
        let recovered = recovered_marks("zd", &maps.marks);
        assert_eq!(recovered, HashMap::from([(0, 150), (1, 70)]));
        assert!(covered(recovered.get(&0).copied(), 150) && !covered(recovered.get(&0).copied(), 151));
        assert!(!covered(recovered.get(&2).copied(), 0), "no mark, nothing started");
        assert!(maps.events.is_empty() && maps.activity.is_empty(), "marks are not events");
        assert_eq!(
            maps.expired("zd", at(1_000_000), MAX_CANDIDATES),
            (vec![], vec![]),
            "marks never expire"
        );
    }

    #[test]
    fn a_mark_moves_within_half_a_step_of_an_event_and_not_before() {
        assert!(near(None, 0), "the first event of a partition writes its mark");
        assert!(!near(Some(100), 100 - MARK_STEP / 2), "covered with room to spare");
        assert!(near(Some(100), 101 - MARK_STEP / 2), "covered, but moved ahead now");
        assert!(near(Some(100), 101), "past it: moved before the event starts");
    }

    #[test]
    fn a_clean_stop_moves_this_replicas_marks_back_to_the_last_event_begun() {
        let mut maps = Maps::default();
        maps.apply("started/zd/0/router-0", &mark(164));
        maps.apply("started/zd/1/router-0", &mark(80));
        maps.apply("started/zd/2/router-0", &mark(90));
        maps.apply("started/zd/0/router-1", &mark(500));
        maps.begun = HashMap::from([(0, 100), (1, 20), (2, 90)]);
        // Partition 1: a crashed run before this one started up to 50.
        let recovered = HashMap::from([(1, 50)]);
        let mut settled = maps.settled("zd", "router-0", &recovered);
        settled.sort();
        assert_eq!(
            settled,
            [("started/zd/0/router-0".to_owned(), 100), ("started/zd/1/router-0".to_owned(), 50)],
            "partition 2's mark is where it has to be; router-1's is not this replica's"
        );
    }

    #[test]
    fn a_conversation_expires_only_once_its_last_event_is_older_than_the_cutoff() {
        let mut maps = Maps::default();
        maps.apply("ticket/zd/c1", &ticket(0));
        maps.apply("event/zd/e1", &event("c1", 0));
        maps.apply("event/zd/e2", &event("c1", 50));
        maps.apply("ticket/zd/c2", &ticket(10));
        maps.apply("event/zd/e3", &event("c2", 10));
        // Another destination's keys are not this pipeline's to expire.
        maps.apply("ticket/rt/c9", &ticket(0));
        let (mut events, mut tickets) = maps.expired("zd", at(20), MAX_CANDIDATES);
        events.sort();
        tickets.sort();
        assert_eq!(events, ["event/zd/e1", "event/zd/e3"]);
        assert_eq!(tickets, ["ticket/zd/c2"], "c1 had an event at 50");
        let (events, tickets) = maps.expired("zd", at(60), MAX_CANDIDATES);
        assert_eq!((events.len(), tickets.len()), (3, 2));
        // A round takes at most its limit, events first.
        let (events, tickets) = maps.expired("zd", at(60), 4);
        assert_eq!((events.len(), tickets.len()), (3, 1));
    }

    /// Candidates as a replica that started at 0 judges them, after a topic where another
    /// replica wrote since.
    fn scanned() -> Candidates {
        let keys = |keys: &[&str]| keys.iter().map(|key| (*key).to_owned()).collect::<Vec<_>>();
        let mut candidates = Candidates::new(
            "zd",
            keys(&["event/zd/e1", "event/zd/e2", "event/zd/e3"]),
            keys(&["ticket/zd/c1", "ticket/zd/c2"]),
        );
        let records: [(&str, Option<Vec<u8>>); 8] = [
            ("ticket/zd/c1", Some(ticket(0))),
            ("ticket/zd/c2", Some(ticket(0))),
            ("event/zd/e1", Some(event("c1", 0))),
            ("event/zd/e2", Some(event("c2", 0))),
            // Written since by another replica: c1's next event, e2 again (its DONE).
            ("event/zd/e9", Some(event("c1", 50))),
            ("event/zd/e2", Some(event("c2", 40))),
            // Another destination's event of c2 does not keep c2 here; e3 was tombstoned.
            ("event/rt/e5", Some(event("c2", 60))),
            ("event/zd/e3", None),
        ];
        for (key, value) in &records {
            candidates.visit(key.as_bytes(), value.as_deref());
        }
        candidates
    }

    fn sorted((mut events, mut tickets): (Vec<String>, Vec<String>)) -> (Vec<String>, Vec<String>) {
        events.sort();
        tickets.sort();
        (events, tickets)
    }

    #[test]
    fn what_another_replica_wrote_since_keeps_a_candidate() {
        let judged = scanned().judge(at(30));
        let (events, tickets) = sorted((judged.events.clone(), judged.tickets.clone()));
        assert_eq!(events, ["event/zd/e1", "event/zd/e3"], "e2 was written again at 40");
        assert!(tickets.is_empty(), "c1 had an event at 50, c2 at 40: {tickets:?}");
        let judged = scanned().judge(at(45));
        let (events, tickets) = sorted((judged.events, judged.tickets));
        assert_eq!(events, ["event/zd/e1", "event/zd/e2", "event/zd/e3"]);
        assert_eq!(tickets, ["ticket/zd/c2"], "rt's event of c2 at 60 is not this destination's");
    }

    #[test]
    fn the_topics_newer_times_are_taken_in_so_a_kept_key_is_no_candidate_again() {
        let mut maps = Maps::default();
        maps.apply("ticket/zd/c1", &ticket(0));
        maps.apply("ticket/zd/c2", &ticket(0));
        maps.apply("event/zd/e1", &event("c1", 0));
        maps.apply("event/zd/e2", &event("c2", 0));
        let (events, tickets) = maps.expired("zd", at(30), MAX_CANDIDATES);
        assert_eq!((events.len(), tickets.len()), (2, 2));
        let mut candidates = Candidates::new("zd", events, tickets);
        for (key, value) in [
            ("ticket/zd/c1", ticket(0)),
            ("event/zd/e1", event("c1", 40)),
            ("event/zd/e9", event("c1", 50)),
        ] {
            candidates.visit(key.as_bytes(), Some(&value));
        }
        maps.refresh(&candidates.judge(at(30)));
        let (events, tickets) = sorted(maps.expired("zd", at(30), MAX_CANDIDATES));
        assert_eq!(events, ["event/zd/e2"], "e1 was written again at 40 elsewhere");
        assert_eq!(tickets, ["ticket/zd/c2"], "c1 went on elsewhere until 50");
    }

    #[test]
    fn an_event_record_written_before_conversation_ids_were_kept_still_expires_by_its_own_time() {
        let mut maps = Maps::default();
        maps.apply("event/zd/old", &event("", 0));
        maps.credit_legacy_events();
        assert_eq!(maps.expired("zd", at(1), MAX_CANDIDATES).0, ["event/zd/old"]);
        assert!(maps.activity.is_empty(), "no ticket 7 known");
    }

    #[test]
    fn such_an_event_keeps_its_tickets_conversation_alive() {
        let mut maps = Maps::default();
        maps.apply("ticket/zd/c1", &ticket(0));
        maps.apply("event/zd/late", &event("", 50));
        maps.credit_legacy_events();
        assert!(
            maps.expired("zd", at(20), MAX_CANDIDATES).1.is_empty(),
            "ticket 7 had an event at 50"
        );
        assert_eq!(maps.expired("zd", at(60), MAX_CANDIDATES).1, ["ticket/zd/c1"]);
    }
}
