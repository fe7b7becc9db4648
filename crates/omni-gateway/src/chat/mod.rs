//! Website live chat: the widget (`/chat/widget.js`), a demo shop page and the WebSocket the
//! widget talks to (`docs/web-chat-protocol.md`).
//!
//! Everything a browser sends is hostile input. Before the upgrade: the account must exist, the
//! `Origin` must be one of the account's `allowed_origins` or the gateway's own, and one IP may
//! hold `max_connections_per_ip` sockets (403, 404, 429; nothing written). On the socket: frames
//! over [`ChatAccount::max_frame_bytes`] close it; a message over `max_message_chars`, an image
//! over `max_image_bytes`, an empty message, an image whose bytes are not one of `image_types`
//! or a bad client id is refused (`too_large`, `invalid`), more than `messages_per_minute` per visitor or
//! `ip_messages_per_minute` per IP is `rate_limited` (governor's GCRA); a refused message writes
//! nothing. An image is kept in the object store before its record is written. A stored message is a raw record on `omni.raw.chat.v1` (`omni_channels::web_chat`),
//! acknowledged to the widget only once the broker acknowledged it. The agents' answers come back
//! through the broker ([`answers`]) into every open chat of the conversation; which chats are open
//! is written for omni-sender ([`presence`]), which answers a visitor who left by email.

pub mod answers;
pub mod config;
mod poll;
pub mod presence;
mod socket;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Path, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::GatewayState;
use crate::http_api::error;
pub use config::ChatAccount;

/// The widget and its style sheet, served as they are.
const WIDGET_JS: &str = include_str!("widget.js");
const WIDGET_CSS: &str = include_str!("widget.css");
const DEMO_HTML: &str = include_str!("demo.html");
/// Most the gateway buffers toward one widget (its frames are small: answers, acks).
const MAX_WRITE_BUFFER_BYTES: usize = 128 * 1024;

/// One account's settings and limiters.
pub(crate) struct Account {
    pub(crate) name: String,
    pub(crate) settings: ChatAccount,
    pub(crate) per_visitor: DefaultKeyedRateLimiter<String>,
    pub(crate) per_ip: DefaultKeyedRateLimiter<IpAddr>,
    /// Polls of the HTTP fallback per IP ([`poll`]).
    pub(crate) polls_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    /// `business_hours`, compiled (checked at start); none: always open.
    pub(crate) hours: Option<omni_runtime::hours::BusinessHours>,
}

/// The chat's state: its accounts, the open sockets per IP and the agents' answers.
#[derive(Default)]
pub struct Chat {
    accounts: BTreeMap<String, Arc<Account>>,
    connections: Mutex<HashMap<IpAddr, usize>>,
    answers: Arc<answers::Hub>,
    /// Where visitors' images are kept (`[objects]`); none: no images are taken.
    objects: Option<omni_objects::Objects>,
    /// Where this replica says which chats are open ([`presence`]); none in unit tests.
    presence: Option<Arc<presence::Presence>>,
    /// The last poll of each conversation polled through the fallback ([`poll`]).
    polled: Mutex<HashMap<String, Instant>>,
    /// Cancelled at shutdown: waiting polls answer at once.
    closing: tokio_util::sync::CancellationToken,
}

impl Chat {
    /// The chat of the configured accounts.
    pub fn new(accounts: &BTreeMap<String, ChatAccount>) -> Self {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least 1"));
        let accounts = accounts
            .iter()
            .map(|(name, settings)| {
                let mut settings = settings.clone();
                // As browsers send them (`https://Shop.example:443` -> `https://shop.example`).
                settings.allowed_origins = settings.allowed_origins.iter().map(|origin| normalized_origin(origin)).collect();
                let account = Account {
                    name: name.clone(),
                    per_visitor: RateLimiter::keyed(per_minute(settings.messages_per_minute)),
                    per_ip: RateLimiter::keyed(per_minute(settings.ip_messages_per_minute)),
                    polls_per_ip: RateLimiter::keyed(per_minute(poll::POLLS_PER_MINUTE_PER_IP)),
                    // Validated with the config: a failure here is only a config not checked.
                    hours: settings
                        .business_hours
                        .as_ref()
                        .and_then(|hours| omni_runtime::hours::BusinessHours::new(hours).ok()),
                    settings,
                };
                (name.clone(), Arc::new(account))
            })
            .collect();
        Self {
            accounts,
            connections: Mutex::new(HashMap::new()),
            answers: Arc::default(),
            objects: None,
            presence: None,
            polled: Mutex::default(),
            closing: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Answers waiting polls at once when `shutdown` is cancelled.
    pub fn with_shutdown(mut self, shutdown: tokio_util::sync::CancellationToken) -> Self {
        self.closing = shutdown;
        self
    }

    /// Says which chats are open through `presence`.
    pub fn with_presence(mut self, presence: Arc<presence::Presence>) -> Self {
        self.presence = Some(presence);
        self
    }

    /// Keeps visitors' images in `objects` (without a store no images are taken).
    pub fn with_objects(mut self, objects: Option<omni_objects::Objects>) -> Self {
        self.objects = objects;
        self
    }

    /// The agents' answers, which [`answers::follow`] fills.
    pub fn answers(&self) -> Arc<answers::Hub> {
        self.answers.clone()
    }

    /// Counts a socket from `ip` while the guard lives; `None` when the IP holds `limit` already.
    fn connect(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<Connection> {
        let mut connections = self.connections.lock().expect("not poisoned");
        let open = connections.entry(ip).or_default();
        if *open >= limit {
            return None;
        }
        *open += 1;
        metrics::gauge!("omni_gateway_chat_connections").increment(1.0);
        Some(Connection { chat: self.clone(), ip })
    }
}

/// One open socket, counted per IP until dropped.
pub(crate) struct Connection {
    chat: Arc<Chat>,
    ip: IpAddr,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut connections = self.chat.connections.lock().expect("not poisoned");
        if let Some(open) = connections.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                connections.remove(&self.ip);
            }
        }
        metrics::gauge!("omni_gateway_chat_connections").decrement(1.0);
    }
}

pub(crate) fn routes() -> axum::Router<Arc<GatewayState>> {
    axum::Router::new()
        .route(
            "/chat/widget.js",
            get(|| async { asset(WIDGET_JS, "text/javascript; charset=utf-8") }),
        )
        .route("/chat/widget.css", get(|| async { asset(WIDGET_CSS, "text/css; charset=utf-8") }))
        .route("/chat/demo/{account}", get(demo))
        .route("/chat/ws/{account}", get(upgrade))
        .route("/chat/poll/{account}", post(poll::poll))
        .route("/chat/send/{account}", post(poll::send))
}

/// A refusal before anything was read, counted by reason.
fn refuse(status: StatusCode, reason: &'static str, message: &str) -> Response {
    metrics::counter!("omni_gateway_chat_refusals_total", "reason" => reason).increment(1);
    error(status, message, &[])
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// The demo shop page, under a strict Content-Security-Policy (the widget needs no exception);
/// `?lang=ar` sets the page's language.
async fn demo(
    State(state): State<Arc<GatewayState>>,
    Path(account): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !state.chat.accounts.contains_key(&account) {
        return error(StatusCode::NOT_FOUND, "no such chat account", &[]);
    }
    let lang = query
        .get("lang")
        .filter(|lang| (2..=8).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-'))
        .map_or("en", String::as_str);
    let page = DEMO_HTML
        .replace("{{ACCOUNT}}", &account)
        .replace("{{IDENTITY}}", &demo_identity(&query, &state.chat.accounts[&account].settings))
        .replace("<html lang=\"en\">", &format!("<html lang=\"{lang}\">"));
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'[' | b']'))
        })
        .unwrap_or("localhost");
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws://{host} wss://{host}; frame-ancestors 'none'"
    );
    let mut response = axum::response::Html(page).into_response();
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// The demo page's logged-in customer, as a shop would name them on the widget's tag:
/// `?customer_id=&customer_email=&customer_name=&customer_hash=` become `data-customer-*`
/// attributes. Only values of letters, digits, spaces and `.@+-_` (at most 128 characters) are
/// taken, so nothing a link carries can leave the attribute. Only for an account on the
/// published development secret: on a real account, a link naming the sender's own signed
/// identity would make a victim's chat join the sender's conversation.
fn demo_identity(query: &HashMap<String, String>, settings: &ChatAccount) -> String {
    if settings.secret != config::DEVELOPMENT_SECRET {
        return String::new();
    }
    let safe = |value: &str| {
        (1..=128).contains(&value.chars().count())
            && value
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '@' | '+' | '-' | '_'))
    };
    ["id", "email", "name", "hash"]
        .iter()
        .filter_map(|field| {
            let value = query.get(&format!("customer_{field}")).filter(|v| safe(v))?;
            Some(format!(" data-customer-{field}=\"{value}\""))
        })
        .collect()
}

/// Checks account, origin and connections, then upgrades.
async fn upgrade(
    State(state): State<Arc<GatewayState>>,
    Path(account): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(chat_account) = state.chat.accounts.get(&account).cloned() else {
        return refuse(StatusCode::NOT_FOUND, "account", "no such chat account");
    };
    if !origin_allowed(&headers, &chat_account.settings.allowed_origins) {
        return refuse(StatusCode::FORBIDDEN, "origin", "this page's origin may not open the chat");
    }
    let Some(connection) = state.chat.connect(peer.ip(), chat_account.settings.max_connections_per_ip) else {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "connections",
            "too many chat connections from this address",
        );
    };
    let max_frame = chat_account.settings.max_frame_bytes(state.chat.objects.is_some());
    upgrade
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        // Chat frames are small: tungstenite's default 128 KiB read buffer per socket made an idle
        // connection cost ~130 KiB (make bench-chat); the buffers grow when a frame needs it.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            // Counted against the IP while the socket lives.
            let _connection = connection;
            socket::Session::new(state, chat_account, peer.ip()).run(socket).await;
        })
}

/// An origin as a browser serializes it in the `Origin` header (lowercase host, no default port);
/// as written when it does not parse (config check reports it).
fn normalized_origin(origin: &str) -> String {
    url::Url::parse(origin).map_or_else(|_| origin.to_owned(), |url| url.origin().ascii_serialization())
}

/// Whether the request's `Origin` is allowed: one of `allowed`, or the gateway's own (the
/// `Host` the browser addressed, over http or https). A request without `Origin` is not a page's.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return false;
    };
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chat account with the smallest limits, no origins and no images.
    fn account(secret: &str) -> ChatAccount {
        ChatAccount {
            secret: secret.into(),
            allowed_origins: Vec::new(),
            max_message_chars: 10,
            messages_per_minute: 1,
            ip_messages_per_minute: 1,
            max_connections_per_ip: 1,
            max_image_bytes: 0,
            image_types: Vec::new(),
            business_hours: None,
            busy_after_secs: 0,
        }
    }

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        headers
    }

    #[test]
    fn an_origin_is_allowed_when_listed_or_the_gateways_own() {
        let allowed = vec!["https://shop.example".to_owned()];
        assert!(origin_allowed(
            &headers(Some("https://shop.example"), "chat.shop.example"),
            &allowed
        ));
        assert!(origin_allowed(&headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"), &allowed));
        assert!(!origin_allowed(
            &headers(Some("https://evil.example"), "chat.shop.example"),
            &allowed
        ));
        assert!(!origin_allowed(
            &headers(Some("https://shop.example.evil.example"), "chat.shop.example"),
            &allowed
        ));
        assert!(!origin_allowed(&headers(None, "chat.shop.example"), &allowed));
        assert!(!origin_allowed(&headers(Some("null"), "chat.shop.example"), &allowed));
    }

    #[test]
    fn configured_origins_are_compared_as_browsers_send_them() {
        assert_eq!(normalized_origin("https://Shop.Example:443"), "https://shop.example");
        assert_eq!(normalized_origin("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        let mut accounts = BTreeMap::new();
        accounts.insert(
            "shop".to_owned(),
            ChatAccount {
                allowed_origins: vec!["https://Shop.Example:443".into()],
                ..account("a-long-enough-secret")
            },
        );
        let chat = Chat::new(&accounts);
        let allowed = &chat.accounts["shop"].settings.allowed_origins;
        assert!(origin_allowed(&headers(Some("https://shop.example"), "chat.example"), allowed));
    }

    #[test]
    fn the_demo_page_takes_a_customer_only_of_plain_characters_and_only_on_the_development_secret() {
        let query = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let development = account(config::DEVELOPMENT_SECRET);
        let customer = query(&[("customer_id", "cust-42"), ("customer_email", "ayşe@example.com"), ("other", "x")]);
        assert_eq!(
            demo_identity(&customer, &development),
            " data-customer-id=\"cust-42\" data-customer-email=\"ayşe@example.com\""
        );
        assert_eq!(demo_identity(&customer, &account("a-real-shops-secret")), "", "a real account");
        let hostile = query(&[("customer_id", "x\" onload=\"alert(1)"), ("customer_name", "<script>")]);
        assert_eq!(demo_identity(&hostile, &development), "");
    }

    #[test]
    fn connections_are_counted_per_ip_and_freed_on_drop() {
        let chat = Arc::new(Chat::default());
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let first = chat.connect(ip, 2).unwrap();
        let _second = chat.connect(ip, 2).unwrap();
        assert!(chat.connect(ip, 2).is_none());
        assert!(chat.connect("203.0.113.10".parse().unwrap(), 2).is_some());
        drop(first);
        assert!(chat.connect(ip, 2).is_some());
    }
}
