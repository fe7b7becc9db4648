//! One CDR file: poll the tailer, store each batch, checkpoint after acknowledgement.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use omni_channels::asterisk::{self, CdrSettings};
use omni_kafka::producer::Pending;
use omni_kafka::topics::raw_topic;
use omni_kafka::{CloudEvent, ProduceError, Producer, topics};
use omni_proto::v1::{CallLogCheckpoint, Channel, RawRecord};
use omni_runtime::Readiness;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::tailer::{Batch, Line, Notice, Step, Tailer};

/// Longest wait after a failure (broker, file system) before trying again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(crate) struct FileReader {
    /// The account: the file's name in `[calllog.files]`.
    pub account: String,
    pub settings: CdrSettings,
    pub connector_id: String,
    pub producer: Producer,
    pub checkpoint_key: String,
    /// CloudEvents source of every record this reader writes.
    pub source: String,
    pub poll_interval: Duration,
    pub readiness: Readiness,
}

impl FileReader {
    pub async fn run(self, mut tailer: Tailer, shutdown: CancellationToken) {
        let check = format!("file:{}", self.account);
        let mut backoff = self.poll_interval;
        let mut missing_logged = false;
        while !shutdown.is_cancelled() {
            let (returned, step) = tokio::task::spawn_blocking(move || {
                let step = tailer.poll();
                (tailer, step)
            })
            .await
            .expect("the tailer does not panic");
            tailer = returned;
            self.log_notices(&mut tailer);
            let wait = match step {
                Ok(Step::Lines(batch)) => {
                    missing_logged = false;
                    self.readiness.ready(&check);
                    match self.store(batch).await {
                        Ok(checkpoint) => {
                            tailer.commit(checkpoint);
                            backoff = self.poll_interval;
                            continue;
                        }
                        Err(error) => {
                            tracing::warn!(file = %self.account, %error, retry_in_ms = backoff.as_millis() as u64, "storing lines failed; they are read again from the checkpoint");
                            metrics::counter!("omni_calllog_errors_total", "file" => self.account.clone(), "kind" => "broker").increment(1);
                            tailer.reset();
                            next_backoff(&mut backoff, self.poll_interval)
                        }
                    }
                }
                Ok(Step::Idle) => {
                    self.readiness.ready(&check);
                    metrics::gauge!("omni_calllog_file_present", "file" => self.account.clone()).set(1.0);
                    backoff = self.poll_interval;
                    self.poll_interval
                }
                Ok(Step::Missing) => {
                    // Asterisk creates the file with the first call it logs: waiting is normal.
                    self.readiness.ready(&check);
                    metrics::gauge!("omni_calllog_file_present", "file" => self.account.clone()).set(0.0);
                    if !missing_logged {
                        tracing::warn!(file = %self.account, path = %tailer.path().display(), "CDR file does not exist (yet); waiting for it");
                        missing_logged = true;
                    }
                    self.poll_interval
                }
                Err(error) => {
                    let reason = format!("cannot read {}: {error}", tailer.path().display());
                    tracing::warn!(file = %self.account, error = %reason, retry_in_ms = backoff.as_millis() as u64, "CDR file not readable");
                    self.readiness.not_ready(&check, reason);
                    metrics::counter!("omni_calllog_errors_total", "file" => self.account.clone(), "kind" => "file").increment(1);
                    tailer.reset();
                    next_backoff(&mut backoff, self.poll_interval)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => break,
            }
        }
    }

    fn log_notices(&self, tailer: &mut Tailer) {
        for notice in tailer.take_notices() {
            match notice {
                Notice::Opened { path, offset, reason } => {
                    tracing::info!(file = %self.account, path = %path.display(), offset, reason, "reading CDR file");
                }
                Notice::Rotated { path } => {
                    tracing::info!(file = %self.account, path = %path.display(), "CDR file rotated: the old one is read to its end, the new one from its start");
                    metrics::counter!("omni_calllog_rotations_total", "file" => self.account.clone()).increment(1);
                }
                Notice::Truncated { path } => {
                    tracing::warn!(file = %self.account, path = %path.display(), "CDR file truncated or rewritten: reading it from its start (lines read before are recognised by their event ids)");
                    metrics::counter!("omni_calllog_truncations_total", "file" => self.account.clone()).increment(1);
                }
            }
        }
    }

    /// Stores every line of the batch, then the checkpoint after them; returns the checkpoint.
    async fn store(&self, batch: Batch) -> Result<CallLogCheckpoint, ProduceError> {
        let count = batch.lines.len() as u64;
        metrics::counter!("omni_calllog_lines_total", "file" => self.account.clone()).increment(count);
        let path = batch.path.display().to_string();
        let mut pending: Vec<Pending> = Vec::with_capacity(batch.lines.len());
        for line in &batch.lines {
            pending.push(self.enqueue(&path, line)?);
        }
        for record in pending {
            record.acknowledged().await?;
        }
        metrics::counter!("omni_calllog_records_stored_total", "file" => self.account.clone()).increment(count);
        let checkpoint = CallLogCheckpoint {
            updated_at: Some(SystemTime::now().into()),
            ..batch.checkpoint
        };
        self.save_checkpoint(&checkpoint).await?;
        tracing::debug!(file = %self.account, lines = count, offset = checkpoint.offset, "lines stored");
        Ok(checkpoint)
    }

    fn enqueue(&self, path: &str, line: &Line) -> Result<Pending, ProduceError> {
        let ids = asterisk::line_ids(&self.account, &line.bytes, &self.settings);
        let mut attributes: HashMap<String, String> = self.settings.attributes().into_iter().collect();
        attributes.insert(asterisk::FILE_ATTRIBUTE.to_owned(), path.to_owned());
        attributes.insert(asterisk::OFFSET_ATTRIBUTE.to_owned(), line.offset.to_string());
        if !line.complete {
            attributes.insert(asterisk::INCOMPLETE_ATTRIBUTE.to_owned(), "true".to_owned());
            metrics::counter!("omni_calllog_incomplete_lines_total", "file" => self.account.clone()).increment(1);
            tracing::warn!(file = %self.account, path, offset = line.offset, bytes = line.bytes.len(), "a line without its newline is stored as it is (it will be dead-lettered)");
        }
        let now = SystemTime::now();
        let record = RawRecord {
            event_id: ids.event_id.clone(),
            channel: Channel::Voice as i32,
            provider: asterisk::PROVIDER.to_owned(),
            account: self.account.clone(),
            connector_id: self.connector_id.clone(),
            received_at: Some(now.into()),
            provider_message_id: ids.provider_message_id,
            content_type: asterisk::CONTENT_TYPE.to_owned(),
            payload: line.bytes.clone(),
            attributes,
        };
        let headers = CloudEvent {
            id: &ids.event_id,
            kind: "omni.v1.RawRecord",
            source: &self.source,
            subject: None,
            time: now,
        }
        .to_headers();
        // Keyed by the conversation's fields: one customer's calls stay in order.
        self.producer.enqueue(
            &raw_topic(Channel::Voice).expect("the voice channel has a family"),
            ids.partition_key.as_bytes(),
            &record.encode_to_vec(),
            headers,
        )
    }

    async fn save_checkpoint(&self, checkpoint: &CallLogCheckpoint) -> Result<(), ProduceError> {
        let headers = omni_kafka::state::headers();
        self.producer
            .send(
                topics::STATE_CALLLOG,
                self.checkpoint_key.as_bytes(),
                &checkpoint.encode_to_vec(),
                headers,
            )
            .await?;
        metrics::gauge!("omni_calllog_checkpoint_offset", "file" => self.account.clone()).set(checkpoint.offset as f64);
        Ok(())
    }
}

/// The wait before the next try, doubling up to [`MAX_BACKOFF`].
fn next_backoff(backoff: &mut Duration, poll_interval: Duration) -> Duration {
    let wait = (*backoff).max(poll_interval);
    *backoff = (wait * 2).min(MAX_BACKOFF);
    wait
}
