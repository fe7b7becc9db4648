//! `make bench-routing`: routed events per second and ingest-to-delivery p50/p99/max, against
//! the Zendesk-shaped stub (`omni_e2e::zendesk`, no rate limit) as the only destination of a rule.
//! Messages go in through the gateway's HTTP API as fast as one client posts them; the figures
//! come from the router's own `omni.deliveries.v1` records (`ingest_to_delivery`). Figures, not a
//! timed test: `#[ignore]`d, asserting only that every event was delivered once.

use std::time::Duration;

use omni_e2e::zendesk::Zendesk;
use omni_e2e::{Pipeline, eventually, nonce, serial};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with `make bench-routing`"]
async fn routing_benchmark() -> anyhow::Result<()> {
    let _serial = serial().await;
    let messages: usize = std::env::var("OMNI_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let conversations = 100;
    let (zendesk, url) = Zendesk::start("omni@example.com", "bench-token").await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[router.rules]]
name = "everything to the stub"
destinations = ["zendesk"]

[router.destinations.zendesk]
kind = "zendesk"
base_url = "{url}"
email = "omni@example.com"
api_token = "bench-token"
timeout_secs = 5
"#
        ),
    )?;
    let config_path = config.to_string_lossy().to_string();
    let pipeline = Pipeline::start(&[("OMNI_CONFIG", &config_path), ("OMNI__KAFKA__PRODUCER__LINGER_MS", "5")]).await?;
    let run = nonce();
    let started = std::time::Instant::now();
    for n in 0..messages {
        let body = json!({
            "customer": { "email": format!("bench{}-{run}@example.com", n % conversations) },
            "text": format!("message {n}"),
            "thread_id": "t",
            "external_id": format!("{run}-{n}"),
        });
        pipeline.post_ok(&body.to_string()).await?;
    }
    let posted = started.elapsed();
    let mut deliveries = Vec::new();
    eventually("every event routed", Duration::from_secs(1800), || {
        let found = pipeline.deliveries();
        let done = found
            .as_ref()
            .is_ok_and(|d| d.iter().filter(|d| d.destination == "zendesk").count() >= messages);
        deliveries = found.unwrap_or_default();
        async move { Ok(done) }
    })
    .await?;
    let routed = started.elapsed();
    let mut latencies: Vec<f64> = deliveries
        .iter()
        .filter(|d| d.destination == "zendesk")
        .filter_map(|d| d.ingest_to_delivery.map(|l| l.seconds as f64 + f64::from(l.nanos) / 1e9))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "routing benchmark: {messages} events in {conversations} conversations, one destination (Zendesk-shaped stub, no rate limit), debug builds, tansu SQLite, 2 cores\n\
         posted through the gateway in {:.1} s ({:.0}/s); all routed after {:.1} s: {:.0} routed events/s end to end\n\
         ingest-to-delivery: p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        posted.as_secs_f64(),
        messages as f64 / posted.as_secs_f64(),
        routed.as_secs_f64(),
        messages as f64 / routed.as_secs_f64(),
        pick(0.5),
        pick(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    let tickets = zendesk.tickets();
    assert_eq!(tickets.len(), conversations);
    assert_eq!(
        tickets.iter().map(|t| t.comments.len()).sum::<usize>(),
        messages,
        "every event once"
    );
    Ok(())
}
