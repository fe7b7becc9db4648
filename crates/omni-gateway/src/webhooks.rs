//! `GET|POST /webhooks/<provider>/<account>`: provider webhooks through their adapters (see
//! `omni_channels::webhook` for the steps and the contract).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use omni_channels::webhook::{self, Accepted, Rejection, Reply, WebhookAccount, WebhookAdapter, WebhookRequest, webhook_adapter};
use omni_kafka::CloudEvent;
use omni_kafka::topics::raw_topic;
use prost::Message as _;

use crate::GatewayState;
use crate::http_api::{error, not_stored, shed_while_broker_unreachable};

pub(crate) fn routes() -> axum::Router<Arc<GatewayState>> {
    axum::Router::new().route("/webhooks/{provider}/{account}", get(handle).post(handle))
}

async fn handle(
    State(state): State<Arc<GatewayState>>,
    Path((provider, account)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let Some(adapter) = webhook_adapter(&provider) else {
        return error(StatusCode::NOT_FOUND, "no such webhook provider", &[]);
    };
    let response = match state
        .webhook_accounts
        .get(adapter.name())
        .and_then(|accounts| accounts.get(&account))
    {
        None => error(StatusCode::NOT_FOUND, "no such account for this provider", &[]),
        Some(settings) => {
            let request = Incoming {
                adapter,
                account: &account,
                settings,
                method: &method,
                uri: &uri,
                headers: &headers,
            };
            request.answer(&state, body).await
        }
    };
    let status = response.status();
    metrics::counter!("omni_gateway_requests_total", "route" => format!("/webhooks/{}", adapter.name()), "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!("omni_gateway_request_seconds", "route" => format!("/webhooks/{}", adapter.name()))
        .record(started.elapsed().as_secs_f64());
    response
}

struct Incoming<'a> {
    adapter: &'static dyn WebhookAdapter,
    account: &'a str,
    settings: &'a WebhookAccount,
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
}

impl Incoming<'_> {
    async fn answer(&self, state: &GatewayState, body: Result<Bytes, BytesRejection>) -> Response {
        let body = match body {
            Ok(body) => body,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                tracing::info!(
                    provider = self.adapter.name(),
                    account = self.account,
                    "webhook refused: body over max_body_bytes"
                );
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body is larger than the gateway accepts",
                    &[],
                );
            }
            Err(rejection) => return error(StatusCode::BAD_REQUEST, &format!("cannot read request body: {rejection}"), &[]),
        };
        let url = self.public_url();
        let request = WebhookRequest {
            url: &url,
            query: self.uri.query().unwrap_or_default(),
            headers: self.headers,
            body: &body,
            now: SystemTime::now(),
        };
        if self.method == Method::GET {
            // Subscription handshakes (Meta's hub.challenge, X's CRC); providers without one 400.
            return match self.adapter.handshake(self.settings, &request) {
                Ok(reply) => reply_response(reply),
                Err(rejection) => self.rejected(rejection),
            };
        }
        if let Err(rejection) = self.adapter.verify(self.settings, &request) {
            return self.rejected(rejection);
        }
        let items = match self.adapter.accept(self.settings, &request) {
            Ok(Accepted::Reply(reply)) => return reply_response(reply),
            Ok(Accepted::Items(items)) => items,
            Err(rejection) => return self.rejected(rejection),
        };
        match self.store(state, &request, items).await {
            Ok(()) => reply_response(self.adapter.acknowledgement()),
            Err(response) => response,
        }
    }

    /// The URL the provider called, as it sees it: the account's `public_url` (plus this
    /// request's query), else rebuilt from the Host header.
    fn public_url(&self) -> String {
        let query = self.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        match &self.settings.public_url {
            Some(url) => format!("{}{query}", url.split('?').next().unwrap_or(url)),
            None => {
                let host = self.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
                format!("http://{host}{}", self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            }
        }
    }

    fn rejected(&self, rejection: Rejection) -> Response {
        // The reason names what failed (a header, a timestamp), never a secret; a parse error may
        // quote the caller's body, so the reason itself is logged at debug only.
        let kind = match &rejection {
            Rejection::Unauthorized(_) => "unauthorized",
            Rejection::Forbidden(_) => "forbidden",
            Rejection::BadRequest(_) => "bad request",
        };
        tracing::info!(provider = self.adapter.name(), account = self.account, kind, "webhook refused");
        tracing::debug!(provider = self.adapter.name(), account = self.account, reason = %rejection, "webhook refused");
        let status = match &rejection {
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejection::Forbidden(_) => StatusCode::FORBIDDEN,
            Rejection::BadRequest(_) => StatusCode::BAD_REQUEST,
        };
        error(status, &rejection.to_string(), &[])
    }

    /// Writes one raw record per item and waits for every acknowledgement.
    async fn store(
        &self,
        state: &GatewayState,
        request: &WebhookRequest<'_>,
        items: Vec<omni_channels::webhook::Item>,
    ) -> Result<(), Response> {
        if let Some(shed) = shed_while_broker_unreachable(state, "webhook") {
            return Err(shed);
        }
        let Some(topic) = raw_topic(self.adapter.channel()) else {
            return Err(error(StatusCode::INTERNAL_SERVER_ERROR, "adapter has no channel", &[]));
        };
        let stored = webhook::raw_records(self.adapter, self.account, &state.connector_id, request, &items);
        let mut pending = Vec::with_capacity(stored.len());
        for webhook::Stored { record, key } in stored {
            let headers = CloudEvent {
                id: &record.event_id,
                kind: "omni.v1.RawRecord",
                source: &state.source,
                subject: None,
                time: request.now,
            }
            .to_headers();
            // Enqueued in item order (kept within a partition), acknowledged together.
            let enqueued = state.producer.enqueue(&topic, key.as_bytes(), &record.encode_to_vec(), headers);
            pending.push((record.event_id, enqueued));
        }
        let (event_ids, enqueued): (Vec<String>, Vec<_>) = pending.into_iter().unzip();
        let results = futures::future::join_all(enqueued.into_iter().map(|enqueued| async move {
            match enqueued {
                Ok(pending) => pending.acknowledged().await,
                Err(error) => Err(error),
            }
        }))
        .await;
        let mut failure = None;
        for (event_id, result) in event_ids.iter().zip(results) {
            match result {
                Ok(stored) => tracing::debug!(
                    provider = self.adapter.name(),
                    account = self.account,
                    %event_id,
                    partition = stored.partition,
                    offset = stored.offset,
                    "webhook item stored"
                ),
                Err(cause) => {
                    tracing::warn!(provider = self.adapter.name(), account = self.account, %event_id, error = %cause, "webhook item not stored");
                    failure.get_or_insert(cause);
                }
            }
        }
        // Any item not stored: the provider retries the whole delivery; the items that were
        // stored get the same event ids again and are skipped downstream.
        match failure {
            None => Ok(()),
            Some(failure) => Err(not_stored(&failure, "webhook")),
        }
    }
}

fn reply_response(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(reply.content_type))],
        reply.body,
    )
        .into_response()
}
