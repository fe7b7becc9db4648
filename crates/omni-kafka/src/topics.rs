//! The omni topics, and their creation at start-up.

use std::time::Duration;

use omni_proto::channels;
use omni_proto::v1::Channel;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

/// Unified conversation events (`omni.v1.ConversationEvent`), keyed by conversation id.
pub const CONVERSATIONS: &str = "omni.conversations.v1";
/// Routing outcomes (`omni.v1.Delivery`), keyed by event id.
pub const DELIVERIES: &str = "omni.deliveries.v1";
/// Records a stage could not handle (`omni.v1.DeadLetter`), keyed like the original.
pub const DEADLETTER: &str = "omni.deadletter.v1";
/// The router's state (`omni.v1.RouterState`), compacted; see `state.proto` for keys.
pub const STATE_ROUTER: &str = "omni.state.router.v1";
/// The email connector's checkpoints (`omni.v1.EmailCheckpoint`), compacted.
pub const STATE_EMAIL: &str = "omni.state.email.v1";
/// The events the normalizer wrote and their conversations (`omni.v1.NormalizedEvent`), compacted.
pub const STATE_NORMALIZER: &str = "omni.state.normalizer.v1";
/// The call-log connector's checkpoints (`omni.v1.CallLogCheckpoint`), compacted.
pub const STATE_CALLLOG: &str = "omni.state.calllog.v1";
/// What the team sends to customers (`omni.v1.OutboundMessage`), keyed by conversation id.
pub const OUTBOUND: &str = "omni.outbound.v1";
/// What providers said about the messages omni sent (`omni.v1.DeliveryReceipt`), keyed by
/// conversation id.
pub const RECEIPTS: &str = "omni.receipts.v1";
/// Tickets solved or reopened in the helpdesks (`omni.v1.TicketStatusChange`), keyed by
/// conversation id.
pub const TICKETS: &str = "omni.tickets.v1";
/// The agents' answers to website chat visitors (`omni.v1.OutboundMessage`), keyed by
/// conversation id: what every gateway replica reads to push them into open chats.
pub const WEBCHAT: &str = "omni.webchat.v1";
/// Which website chats are open, per conversation and gateway replica (`omni.v1.ChatPresence`),
/// compacted.
pub const STATE_WEBCHAT: &str = "omni.state.webchat.v1";
/// How far omni-replies polled each helpdesk (`omni.v1.ReplyCursor`), compacted.
pub const STATE_REPLIES: &str = "omni.state.replies.v1";
/// The sender's reply addresses and outbox (`omni.v1.SenderState`), compacted.
pub const STATE_SENDER: &str = "omni.state.sender.v1";
/// The latest acknowledgement per customer (`omni.v1.AcknowledgementRecord`), compacted.
pub const STATE_NOTIFIER: &str = "omni.state.notifier.v1";
/// What the KPIs are made of, per conversation (`omni.v1.ConversationKpi`), compacted.
pub const STATE_KPI: &str = "omni.state.kpi.v1";

/// The raw topic of a channel's family (`omni.raw.<family>.v1`, the family named beside the
/// value in `common.proto`); `None` for `CHANNEL_UNSPECIFIED`.
pub fn raw_topic(channel: Channel) -> Option<String> {
    channels::channel_info(channel).map(|info| family_topic(info.family))
}

fn family_topic(family: &str) -> String {
    format!("omni.raw.{family}.v1")
}

/// Every raw topic, one per family, in the order of the proto's channels.
pub fn raw_topics() -> Vec<String> {
    channels::families().into_iter().map(family_topic).collect()
}

/// A topic omni uses: its name, record type and clean-up policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic name.
    pub name: String,
    /// Full protobuf name of the record values, for example `omni.v1.RawRecord`.
    pub message_type: &'static str,
    /// `cleanup.policy=compact` (state topics) rather than time retention.
    pub compacted: bool,
}

/// Every topic omni reads or writes.
pub fn all_topics() -> Vec<TopicSpec> {
    let mut topics: Vec<TopicSpec> = raw_topics()
        .into_iter()
        .map(|name| TopicSpec {
            name,
            message_type: "omni.v1.RawRecord",
            compacted: false,
        })
        .collect();
    topics.push(TopicSpec {
        name: CONVERSATIONS.into(),
        message_type: "omni.v1.ConversationEvent",
        compacted: false,
    });
    topics.push(TopicSpec {
        name: DELIVERIES.into(),
        message_type: "omni.v1.Delivery",
        compacted: false,
    });
    topics.push(TopicSpec {
        name: DEADLETTER.into(),
        message_type: "omni.v1.DeadLetter",
        compacted: false,
    });
    topics.push(TopicSpec {
        name: STATE_ROUTER.into(),
        message_type: "omni.v1.RouterState",
        compacted: true,
    });
    topics.push(TopicSpec {
        name: STATE_EMAIL.into(),
        message_type: "omni.v1.EmailCheckpoint",
        compacted: true,
    });
    topics.push(TopicSpec {
        name: STATE_NORMALIZER.into(),
        message_type: "omni.v1.NormalizedEvent",
        compacted: true,
    });
    topics.push(TopicSpec {
        name: STATE_CALLLOG.into(),
        message_type: "omni.v1.CallLogCheckpoint",
        compacted: true,
    });
    topics.push(TopicSpec {
        name: OUTBOUND.into(),
        message_type: "omni.v1.OutboundMessage",
        compacted: false,
    });
    topics.push(TopicSpec {
        name: RECEIPTS.into(),
        message_type: "omni.v1.DeliveryReceipt",
        compacted: false,
    });
    topics.push(TopicSpec {
        name: TICKETS.into(),
        message_type: "omni.v1.TicketStatusChange",
        compacted: false,
    });
    topics.push(TopicSpec {
        name: WEBCHAT.into(),
        message_type: "omni.v1.OutboundMessage",
        compacted: false,
    });
    topics.push(TopicSpec {
        name: STATE_WEBCHAT.into(),
        message_type: "omni.v1.ChatPresence",
        compacted: true,
    });
    topics.push(TopicSpec {
        name: STATE_REPLIES.into(),
        message_type: "omni.v1.ReplyCursor",
        compacted: true,
    });
    topics.push(TopicSpec {
        name: STATE_SENDER.into(),
        message_type: "omni.v1.SenderState",
        compacted: true,
    });
    topics.push(TopicSpec {
        name: STATE_NOTIFIER.into(),
        message_type: "omni.v1.AcknowledgementRecord",
        compacted: true,
    });
    topics.push(TopicSpec {
        name: STATE_KPI.into(),
        message_type: "omni.v1.ConversationKpi",
        compacted: true,
    });
    topics
}

/// The record type a topic carries, by its name.
pub fn message_type_of(topic: &str) -> Option<&'static str> {
    all_topics()
        .into_iter()
        .find(|spec| spec.name == topic)
        .map(|spec| spec.message_type)
}

/// Why topics could not be ensured.
#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    /// The admin client could not be created (bad librdkafka property).
    #[error("cannot create kafka admin client: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
    /// The broker did not answer or refused (retry later).
    #[error("cannot create topics: {0}")]
    Request(#[source] rdkafka::error::KafkaError),
    /// The broker refused to create one topic.
    #[error("cannot create topic `{topic}`: {code}")]
    Refused {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
}

/// Creates every omni topic that does not exist yet, when `[kafka.topics] create` is set.
pub async fn ensure_topics(config: &KafkaConfig, client_id: &str) -> Result<(), TopicsError> {
    if !config.topics.create {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = config.client_config(client_id).create().map_err(TopicsError::Client)?;
    let specs = all_topics();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|spec| {
            let topic = NewTopic::new(
                &spec.name,
                config.topics.partitions,
                TopicReplication::Fixed(config.topics.replication_factor),
            );
            if spec.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    let results = admin.create_topics(&new_topics, &options).await.map_err(TopicsError::Request)?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicsError::Refused { topic, code }),
        }
    }
    Ok(())
}

/// Creates missing topics, retrying with backoff until the broker answers, so a service can
/// start before the broker. Sets the `kafka` readiness check (register it first).
pub async fn ensure_topics_until_ready(
    config: &KafkaConfig,
    client_id: &str,
    context: &omni_runtime::ServiceContext,
) -> Result<(), TopicsError> {
    let mut delay = Duration::from_millis(200);
    loop {
        match ensure_topics(config, client_id).await {
            Ok(()) => {
                context.readiness.ready("kafka");
                return Ok(());
            }
            Err(error @ (TopicsError::Client(_) | TopicsError::Refused { .. })) => return Err(error),
            Err(error) => {
                context.readiness.not_ready("kafka", error.to_string());
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "broker not ready");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = context.shutdown.cancelled() => return Ok(()),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_has_a_raw_topic() {
        for value in 1..=11 {
            let channel = Channel::try_from(value).unwrap();
            let topic = raw_topic(channel).unwrap_or_else(|| panic!("{channel:?} has no family"));
            assert!(raw_topics().contains(&topic));
        }
        assert_eq!(raw_topic(Channel::Api).as_deref(), Some("omni.raw.api.v1"));
        assert_eq!(raw_topic(Channel::Unspecified), None);
        assert_eq!(
            raw_topics(),
            [
                "omni.raw.email.v1",
                "omni.raw.api.v1",
                "omni.raw.chat.v1",
                "omni.raw.social.v1",
                "omni.raw.sms.v1",
                "omni.raw.voice.v1"
            ]
        );
    }

    #[test]
    fn every_topic_constant_is_created() {
        let names: Vec<String> = all_topics().into_iter().map(|spec| spec.name).collect();
        for topic in [
            CONVERSATIONS,
            DELIVERIES,
            DEADLETTER,
            STATE_ROUTER,
            STATE_EMAIL,
            STATE_NORMALIZER,
            STATE_CALLLOG,
            OUTBOUND,
            RECEIPTS,
            TICKETS,
            WEBCHAT,
            STATE_WEBCHAT,
            STATE_REPLIES,
            STATE_SENDER,
            STATE_NOTIFIER,
            STATE_KPI,
        ] {
            assert!(names.iter().any(|name| name == topic), "{topic} is not in all_topics()");
        }
        assert_eq!(message_type_of(STATE_EMAIL), Some("omni.v1.EmailCheckpoint"));
        assert_eq!(message_type_of(STATE_CALLLOG), Some("omni.v1.CallLogCheckpoint"));
        assert_eq!(message_type_of(OUTBOUND), Some("omni.v1.OutboundMessage"));
        assert_eq!(message_type_of(STATE_SENDER), Some("omni.v1.SenderState"));
    }

    #[test]
    fn only_state_topics_are_compacted() {
        for spec in all_topics() {
            assert_eq!(spec.compacted, spec.name.starts_with("omni.state."), "{}", spec.name);
            assert!(omni_proto::message_descriptor(spec.message_type).is_some(), "{}", spec.message_type);
        }
    }
}
