//! Writing records a stage gave up on to `omni.deadletter.v1`.

use std::time::SystemTime;

use omni_proto::v1::{DeadLetter, dead_letter::Fault};
use prost::Message as _;
use rdkafka::Message;

use crate::headers::{CloudEvent, headers_map};
use crate::producer::{ProduceError, Producer};
use crate::topics::DEADLETTER;

/// Writes dead letters for one stage.
#[derive(Clone)]
pub struct DeadLetterWriter {
    producer: Producer,
    stage: &'static str,
    source: String,
}

impl DeadLetterWriter {
    /// A writer for `stage` (`normalizer`, `router`), with `source` as the CloudEvents source.
    /// Its counters exist at zero for every fault from the start, so alerts on `increase()` see
    /// the first dead letter.
    pub fn new(producer: Producer, stage: &'static str, source: String) -> Self {
        for fault in (1..16).filter_map(|n| Fault::try_from(n).ok()) {
            metrics::counter!("omni_deadletters_total", "stage" => stage, "fault" => fault.as_str_name()).increment(0);
        }
        Self { producer, stage, source }
    }

    /// Writes `message` with the reason, and waits for the broker's acknowledgement. The
    /// caller stores the message's offset only after this returned `Ok`.
    pub async fn send<M: Message>(&self, message: &M, fault: Fault, reason: &str, event_id: &str) -> Result<(), ProduceError> {
        let headers = message.headers().map(headers_map).unwrap_or_default();
        self.write(message, message.payload().unwrap_or_default(), headers, fault, reason, event_id)
            .await
    }

    /// Like [`send`](Self::send), but the letter holds `value` (with `headers`) in place of
    /// `message`'s own: a record the stage made from `message` for a later replay to put on
    /// `message`'s topic, under its key (the router's retry of a customer's file).
    pub async fn send_instead<M: Message>(
        &self,
        message: &M,
        value: &[u8],
        headers: std::collections::BTreeMap<String, String>,
        fault: Fault,
        reason: &str,
        event_id: &str,
    ) -> Result<(), ProduceError> {
        self.write(message, value, headers, fault, reason, event_id).await
    }

    async fn write<M: Message>(
        &self,
        message: &M,
        value: &[u8],
        original_headers: std::collections::BTreeMap<String, String>,
        fault: Fault,
        reason: &str,
        event_id: &str,
    ) -> Result<(), ProduceError> {
        let now = SystemTime::now();
        let letter = DeadLetter {
            stage: self.stage.to_owned(),
            reason: reason.to_owned(),
            fault: fault as i32,
            source_topic: message.topic().to_owned(),
            source_partition: message.partition(),
            source_offset: message.offset(),
            original_key: message.key().unwrap_or_default().to_vec(),
            original_value: value.to_vec(),
            original_headers: original_headers.into_iter().collect(),
            event_id: event_id.to_owned(),
            failed_at: Some(now.into()),
        };
        let id = if event_id.is_empty() {
            format!("{}-{}-{}", message.topic(), message.partition(), message.offset())
        } else {
            event_id.to_owned()
        };
        let headers = CloudEvent {
            id: &id,
            kind: "omni.v1.DeadLetter",
            source: &self.source,
            subject: None,
            time: now,
        }
        .to_headers();
        self.producer
            .send(DEADLETTER, message.key().unwrap_or_default(), &letter.encode_to_vec(), headers)
            .await?;
        metrics::counter!("omni_deadletters_total", "stage" => self.stage, "fault" => fault.as_str_name()).increment(1);
        tracing::warn!(
            stage = self.stage,
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            event_id,
            reason,
            "record dead-lettered"
        );
        Ok(())
    }
}
