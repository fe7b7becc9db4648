//! The helpdesk conformance kit (omni-router's `helpdesk::kit`, the same scenarios every
//! adapter's fake runs in the router's unit tests) against the real Request Tracker, through a
//! proxy on loopback that loses an answer or fails a call when the kit asks it to, and passes
//! everything else to RT as it came. What the kit checks is then RT's own behaviour: the ticket
//! a lost creation made is found by omni's custom fields, a lost correspondence is found by its
//! transaction's field, and RT's statuses are classified as the router needs.
//!
//! A lost answer: RT has done the write and answered, and the proxy cuts the connection before
//! the body (the adapter sees a transport error, whatever RT's pace). Each run writes to a
//! fresh conversation (RT keeps its tickets between runs), and counts that conversation's
//! tickets with RT's own search, as `root`.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use omni_e2e::Rt;
use omni_router::helpdesk::Helpdesk;
use omni_router::helpdesk::kit::{self, Failure};
use omni_router::helpdesk::request_tracker::{CF_CONVERSATION, RequestTracker, RequestTrackerConfig};

/// What the proxy does to the next request instead of passing its answer on.
#[derive(Default)]
struct Faults {
    /// The next ticket creation or correspondence reaches RT; its answer never comes back.
    lose_next_write: bool,
    /// The next request is answered with this and never reaches RT.
    fail_next: Option<Failure>,
}

#[derive(Clone)]
struct Proxy {
    rt: String,
    client: reqwest::Client,
    faults: Arc<Mutex<Faults>>,
}

/// A creation (`POST /ticket`) or a follow-up (`POST /ticket/<id>/correspond` or `/comment`).
fn is_write(method: &axum::http::Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/REST/2.0/ticket") else {
        return false;
    };
    method == axum::http::Method::POST && (rest.is_empty() || rest.ends_with("/correspond") || rest.ends_with("/comment"))
}

async fn pass(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Some(failure) = proxy.faults.lock().unwrap().fail_next.take() {
        return failure.response();
    }
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut forwarded = proxy.client.request(parts.method.clone(), format!("{}{path_and_query}", proxy.rt));
    for name in [axum::http::header::AUTHORIZATION, axum::http::header::CONTENT_TYPE] {
        if let Some(value) = parts.headers.get(&name) {
            forwarded = forwarded.header(name, value);
        }
    }
    let answer = match forwarded.body(body).send().await {
        Ok(answer) => answer,
        Err(error) => return (axum::http::StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let lose = is_write(&parts.method, parts.uri.path()) && std::mem::take(&mut proxy.faults.lock().unwrap().lose_next_write);
    let status = answer.status();
    let content_type = answer.headers().get(axum::http::header::CONTENT_TYPE).cloned();
    let bytes = answer.bytes().await.unwrap_or_default();
    // RT has done the write and answered; a lost answer breaks off before its body (the
    // connection is cut), whatever RT's pace and the adapter's timeout.
    let body = if lose {
        let cut = futures::stream::once(async { Err::<axum::body::Bytes, _>(std::io::Error::other("answer lost")) });
        Body::from_stream(cut)
    } else {
        Body::from(bytes)
    };
    let mut response = Response::builder().status(status);
    if let Some(content_type) = content_type {
        response = response.header(axum::http::header::CONTENT_TYPE, content_type);
    }
    response.body(body).unwrap()
}

/// Request Tracker behind the proxy, as the kit drives a helpdesk.
struct RtBehindProxy {
    rt: Rt,
    proxy: String,
    faults: Arc<Mutex<Faults>>,
    conversation: String,
}

impl RtBehindProxy {
    async fn start() -> Self {
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let rt = Rt::from_env().await;
        let faults = Arc::new(Mutex::new(Faults::default()));
        let proxy = Proxy {
            rt: rt.url.clone(),
            client: reqwest::Client::new(),
            faults: faults.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(pass).with_state(proxy);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            rt,
            proxy: url,
            faults,
            conversation: format!(
                "{:0>32}",
                format!(
                    "{}{}",
                    omni_e2e::nonce(),
                    STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                )
            ),
        }
    }
}

/// omni's own RT user, as config/default.toml has it.
fn adapter(base_url: &str, timeout_secs: u64) -> Box<dyn Helpdesk> {
    let config = RequestTrackerConfig {
        base_url: base_url.to_owned(),
        username: Some("omni".into()),
        password: Some("omni-local".into()),
        token: None,
        api_user: None,
        queue: "General".into(),
        timeout_secs,
        subject_tag: String::new(),
    };
    Box::new(RequestTracker::new(config).unwrap())
}

impl kit::Fake for RtBehindProxy {
    /// RT's own pace: a slow answer is no lost one.
    fn adapter(&self) -> Box<dyn Helpdesk> {
        adapter(&self.proxy, 30)
    }

    /// The kit's silent server must be given up on within its 10 s.
    fn adapter_at(&self, base_url: &str) -> Box<dyn Helpdesk> {
        adapter(base_url, 3)
    }

    fn lose_next_write(&self) {
        self.faults.lock().unwrap().lose_next_write = true;
    }

    fn fail_next_call(&self, failure: Failure) {
        self.faults.lock().unwrap().fail_next = Some(failure);
    }

    /// RT's own count of the conversation's tickets (a thread of its own: the kit asks from
    /// inside the test's runtime, and this is a blocking question).
    fn tickets(&self) -> usize {
        let (url, query) = (self.rt.url.clone(), format!("'CF.{{{CF_CONVERSATION}}}' = '{}'", self.conversation));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let path = format!(
                "/tickets?query={}",
                form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
            );
            let found = runtime.block_on(Rt::at(&url).get(&path)).expect("RT answers a search");
            found["total"].as_u64().or_else(|| found["count"].as_u64()).expect("a search total") as usize
        })
        .join()
        .unwrap()
    }

    fn conversation(&self) -> String {
        self.conversation.clone()
    }
}

omni_router::helpdesk_conformance!(RtBehindProxy::start());
