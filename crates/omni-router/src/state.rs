//! The router's durable state: which ticket holds each conversation, and how far each event's
//! delivery got. Kept in the compacted topic `omni.state.router.v1` (keys in `state.proto`) and a
//! local map; every change is acknowledged by the broker before the router acts on it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use omni_kafka::{CloudEvent, KafkaConfig, ProduceError, Producer, topics};
use omni_proto::v1::{EventDelivery, RouterState, TicketRef as StoredTicket, event_delivery::Status, router_state::Entry};
use prost::Message as _;

use crate::helpdesk::TicketRef;

/// The state of one router replica. Shared by the events in flight: they touch disjoint keys
/// (one conversation's events are handled one at a time), and the maps are locked only to read
/// or apply an entry, never across a broker write.
pub struct StateStore {
    producer: Producer,
    source: String,
    maps: Mutex<Maps>,
}

#[derive(Default)]
struct Maps {
    tickets: HashMap<String, TicketRef>,
    /// Ticket key -> the event that opened the ticket, where known.
    origins: HashMap<String, String>,
    events: HashMap<String, Status>,
}

impl Maps {
    fn apply(&mut self, key: &str, value: &[u8]) {
        match RouterState::decode(value).map(|state| state.entry) {
            Ok(Some(Entry::Ticket(ticket))) => {
                if ticket.origin_event_id.is_empty() {
                    self.origins.remove(key);
                } else {
                    self.origins.insert(key.to_owned(), ticket.origin_event_id);
                }
                self.tickets.insert(
                    key.to_owned(),
                    TicketRef {
                        id: ticket.ticket_id,
                        url: ticket.ticket_url,
                    },
                );
            }
            Ok(Some(Entry::Event(event))) => {
                self.events.insert(key.to_owned(), event.status());
            }
            Ok(None) | Err(_) => tracing::warn!(key, "unreadable state record skipped"),
        }
    }
}

fn ticket_key(destination: &str, conversation_id: &str) -> String {
    format!("ticket/{destination}/{conversation_id}")
}

fn event_key(destination: &str, event_id: &str) -> String {
    format!("event/{destination}/{event_id}")
}

impl StateStore {
    /// Reads the whole state topic.
    pub async fn restore(
        kafka: &KafkaConfig,
        client_id: &str,
        producer: Producer,
        source: String,
        timeout: Duration,
    ) -> Result<Self, omni_kafka::state::StateError> {
        let records = omni_kafka::state::read_all(kafka, client_id, topics::STATE_ROUTER, timeout).await?;
        let mut maps = Maps::default();
        for (key, value) in records {
            let Ok(key) = String::from_utf8(key) else { continue };
            maps.apply(&key, &value);
        }
        Ok(Self {
            producer,
            source,
            maps: Mutex::new(maps),
        })
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().expect("router state lock")
    }

    /// Number of conversations and events known.
    pub fn len(&self) -> (usize, usize) {
        let maps = self.maps();
        (maps.tickets.len(), maps.events.len())
    }

    /// The ticket holding a conversation at a destination.
    pub fn ticket(&self, destination: &str, conversation_id: &str) -> Option<TicketRef> {
        self.maps().tickets.get(&ticket_key(destination, conversation_id)).cloned()
    }

    /// Whether `event_id` opened the ticket holding the conversation at a destination.
    pub fn opened(&self, destination: &str, conversation_id: &str, event_id: &str) -> bool {
        self.maps()
            .origins
            .get(&ticket_key(destination, conversation_id))
            .is_some_and(|origin| origin == event_id)
    }

    /// How far delivery of an event to a destination got.
    pub fn event(&self, destination: &str, event_id: &str) -> Status {
        self.maps()
            .events
            .get(&event_key(destination, event_id))
            .copied()
            .unwrap_or(Status::Unspecified)
    }

    /// Records that the router is about to call the helpdesk for this event.
    pub async fn mark_pending(&self, destination: &str, event_id: &str) -> Result<(), ProduceError> {
        let entry = Entry::Event(EventDelivery {
            status: Status::Pending as i32,
            ticket_id: String::new(),
            updated_at: Some(SystemTime::now().into()),
        });
        self.write(vec![(event_key(destination, event_id), entry)]).await
    }

    /// Records that the helpdesk has the event, in `ticket`, which holds the conversation and
    /// was opened by `origin_event_id` (empty when not known).
    pub async fn mark_done(
        &self,
        destination: &str,
        conversation_id: &str,
        event_id: &str,
        ticket: &TicketRef,
        origin_event_id: &str,
    ) -> Result<(), ProduceError> {
        let now = Some(SystemTime::now().into());
        let mut entries = vec![(
            event_key(destination, event_id),
            Entry::Event(EventDelivery {
                status: Status::Done as i32,
                ticket_id: ticket.id.clone(),
                updated_at: now,
            }),
        )];
        if self.ticket(destination, conversation_id).as_ref() != Some(ticket) {
            entries.push((
                ticket_key(destination, conversation_id),
                Entry::Ticket(StoredTicket {
                    ticket_id: ticket.id.clone(),
                    ticket_url: ticket.url.clone(),
                    updated_at: now,
                    origin_event_id: origin_event_id.to_owned(),
                }),
            ));
        }
        self.write(entries).await
    }

    async fn write(&self, entries: Vec<(String, Entry)>) -> Result<(), ProduceError> {
        let mut pending = Vec::with_capacity(entries.len());
        let mut encoded = Vec::with_capacity(entries.len());
        for (key, entry) in entries {
            let value = RouterState { entry: Some(entry) }.encode_to_vec();
            let headers = CloudEvent {
                id: &key,
                kind: "omni.v1.RouterState",
                source: &self.source,
                subject: None,
                time: SystemTime::now(),
            }
            .to_headers();
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
}
