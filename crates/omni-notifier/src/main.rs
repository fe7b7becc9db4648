//! `omni-notifier`: see the crate docs of `omni_notifier`.
fn main() -> std::process::ExitCode {
    omni_runtime::run_service("notifier", omni_notifier::run)
}
