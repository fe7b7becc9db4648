//! `omni-sender`: see the crate docs of `omni_sender`.
fn main() -> std::process::ExitCode {
    omni_runtime::run_service("sender", omni_sender::run)
}
