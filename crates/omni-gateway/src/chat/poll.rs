//! The fallback transport, for networks that block WebSockets (a proxy that drops the upgrade, a
//! page whose Content-Security-Policy has no `ws:`): the socket's frames over plain HTTP, long
//! polling for the gateway's, one POST per visitor frame (`docs/web-chat-protocol.md`).
//!
//! - `POST /chat/poll/<account>` `{"hello": {...}, "first": true|false}`: `{"frames": [welcome,
//!   agent...]}`, at once for the first poll of a connection or when an answer after the hello's
//!   `last_seq` is kept, else as soon as one comes or after [`POLL_WAIT`].
//! - `POST /chat/send/<account>` `{"hello": {...}, "frame": {message or image}}`: the `ack` or
//!   `error` frame, with the HTTP status of its code (200, 400, 413, 429 or 503 with Retry-After).
//!
//! The gateway keeps nothing between requests: every request's hello says who the visitor is
//! (the visitor token and the identity hash are signed), so requests may reach any replica. The
//! checks are the socket's: account, `Origin` (echoed in `Access-Control-Allow-Origin` for the
//! allowed ones), connections per IP (a waiting poll or a send being read is one), frame size,
//! message rates; and polls per IP ([`POLLS_PER_MINUTE_PER_IP`]). A send needs the token of a
//! welcome. A visitor who polls with a token counts as present for [`POLL_PRESENCE`] after the
//! last poll ([`super::presence`]). At shutdown polls answer 503 at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::socket::{Hello, Incoming, Session, agent_frame, error};
use super::{Account, Chat, refuse};
use crate::GatewayState;

/// A poll with nothing to say is answered after this (well within proxies' idle timeouts).
pub const POLL_WAIT: Duration = Duration::from_secs(25);
/// A visitor whose last poll is this old has left (a widget polls again at once).
pub const POLL_PRESENCE: Duration = Duration::from_secs(60);
/// Most a poll's body may hold (a hello).
const POLL_BODY_BYTES: usize = 16 * 1024;
/// Polls one IP may make a minute (a widget polls about every 25 s per tab, again on each answer).
pub const POLLS_PER_MINUTE_PER_IP: u32 = 240;
/// A request body not read within this is dropped (a slow upload holds memory and a connection).
const READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct PollRequest {
    hello: Hello,
    /// The first poll of a connection: answered at once (the widget is online with its welcome)
    /// and counted as a chat session.
    #[serde(default)]
    first: bool,
}

#[derive(Deserialize)]
struct SendRequest {
    hello: Hello,
    /// A `message` or `image` frame, as on the socket.
    frame: Incoming,
}

/// Long polling for the welcome and the agents' answers.
pub(crate) async fn poll(
    State(state): State<Arc<GatewayState>>,
    Path(account): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (account, origin) = match admitted(&state, &account, &headers) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    if state.chat.closing.is_cancelled() {
        return allow(closing(), &origin);
    }
    if let Err(wait) = state.chat.admit_poll(&account, peer.ip()) {
        let frame = error(None, "rate_limited", "too many polls from this address", Some(wait));
        return allow(frame_response(frame), &origin);
    }
    let Some(_connection) = state.chat.connect(peer.ip(), account.settings.max_connections_per_ip) else {
        return allow(too_many_connections(), &origin);
    };
    let request: PollRequest = match read(body, POLL_BODY_BYTES).await {
        Ok(request) => request,
        Err(refusal) => return allow(*refusal, &origin),
    };
    let mut session = Session::new(state.clone(), account, peer.ip());
    let (welcome, conversation, after_seq) = session.hello(request.hello, request.first);
    if session.returning() {
        state.chat.keep_polling(&conversation);
    }
    let (missed, mut answers) = state.chat.answers().subscribe(&conversation, after_seq);
    let mut frames = vec![welcome];
    frames.extend(missed.iter().map(|answer| agent_frame(answer)));
    if missed.is_empty() && !request.first {
        tokio::select! {
            answer = answers.recv() => {
                frames.extend(answer.iter().map(|answer| agent_frame(answer)));
                while let Ok(answer) = answers.try_recv() {
                    frames.push(agent_frame(&answer));
                }
            }
            () = tokio::time::sleep(POLL_WAIT) => {}
            () = state.chat.closing.cancelled() => return allow(closing(), &origin),
        }
    }
    let mut response = axum::Json(json!({ "frames": frames })).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    allow(response, &origin)
}

/// One visitor frame: a message or an image, answered with its `ack` or `error` frame.
pub(crate) async fn send(
    State(state): State<Arc<GatewayState>>,
    Path(account): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (account, origin) = match admitted(&state, &account, &headers) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    let Some(_connection) = state.chat.connect(peer.ip(), account.settings.max_connections_per_ip) else {
        return allow(too_many_connections(), &origin);
    };
    // The socket's frame limit, and room for the hello around the frame.
    let limit = account.settings.max_frame_bytes(state.chat.objects.is_some()) + POLL_BODY_BYTES;
    let request: SendRequest = match read(body, limit).await {
        Ok(request) => request,
        Err(refusal) => return allow(*refusal, &origin),
    };
    let mut session = Session::new(state.clone(), account, peer.ip());
    session.hello(request.hello, false);
    // A welcome gave the widget its token before it sends anything: without a valid one, every
    // message would open a conversation of its own (and escape the per-visitor rate).
    let frame = if !session.returning() {
        error(None, "invalid", "poll first: a message needs the token of a welcome", None)
    } else if matches!(request.frame, Incoming::Message { .. } | Incoming::Image { .. }) {
        let answer = session.answer_frame(request.frame).await;
        answer.unwrap_or_else(|| error(None, "invalid", "not answered", None))
    } else {
        error(None, "invalid", "send takes a message or an image frame", None)
    };
    allow(frame_response(frame), &origin)
}

fn too_many_connections() -> Response {
    refuse(
        StatusCode::TOO_MANY_REQUESTS,
        "connections",
        "too many chat connections from this address",
    )
}

/// The gateway is shutting down: ask again shortly (another replica, or this one restarted).
fn closing() -> Response {
    frame_response(error(None, "unavailable", "the gateway is restarting", None))
}

/// The account, when it exists and the request's `Origin` may use it, and that origin.
fn admitted(state: &GatewayState, account: &str, headers: &HeaderMap) -> Result<(Arc<Account>, HeaderValue), Box<Response>> {
    let Some(account) = state.chat.accounts.get(account).cloned() else {
        return Err(Box::new(refuse(StatusCode::NOT_FOUND, "account", "no such chat account")));
    };
    let origin = headers.get(header::ORIGIN).cloned();
    match origin {
        Some(origin) if super::origin_allowed(headers, &account.settings.allowed_origins) => Ok((account, origin)),
        _ => Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "origin",
            "this page's origin may not open the chat",
        ))),
    }
}

/// Reads a JSON body of at most `limit` bytes; a `too_large` or `invalid` error frame otherwise.
async fn read<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, Box<Response>> {
    let bytes: Bytes = match tokio::time::timeout(READ_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            let frame = error(None, "too_large", "the request is larger than this chat takes", None);
            return Err(Box::new(frame_response(frame)));
        }
        Err(_) => return Err(Box::new(StatusCode::REQUEST_TIMEOUT.into_response())),
    };
    serde_json::from_slice(&bytes).map_err(|_| Box::new(frame_response(error(None, "invalid", "not a request of the chat protocol", None))))
}

/// A frame as the response, with the HTTP status its error code stands for.
fn frame_response(frame: Value) -> Response {
    let status = match frame["code"].as_str() {
        None => StatusCode::OK,
        Some("too_large") => StatusCode::PAYLOAD_TOO_LARGE,
        Some("rate_limited") => StatusCode::TOO_MANY_REQUESTS,
        Some("unavailable") => StatusCode::SERVICE_UNAVAILABLE,
        Some(_) => StatusCode::BAD_REQUEST,
    };
    let retry_after = match frame["retry_after_ms"].as_u64() {
        Some(ms) => Some(ms.div_ceil(1000).max(1)),
        None => (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1),
    };
    let mut response = (status, axum::Json(frame)).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Lets the page of an allowed `origin` read the response.
fn allow(mut response: Response, origin: &HeaderValue) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(header::VARY, HeaderValue::from_static("origin"));
    response
}

impl Chat {
    /// Counts a poll against the IP's polls; the wait when there were too many.
    fn admit_poll(&self, account: &Account, ip: std::net::IpAddr) -> Result<(), Duration> {
        use governor::clock::{Clock as _, DefaultClock};
        if account.polls_per_ip.len() > 50_000 {
            account.polls_per_ip.retain_recent();
        }
        let now = DefaultClock::default().now();
        account
            .polls_per_ip
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Counts the conversation's visitor as present until [`POLL_PRESENCE`] after its last poll:
    /// one presence change when the polls begin and one when they stop, none per poll.
    fn keep_polling(self: &Arc<Self>, conversation: &str) {
        let Some(presence) = self.presence.clone() else { return };
        let fresh = {
            let mut polled = self.polled.lock().expect("not poisoned");
            polled.insert(conversation.to_owned(), Instant::now()).is_none()
        };
        if !fresh {
            return;
        }
        let here = presence.enter(conversation);
        let (chat, conversation) = (self.clone(), conversation.to_owned());
        tokio::spawn(async move {
            loop {
                let until = {
                    let mut polled = chat.polled.lock().expect("not poisoned");
                    let Some(last) = polled.get(&conversation).copied() else { break };
                    if last.elapsed() >= POLL_PRESENCE || chat.closing.is_cancelled() {
                        polled.remove(&conversation);
                        break;
                    }
                    last + POLL_PRESENCE
                };
                tokio::select! {
                    () = tokio::time::sleep_until(until.into()) => {}
                    () = chat.closing.cancelled() => {}
                }
            }
            drop(here);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_frame_gets_the_status_of_its_code_and_a_wait_where_there_is_one() {
        let status = |frame: Value| {
            let response = frame_response(frame);
            let wait = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), wait)
        };
        assert_eq!(status(json!({"type": "ack", "client_id": "a"})), (200, None));
        assert_eq!(status(error(Some("a"), "invalid", "x", None)), (400, None));
        assert_eq!(status(error(Some("a"), "too_large", "x", None)), (413, None));
        assert_eq!(
            status(error(Some("a"), "rate_limited", "x", Some(Duration::from_millis(2100)))),
            (429, Some("3".into()))
        );
        assert_eq!(status(error(Some("a"), "unavailable", "x", None)), (503, Some("1".into())));
    }
}
