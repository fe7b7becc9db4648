//! A local stand-in for the hosts that serve customers' files as the providers document them,
//! on two listeners (the provider, and a CDN it redirects to):
//!
//! - Slack (<https://api.slack.com/types/file#authentication>): `GET url_private` with
//!   `Authorization: Bearer <bot token>` serves the file; without the right token Slack answers
//!   `200` with its HTML sign-in page.
//! - Meta's CDN (Messenger and Instagram `payload.url`): a signed URL served to anyone;
//!   Instagram's `lookaside.fbsbx.com/ig_messaging_cdn/` may redirect to the CDN.
//! - Twilio (<https://www.twilio.com/docs/messaging/api/media-resource>): the Media resource
//!   takes HTTP Basic `<AccountSid>:<AuthToken>` (else `401` with Twilio's error 20003), may
//!   answer `404` for a moment after the webhook, then redirects (`307`) to a short-lived CDN URL
//!   that, like S3's signed URLs, refuses a request that carries credentials too (`400`).
//! - X DM media (<https://developer.x.com/en/docs/twitter-api/v1/direct-messages/message-attachments/guides/retrieving-media>):
//!   served only to a `GET` signed with OAuth 1.0a as the account, else `401` with X's error 32.
//!   The signature is checked here by the recipe of
//!   <https://developer.x.com/en/docs/authentication/oauth-1-0a/creating-a-signature>, written
//!   with the `hmac` and `sha1` crates directly (omni signs with the `oauth1-request` crate).
//!
//! Every request is recorded with the listener, path and `Authorization` header it came with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use serde_json::json;

/// Which listener a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listener {
    /// The provider (Slack's files host, Meta's CDN, Twilio's API).
    Provider,
    /// The CDN the provider redirects to.
    Cdn,
}

/// One request taken.
#[derive(Clone, Debug)]
pub struct Taken {
    /// The listener.
    pub listener: Listener,
    /// Path and query.
    pub path: String,
    /// The `Authorization` header, empty when none.
    pub authorization: String,
    /// The status answered.
    pub status: u16,
}

/// What a refused request gets.
#[derive(Clone, Copy)]
enum Refusal {
    SlackSignIn,
    TwilioUnauthorized,
    SignedUrl,
    XUnauthorized,
}

/// The OAuth 1.0a keys an X medium is served for.
#[derive(Clone, Debug)]
pub struct OAuth1Keys {
    /// The app's API key.
    pub consumer_key: String,
    /// Its secret.
    pub consumer_secret: String,
    /// The account's access token.
    pub token: String,
    /// Its secret.
    pub token_secret: String,
}

#[derive(Clone)]
enum Answer {
    Bytes { bytes: Vec<u8>, content_type: String },
    Redirect(String),
}

/// What a request must carry to be served.
#[derive(Clone)]
enum Credentials {
    /// Exactly this `Authorization`; empty: none.
    Exact(String),
    /// An OAuth 1.0a signature with these keys.
    OAuth1(OAuth1Keys),
}

impl Credentials {
    fn admit(&self, authorization: &str, base_url: &str, path_and_query: &str) -> bool {
        match self {
            Self::Exact(expected) => expected == authorization,
            Self::OAuth1(keys) => oauth1_signed(authorization, keys, base_url, path_and_query),
        }
    }
}

#[derive(Clone)]
struct Entry {
    credentials: Credentials,
    refusal: Refusal,
    not_found_first: u32,
    answer: Answer,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<(Listener, String), Entry>,
    taken: Vec<Taken>,
}

/// The stand-in's state, shared with the test.
#[derive(Clone)]
pub struct MediaFiles {
    /// The provider listener's base URL.
    pub url: String,
    /// The CDN listener's base URL.
    pub cdn_url: String,
    inner: Arc<Mutex<Inner>>,
}

impl MediaFiles {
    /// Starts both listeners on loopback.
    pub async fn start() -> anyhow::Result<MediaFiles> {
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let url = listen(Listener::Provider, inner.clone()).await?;
        let cdn_url = listen(Listener::Cdn, inner.clone()).await?;
        Ok(MediaFiles { url, cdn_url, inner })
    }

    /// A Slack file at `path` (`/files-pri/<team>-<file>/<name>`) for `bot_token`; its URL.
    pub fn slack_file(&self, path: &str, bytes: Vec<u8>, content_type: &str, bot_token: &str) -> String {
        let answer = Answer::Bytes {
            bytes,
            content_type: content_type.to_owned(),
        };
        self.put(
            Listener::Provider,
            path,
            Credentials::Exact(format!("Bearer {bot_token}")),
            Refusal::SlackSignIn,
            0,
            answer,
        );
        format!("{}{path}", self.url)
    }

    /// A file on Meta's CDN (on `listener`) at a signed `path_and_query`, served to any request
    /// without credentials; its URL.
    pub fn cdn_file(&self, listener: Listener, path_and_query: &str, bytes: Vec<u8>, content_type: &str) -> String {
        let answer = Answer::Bytes {
            bytes,
            content_type: content_type.to_owned(),
        };
        self.put(
            listener,
            path_and_query,
            Credentials::Exact(String::new()),
            Refusal::SignedUrl,
            0,
            answer,
        );
        format!("{}{path_and_query}", self.base(listener))
    }

    /// A redirect at `path_and_query` on the provider to `to` (Instagram's lookaside); its URL.
    pub fn cdn_redirect(&self, path_and_query: &str, to: &str) -> String {
        let answer = Answer::Redirect(to.to_owned());
        self.put(
            Listener::Provider,
            path_and_query,
            Credentials::Exact(String::new()),
            Refusal::SignedUrl,
            0,
            answer,
        );
        format!("{}{path_and_query}", self.url)
    }

    /// A Twilio Media resource of account `sid` (auth token `token`) that answers 404
    /// `not_found_first` times, then redirects to the file on the CDN; its `MediaUrl`.
    #[allow(clippy::too_many_arguments)]
    pub fn twilio_medium(
        &self,
        sid: &str,
        token: &str,
        message: &str,
        medium: &str,
        bytes: Vec<u8>,
        content_type: &str,
        not_found_first: u32,
    ) -> String {
        let cdn_path = format!("/{sid}/{}", medium.to_ascii_lowercase());
        let cdn = self.cdn_file(Listener::Cdn, &cdn_path, bytes, content_type);
        let path = format!("/2010-04-01/Accounts/{sid}/Messages/{message}/Media/{medium}");
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"))
        );
        self.put(
            Listener::Provider,
            &path,
            Credentials::Exact(basic),
            Refusal::TwilioUnauthorized,
            not_found_first,
            Answer::Redirect(cdn),
        );
        format!("{}{path}", self.url)
    }

    /// An X DM medium at `path_and_query` on the provider, served to requests signed with
    /// `keys`; its URL.
    pub fn x_medium(&self, path_and_query: &str, bytes: Vec<u8>, content_type: &str, keys: OAuth1Keys) -> String {
        let answer = Answer::Bytes {
            bytes,
            content_type: content_type.to_owned(),
        };
        self.put(
            Listener::Provider,
            path_and_query,
            Credentials::OAuth1(keys),
            Refusal::XUnauthorized,
            0,
            answer,
        );
        format!("{}{path_and_query}", self.url)
    }

    /// Every request so far.
    pub fn taken(&self) -> Vec<Taken> {
        self.inner.lock().unwrap().taken.clone()
    }

    fn base(&self, listener: Listener) -> &str {
        match listener {
            Listener::Provider => &self.url,
            Listener::Cdn => &self.cdn_url,
        }
    }

    fn put(&self, listener: Listener, path: &str, credentials: Credentials, refusal: Refusal, not_found_first: u32, answer: Answer) {
        let entry = Entry {
            credentials,
            refusal,
            not_found_first,
            answer,
        };
        self.inner.lock().unwrap().entries.insert((listener, path.to_owned()), entry);
    }
}

async fn listen(listener: Listener, inner: Arc<Mutex<Inner>>) -> anyhow::Result<String> {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", socket.local_addr()?);
    let app = axum::Router::new().fallback(answer).with_state((listener, url.clone(), inner));
    tokio::spawn(async move { axum::serve(socket, app).await });
    Ok(url)
}

/// Whether `authorization` is `keys`' OAuth 1.0a HMAC-SHA1 signature of `GET base_url+path`.
fn oauth1_signed(authorization: &str, keys: &OAuth1Keys, base_url: &str, path_and_query: &str) -> bool {
    use hmac::Mac as _;
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    // RFC 3986 unreserved characters stay; everything else is %XX.
    const RESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    let encode = |value: &str| utf8_percent_encode(value, RESERVED).to_string();
    let Some(fields) = authorization.strip_prefix("OAuth ") else {
        return false;
    };
    let mut parameters: Vec<(String, String)> = Vec::new();
    let mut signature = None;
    for field in fields.split(',') {
        let Some((name, value)) = field.trim().split_once('=') else {
            return false;
        };
        let value = percent_encoding::percent_decode_str(value.trim_matches('"'))
            .decode_utf8_lossy()
            .into_owned();
        match name {
            "oauth_signature" => signature = Some(value),
            "realm" => {}
            _ => parameters.push((name.to_owned(), value)),
        }
    }
    let given = |name: &str| parameters.iter().any(|(n, v)| n == name && *v == keys_value(keys, name));
    if !given("oauth_consumer_key") || !given("oauth_token") || !given("oauth_signature_method") {
        return false;
    }
    // A nonce, and a timestamp within five minutes of now (X refuses stale ones).
    let value = |name: &str| parameters.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fresh = value("oauth_timestamp")
        .and_then(|t| t.parse::<u64>().ok())
        .is_some_and(|t| t.abs_diff(now) <= 300);
    if !fresh || value("oauth_nonce").is_none_or(str::is_empty) {
        return false;
    }
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    parameters.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
    let mut encoded: Vec<(String, String)> = parameters.iter().map(|(n, v)| (encode(n), encode(v))).collect();
    encoded.sort();
    let parameter_string = encoded.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&");
    let base_string = format!("GET&{}&{}", encode(&format!("{base_url}{path}")), encode(&parameter_string));
    let key = format!("{}&{}", encode(&keys.consumer_secret), encode(&keys.token_secret));
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(base_string.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    signature.as_deref() == Some(expected.as_str())
}

fn keys_value(keys: &OAuth1Keys, name: &str) -> String {
    match name {
        "oauth_consumer_key" => keys.consumer_key.clone(),
        "oauth_token" => keys.token.clone(),
        "oauth_signature_method" => "HMAC-SHA1".to_owned(),
        _ => String::new(),
    }
}

async fn answer(State((listener, base_url, inner)): State<(Listener, String, Arc<Mutex<Inner>>)>, request: Request) -> Response {
    let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut inner = inner.lock().unwrap();
    let response = match inner.entries.get_mut(&(listener, path.clone())) {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(entry) if !entry.credentials.admit(&authorization, &base_url, &path) => refuse(entry.refusal),
        Some(entry) if entry.not_found_first > 0 => {
            entry.not_found_first -= 1;
            twilio_error(StatusCode::NOT_FOUND, 20404, "The requested resource was not found")
        }
        Some(Entry {
            answer: Answer::Redirect(to),
            ..
        }) => Redirect::temporary(to).into_response(),
        Some(Entry {
            answer: Answer::Bytes { bytes, content_type },
            ..
        }) => ([(header::CONTENT_TYPE, content_type.clone())], bytes.clone()).into_response(),
    };
    let status = response.status().as_u16();
    inner.taken.push(Taken {
        listener,
        path,
        authorization,
        status,
    });
    response
}

fn refuse(refusal: Refusal) -> Response {
    match refusal {
        Refusal::SlackSignIn => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!DOCTYPE html><html><title>Sign in | Slack</title></html>",
        )
            .into_response(),
        Refusal::TwilioUnauthorized => twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate"),
        Refusal::XUnauthorized => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"errors": [{"code": 32, "message": "Could not authenticate you."}]})),
        )
            .into_response(),
        Refusal::SignedUrl => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/xml")],
            "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>",
        )
            .into_response(),
    }
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({"code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status.as_u16()});
    (status, axum::Json(body)).into_response()
}
