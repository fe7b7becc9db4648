//! `POST /v1/messages`: the generic HTTP API channel (see `omni_channels::api`).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use omni_channels::api;
use omni_kafka::topics::raw_topic;
use omni_kafka::{CloudEvent, ProduceError};
use omni_proto::v1::{Channel, RawRecord};
use prost::Message as _;
use serde_json::json;

use crate::GatewayState;

pub(crate) fn routes() -> axum::Router<Arc<GatewayState>> {
    axum::Router::new().route("/v1/messages", post(post_message))
}

async fn post_message(State(state): State<Arc<GatewayState>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let started = Instant::now();
    let response = accept(&state, &headers, body).await;
    let status = response.status();
    metrics::counter!("omni_gateway_requests_total", "route" => "/v1/messages", "status" => status.as_str().to_owned()).increment(1);
    metrics::histogram!("omni_gateway_request_seconds", "route" => "/v1/messages").record(started.elapsed().as_secs_f64());
    response
}

async fn accept(state: &GatewayState, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let Some(account) = bearer_token(headers).and_then(|token| state.account_for_token(token)) else {
        let mut response = error(StatusCode::UNAUTHORIZED, "missing or invalid bearer token", &[]);
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"omni\""));
        return response;
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body is larger than the gateway accepts",
                &[],
            );
        }
        Err(rejection) => return error(StatusCode::BAD_REQUEST, &format!("cannot read request body: {rejection}"), &[]),
    };
    let message = match api::parse(&body) {
        Ok(message) => message,
        Err(problems) => return error(StatusCode::BAD_REQUEST, "invalid message", &problems),
    };
    if let Some(shed) = shed_while_broker_unreachable(state, "message") {
        return shed;
    }
    let ids = api::ids(account, &message, &body);
    let now = SystemTime::now();
    let record = RawRecord {
        event_id: ids.event_id.clone(),
        channel: Channel::Api as i32,
        provider: api::PROVIDER.to_owned(),
        account: account.to_owned(),
        connector_id: state.connector_id.clone(),
        received_at: Some(now.into()),
        provider_message_id: message.external_id.clone().unwrap_or_default(),
        content_type: "application/json".to_owned(),
        payload: body.to_vec(),
        attributes: Default::default(),
    };
    let topic = raw_topic(Channel::Api).expect("the api channel has a family");
    let ce = CloudEvent {
        id: &ids.event_id,
        kind: "omni.v1.RawRecord",
        source: &state.source,
        subject: None,
        time: now,
    };
    match state
        .producer
        .send(&topic, ids.partition_key.as_bytes(), &record.encode_to_vec(), ce.to_headers())
        .await
    {
        Ok(stored) => {
            tracing::debug!(event_id = %ids.event_id, account, partition = stored.partition, offset = stored.offset, "message stored");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "event_id": ids.event_id, "status": "accepted" })),
            )
                .into_response()
        }
        Err(failure) => {
            tracing::warn!(event_id = %ids.event_id, error = %failure, "message not stored");
            not_stored(&failure, "message")
        }
    }
}

/// The answer when a record was not stored: 413 when the broker refused it for good, else 503
/// with `Retry-After`, so the caller retries. `what` names the request in the message.
pub(crate) fn not_stored(failure: &ProduceError, what: &str) -> Response {
    if matches!(failure, ProduceError::Refused(_)) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "the broker refused the record", &[]);
    }
    retry_later(what)
}

/// 503 with `Retry-After` at once, without trying to store anything, while the producer knows no
/// broker is reachable: waiting `ack_timeout_ms` for an acknowledgement that cannot come would
/// only hold the caller (and the gateway's connections) up. Checked after authentication and
/// validation, so a bad request still gets its own answer.
pub(crate) fn shed_while_broker_unreachable(state: &GatewayState, what: &str) -> Option<Response> {
    if !state.producer.broker_unreachable() {
        return None;
    }
    tracing::debug!(what, "broker unreachable: answered 503 without trying");
    Some(retry_later(what))
}

fn retry_later(what: &str) -> Response {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("{what} not stored: the broker is unavailable, retry later"),
        &[],
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

pub(crate) fn error(status: StatusCode, message: &str, details: &[String]) -> Response {
    (status, Json(json!({ "error": message, "details": details }))).into_response()
}
