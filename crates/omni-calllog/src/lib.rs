//! The call-log connector: Asterisk CDR files (`cdr_csv`'s `Master.csv`) into `omni.raw.voice.v1`.
//!
//! For each file in `[calllog.files]` it follows the file as Asterisk appends to it and stores
//! every complete line as one raw record (provider `asterisk`, content type `text/csv`, payload
//! the exact line bytes with their newline), keyed by the call's conversation fields so one
//! customer's calls stay in order. The file's `[csv]` options, time zone and inbound contexts
//! travel in the record's attributes; `omni_channels::asterisk` reads the line into a voice event.
//! A line that is not a CDR is stored all the same (the normalizer dead-letters it with the
//! reason); nothing is skipped.
//!
//! Checkpoints cannot lose or double calls:
//! - per file, the byte offset after the last stored line and the file's identity (device, inode
//!   and the SHA-256 of its first line) live in the compacted topic `omni.state.calllog.v1`,
//!   keyed `file/<connector id>/<account>`;
//! - a batch's records are all acknowledged by the broker before the checkpoint moves past them;
//!   a failure or a crash leaves it where it was, the lines are read again, and their
//!   deterministic event ids (over `uniqueid`, else the line bytes) make the copies recognisable
//!   downstream;
//! - a last line without its newline waits for it; a rotated file (renamed away, a new one
//!   created) is read to its end before the new one is read from its start, also after a restart
//!   (the checkpoint's file is looked for beside the path); a truncated file is read from its start.
//!
//! See [`tailer`] for the file handling. Files are only read, never moved or changed.

pub mod config;
mod reader;
pub mod tailer;

use std::collections::HashMap;
use std::time::Duration;

use omni_kafka::{Producer, topics};
use omni_proto::v1::CallLogCheckpoint;
use omni_runtime::ServiceContext;
use prost::Message as _;

pub use config::{CallLogConfig, CallLogServiceConfig, FileConfig};

/// The checkpoint key of a file.
pub fn checkpoint_key(connector_id: &str, account: &str) -> String {
    format!("file/{connector_id}/{account}")
}

/// Runs the connector until shutdown: one task per file.
pub async fn run(config: CallLogServiceConfig, context: ServiceContext) -> anyhow::Result<()> {
    let client_id = format!("omni-calllog-{}", config.service.connector_id);
    context.readiness.register("kafka");
    context.readiness.register("checkpoints");
    topics::ensure_topics_until_ready(&config.kafka, &client_id, &context).await?;
    if context.shutdown.is_cancelled() {
        return Ok(());
    }
    let producer = Producer::new(&config.kafka, &client_id)?;
    let restored = omni_kafka::state::read_all(&config.kafka, &client_id, topics::STATE_CALLLOG, Duration::from_secs(120)).await?;
    let checkpoints: HashMap<String, CallLogCheckpoint> = restored
        .into_iter()
        .filter_map(|(key, value)| Some((String::from_utf8(key).ok()?, CallLogCheckpoint::decode(value.as_slice()).ok()?)))
        .collect();
    context.readiness.ready("checkpoints");
    let mut tasks = tokio::task::JoinSet::new();
    for (account, file) in &config.service.files {
        let key = checkpoint_key(&config.service.connector_id, account);
        let checkpoint = checkpoints.get(&key).cloned().unwrap_or_default();
        let settings = file
            .cdr_settings()
            .map_err(|problem| anyhow::anyhow!("calllog.files.{account}: {problem}"))?;
        let reader = reader::FileReader {
            account: account.clone(),
            settings,
            connector_id: config.service.connector_id.clone(),
            producer: producer.clone(),
            checkpoint_key: key,
            source: format!("omni/calllog/{}", config.service.connector_id),
            poll_interval: Duration::from_millis(config.service.poll_interval_ms),
            readiness: context.readiness.clone(),
        };
        tracing::info!(file = %account, path = %file.path.display(), offset = checkpoint.offset, "following CDR file");
        context.readiness.register(&format!("file:{account}"));
        let tailer = tailer::Tailer::new(file.path.clone(), checkpoint);
        tasks.spawn(reader.run(tailer, context.shutdown.clone()));
    }
    while let Some(joined) = tasks.join_next().await {
        joined?;
    }
    producer.flush(Duration::from_secs(5)).ok();
    Ok(())
}
