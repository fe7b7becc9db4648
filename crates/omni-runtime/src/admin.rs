//! The admin endpoints every service serves on its own port:
//! - `GET /healthz`: 200 while the process runs;
//! - `GET /readyz`: 200 when every readiness check passes, else 503 listing the failing ones;
//! - `GET /metrics`: Prometheus text exposition.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Named readiness checks; the service is ready when at least one is registered and all of them
/// pass, so a service is not reported ready before it declared what it waits for.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<String, Result<(), String>>>>,
}

impl Readiness {
    /// Declares a check that is not ready yet.
    pub fn register(&self, name: &str) {
        self.set(name, Err("starting".to_owned()));
    }

    /// Marks a check ready.
    pub fn ready(&self, name: &str) {
        self.set(name, Ok(()));
    }

    /// Marks a check not ready, with the reason shown by `/readyz`.
    pub fn not_ready(&self, name: &str, reason: impl Into<String>) {
        self.set(name, Err(reason.into()));
    }

    fn set(&self, name: &str, state: Result<(), String>) {
        self.checks.lock().expect("readiness lock").insert(name.to_owned(), state);
    }

    /// Whether every check passes.
    pub fn is_ready(&self) -> bool {
        self.report().0
    }

    fn report(&self) -> (bool, serde_json::Value) {
        let checks = self.checks.lock().expect("readiness lock");
        let ready = !checks.is_empty() && checks.values().all(Result::is_ok);
        let detail: serde_json::Map<String, serde_json::Value> = checks
            .iter()
            .map(|(name, state)| {
                (
                    name.clone(),
                    serde_json::Value::String(state.clone().err().unwrap_or_else(|| "ok".into())),
                )
            })
            .collect();
        (ready, serde_json::json!({ "ready": ready, "checks": detail }))
    }
}

/// Buckets of the `omni_kpi_*` histograms, in seconds: 1, 5, 15, 30 minutes, 1, 2, 4, 8 hours,
/// 1, 2, 7 days.
const KPI_BUCKETS: [f64; 11] = [
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172800.0, 604800.0,
];

/// Installs the process-wide Prometheus recorder (idempotent) and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
                .expect("static buckets are valid")
                // Support KPIs (first response, reply times): a minute to a week.
                .set_buckets_for_metric(Matcher::Prefix("omni_kpi_".to_owned()), &KPI_BUCKETS)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed already (several services in one
            // test process): the first one keeps serving.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    metrics: PrometheusHandle,
}

/// Binds the admin server and serves it until `shutdown` fires.
pub async fn serve(listen: SocketAddr, readiness: Readiness, shutdown: CancellationToken) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen for admin endpoints on {listen}: {error}"))?;
    let state = AdminState {
        readiness,
        metrics: metrics_handle(),
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(state): State<AdminState>| async move { state.metrics.render() }),
        )
        .with_state(state);
    tracing::info!(%listen, "admin endpoints listening");
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::error!(%error, "admin server stopped");
        }
    }))
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, Json<serde_json::Value>) {
    let (ready, report) = state.readiness.report();
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_check_is() {
        let readiness = Readiness::default();
        assert!(!readiness.is_ready(), "nothing registered yet");
        readiness.register("kafka");
        readiness.register("helpdesk");
        assert!(!readiness.is_ready());
        readiness.ready("kafka");
        assert!(!readiness.is_ready());
        readiness.ready("helpdesk");
        assert!(readiness.is_ready());
        readiness.not_ready("kafka", "broker unreachable");
        let (ready, report) = readiness.report();
        assert!(!ready);
        assert_eq!(report["checks"]["kafka"], "broker unreachable");
    }
}
