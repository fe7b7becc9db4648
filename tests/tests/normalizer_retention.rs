//! Bounded normalizer state (`[normalizer] known_retention_secs`, 3 s here): a known event id
//! past the retention is tombstoned in `omni.state.normalizer.v1` and forgotten; a copy of the
//! message sent after that is written again, and the router recognises it (outcome `DUPLICATE`,
//! nothing new in Request Tracker).

use std::time::Duration;

use omni_e2e::{Pipeline, eventually, nonce, read_topic, serial};
use omni_proto::v1::delivery::Outcome;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_event_past_its_retention_is_tombstoned_and_a_late_copy_is_not_delivered_twice() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[("OMNI__NORMALIZER__KNOWN_RETENTION_SECS", "3")]).await?;
    let run = nonce();
    let body = json!({
        "customer": { "email": format!("retention+{run}@example.com") },
        "text": "Mijn pakket is nog niet aangekomen.",
        "thread_id": run,
        "external_id": format!("{run}-1"),
    })
    .to_string();
    let event_id = pipeline.post_ok(&body).await?;
    let first = pipeline.delivery_of(&event_id, Duration::from_secs(60)).await?;
    assert_eq!(first.outcome(), Outcome::Created);

    let key = format!("event/{event_id}");
    let bootstrap = pipeline.broker.bootstrap();
    eventually("the known event tombstoned", Duration::from_secs(30), || {
        let tombstoned = read_topic(&bootstrap, omni_kafka::topics::STATE_NORMALIZER)
            .is_ok_and(|records| records.iter().any(|r| r.key == key.as_bytes() && r.value.is_empty()));
        async move { Ok(tombstoned) }
    })
    .await?;
    assert!(pipeline.normalizer.metric("omni_normalizer_known_expired_total").await? >= 1.0);

    // The same message again (a provider's late retry): no longer known to the normalizer.
    assert_eq!(pipeline.post_ok(&body).await?, event_id);
    eventually("the copy routed", Duration::from_secs(60), || {
        let copies = pipeline
            .deliveries()
            .map(|d| d.iter().filter(|d| d.event_id == event_id).count())
            .unwrap_or(0);
        async move { Ok(copies >= 2) }
    })
    .await?;
    let written = pipeline
        .conversation_events()?
        .into_iter()
        .filter(|e| e.event_id == event_id)
        .count();
    assert_eq!(written, 2, "written again once forgotten");
    let outcomes: Vec<Outcome> = pipeline
        .deliveries()?
        .iter()
        .filter(|d| d.event_id == event_id)
        .map(|d| d.outcome())
        .collect();
    assert_eq!(outcomes, [Outcome::Created, Outcome::Duplicate]);
    Ok(())
}
