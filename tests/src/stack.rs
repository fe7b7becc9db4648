//! The whole pipeline for `make bench` and `make chaos`: broker, gateway, email connector,
//! call-log connector, normalizer and router, with a rule sending every conversation to the
//! Zendesk-shaped helpdesk ([`crate::zendesk`]), which counts tickets and comments exactly and
//! fails on cue. (Request Tracker stays the default destination of the embedded config, so the
//! router waits for it at start; no event is routed there.)

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use prost::Message as _;

use crate::load::Sender;
use crate::zendesk::Zendesk;
use crate::{Mailbox, Pipeline, Service, Usage, free_port};

const ZENDESK_EMAIL: &str = "omni@example.com";
const ZENDESK_TOKEN: &str = "omni-load-token";
/// The signing secret of the Zendesk webhook that announces agents' answers to omni-replies.
pub const ZENDESK_REPLY_SECRET: &str = "omni-load-zendesk-signing-secret";

/// Everything running.
pub struct Stack {
    /// Broker and the four core services.
    pub pipeline: Pipeline,
    /// `omni-calllog`, tailing [`Stack::master_csv`].
    pub calllog: Service,
    /// The helpdesk.
    pub zendesk: Zendesk,
    /// The Asterisk call log the connector tails.
    pub master_csv: PathBuf,
    _dir: tempfile::TempDir,
}

/// The services by name, for reports.
pub const SERVICES: [&str; 5] = ["gateway", "email", "calllog", "normalizer", "router"];

impl Stack {
    /// Starts it all; `extra_env` goes to every service.
    pub async fn start(extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with("", extra_env).await
    }

    /// Starts it all with `extra_toml` added to the services' config file (for settings no
    /// environment variable can name, such as a librdkafka property in `[kafka.properties]`).
    pub async fn start_with(extra_toml: &str, extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let (zendesk, zendesk_url) = Zendesk::start(ZENDESK_EMAIL, ZENDESK_TOKEN).await?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("load.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[[router.rules]]
name = "every conversation to the Zendesk-shaped helpdesk"
destinations = ["zendesk"]

[router.destinations.zendesk]
kind = "zendesk"
base_url = "{zendesk_url}"
email = "{ZENDESK_EMAIL}"
api_token = "{ZENDESK_TOKEN}"
timeout_secs = 5
reply_secret = "{ZENDESK_REPLY_SECRET}"

[replies]
destinations = ["zendesk"]
{extra_toml}
"#
            ),
        )?;
        let config = config.to_string_lossy().to_string();
        let mut env = vec![("OMNI_CONFIG", config.as_str())];
        env.extend_from_slice(extra_env);
        let pipeline = Pipeline::start_with_mailbox(Mailbox::create(), &env).await?;
        let master_csv = dir.path().join("Master.csv");
        let admin = free_port();
        let mut calllog_env = pipeline.env.clone();
        calllog_env.extend([
            ("OMNI__CALLLOG__ADMIN_LISTEN".to_owned(), format!("127.0.0.1:{admin}")),
            ("OMNI__CALLLOG__FILES__PBX__PATH".to_owned(), master_csv.display().to_string()),
            ("OMNI__CALLLOG__POLL_INTERVAL_MS".to_owned(), "100".to_owned()),
        ]);
        let mut calllog = Service::spawn("calllog", admin, &calllog_env);
        calllog.wait_ready().await?;
        // Ready is not yet reading: a measurement that starts before the consumers hold their
        // partitions would count the group join (seconds on tansu) as pipeline time.
        pipeline.normalizer.wait_assigned().await?;
        pipeline.router.wait_assigned().await?;
        Ok(Self {
            pipeline,
            calllog,
            zendesk,
            master_csv,
            _dir: dir,
        })
    }

    /// A sender of load items to this stack.
    pub fn sender(&self) -> Sender {
        Sender::new(&self.pipeline.gateway_url, self.pipeline.mailbox.clone(), self.master_csv.clone())
    }

    /// A service by name (one of [`SERVICES`]).
    pub fn service(&mut self, name: &str) -> &mut Service {
        match name {
            "gateway" => &mut self.pipeline.gateway,
            "email" => &mut self.pipeline.email,
            "calllog" => &mut self.calllog,
            "normalizer" => &mut self.pipeline.normalizer,
            "router" => &mut self.pipeline.router,
            other => panic!("no service {other}"),
        }
    }

    /// CPU and memory of every running service.
    pub fn usage(&mut self) -> Vec<(&'static str, Option<Usage>)> {
        SERVICES.iter().map(|name| (*name, self.service(name).usage())).collect()
    }

    /// The comments in the helpdesk with their arrival times: (text, arrived).
    pub fn helpdesk_comments(&self) -> Vec<(String, SystemTime)> {
        self.zendesk
            .tickets()
            .into_iter()
            .flat_map(|t| t.comments.into_iter().zip(t.arrived))
            .collect()
    }

    /// The decoded conversation events with their record timestamps (ms).
    pub fn conversation_records(&self) -> anyhow::Result<Vec<(omni_proto::v1::ConversationEvent, i64)>> {
        self.pipeline
            .topic(omni_kafka::topics::CONVERSATIONS)?
            .iter()
            .map(|r| Ok((omni_proto::v1::ConversationEvent::decode(r.value.as_slice())?, r.timestamp_ms)))
            .collect()
    }
}

/// Seconds between two times (0 when `to` is earlier).
pub fn seconds_between(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).unwrap_or(Duration::ZERO).as_secs_f64()
}

/// A time from ms since the epoch.
pub fn from_millis(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// The value at quantile `q` of sorted `values` (0 when empty).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
