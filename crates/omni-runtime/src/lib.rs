//! What every omni service shares.
//!
//! - [`settings`]: the layered configuration (`config/default.toml` embedded in the binary, then
//!   the file named by `OMNI_CONFIG`, then `OMNI__SECTION__KEY` environment variables), typed
//!   sections and validation that reports every problem at once.
//! - [`telemetry`]: `tracing` logs as text or JSON.
//! - [`admin`]: `/healthz`, `/readyz` and Prometheus `/metrics` on each service.
//! - [`service`]: the `main` of every service: load config (exit 64 when it is bad), start logs
//!   and the admin server, run until SIGINT/SIGTERM, then drain within a bounded time.

pub mod admin;
pub mod hours;
pub mod service;
pub mod settings;
pub mod telemetry;

pub use admin::Readiness;
pub use service::{ServiceContext, run_service};
pub use settings::{Problems, Settings, SettingsError, Validate};
