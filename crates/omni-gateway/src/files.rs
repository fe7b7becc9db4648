//! `GET /files/<sha256>?name=..&type=..&expires=..&sig=..`: a stored file behind a signed,
//! expiring link ([`omni_objects::links`]), for destinations that get links instead of bytes
//! (the generic webhook destination). 403 for a link whose signature does not check, 410 past
//! its expiry, 404 for a file no longer in the store; nothing is read from the store before the
//! signature checked. The file is served as an attachment under the signed name and type, with
//! `nosniff` and a sandboxing CSP, so an HTML or SVG "photo" never runs in a browser that opens it.
//! At most `AT_ONCE` (8) files go out at once (503 with `Retry-After` beyond).

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The response to `link` (as the router makes it), status and `Retry-After`.
    async fn get(files: &Arc<Files>, link: &str) -> (StatusCode, Option<String>) {
        let (path, query) = link.split_once('?').expect("a query");
        let sha256 = path.rsplit('/').next().expect("a path").to_owned();
        let response = serve(State(files.clone()), Path(sha256), RawQuery(Some(query.to_owned()))).await;
        let retry_after = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        (response.status(), retry_after)
    }

    #[tokio::test]
    async fn beyond_eight_files_at_once_a_link_is_busy_and_works_again_after() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::open(dir.path().to_str().unwrap()).unwrap().expect("a store");
        let sha256 = objects.put(b"%PDF-1.7 a receipt").await.unwrap();
        let secret = "a-link-secret-of-thirty-two-chars";
        let files = Arc::new(Files {
            objects,
            secret: secret.to_owned(),
            at_once: tokio::sync::Semaphore::new(AT_ONCE),
        });
        let links = links::Links::new("http://gateway.example", secret, Duration::from_secs(3600)).unwrap();
        let link = links.link(&sha256, "receipt.pdf", "application/pdf", SystemTime::now());
        assert_eq!(get(&files, &link).await, (StatusCode::OK, None));
        let serving = files.at_once.acquire_many(AT_ONCE as u32).await.unwrap();
        assert_eq!(get(&files, &link).await, (StatusCode::SERVICE_UNAVAILABLE, Some("2".into())));
        drop(serving);
        assert_eq!(get(&files, &link).await.0, StatusCode::OK);
        // Checked before the limit and the store: a forged or an expired link.
        let forged = links::Links::new(
            "http://gateway.example",
            "another-secret-of-32-characters!",
            Duration::from_secs(3600),
        )
        .unwrap()
        .link(&sha256, "receipt.pdf", "application/pdf", SystemTime::now());
        assert_eq!(get(&files, &forged).await.0, StatusCode::FORBIDDEN);
        let expired = links.link_until(&sha256, "receipt.pdf", "application/pdf", 1);
        assert_eq!(get(&files, &expired).await.0, StatusCode::GONE);
    }
}
