//! The shape of every service's `main`.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::admin::{self, Readiness};
use crate::settings::{Problems, Settings, SettingsError};
use crate::telemetry::{self, TelemetryConfig};

/// Exit code for a configuration that cannot be used (EX_USAGE).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// What a running service gets from the runtime.
#[derive(Clone, Debug)]
pub struct ServiceContext {
    /// Fires on SIGINT or SIGTERM: stop taking new work, finish what is in flight.
    pub shutdown: CancellationToken,
    /// The service's readiness checks, served at `/readyz`.
    pub readiness: Readiness,
}

/// A service's own configuration, read and validated from [`Settings`].
pub trait ServiceConfig: Sized {
    /// Reads and validates the sections the service needs, recording every problem.
    fn from_settings(settings: &Settings, problems: &mut Problems) -> Option<Self>;
    /// The admin endpoints' address.
    fn admin_listen(&self) -> SocketAddr;
    /// How long to wait for in-flight work after a shutdown signal.
    fn drain_timeout(&self) -> Duration;
}

/// Loads config, starts logs, admin endpoints and signal handling, runs `run` until it returns
/// or a signal arrives, then waits at most the drain timeout for it to finish.
///
/// Exit codes: 0 after a clean stop, 1 when the service failed, 64 on bad configuration.
pub fn run_service<C, F, Fut>(name: &'static str, run: F) -> ExitCode
where
    C: ServiceConfig + Send + 'static,
    F: FnOnce(C, ServiceContext) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (config, telemetry_config) = match load::<C>() {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("omni-{name}: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    telemetry::init(&telemetry_config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("omni-{name}: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let readiness = Readiness::default();
        let admin_task = admin::serve(config.admin_listen(), readiness.clone(), shutdown.child_token()).await?;
        let drain_timeout = config.drain_timeout();
        let context = ServiceContext {
            shutdown: shutdown.clone(),
            readiness,
        };
        let mut service = tokio::spawn(run(config, context));
        tracing::info!(service = name, version = env!("CARGO_PKG_VERSION"), "started");
        let outcome = tokio::select! {
            joined = &mut service => joined,
            () = wait_for_signal() => {
                tracing::info!(service = name, drain_timeout_secs = drain_timeout.as_secs_f64(), "shutdown signal received, draining");
                shutdown.cancel();
                match tokio::time::timeout(drain_timeout, &mut service).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        tracing::warn!(service = name, "drain timed out; in-flight records will be redelivered");
                        service.abort();
                        Ok(Ok(()))
                    }
                }
            }
        };
        shutdown.cancel();
        let _ = admin_task.await;
        match outcome {
            Ok(result) => result,
            Err(join_error) => Err(anyhow::anyhow!("service task panicked: {join_error}")),
        }
    });
    match result {
        Ok(()) => {
            tracing::info!(service = name, "stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(service = name, error = format!("{error:#}"), "failed");
            ExitCode::FAILURE
        }
    }
}

/// Loads and validates the service's config and the shared `[telemetry]` section.
pub fn load<C: ServiceConfig>() -> Result<(C, TelemetryConfig), SettingsError> {
    let settings = Settings::load()?;
    let mut problems = Problems::default();
    let telemetry: Option<TelemetryConfig> = settings.section("telemetry", &mut problems);
    let config = C::from_settings(&settings, &mut problems);
    problems.into_result()?;
    Ok((
        config.expect("no problems means the section was read"),
        telemetry.expect("no problems means the section was read"),
    ))
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
