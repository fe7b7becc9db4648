//! `omni-gateway`: see the crate docs of `omni_gateway`.
fn main() -> std::process::ExitCode {
    omni_runtime::run_service("gateway", omni_gateway::run)
}
