//! `[gateway]` configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use omni_channels::webhook::{DEVELOPMENT_SECRET_PREFIX, WebhookAccount, webhook_adapter, webhook_adapters};
use omni_kafka::KafkaService;
use omni_runtime::settings::check_socket_addr;
use omni_runtime::{Problems, Validate};
use serde::Deserialize;

/// The documented development token of `config/default.toml`.
pub const DEVELOPMENT_TOKEN: &str = "omni-dev-token";
/// The account name the development webhook accounts are given.
pub const DEVELOPMENT_ACCOUNT: &str = "default";

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
    /// Gives every webhook adapter an account `default` with its published development
    /// secrets (each adapter's `development_account`), unless that account is configured: for
    /// `make run` and the tests. Only accepted while the gateway listens on loopback.
    #[serde(default)]
    pub development_webhooks: bool,
    /// Provider webhook accounts: `[gateway.webhooks.<provider>.<account>]`.
    #[serde(default)]
    pub webhooks: BTreeMap<String, BTreeMap<String, WebhookAccount>>,
    /// Website chat accounts: `[gateway.chat.<account>]` (see `docs/web-chat-protocol.md`).
    #[serde(default)]
    pub chat: BTreeMap<String, crate::chat::ChatAccount>,
}

impl GatewayConfig {
    /// Every webhook account the gateway answers for: provider -> account -> settings; the
    /// configured ones and, with `development_webhooks`, each adapter's development account.
    pub fn webhook_accounts(&self) -> BTreeMap<String, BTreeMap<String, WebhookAccount>> {
        let mut accounts = self.webhooks.clone();
        if self.development_webhooks {
            for adapter in webhook_adapters() {
                accounts
                    .entry(adapter.name().to_owned())
                    .or_default()
                    .entry(DEVELOPMENT_ACCOUNT.to_owned())
                    .or_insert_with(|| adapter.development_account());
            }
        }
        accounts
    }

    /// `provider/account` of every webhook account on a development secret.
    pub fn development_webhook_accounts(&self) -> Vec<String> {
        self.webhook_accounts()
            .iter()
            .flat_map(|(provider, accounts)| {
                accounts
                    .iter()
                    .filter(|(_, account)| is_development(account))
                    .map(move |(account, _)| format!("{provider}/{account}"))
            })
            .collect()
    }
}

fn is_development(account: &WebhookAccount) -> bool {
    account.texts().any(|text| text.starts_with(DEVELOPMENT_SECRET_PREFIX))
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
        problems.check(
            loopback || !self.development_webhooks,
            format!("{prefix}.development_webhooks"),
            "the published development webhook secrets are only accepted while the gateway listens on loopback; set it to false and configure [gateway.webhooks.<provider>.<account>]",
        );
        for (name, account) in &self.chat {
            account.check(name, &format!("{prefix}.chat.{name}"), loopback, problems);
        }
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
                let at = format!("{prefix}.webhooks.{provider}.{account}");
                for problem in adapter.check_account(settings, loopback) {
                    problems.push(&at, problem);
                }
                problems.check(
                    loopback || !is_development(settings),
                    &at,
                    "development secrets (omni-dev-...) are only accepted while the gateway listens on loopback; set the provider's real secret and verify token, or remove the account",
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

omni_kafka::service_section!(GatewayConfig, "gateway");
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
            development_webhooks: false,
            webhooks: Default::default(),
            chat: Default::default(),
        }
    }

    #[test]
    fn a_chat_account_is_checked_and_its_development_secret_kept_to_loopback() {
        let account = |secret: &str, origins: &[&str]| crate::chat::ChatAccount {
            secret: secret.into(),
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            max_message_chars: 4000,
            messages_per_minute: 20,
            ip_messages_per_minute: 120,
            max_connections_per_ip: 20,
            max_image_bytes: 1024,
            image_types: vec!["image/png".into()],
            business_hours: None,
            busy_after_secs: 300,
        };
        let problems_of = |listen: &str, name: &str, chat: crate::chat::ChatAccount| {
            let mut config = config(listen, "a-long-production-token");
            config.chat.insert(name.into(), chat);
            let mut problems = Problems::default();
            config.validate("gateway", &mut problems);
            problems.items().iter().map(|(key, _)| key.clone()).collect::<Vec<_>>()
        };
        let dev = crate::chat::config::DEVELOPMENT_SECRET;
        assert!(problems_of("127.0.0.1:8080", "default", account(dev, &["https://shop.example"])).is_empty());
        assert_eq!(
            problems_of("0.0.0.0:8080", "default", account(dev, &[])),
            ["gateway.chat.default.secret"]
        );
        assert_eq!(
            problems_of(
                "127.0.0.1:8080",
                "shop",
                account("too short", &["https://shop.example/cart", "shop.example"])
            ),
            [
                "gateway.chat.shop.secret",
                "gateway.chat.shop.allowed_origins",
                "gateway.chat.shop.allowed_origins"
            ]
        );
        assert_eq!(
            problems_of("127.0.0.1:8080", "my shop", account("a-long-enough-secret", &[])),
            ["gateway.chat.my shop"]
        );
        // Business hours are checked like the notifier's, under the account's key.
        let mut closed = account("a-long-enough-secret", &[]);
        closed.business_hours = Some(omni_runtime::hours::BusinessHoursConfig {
            timezone: "Mars/Olympus_Mons".into(),
            week: [("monday".to_owned(), vec!["09:00-18:00".to_owned()])].into(),
            holidays: Vec::new(),
        });
        assert_eq!(
            problems_of("127.0.0.1:8080", "shop", closed),
            ["gateway.chat.shop.business_hours.timezone"]
        );
    }

    #[test]
    fn the_embedded_defaults_are_valid_and_give_the_development_accounts() {
        let settings = omni_runtime::Settings::load_from(None, []).unwrap();
        let mut problems = Problems::default();
        let config: GatewayConfig = settings.section("gateway", &mut problems).expect("a gateway section");
        assert!(problems.is_empty(), "{problems}");
        assert!(config.development_webhooks);
        assert_eq!(config.api_tokens.keys().collect::<Vec<_>>(), ["default"]);
        assert_eq!(config.webhook_accounts().len(), webhook_adapters().len());
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

    #[test]
    fn development_webhooks_give_every_adapter_its_default_account_on_loopback_only() {
        let mut config = config("127.0.0.1:8080", "a-long-production-token");
        config.development_webhooks = true;
        let accounts = config.webhook_accounts();
        assert_eq!(accounts.len(), webhook_adapters().len());
        assert_eq!(
            accounts["telegram"][DEVELOPMENT_ACCOUNT],
            webhook_adapter("telegram").unwrap().development_account()
        );
        // A configured `default` account wins over the development one.
        config.webhooks.insert(
            "telegram".into(),
            [(DEVELOPMENT_ACCOUNT.to_owned(), WebhookAccount::new("real-telegram-token"))].into(),
        );
        assert_eq!(
            config.webhook_accounts()["telegram"][DEVELOPMENT_ACCOUNT].secret,
            "real-telegram-token"
        );
        assert!(!config.development_webhook_accounts().contains(&"telegram/default".to_owned()));
        let mut problems = Problems::default();
        config.validate("gateway", &mut problems);
        assert!(problems.is_empty(), "{problems}");
        config.listen = "0.0.0.0:8080".into();
        config.validate("gateway", &mut problems);
        let keys: Vec<&str> = problems.items().iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["gateway.development_webhooks"], "{problems}");
    }

    #[test]
    fn each_provider_checks_its_own_settings() {
        let mut config = config("0.0.0.0:8080", "a-long-production-token");
        config.webhooks.insert(
            "whatsapp".into(),
            [(
                "shop".to_owned(),
                WebhookAccount::new("a-real-app-secret").with("channels", vec!["C1"]),
            )]
            .into(),
        );
        config.webhooks.insert(
            "twilio-sms".into(),
            [("shop".to_owned(), WebhookAccount::new("a-real-auth-token"))].into(),
        );
        config.webhooks.insert(
            "slack".into(),
            [("shop".to_owned(), WebhookAccount::new("omni-dev-slack-signing-secret"))].into(),
        );
        let mut problems = Problems::default();
        config.validate("gateway", &mut problems);
        let text = problems.to_string();
        assert_eq!(problems.items().len(), 3, "{text}");
        assert!(text.contains("unknown field `channels`"), "{text}");
        assert!(text.contains("public_url: required off loopback"), "{text}");
        assert!(
            text.contains("gateway.webhooks.slack.shop") && text.contains("development secrets"),
            "{text}"
        );
    }
}
