//! Key-ordered concurrency in the router (`[router] max_in_flight`, here through the
//! destination's `in_flight_limits` entry): a helpdesk stuck on one
//! conversation holds up only that conversation, whose events still arrive in order; and a
//! router killed while that conversation is stuck stores no offset past it, so after a restart
//! it is delivered, and the events finished above it are recognised (not sent twice).
//!
//! The helpdesk is the Zendesk-shaped stub (`omni_e2e::zendesk`), holding every write that
//! carries conversation 0's text until released. Events go straight to one partition of
//! `omni.conversations.v1` (`omni_e2e::router_sweep::event`), conversation 0's first.
//!
//! And a pipeline at its bound pauses reading but keeps polling its consumer, so a helpdesk
//! stuck for longer than librdkafka's `max.poll.interval.ms` does not take the router out of
//! its group.

use std::time::Duration;

use omni_e2e::router_sweep::{comments, event, numbers};
use omni_e2e::stack::Stack;
use omni_e2e::{eventually, nonce, serial};
use omni_proto::v1::ConversationEvent;
use omni_proto::v1::delivery::Outcome;
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Conversations and events per conversation: conversation 0 gets 3, the others 2.
const OTHERS: usize = 3;

/// Eight events in flight for the stack's destination through its `in_flight_limits` entry, one
/// for every other: the test fails if the entry is not applied (one at a time, conversation 0's
/// held write would hold up everything behind it).
const IN_FLIGHT: &[(&str, &str)] = &[
    ("OMNI__ROUTER__MAX_IN_FLIGHT", "1"),
    ("OMNI__ROUTER__IN_FLIGHT_LIMITS__ZENDESK", "8"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_stuck_in_the_helpdesk_holds_up_only_itself_and_keeps_its_order() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut stack = Stack::start(IN_FLIGHT).await?;
    let run = nonce();
    stack.zendesk.hold_writes_containing(&format!("sweep-{run} conversation 0 message"));
    let bootstrap = stack.pipeline.broker.bootstrap();
    let mut events = vec![event(&run, 0, 0), event(&run, 0, 1), event(&run, 0, 2)];
    for conversation in 1..=OTHERS {
        events.extend([event(&run, conversation, 0), event(&run, conversation, 1)]);
    }
    // All in one partition, conversation 0's first event first: the others come after it in
    // the partition, so a router handling one event at a time would wait behind it.
    produce_to_one_partition(&bootstrap, &events).await?;

    // The others get through while conversation 0 is stuck in the helpdesk.
    eventually("the other conversations in the helpdesk", Duration::from_secs(60), || {
        let found = comments(&stack.zendesk, &run);
        let done = (1..=OTHERS).all(|c| numbers(&found, c) == [0, 1]);
        async move { Ok(done) }
    })
    .await?;
    assert!(numbers(&comments(&stack.zendesk, &run), 0).is_empty(), "conversation 0 is held");

    // Killed while conversation 0's ticket is being created (after more than the 1 s
    // auto-commit interval, so an offset stored past it would have been committed); the held
    // write then goes through (carried out, its answer lost to the dead router), and the router
    // starts again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stack.pipeline.router.sigkill();
    stack.zendesk.release();
    stack.pipeline.router.restart_with(IN_FLIGHT).await?;
    eventually("conversation 0 in the helpdesk", Duration::from_secs(60), || {
        let done = numbers(&comments(&stack.zendesk, &run), 0) == [0, 1, 2];
        async move { Ok(done) }
    })
    .await?;
    // No offset was stored past conversation 0's first event: the others' events, after it in
    // the partition, are read again and recognised (DUPLICATE), not skipped, not sent twice.
    eventually("the others' events read again after the restart", Duration::from_secs(60), || {
        let replayed = stack.pipeline.deliveries().map(|deliveries| {
            events.iter().filter(|e| !e.conversation_id.ends_with("-0")).all(|e| {
                deliveries
                    .iter()
                    .any(|d| d.event_id == e.event_id && d.outcome() == Outcome::Duplicate)
            })
        });
        async move { Ok(replayed.unwrap_or(false)) }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let found = comments(&stack.zendesk, &run);
    assert_eq!(numbers(&found, 0), [0, 1, 2], "conversation 0: each once, in order");
    for conversation in 1..=OTHERS {
        assert_eq!(
            numbers(&found, conversation),
            [0, 1],
            "conversation {conversation}: each once, in order"
        );
    }
    assert_eq!(
        stack.zendesk.tickets().iter().filter(|t| t.external_id.contains(&run)).count(),
        OTHERS + 1
    );
    assert!(stack.zendesk.violations().is_empty(), "{:?}", stack.zendesk.violations());
    Ok(())
}

/// Writes `events` to partition 0 of the conversation topic, in order, keyed by conversation.
async fn produce_to_one_partition(bootstrap: &str, events: &[ConversationEvent]) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    for event in events {
        let value = event.encode_to_vec();
        let record = FutureRecord::to(omni_kafka::topics::CONVERSATIONS)
            .partition(0)
            .key(event.conversation_id.as_bytes())
            .payload(&value);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(error, _)| anyhow::anyhow!("produce: {error}"))?;
    }
    Ok(())
}

/// librdkafka's poll interval in the next test: a member not polled for this long leaves its
/// group (the default is 5 minutes). It may not be below a consumer's session timeout, so every
/// client gets the router's (`[kafka.consumer] session_timeout_ms`, 10 s) through the same table.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// A destination whose pipeline holds all it may (one event delivered at a time, four held)
/// while the helpdesk is stuck, for twice librdkafka's `max.poll.interval.ms`: the router pauses
/// reading and still polls its consumer, so it keeps its partitions (no rebalance, no "maximum
/// poll interval exceeded"), and once the helpdesk answers every event arrives once, in order.
/// Without the pause (the router not calling `recv` while full), librdkafka takes the member out
/// of the group and the router logs the revoke when it polls again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pipeline_keeps_its_partitions_while_the_helpdesk_is_stuck() -> anyhow::Result<()> {
    let _serial = serial().await;
    let poll = format!(
        "[kafka.properties]\n\"max.poll.interval.ms\" = \"{}\"\n\"session.timeout.ms\" = \"10000\"\n",
        MAX_POLL_INTERVAL.as_millis()
    );
    let stack = Stack::start_with(&poll, &[("OMNI__ROUTER__MAX_IN_FLIGHT", "1")]).await?;
    let run = nonce();
    stack.zendesk.hold_writes_containing(&format!("sweep-{run} conversation 0 message"));
    let mut events = vec![event(&run, 0, 0)];
    events.extend((1..=6).map(|conversation| event(&run, conversation, 0)));
    produce_to_one_partition(&stack.pipeline.broker.bootstrap(), &events).await?;

    let router = &stack.pipeline.router;
    let held = r#"omni_router_in_flight_events{destination="zendesk"}"#;
    eventually("the router holding its bound of events", Duration::from_secs(60), || async move {
        Ok(router.metric(held).await? >= 4.0)
    })
    .await?;
    tokio::time::sleep(2 * MAX_POLL_INTERVAL).await;
    stack.zendesk.release();
    eventually("every event in the helpdesk", Duration::from_secs(60), || {
        let found = comments(&stack.zendesk, &run);
        let done = (0..=6).all(|c| !numbers(&found, c).is_empty());
        async move { Ok(done) }
    })
    .await?;
    let found = comments(&stack.zendesk, &run);
    for conversation in 0..=6 {
        assert_eq!(numbers(&found, conversation), [0], "conversation {conversation}: once");
    }
    let log = stack.pipeline.router.log();
    let lowered = log.to_lowercase();
    assert!(
        !lowered.contains("poll interval") && !log.contains("partitions revoked"),
        "the router left its group while its pipeline was full:\n{}",
        log.lines()
            .filter(|l| l.contains("revoked") || l.to_lowercase().contains("poll"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(stack.zendesk.violations().is_empty(), "{:?}", stack.zendesk.violations());
    Ok(())
}
