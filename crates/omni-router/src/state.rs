//! The router's durable state: which ticket holds each conversation, and how far each event's
//! delivery got. Kept in the compacted topic `omni.state.router.v1` (keys in `state.proto`) and a
//! local map; every change is acknowledged by the broker before the router acts on it.
//!
//! Bounded by `[router] state_retention_secs`: an event record older than that, and a
//! conversation's ticket record when none of the conversation's events is younger, are removed
//! from the map and tombstoned in the topic ([`StateStore::expire`]), so memory follows the
//! conversations active within the window, not every event ever routed. What a late copy of an
//! expired event gets: the router no longer knows it was delivered, finds the conversation's
//! ticket in the helpdesk by its conversation id (as after a lost state) and looks for the event
//! in it (`has_event`), so the helpdesks that can say (all but the webhook) still skip it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use omni_kafka::producer::Pending;
use omni_kafka::{CloudEvent, KafkaConfig, ProduceError, Producer, topics};
use omni_proto::v1::{EventDelivery, RouterState, TicketRef as StoredTicket, event_delivery::Status, router_state::Entry};
use prost::Message as _;

use crate::helpdesk::TicketRef;

/// Most keys one [`StateStore::expire`] call tombstones (the rest wait for the next call, which
/// the router makes at once after a full batch), so a sweep after a long stop does not fill the
/// producer's queue: the same batch as every state topic's expiry.
pub use omni_kafka::state::EXPIRE_BATCH;

/// The CloudEvents type of the records.
const KIND: &str = "omni.v1.RouterState";

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
    source: String,
    destination: String,
    maps: Mutex<Maps>,
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
                if !event.conversation_id.is_empty() {
                    self.touch(ticket_key(destination, &event.conversation_id), updated);
                } else if !event.ticket_id.is_empty() {
                    self.legacy.push((event.ticket_id.clone(), updated));
                }
                let status = event.status();
                self.events.insert(key.to_owned(), EventEntry { status, updated });
            }
            Ok(None) | Err(_) => tracing::warn!(key, "unreadable state record skipped"),
        }
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

    fn touch(&mut self, ticket_key: String, at: SystemTime) {
        let last = self.activity.entry(ticket_key).or_insert(at);
        *last = (*last).max(at);
    }

    /// Keys of `destination` last written before `cutoff`: events, then conversations (their
    /// ticket records), at most [`EXPIRE_BATCH`] in all.
    fn expired(&self, destination: &str, cutoff: SystemTime) -> (Vec<String>, Vec<String>) {
        let events_prefix = event_key(destination, "");
        let tickets_prefix = ticket_key(destination, "");
        let events: Vec<String> = self
            .events
            .iter()
            .filter(|(key, entry)| entry.updated < cutoff && key.starts_with(&events_prefix))
            .map(|(key, _)| key.clone())
            .take(EXPIRE_BATCH)
            .collect();
        let tickets = self
            .activity
            .iter()
            .filter(|(key, last)| **last < cutoff && key.starts_with(&tickets_prefix))
            .map(|(key, _)| key.clone())
            .take(EXPIRE_BATCH - events.len())
            .collect();
        (events, tickets)
    }
}

impl StateStore {
    /// Reads the state topic, keeping `destination`'s keys.
    pub async fn restore(
        kafka: &KafkaConfig,
        client_id: &str,
        (producer, source): (Producer, String),
        destination: &str,
        timeout: Duration,
    ) -> Result<Self, omni_kafka::state::StateError> {
        let prefixes = [ticket_key(destination, ""), event_key(destination, "")];
        let keep = move |key: &[u8]| prefixes.iter().any(|prefix| key.starts_with(prefix.as_bytes()));
        let records = omni_kafka::state::read_where(kafka, client_id, topics::STATE_ROUTER, timeout, keep).await?;
        let mut maps = Maps::default();
        for (key, value) in records {
            let Ok(key) = String::from_utf8(key) else { continue };
            maps.apply(&key, &value);
        }
        maps.credit_legacy_events();
        Ok(Self {
            producer,
            source,
            destination: destination.to_owned(),
            maps: Mutex::new(maps),
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

    /// How far delivery of an event to a destination got.
    pub fn event(&self, destination: &str, event_id: &str) -> Status {
        self.maps()
            .events
            .get(&event_key(destination, event_id))
            .map_or(Status::Unspecified, |entry| entry.status)
    }

    /// Records that the router is about to call the helpdesk for this event.
    pub async fn mark_pending(&self, destination: &str, conversation_id: &str, event_id: &str) -> Result<(), ProduceError> {
        let entry = Entry::Event(EventDelivery {
            status: Status::Pending as i32,
            ticket_id: String::new(),
            updated_at: Some(SystemTime::now().into()),
            conversation_id: conversation_id.to_owned(),
        });
        self.write(vec![(event_key(destination, event_id), entry)], Vec::new()).await
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

    fn headers(&self, key: &str) -> rdkafka::message::OwnedHeaders {
        CloudEvent {
            id: key,
            kind: KIND,
            source: &self.source,
            subject: None,
            time: SystemTime::now(),
        }
        .to_headers()
    }

    /// Writes `entries`, waits for their acknowledgements and those of `pending` (records the
    /// caller enqueued to go with them), then applies the entries in memory.
    async fn write(&self, entries: Vec<(String, Entry)>, mut pending: Vec<Pending>) -> Result<(), ProduceError> {
        let mut encoded = Vec::with_capacity(entries.len());
        for (key, entry) in entries {
            let value = RouterState { entry: Some(entry) }.encode_to_vec();
            let headers = self.headers(&key);
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

    /// Forgets what was last written before `now - retention` (see the module docs): tombstones
    /// the keys (acknowledged by the broker), then drops them from the map. Returns how many
    /// event and ticket records went. A conversation that had an event meanwhile keeps its ticket
    /// in the map (its tombstone is already written: after a restart its ticket is found in the
    /// helpdesk again).
    pub async fn expire(&self, retention: Duration, now: SystemTime) -> Result<(usize, usize), ProduceError> {
        let Some(cutoff) = now.checked_sub(retention) else {
            return Ok((0, 0));
        };
        let (events, tickets) = self.maps().expired(&self.destination, cutoff);
        let keys: Vec<String> = events.iter().chain(&tickets).cloned().collect();
        omni_kafka::state::tombstone(&self.producer, topics::STATE_ROUTER, KIND, &self.source, &keys).await?;
        let mut maps = self.maps();
        for key in &events {
            maps.events.remove(key);
        }
        for key in &tickets {
            if maps.activity.get(key).is_some_and(|last| *last < cutoff) {
                maps.activity.remove(key);
                maps.tickets.remove(key);
            }
        }
        maps.shrink();
        Ok((events.len(), tickets.len()))
    }
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
        let (mut events, mut tickets) = maps.expired("zd", at(20));
        events.sort();
        tickets.sort();
        assert_eq!(events, ["event/zd/e1", "event/zd/e3"]);
        assert_eq!(tickets, ["ticket/zd/c2"], "c1 had an event at 50");
        let (events, tickets) = maps.expired("zd", at(60));
        assert_eq!((events.len(), tickets.len()), (3, 2));
    }

    #[test]
    fn an_event_record_written_before_conversation_ids_were_kept_still_expires_by_its_own_time() {
        let mut maps = Maps::default();
        maps.apply("event/zd/old", &event("", 0));
        maps.credit_legacy_events();
        assert_eq!(maps.expired("zd", at(1)).0, ["event/zd/old"]);
        assert!(maps.activity.is_empty(), "no ticket 7 known");
    }

    #[test]
    fn such_an_event_keeps_its_tickets_conversation_alive() {
        let mut maps = Maps::default();
        maps.apply("ticket/zd/c1", &ticket(0));
        maps.apply("event/zd/late", &event("", 50));
        maps.credit_legacy_events();
        assert!(maps.expired("zd", at(20)).1.is_empty(), "ticket 7 had an event at 50");
        assert_eq!(maps.expired("zd", at(60)).1, ["ticket/zd/c1"]);
    }
}
