//! `[gateway]` configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use omni_channels::webhook::{WebhookAccount, webhook_adapter, webhook_adapters};
use omni_kafka::{KafkaService, ServiceSection};
use omni_runtime::settings::check_socket_addr;
use omni_runtime::{Problems, Validate};
use serde::Deserialize;

/// The documented development token of `config/default.toml`.
pub const DEVELOPMENT_TOKEN: &str = "omni-dev-token";
/// Every documented development webhook secret of `config/default.toml` starts with this.
pub const DEVELOPMENT_WEBHOOK_SECRET_PREFIX: &str = "omni-dev-";

/// `[gateway]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the HTTP channels listen.
    pub listen: String,
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub admin_listen: String,
    /// Written into every raw record's `connector_id` and the CloudEvents source.
    pub connector_id: String,
    /// Larger request bodies get 413.
    pub max_body_bytes: usize,
    /// The most a request waits for the broker's acknowledgement before it answers 503; the
    /// record is then not written later either (it is the producer's `message.timeout.ms`).
    pub ack_timeout_ms: u32,
    /// Seconds to finish in-flight requests after SIGTERM.
    pub drain_timeout_secs: u64,
    /// Bearer tokens of `POST /v1/messages`: account name -> token.
    pub api_tokens: BTreeMap<String, String>,
    /// Provider webhook accounts: `[gateway.webhooks.<provider>.<account>]`.
    #[serde(default)]
    pub webhooks: BTreeMap<String, BTreeMap<String, WebhookAccount>>,
}

impl GatewayConfig {
    /// `provider/account` of every webhook account still on a development secret.
    pub fn development_webhook_accounts(&self) -> Vec<String> {
        self.webhooks
            .iter()
            .flat_map(|(provider, accounts)| {
                accounts
                    .iter()
                    .filter(|(_, a)| {
                        a.secret.starts_with(DEVELOPMENT_WEBHOOK_SECRET_PREFIX)
                            || a.verify_token
                                .as_deref()
                                .is_some_and(|t| t.starts_with(DEVELOPMENT_WEBHOOK_SECRET_PREFIX))
                    })
                    .map(move |(account, _)| format!("{provider}/{account}"))
            })
            .collect()
    }
}

impl Validate for GatewayConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        check_socket_addr(&self.listen, format!("{prefix}.listen"), problems);
        check_socket_addr(&self.admin_listen, format!("{prefix}.admin_listen"), problems);
        problems.check(!self.connector_id.is_empty(), format!("{prefix}.connector_id"), "must not be empty");
        problems.check(
            self.max_body_bytes >= 1024,
            format!("{prefix}.max_body_bytes"),
            "must be at least 1024",
        );
        problems.check(
            !self.api_tokens.is_empty(),
            format!("{prefix}.api_tokens"),
            "needs at least one account = token",
        );
        let loopback = self.listen.parse::<SocketAddr>().is_ok_and(|addr| addr.ip().is_loopback());
        for (provider, accounts) in &self.webhooks {
            let Some(adapter) = webhook_adapter(provider) else {
                let known: Vec<&str> = webhook_adapters().iter().map(|a| a.name()).collect();
                problems.push(
                    format!("{prefix}.webhooks.{provider}"),
                    format!("no such provider; known: {}", known.join(", ")),
                );
                continue;
            };
            for (account, settings) in accounts {
                for problem in adapter.check_account(settings) {
                    problems.push(format!("{prefix}.webhooks.{provider}.{account}"), problem);
                }
                let development = settings.secret.starts_with(DEVELOPMENT_WEBHOOK_SECRET_PREFIX)
                    || settings
                        .verify_token
                        .as_deref()
                        .is_some_and(|token| token.starts_with(DEVELOPMENT_WEBHOOK_SECRET_PREFIX));
                problems.check(
                    loopback || !development,
                    format!("{prefix}.webhooks.{provider}.{account}"),
                    "development secrets (omni-dev-...) are only accepted while the gateway listens on loopback; set the provider's real secret and verify token, or remove the account",
                );
                problems.check(
                    loopback || !provider.starts_with("twilio") || settings.public_url.is_some(),
                    format!("{prefix}.webhooks.{provider}.{account}.public_url"),
                    "required off loopback: the exact URL set in Twilio's console (Twilio signs the URL it calls)",
                );
            }
        }
        for (account, token) in &self.api_tokens {
            problems.check(
                token.len() >= 8,
                format!("{prefix}.api_tokens.{account}"),
                "token must be at least 8 characters",
            );
            problems.check(
                loopback || token != DEVELOPMENT_TOKEN,
                format!("{prefix}.api_tokens.{account}"),
                "the development token is only accepted while the gateway listens on loopback; set a real token",
            );
        }
    }
}

/// Everything the gateway reads: `[kafka]` and `[gateway]`.
pub type GatewayServiceConfig = KafkaService<GatewayConfig>;

impl ServiceSection for GatewayConfig {
    const NAME: &'static str = "gateway";

    fn admin_listen(&self) -> &str {
        &self.admin_listen
    }

    fn drain_timeout_secs(&self) -> u64 {
        self.drain_timeout_secs
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, token: &str) -> GatewayConfig {
        GatewayConfig {
            listen: listen.into(),
            admin_listen: "127.0.0.1:9181".into(),
            connector_id: "test".into(),
            max_body_bytes: 4096,
            ack_timeout_ms: 5000,
            drain_timeout_secs: 1,
            api_tokens: [("default".to_owned(), token.to_owned())].into(),
            webhooks: Default::default(),
        }
    }

    #[test]
    fn the_development_token_is_refused_off_loopback() {
        let mut problems = Problems::default();
        config("127.0.0.1:8080", DEVELOPMENT_TOKEN).validate("gateway", &mut problems);
        assert!(problems.is_empty(), "{problems}");
        config("0.0.0.0:8080", DEVELOPMENT_TOKEN).validate("gateway", &mut problems);
        assert_eq!(problems.items().len(), 1, "{problems}");
        assert_eq!(problems.items()[0].0, "gateway.api_tokens.default");
        let mut problems = Problems::default();
        config("0.0.0.0:8080", "a-long-production-token").validate("gateway", &mut problems);
        assert!(problems.is_empty(), "{problems}");
    }
}
