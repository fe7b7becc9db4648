//! `make bench-webhooks`: accepted webhooks per second and latency, broker acknowledgement
//! included (the gateway answers only once tansu acknowledged the record). wrk on loopback
//! drives distinct signed Telegram updates (`tests/bench/telegram.lua`). Figures, not a timed
//! test: it is `#[ignore]`d and asserts only that the load was accepted and stored.

use std::process::Command;
use std::time::Duration;

use omni_e2e::{Broker, Service, free_port, serial};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with `make bench-webhooks`"]
async fn webhook_load_benchmark() -> anyhow::Result<()> {
    let _serial = serial().await;
    let seconds: u64 = std::env::var("OMNI_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let connections: u64 = std::env::var("OMNI_BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let broker = Broker::start().await;
    let (port, admin) = (free_port(), free_port());
    let env: Vec<(String, String)> = vec![
        ("OMNI__KAFKA__BOOTSTRAP_SERVERS".into(), broker.bootstrap()),
        ("OMNI__GATEWAY__LISTEN".into(), format!("127.0.0.1:{port}")),
        ("OMNI__GATEWAY__ADMIN_LISTEN".into(), format!("127.0.0.1:{admin}")),
    ];
    let linger = std::env::var("OMNI__KAFKA__PRODUCER__LINGER_MS").unwrap_or_else(|_| "5".into());
    let mut gateway = Service::spawn("gateway", admin, &env);
    gateway.wait_ready().await?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/telegram.lua");
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "--timeout",
            "10s",
            "-s",
            script,
        ])
        .arg(format!("http://127.0.0.1:{port}/webhooks/telegram/default"))
        .output()?;
    let report = String::from_utf8_lossy(&output.stdout).to_string();
    println!("wrk: {connections} connections, {seconds} s, 2 threads, linger.ms {linger}, tansu (SQLite storage) on loopback\n{report}");
    assert!(output.status.success(), "wrk failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(
        !report.contains("Non-2xx"),
        "every webhook accepted:\n{report}\ngateway log:\n{}",
        gateway.log()
    );
    let requests = accepted_requests(&report);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stored = gateway.metric("omni_kafka_produced_total").await.unwrap_or(0.0);
    println!("accepted {requests} webhooks; producer counted {stored} acknowledged records");
    let raw = omni_e2e::read_topic(&broker.bootstrap(), "omni.raw.chat.v1")?.len();
    println!("omni.raw.chat.v1 holds {raw} records");
    assert!(
        raw as u64 >= requests,
        "every accepted webhook is in the raw topic ({raw} < {requests})"
    );
    Ok(())
}

/// The "N requests in" count of wrk's report.
fn accepted_requests(report: &str) -> u64 {
    report
        .lines()
        .find(|line| line.contains("requests in"))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
