//! `omni-replies`: see the crate docs of `omni_replies`.
fn main() -> std::process::ExitCode {
    omni_runtime::run_service("replies", omni_replies::run)
}
