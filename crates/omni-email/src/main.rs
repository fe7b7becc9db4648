//! `omni-email`: see the crate docs of `omni_email`.
fn main() -> std::process::ExitCode {
    omni_runtime::run_service("email", omni_email::run)
}
