//! [`Media::fetch`] against in-process servers on loopback: the registry picks the account's
//! fetcher, credentials reach only the provider, redirects only allowed hosts, and what is
//! served must be what the webhook announced, within the limits.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use omni_proto::v1::attachment::Content;
use omni_proto::v1::{Attachment, ProviderReference};
use serde_json::json;

use super::*;

const SID: &str = "AC3f0b7c1e9d2a4b6c8e0f1a2b3c4d5e6f";
const MEDIA_PATH: &str = "/2010-04-01/Accounts/AC3f0b7c1e9d2a4b6c8e0f1a2b3c4d5e6f/Messages/MM6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d/Media/ME0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const PHOTO: &[u8] = b"\x89PNG not really";

/// Requests one server took: (host header, path, authorization header).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A server answering with `answer(path, authorization, other server's base URL)`.
async fn serve(other: Arc<Mutex<String>>, answer: fn(&str, &str, &str) -> Response) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let state = (seen.clone(), other);
    let app = axum::Router::new().fallback(
        move |State((seen, other)): State<(Seen, Arc<Mutex<String>>)>, request: Request| async move {
            let header = |name| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let (path, authorization) = (request.uri().to_string(), header(header::AUTHORIZATION));
            seen.lock()
                .unwrap()
                .push((header(header::HOST), path.clone(), authorization.clone()));
            let other = other.lock().unwrap().clone();
            answer(&path, &authorization, &other)
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app.with_state(state)).await });
    (url, seen)
}

/// The provider: Slack's files (bearer `xoxb-1`) and Twilio's Media resource (redirected to the CDN).
fn provider(path: &str, authorization: &str, cdn: &str) -> Response {
    match path {
        "/files-pri/T1-F1/ok.png" if authorization == "Bearer xoxb-1" => ([(header::CONTENT_TYPE, "image/png")], PHOTO).into_response(),
        "/files-pri/T1-F1/ok.png" => ([(header::CONTENT_TYPE, "text/html")], "<html>sign in</html>").into_response(),
        "/files-pri/T1-F1/away.png" => Redirect::temporary(&format!("{cdn}/elsewhere.png")).into_response(),
        "/files-pri/T1-F1/big.png" => {
            let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![0u8; 1024]));
            (
                [(header::CONTENT_TYPE, "image/png")],
                Body::from_stream(futures::stream::iter(chunks)),
            )
                .into_response()
        }
        MEDIA_PATH => Redirect::temporary(&format!("{cdn}/cdn/ME0a1b.png")).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The CDN: serves anything, and refuses a request with credentials as S3's signed URLs do.
fn cdn(_path: &str, authorization: &str, _provider: &str) -> Response {
    if authorization.is_empty() {
        ([(header::CONTENT_TYPE, "image/png")], PHOTO).into_response()
    } else {
        (StatusCode::BAD_REQUEST, "Only one auth mechanism allowed").into_response()
    }
}

struct Servers {
    provider: String,
    provider_seen: Seen,
    cdn_seen: Seen,
    media: Media,
}

async fn servers(cdn_allowed: bool) -> Servers {
    let (cdn_url, provider_url) = (Arc::new(Mutex::new(String::new())), Arc::new(Mutex::new(String::new())));
    let (provider, provider_seen) = serve(cdn_url.clone(), self::provider).await;
    let (cdn, cdn_seen) = serve(provider_url.clone(), self::cdn).await;
    *cdn_url.lock().unwrap() = cdn.clone();
    *provider_url.lock().unwrap() = provider.clone();
    let mut config = MediaConfig {
        max_file_bytes: 32 * 1024,
        ..MediaConfig::default()
    };
    let mut hosts = vec![provider.clone()];
    if cdn_allowed {
        hosts.push(cdn.clone());
    }
    let slack = json!({"bot_token": "xoxb-1", "media_hosts": hosts});
    let twilio = json!({"account_sid": SID, "auth_token": "tw", "api_base_url": provider, "media_hosts": hosts[1..]});
    config.slack.insert("shop".into(), serde_json::from_value(slack).unwrap());
    config.twilio.insert("shop".into(), serde_json::from_value(twilio).unwrap());
    Servers {
        media: Media::new(config).unwrap(),
        provider,
        provider_seen,
        cdn_seen,
    }
}

async fn fetch(media: &Media, provider: &str, url: &str, media_type: &str) -> Option<Result<Fetched, MediaError>> {
    let reference = ProviderReference {
        provider: provider.into(),
        account: "shop".into(),
        ..Default::default()
    };
    let file = Attachment {
        media_type: media_type.into(),
        content: Some(Content::Reference(url.into())),
        ..Default::default()
    };
    media.fetch(&reference, &file).await
}

#[tokio::test]
async fn a_slack_file_comes_with_the_bot_token_and_a_sign_in_page_does_not() {
    let servers = servers(false).await;
    let ok = format!("{}/files-pri/T1-F1/ok.png", servers.provider);
    let fetched = fetch(&servers.media, "slack", &ok, "image/png").await.unwrap().unwrap();
    assert_eq!((fetched.bytes.as_slice(), fetched.media_type.as_str()), (PHOTO, "image/png"));
    assert!(
        fetch(&servers.media, "instagram", &ok, "image/png").await.is_none(),
        "no such account"
    );
    let mut other = servers.media;
    other.fetchers.get_mut("slack").unwrap().insert("shop".into(), {
        let config: SlackMediaConfig = serde_json::from_value(json!({"bot_token": "xoxb-2", "media_hosts": [servers.provider]})).unwrap();
        providers::IntoFetcher::fetcher(&config).unwrap()
    });
    let refused = fetch(&other, "slack", &ok, "image/png").await.unwrap().unwrap_err();
    assert!(refused.to_string().contains("served as `text/html`"), "{refused}");
}

#[tokio::test]
async fn redirects_to_hosts_not_allowed_and_oversized_bodies_are_refused() {
    let servers = servers(false).await;
    let away = format!("{}/files-pri/T1-F1/away.png", servers.provider);
    let refused = fetch(&servers.media, "slack", &away, "image/png").await.unwrap().unwrap_err();
    assert!(
        matches!(refused, MediaError::Refused(_)) && refused.to_string().contains("media_hosts"),
        "{refused}"
    );
    assert!(servers.cdn_seen.lock().unwrap().is_empty(), "the redirect was not followed");
    let big = format!("{}/files-pri/T1-F1/big.png", servers.provider);
    let refused = fetch(&servers.media, "slack", &big, "image/png").await.unwrap().unwrap_err();
    assert!(refused.to_string().contains("max_file_bytes"), "{refused}");
    let elsewhere = "https://files.slack.com.evil.example/files-pri/T1-F1/ok.png";
    assert!(fetch(&servers.media, "slack", elsewhere, "image/png").await.unwrap().is_err());
}

#[tokio::test]
async fn twilio_media_follow_the_redirect_to_the_cdn_without_the_credentials() {
    let servers = servers(true).await;
    let url = format!("{}{MEDIA_PATH}", servers.provider);
    let fetched = fetch(&servers.media, "twilio-sms", &url, "image/png").await.unwrap().unwrap();
    assert_eq!(fetched.bytes, PHOTO);
    let provider_seen = servers.provider_seen.lock().unwrap().clone();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{SID}:tw"))
    );
    assert_eq!(
        provider_seen.iter().map(|r| (&r.1[..], &r.2[..])).collect::<Vec<_>>(),
        [(MEDIA_PATH, basic.as_str())]
    );
    let cdn_seen = servers.cdn_seen.lock().unwrap().clone();
    assert_eq!(cdn_seen.len(), 1, "{cdn_seen:?}");
    assert_eq!(cdn_seen[0].2, "", "no credentials along the redirect");
}
