//! Every input a fuzzer ever crashed (`make fuzz`, targets in `fuzz/fuzz_targets/`), replayed
//! through the same harness the targets use (`fuzz/harness/mod.rs`): none may panic again. Files
//! in `tests/fixtures/fuzz-regressions/` are named after their target (`normalize-*`, `webhook-*`).

#[path = "../../../fuzz/harness/mod.rs"]
mod harness;

#[test]
fn no_input_that_once_crashed_a_fuzz_target_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz-regressions");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("the regression folder") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let data = std::fs::read(&path).unwrap();
        if name.starts_with("normalize-") {
            harness::normalize(&data);
        } else if name.starts_with("webhook-") {
            harness::webhook(&data);
        } else {
            panic!("{name}: name it after its target (normalize-*, webhook-*)");
        }
        replayed += 1;
    }
    assert!(replayed >= 1, "the regression fixtures are there");
}
