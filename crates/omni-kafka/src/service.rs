//! The configuration shape every Kafka-based service shares: `[kafka]` plus its own section.

use std::net::SocketAddr;
use std::time::Duration;

use omni_runtime::service::ServiceConfig;
use omni_runtime::{Problems, Settings, Validate};
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

/// `[kafka]` and one service's section: everything such a service reads.
#[derive(Clone, Debug)]
pub struct KafkaService<S> {
    /// `[kafka]`.
    pub kafka: KafkaConfig,
    /// The service's own section.
    pub service: S,
}

impl<S: ServiceSection> ServiceConfig for KafkaService<S> {
    fn from_settings(settings: &Settings, problems: &mut Problems) -> Option<Self> {
        let kafka = settings.section("kafka", problems);
        let service = settings.section(S::NAME, problems);
        Some(Self {
            kafka: kafka?,
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
