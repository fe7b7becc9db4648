//! `omni-normalizer`: see the crate docs of `omni_normalizer`.
fn main() -> std::process::ExitCode {
    omni_runtime::run_service("normalizer", omni_normalizer::run)
}
