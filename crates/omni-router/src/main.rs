//! `omni-router`: see the crate docs of `omni_router`.
fn main() -> std::process::ExitCode {
    omni_runtime::run_service("router", omni_router::run)
}
