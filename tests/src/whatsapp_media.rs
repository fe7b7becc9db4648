//! A local stand-in for the WhatsApp Cloud API's media endpoints, as
//! <https://developers.facebook.com/docs/whatsapp/cloud-api/reference/media> documents them:
//! `GET /<version>/<media id>` with `Authorization: Bearer <token>` answers `{"messaging_product",
//! "url", "mime_type", "sha256", "file_size", "id"}`; `GET <url>` with the same bearer serves the
//! bytes with their `Content-Type`. A wrong or missing token is the Graph API's 401 (code 190).
//! Media can be set to fail (500) a number of times, or to be served as another type.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::Digest as _;

/// One medium the stand-in holds.
#[derive(Clone)]
pub struct Medium {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its media type, as announced.
    pub mime_type: String,
    /// The type it is served as (differs from `mime_type` to misbehave).
    pub served_as: String,
    /// Downloads answered 500 before one succeeds.
    pub failures: u32,
}

/// The stand-in's state, shared with the test.
#[derive(Clone)]
pub struct WhatsAppMedia {
    token: Arc<String>,
    media: Arc<Mutex<HashMap<String, Medium>>>,
    /// Requests taken: (path, whether the bearer token was right).
    requests: Arc<Mutex<Vec<(String, bool)>>>,
}

impl WhatsAppMedia {
    /// Starts the stand-in accepting `token`; returns it and its base URL.
    pub async fn start(token: &str) -> anyhow::Result<(WhatsAppMedia, String)> {
        let api = WhatsAppMedia {
            token: Arc::new(token.to_owned()),
            media: Arc::default(),
            requests: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/whatsapp_business/attachments/", axum::routing::get(download))
            .route("/{version}/{id}", axum::routing::get(info))
            .with_state((api.clone(), url.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((api, url))
    }

    /// Holds `medium` under media id `id`.
    pub fn add(&self, id: &str, medium: Medium) {
        self.media.lock().unwrap().insert(id.to_owned(), medium);
    }

    /// Every request so far: (path, whether its bearer token was the account's).
    pub fn requests(&self) -> Vec<(String, bool)> {
        self.requests.lock().unwrap().clone()
    }

    /// Records the request; whether its token is right.
    fn take(&self, path: &str, headers: &HeaderMap) -> bool {
        let authorized = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {}", self.token));
        self.requests.lock().unwrap().push((path.to_owned(), authorized));
        authorized
    }
}

fn unauthorized() -> Response {
    let error = json!({"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}});
    (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response()
}

async fn info(
    State((api, base)): State<(WhatsAppMedia, String)>,
    Path((_version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !api.take(&format!("/{_version}/{id}"), &headers) {
        return unauthorized();
    }
    let Some(medium) = api.media.lock().unwrap().get(&id).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"message": "Unsupported get request", "code": 100}})),
        )
            .into_response();
    };
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "url": format!("{base}/whatsapp_business/attachments/?mid={id}&ext=1&hash=ATs"),
        "mime_type": medium.mime_type,
        "sha256": hex::encode(sha2::Sha256::digest(&medium.bytes)),
        "file_size": medium.bytes.len().to_string(),
        "id": id,
    }))
    .into_response()
}

async fn download(
    State((api, _)): State<(WhatsAppMedia, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let id = query.get("mid").cloned().unwrap_or_default();
    if !api.take(&format!("/whatsapp_business/attachments/?mid={id}"), &headers) {
        return unauthorized();
    }
    let mut media = api.media.lock().unwrap();
    let Some(medium) = media.get_mut(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if medium.failures > 0 {
        medium.failures -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    ([(header::CONTENT_TYPE, medium.served_as.clone())], medium.bytes.clone()).into_response()
}
