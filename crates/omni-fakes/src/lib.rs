//! In-process fakes of the services omni talks to, for tests only.
//!
//! A service that cannot run in a test gets one fake here, following the service's published
//! reference, and every test that needs that service uses it: the unit tests of the crate that
//! talks to it (as a dev-dependency) and the end-to-end harness (`omni-e2e`, which re-exports
//! it). A check added to a fake then holds for both, and the two cannot drift apart.
//!
//! This crate depends on no omni crate, so any of them can take it as a dev-dependency.
//!
//! - [`zendesk`]: Zendesk's Ticketing API v2, for the router's Zendesk adapter.

pub mod zendesk;
