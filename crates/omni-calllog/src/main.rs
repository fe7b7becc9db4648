//! `omni-calllog`: see the crate docs of `omni_calllog`.
fn main() -> std::process::ExitCode {
    omni_runtime::run_service("calllog", omni_calllog::run)
}
