//! `GET /files/<sha256>?name=..&type=..&expires=..&sig=..`: a stored file behind a signed,
//! expiring link ([`omni_objects::links`]), for destinations that get links instead of bytes
//! (the generic webhook destination). 403 for a link whose signature does not check, 410 past
//! its expiry, 404 for a file no longer in the store; nothing is read from the store before the
//! signature checked. The file is served as an attachment under the signed name and type, with
//! `nosniff` and a sandboxing CSP, so an HTML or SVG "photo" never runs in a browser that opens it.
//! At most [`AT_ONCE`] files go out at once (503 with `Retry-After` beyond).

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use omni_objects::Objects;
use omni_objects::links::{self, LinkError};

/// Files served at once: each is held in memory whole while it goes out (a store's file is up
/// to 25 MB), so a link passed around cannot take the gateway's memory.
const AT_ONCE: usize = 8;

struct Files {
    objects: Objects,
    secret: String,
    at_once: tokio::sync::Semaphore,
}

/// The route, serving files of `objects` whose links `secret` signed.
pub fn routes(objects: Objects, secret: &str) -> Router {
    let files = Arc::new(Files {
        objects,
        secret: secret.to_owned(),
        at_once: tokio::sync::Semaphore::new(AT_ONCE),
    });
    Router::new().route("/files/{sha256}", get(serve)).with_state(files)
}

async fn serve(State(files): State<Arc<Files>>, Path(sha256): Path<String>, RawQuery(query): RawQuery) -> Response {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let linked = match links::verify(&files.secret, &sha256, &pairs, SystemTime::now()) {
        Ok(linked) => linked,
        Err(error) => {
            let status = match error {
                LinkError::Forged => StatusCode::FORBIDDEN,
                LinkError::Expired => StatusCode::GONE,
            };
            metrics::counter!("omni_gateway_file_links_total", "outcome" => status.as_u16().to_string()).increment(1);
            return (status, error.to_string()).into_response();
        }
    };
    let Ok(_serving) = files.at_once.try_acquire() else {
        metrics::counter!("omni_gateway_file_links_total", "outcome" => "503").increment(1);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("2"))],
            "busy: try again shortly",
        )
            .into_response();
    };
    let bytes = match files.objects.get_bytes(linked.sha256).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return refused(StatusCode::NOT_FOUND, "the file is no longer kept"),
        Err(error) => {
            tracing::warn!(%error, "a linked file not read from the store");
            return refused(StatusCode::SERVICE_UNAVAILABLE, "the file cannot be read now");
        }
    };
    metrics::counter!("omni_gateway_file_links_total", "outcome" => "200").increment(1);
    let media_type = HeaderValue::from_str(linked.media_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let name: String = percent_encoding::utf8_percent_encode(linked.name, percent_encoding::NON_ALPHANUMERIC).to_string();
    let disposition =
        HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{name}")).unwrap_or(HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, media_type),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox; default-src 'none'"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=300")),
        ],
        bytes,
    )
        .into_response()
}

fn refused(status: StatusCode, message: &'static str) -> Response {
    metrics::counter!("omni_gateway_file_links_total", "outcome" => status.as_u16().to_string()).increment(1);
    (status, message).into_response()
}
