//! A local stand-in for the Telegram Bot API's file download, as
//! <https://core.telegram.org/bots/api#getfile> documents it: `GET /bot<token>/getFile?file_id=`
//! answers `{"ok": true, "result": {"file_id", "file_unique_id", "file_size", "file_path"}}`, and
//! `GET /file/bot<token>/<file_path>` serves the bytes. Another token is `401 Unauthorized` (as
//! the Bot API answers it); an unknown file is `400 Bad Request: invalid file_id`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The stand-in's state, shared with the test.
#[derive(Clone)]
pub struct TelegramFiles {
    token: Arc<String>,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// Requests taken: the path (with the token replaced by `<token>`) and whether it was right.
    requests: Arc<Mutex<Vec<(String, bool)>>>,
}

impl TelegramFiles {
    /// Starts the stand-in for the bot `token`; returns it and its base URL.
    pub async fn start(token: &str) -> anyhow::Result<(TelegramFiles, String)> {
        let api = TelegramFiles {
            token: Arc::new(token.to_owned()),
            files: Arc::default(),
            requests: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/{bot}/getFile", axum::routing::get(get_file))
            .route("/file/{bot}/{*path}", axum::routing::get(download))
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((api, url))
    }

    /// Holds `bytes` as the file `file_id`.
    pub fn add(&self, file_id: &str, bytes: Vec<u8>) {
        self.files.lock().unwrap().insert(file_id.to_owned(), bytes);
    }

    /// Every request so far: (what, whether the token was the bot's).
    pub fn requests(&self) -> Vec<(String, bool)> {
        self.requests.lock().unwrap().clone()
    }

    fn take(&self, what: String, bot: &str) -> bool {
        let right = bot == format!("bot{}", self.token);
        self.requests.lock().unwrap().push((what, right));
        right
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"})),
    )
        .into_response()
}

async fn get_file(State(api): State<TelegramFiles>, Path(bot): Path<String>, Query(query): Query<HashMap<String, String>>) -> Response {
    let file_id = query.get("file_id").cloned().unwrap_or_default();
    if !api.take(format!("getFile {file_id}"), &bot) {
        return unauthorized();
    }
    let Some(size) = api.files.lock().unwrap().get(&file_id).map(Vec::len) else {
        let answer = json!({"ok": false, "error_code": 400, "description": "Bad Request: invalid file_id"});
        return (StatusCode::BAD_REQUEST, axum::Json(answer)).into_response();
    };
    let result = json!({"file_id": file_id, "file_unique_id": "AQAD", "file_size": size, "file_path": format!("photos/{file_id}.jpg")});
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

async fn download(State(api): State<TelegramFiles>, Path((bot, path)): Path<(String, String)>) -> Response {
    if !api.take(format!("file {path}"), &bot) {
        return unauthorized();
    }
    let file_id = path.trim_start_matches("photos/").trim_end_matches(".jpg");
    match api.files.lock().unwrap().get(file_id) {
        Some(bytes) => ([("content-type", "application/octet-stream")], bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
