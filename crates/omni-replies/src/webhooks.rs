//! `POST /replies/<destination>`: helpdesks that call omni when an agent answered.
//!
//! Each call is verified by the destination's adapter from its headers and raw body before
//! anything is parsed (401: no signature, 403: a wrong one or a signed timestamp outside
//! `replay_window_secs`, 413: over `max_body_bytes`; nothing stored). An answer older than
//! `max_answer_age_secs` is a replay too: 403 for a call that names it (Zendesk, Zammad, the
//! webhook destination); Help Scout and Freshdesk calls name no single answer, so their adapters
//! take only the younger ones. Answers on tickets without an omni conversation id are ignored. A
//! verified call's answers are written to `omni.outbound.v1` and acknowledged by the broker
//! before the 200; a call whose answers cannot be written, or whose helpdesk cannot be asked for
//! now, gets 503 and the helpdesk calls again. A verified call that cannot be read, or whose
//! helpdesk refuses for good to say more, is a dead letter with the reason (400): its body is
//! kept, with its headers but those that carry credentials. The same answer announced twice is
//! the same outbound id, sent to the customer once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use omni_channels::webhook::Rejection;
use omni_kafka::{DeadLetterWriter, Producer};
use omni_proto::v1::dead_letter::Fault;
use omni_router::helpdesk::replies::{self, CallError, ReplyCall, ReplyWebhook};
use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};

/// Shared by every call.
pub struct Intake {
    /// Destination name -> its adapter.
    pub webhooks: BTreeMap<String, Arc<dyn ReplyWebhook>>,
    pub producer: Producer,
    pub deadletters: DeadLetterWriter,
    pub source: String,
    pub window: Duration,
    pub max_age: Duration,
}

/// The routes, with the body limit.
pub fn routes(intake: Arc<Intake>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/replies/{destination}", post(handle))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(intake)
}

async fn handle(State(intake): State<Arc<Intake>>, Path(destination): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(webhook) = intake.webhooks.get(&destination) else {
        return answer(StatusCode::NOT_FOUND, "no such destination takes reply calls");
    };
    let call = ReplyCall {
        headers: &headers,
        body: &body,
        received_at: SystemTime::now(),
        window: intake.window,
        max_age: intake.max_age,
    };
    let (status, message) = take(&intake, &destination, webhook.as_ref(), &call).await;
    metrics::counter!("omni_replies_webhook_calls_total", "destination" => destination.clone(), "status" => status.as_str().to_owned())
        .increment(1);
    answer(status, &message)
}

/// Verifies, reads and writes one call; the status and what to say.
async fn take(intake: &Intake, destination: &str, webhook: &dyn ReplyWebhook, call: &ReplyCall<'_>) -> (StatusCode, String) {
    if let Err(rejection) = webhook.verify(call) {
        return refused(destination, rejection);
    }
    let answers = match webhook.answers(call).await {
        Ok(answers) => answers,
        Err(CallError::Refused(Rejection::BadRequest(reason))) => return unreadable(intake, destination, call, reason).await,
        Err(CallError::Refused(rejection)) => return refused(destination, rejection),
        Err(CallError::Helpdesk(error)) if !error.is_transient() => {
            let reason = format!("the helpdesk refused to tell more about this call: {error}");
            return unreadable(intake, destination, call, reason).await;
        }
        Err(CallError::Helpdesk(error)) => {
            tracing::warn!(destination, %error, "cannot ask the helpdesk about a reply call; it will call again");
            return (StatusCode::SERVICE_UNAVAILABLE, format!("the helpdesk could not be asked: {error}"));
        }
    };
    if let Some(stale) = answers.iter().find(|answer| call.is_stale(answer.written_at)) {
        let reason = format!("answer {} is older than max_answer_age_secs", stale.comment_id);
        return refused(destination, Rejection::Forbidden(reason));
    }
    let answers: Vec<_> = answers
        .into_iter()
        .filter(|answer| replies::is_conversation_id(&answer.conversation_id))
        .collect();
    let count = answers.len();
    for answer in answers {
        let outbound = replies::outbound_message(destination, answer);
        if let Err(error) = crate::write_outbound(&intake.producer, &intake.source, &outbound).await {
            tracing::warn!(destination, %error, "cannot write an agent answer; the helpdesk will call again");
            return (StatusCode::SERVICE_UNAVAILABLE, "the answer could not be stored; call again".into());
        }
        crate::taken(destination, &outbound);
    }
    if count == 0 {
        metrics::counter!("omni_replies_webhook_ignored_total", "destination" => destination.to_owned()).increment(1);
    }
    (StatusCode::OK, format!("{count} answer(s) taken"))
}

fn refused(destination: &str, rejection: Rejection) -> (StatusCode, String) {
    let status = match &rejection {
        Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Rejection::Forbidden(_) => StatusCode::FORBIDDEN,
        Rejection::BadRequest(_) => StatusCode::BAD_REQUEST,
    };
    // Reasons name a header or a time, never a secret or the body.
    tracing::info!(destination, status = status.as_u16(), reason = %rejection, "reply call refused");
    (status, rejection.to_string())
}

/// A verified call that cannot be read: kept as a dead letter, then 400.
async fn unreadable(intake: &Intake, destination: &str, call: &ReplyCall<'_>, reason: String) -> (StatusCode, String) {
    let headers =
        call.headers
            .iter()
            .filter(|(name, _)| !carries_credentials(name.as_str()))
            .fold(OwnedHeaders::new(), |headers, (name, value)| {
                headers.insert(rdkafka::message::Header {
                    key: name.as_str(),
                    value: Some(value.as_bytes()),
                })
            });
    let message = OwnedMessage::new(
        Some(call.body.to_vec()),
        Some(destination.as_bytes().to_vec()),
        format!("http:/replies/{destination}"),
        Timestamp::now(),
        -1,
        -1,
        Some(headers),
    );
    let reason = format!("reply call from `{destination}` not readable: {reason}");
    match intake.deadletters.send(&message, Fault::Input, &reason, "").await {
        Ok(()) => (StatusCode::BAD_REQUEST, reason),
        Err(error) => {
            tracing::warn!(destination, %error, "cannot dead-letter an unreadable reply call");
            (StatusCode::SERVICE_UNAVAILABLE, "the call could not be kept; call again".into())
        }
    }
}

/// Headers never kept in a dead letter: they carry a secret (Freshdesk's static token) or a
/// proxy's credentials.
fn carries_credentials(name: &str) -> bool {
    const SECRET: [&str; 4] = ["x-omni-reply-token", "authorization", "proxy-authorization", "cookie"];
    SECRET.contains(&name.to_ascii_lowercase().as_str())
}

fn answer(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "status": status.as_u16(), "message": message })),
    )
        .into_response()
}
