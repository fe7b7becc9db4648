//! What every Kafka-based service shares: its configuration shape (`[kafka]`, `[objects]` and
//! its own section) and the supervision of its pipeline ([`supervise`]).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use omni_runtime::service::ServiceConfig;
use omni_runtime::{Problems, ServiceContext, Settings, Validate};
use serde::de::DeserializeOwned;

use crate::config::KafkaConfig;

/// A service's own section (`[gateway]`, `[normalizer]`, `[router]`).
pub trait ServiceSection: DeserializeOwned + Validate + Send + 'static {
    /// The section's name in the configuration.
    const NAME: &'static str;
    /// The validated `admin_listen` address.
    fn admin_listen(&self) -> &str;
    /// Seconds to drain after a shutdown signal.
    fn drain_timeout_secs(&self) -> u64;
}

/// Implements [`ServiceSection`] for a section struct with the usual `admin_listen: String` and
/// `drain_timeout_secs: u64` fields: `omni_kafka::service_section!(SenderConfig, "sender");`.
#[macro_export]
macro_rules! service_section {
    ($section:ty, $name:literal) => {
        impl $crate::ServiceSection for $section {
            const NAME: &'static str = $name;

            fn admin_listen(&self) -> &str {
                &self.admin_listen
            }

            fn drain_timeout_secs(&self) -> u64 {
                self.drain_timeout_secs
            }
        }
    };
}

/// `[kafka]` and one service's section: everything such a service reads.
#[derive(Clone, Debug)]
pub struct KafkaService<S> {
    /// `[kafka]`.
    pub kafka: KafkaConfig,
    /// `[objects]`: the store of files too large for a record.
    pub objects: omni_objects::ObjectsConfig,
    /// The service's own section.
    pub service: S,
}

impl<S: ServiceSection> ServiceConfig for KafkaService<S> {
    fn from_settings(settings: &Settings, problems: &mut Problems) -> Option<Self> {
        let kafka = settings.section("kafka", problems);
        let objects = settings.section("objects", problems);
        let service = settings.section(S::NAME, problems);
        Some(Self {
            kafka: kafka?,
            objects: objects?,
            service: service?,
        })
    }

    fn admin_listen(&self) -> SocketAddr {
        self.service.admin_listen().parse().expect("validated by the section")
    }

    fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.service.drain_timeout_secs())
    }
}

/// How one run of a service's pipeline ended before shutdown.
#[derive(Debug)]
pub enum Stopped {
    /// A write failed or state could not be read: start again from the last stored offset.
    Restart(String),
    /// The clients cannot be used (bad config, fenced by another replica): the service fails.
    Fatal(String),
}

impl Stopped {
    /// A fatal stop whose reason says what could not be done (`cannot create producer: ...`).
    pub fn fatal(what: &str, error: impl std::fmt::Display) -> Self {
        Self::Fatal(format!("{what}: {error}"))
    }
}

/// A write the broker did not take: restart from the last stored offset.
impl From<crate::ProduceError> for Stopped {
    fn from(error: crate::ProduceError) -> Self {
        Self::Restart(error.to_string())
    }
}

/// State not restored: try again.
impl From<crate::state::StateError> for Stopped {
    fn from(error: crate::state::StateError) -> Self {
        Self::Restart(error.to_string())
    }
}

/// Runs `attempt` until it returns `Ok` (shutdown) or [`Stopped::Fatal`]. After a
/// [`Stopped::Restart`] it marks the readiness check `check` not ready and runs it again after
/// an exponential backoff with jitter (0.5 s doubling to 10 s).
pub async fn supervise<F, Fut>(context: &ServiceContext, check: &str, mut attempt: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Stopped>>,
{
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build();
    while !context.shutdown.is_cancelled() {
        match attempt().await {
            Ok(()) => break,
            Err(Stopped::Fatal(reason)) => anyhow::bail!("{check} cannot go on: {reason}"),
            Err(Stopped::Restart(reason)) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(10));
                context.readiness.not_ready(check, reason.clone());
                tracing::warn!(error = %reason, restart_in_ms = delay.as_millis() as u64, "{check} stopped; restarting from the last stored offset");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = context.shutdown.cancelled() => break,
                }
            }
        }
    }
    Ok(())
}
