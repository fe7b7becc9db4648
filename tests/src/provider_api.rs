//! What every local stand-in for a provider's send API shares: one route, each request checked
//! against the provider's reference by a [`Provider`], recorded as a [`Call`], and answered as
//! the provider answers a success, a violation or (on cue) a rate limit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// What one provider's stand-in knows: its route, its reference's rules and its answers.
pub trait Provider: Send + Sync + 'static {
    /// The route (axum syntax, `{name}` for a path parameter).
    const ROUTE: &'static str;

    /// What is wrong with a request by the reference; empty when nothing. `url` is the full URL
    /// it was sent to (from its `Host`), for signatures that cover it.
    fn violations(&self, url: &str, path: &BTreeMap<String, String>, headers: &HeaderMap, body: &Value) -> Vec<String>;

    /// The answer to the `n`th request (from 1) that broke no rule.
    fn accepted(&self, n: usize, body: &Value) -> (StatusCode, Value);

    /// The answer to a request that broke the rules `wrong`.
    fn refused(&self, wrong: &[String]) -> (StatusCode, Value);

    /// The answer while rate limited.
    fn rate_limited(&self) -> (StatusCode, Value);
}

/// One request the stub took, as received.
#[derive(Clone, Debug)]
pub struct Call {
    /// The HTTP status it answered.
    pub status: u16,
    /// The path parameters.
    pub path: BTreeMap<String, String>,
    /// The JSON body.
    pub body: Value,
    /// What was wrong with it by the reference; empty when nothing.
    pub violations: Vec<String>,
}

/// A running stand-in, shared with the test.
pub struct ProviderApi<P> {
    provider: Arc<P>,
    calls: Arc<Mutex<Vec<Call>>>,
    limited: Arc<Mutex<u32>>,
}

impl<P> Clone for ProviderApi<P> {
    fn clone(&self) -> Self {
        Self {
            provider: self.provider.clone(),
            calls: self.calls.clone(),
            limited: self.limited.clone(),
        }
    }
}

impl<P: Provider> ProviderApi<P> {
    /// Starts the stand-in on a free loopback port; returns it and its base URL.
    pub async fn start(provider: P) -> anyhow::Result<(Self, String)> {
        let api = Self {
            provider: Arc::new(provider),
            calls: Arc::default(),
            limited: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route(P::ROUTE, axum::routing::post(take::<P>))
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((api, url))
    }

    /// The next `count` requests are rate limited.
    pub fn rate_limit_next(&self, count: u32) {
        *self.limited.lock().unwrap() = count;
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

async fn take<P: Provider>(
    State(api): State<ProviderApi<P>>,
    Path(path): Path<BTreeMap<String, String>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
    let url = format!("http://{host}{}", uri.path());
    let wrong = api.provider.violations(&url, &path, &headers, &parsed);
    let mut calls = api.calls.lock().unwrap();
    let limited = {
        let mut left = api.limited.lock().unwrap();
        let limited = *left > 0;
        *left = left.saturating_sub(1);
        limited
    };
    let (status, answer) = if limited {
        api.provider.rate_limited()
    } else if wrong.is_empty() {
        let accepted = calls.iter().filter(|call| call.status < 300).count() + 1;
        api.provider.accepted(accepted, &parsed)
    } else {
        api.provider.refused(&wrong)
    };
    calls.push(Call {
        status: status.as_u16(),
        path,
        body: parsed,
        violations: wrong,
    });
    (status, axum::Json(answer))
}
