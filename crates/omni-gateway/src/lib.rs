//! The webhook gateway: HTTP channels into the raw topics.
//!
//! Every request is checked (authentication, size, shape) before anything is stored, then its
//! exact body is written to the channel family's raw topic as an `omni.v1.RawRecord`, and only
//! once the broker acknowledged the record does the caller get a 2xx. Any failure answers an
//! error and stores nothing the caller was told was stored, so the caller's retry covers it;
//! a retried message gets the same deterministic event id and is recognised downstream.
//!
//! Provider webhooks answer at `/webhooks/<provider>/<account>` (see the `webhooks` module and
//! `omni_channels::webhook`): verified before anything else, one raw record per item, the
//! provider's expected 2xx only after every record was acknowledged.
//!
//! Status codes of `POST /v1/messages`: 202 stored; 400 bad body (every problem listed); 401 bad or missing token;
//! 413 body over `max_body_bytes`; 503 when the broker did not acknowledge within
//! `ack_timeout_ms` (with `Retry-After`).

pub mod chat;
pub mod config;
pub mod files;
mod http_api;
mod webhooks;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use omni_channels::webhook::WebhookAccount;
use omni_kafka::{Producer, topics};
use omni_runtime::ServiceContext;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use config::{GatewayConfig, GatewayServiceConfig};

/// Shared by every request handler.
pub struct GatewayState {
    producer: Producer,
    connector_id: String,
    source: String,
    /// SHA-256 of each API token, by account; digests compare in constant time at equal length.
    api_tokens: BTreeMap<String, [u8; 32]>,
    /// Webhook accounts: provider -> account -> secrets.
    webhook_accounts: BTreeMap<String, BTreeMap<String, WebhookAccount>>,
    /// The website chat's accounts and limits.
    chat: Arc<chat::Chat>,
}

impl GatewayState {
    /// The account whose token this is, comparing against every token in constant time.
    fn account_for_token(&self, token: &str) -> Option<&str> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (account, digest) in &self.api_tokens {
            if bool::from(digest.ct_eq(&presented)) {
                found = Some(account.as_str());
            }
        }
        found
    }
}

/// Builds the HTTP application.
pub fn app(config: &GatewayConfig, producer: Producer) -> Router {
    app_with_chat(config, producer, Arc::new(chat::Chat::new(&config.chat)))
}

/// [`app`] with the chat's state made by the caller (who feeds it the agents' answers).
pub fn app_with_chat(config: &GatewayConfig, producer: Producer, chat: Arc<chat::Chat>) -> Router {
    let state = Arc::new(GatewayState {
        producer,
        connector_id: config.connector_id.clone(),
        source: format!("omni/gateway/{}", config.connector_id),
        api_tokens: config
            .api_tokens
            .iter()
            .map(|(account, token)| (account.clone(), Sha256::digest(token.as_bytes()).into()))
            .collect(),
        webhook_accounts: config.webhook_accounts(),
        chat,
    });
    Router::new()
        .merge(http_api::routes())
        .merge(webhooks::routes())
        .merge(chat::routes())
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}

/// Runs the gateway until shutdown.
pub async fn run(config: GatewayServiceConfig, context: ServiceContext) -> anyhow::Result<()> {
    let client_id = format!("omni-gateway-{}", config.service.connector_id);
    context.readiness.register("kafka");
    context.readiness.register("listener");
    let producer = Producer::with_ack_timeout(&config.kafka, &client_id, config.service.ack_timeout_ms)?;
    topics::ensure_topics_until_ready(&config.kafka, &client_id, &context).await?;
    let listener = tokio::net::TcpListener::bind(&config.service.listen)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", config.service.listen))?;
    tracing::info!(listen = %config.service.listen, "gateway listening");
    let development = config.service.development_webhook_accounts();
    if !development.is_empty() {
        // Accepted on loopback for `make run` and tests; anyone who reaches this port through a
        // proxy could sign with these published secrets.
        tracing::warn!(
            accounts = %development.join(", "),
            "webhook accounts use the published development secrets: set real ones before exposing the gateway"
        );
    }
    let development_chat: Vec<&str> = config
        .service
        .chat
        .iter()
        .filter(|(_, account)| account.secret == chat::config::DEVELOPMENT_SECRET)
        .map(|(name, _)| name.as_str())
        .collect();
    if !development_chat.is_empty() {
        tracing::warn!(accounts = %development_chat.join(", "), "chat accounts use the published development secret: set real ones before exposing the gateway");
    }
    context.readiness.ready("listener");
    // Signed file links (the router makes them) are served wherever a secret is set.
    let serves_links = !config.objects.link_secret.is_empty();
    let objects = if serves_links || config.service.chat.values().any(|account| account.max_image_bytes > 0) {
        omni_objects::Objects::open(&config.objects.url)?
    } else {
        None
    };
    let files = objects.clone().filter(|_| serves_links);
    let mut chat = chat::Chat::new(&config.service.chat)
        .with_objects(objects)
        .with_shutdown(context.shutdown.clone());
    let mut presence = None;
    if !config.service.chat.is_empty() {
        chat::answers::follow(&config.kafka, &client_id, chat.answers(), context.shutdown.clone())?;
        let open_chats = chat::presence::Presence::new(producer.clone(), &config.service.connector_id);
        tokio::spawn(open_chats.clone().refresh(context.shutdown.clone()));
        chat = chat.with_presence(open_chats.clone());
        presence = Some(open_chats);
    }
    let chat = Arc::new(chat);
    let mut app = app_with_chat(&config.service, producer.clone(), chat);
    if let Some(objects) = files {
        app = app.merge(files::routes(objects, &config.objects.link_secret));
    }
    // The peer's address: the chat's limits per IP (behind a proxy, the proxy's).
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(context.shutdown.clone().cancelled_owned())
        .await?;
    if let Some(presence) = presence {
        presence.forget_all();
    }
    producer.flush(Duration::from_secs(5)).ok();
    Ok(())
}
