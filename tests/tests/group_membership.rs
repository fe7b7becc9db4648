//! Consumer groups on the local broker: a restarted static member gets its partitions back
//! (tansu's group coordinator, patched by `deploy/local/tansu/`; docs/adr/0001).

use std::process::Command;

use anyhow::Context;
use omni_e2e::{Broker, serial};

/// The kill pattern of `crash_recovery` and `routing_chaos` (a member killed, its replacement
/// killed soon after), played on the broker alone by an independent client:
/// `tests/python/group_stall.py`. On tansu 0.6.0 as published the last replacement never gets
/// an assignment; it must get all three partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_killed_twice_in_a_row_gets_its_partitions_back() -> anyhow::Result<()> {
    let _serial = serial().await;
    let broker = Broker::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/group_stall.py");
    let bootstrap = broker.bootstrap();
    let output = tokio::task::spawn_blocking(move || Command::new("python3").args([script, &bootstrap, "--wait", "40"]).output())
        .await?
        .context("run python3 tests/python/group_stall.py")?;
    let steps = String::from_utf8_lossy(&output.stdout);
    println!("{steps}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the restarted member got no assignment:\n{steps}\nbroker log (tail):\n{}",
        tail(&broker.log(), 40)
    );
    Ok(())
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
