//! Bounded router state (`[router] state_retention_secs`, 4 s here): what is past the retention
//! is tombstoned in `omni.state.router.v1` and forgotten, a late copy of an event whose record
//! expired is still not sent twice, and a follow-up after everything expired joins the
//! conversation's ticket (found in the helpdesk by its conversation id).
//!
//! The helpdesk is the Zendesk-shaped stub (`omni_e2e::zendesk`); events go straight to
//! `omni.conversations.v1` (`omni_e2e::router_sweep::event`).

use std::time::Duration;

use omni_e2e::router_sweep::{comments, event, numbers};
use omni_e2e::stack::Stack;
use omni_e2e::{eventually, nonce, produce, read_topic, serial};
use std::time::SystemTime;

use omni_proto::v1::event_delivery::Status;
use omni_proto::v1::router_state::Entry;
use omni_proto::v1::{ConversationEvent, EventDelivery, RouterState};
use prost::Message as _;

async fn send(stack: &Stack, event: &ConversationEvent) -> anyhow::Result<()> {
    let bootstrap = stack.pipeline.broker.bootstrap();
    produce(
        &bootstrap,
        omni_kafka::topics::CONVERSATIONS,
        event.conversation_id.as_bytes(),
        &event.encode_to_vec(),
    )
    .await
}

async fn wait_for_comments(stack: &Stack, run: &str, expected: &[usize]) -> anyhow::Result<()> {
    eventually(&format!("comments {expected:?} in the helpdesk"), Duration::from_secs(60), || {
        let arrived = numbers(&comments(&stack.zendesk, run), 0);
        let done = arrived == expected;
        async move { Ok(done) }
    })
    .await
}

/// The router's `omni_router_state_<name>{destination="zendesk",kind="<kind>"}`.
async fn zendesk_state(stack: &Stack, name: &str, kind: &str) -> anyhow::Result<f64> {
    let series = format!(r#"omni_router_state_{name}{{destination="zendesk",kind="{kind}"}}"#);
    stack.pipeline.router.metric(&series).await
}

/// A stack whose router keeps state `retention` seconds, with a first event in the helpdesk.
async fn first_event_delivered(retention: &str) -> anyhow::Result<(Stack, String, ConversationEvent)> {
    let stack = Stack::start(&[("OMNI__ROUTER__STATE_RETENTION_SECS", retention)]).await?;
    let run = nonce();
    let first = event(&run, 0, 0);
    send(&stack, &first).await?;
    wait_for_comments(&stack, &run, &[0]).await?;
    Ok((stack, run, first))
}

/// Whether the state topic holds a tombstone for `key`.
fn tombstoned(stack: &Stack, key: &str) -> bool {
    read_topic(&stack.pipeline.broker.bootstrap(), omni_kafka::topics::STATE_ROUTER)
        .is_ok_and(|records| records.iter().any(|r| r.key == key.as_bytes() && r.value.is_empty()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_past_its_retention_is_tombstoned_and_a_late_follow_up_still_joins_its_ticket() -> anyhow::Result<()> {
    let _serial = serial().await;
    let (stack, run, first) = first_event_delivered("4").await?;

    let event_key = format!("event/zendesk/{}", first.event_id);
    let ticket_key = format!("ticket/zendesk/{}", first.conversation_id);
    eventually("the conversation's state tombstoned", Duration::from_secs(30), || {
        let done = tombstoned(&stack, &event_key) && tombstoned(&stack, &ticket_key);
        async move { Ok(done) }
    })
    .await?;
    let expired = zendesk_state(&stack, "expired_total", "ticket").await?;
    assert!(expired >= 1.0, "expired tickets counted: {expired}");

    // A late copy of the first event (older than the retention) and a follow-up.
    send(&stack, &first).await?;
    send(&stack, &event(&run, 0, 1)).await?;
    wait_for_comments(&stack, &run, &[0, 1]).await?;
    eventually("both recorded as delivered", Duration::from_secs(30), || {
        let deliveries = stack.pipeline.deliveries().unwrap_or_default();
        let copies = deliveries.iter().filter(|d| d.event_id == first.event_id).count();
        async move { Ok(copies >= 2) }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let arrived = numbers(&comments(&stack.zendesk, &run), 0);
    assert_eq!(arrived, [0, 1], "the copy was not sent again");
    let tickets = stack.zendesk.tickets();
    assert_eq!(
        tickets.iter().filter(|t| t.external_id == first.conversation_id).count(),
        1,
        "the follow-up joined the ticket"
    );
    Ok(())
}

/// A copy of an event whose own record expired while its conversation's ticket is still known
/// (a later event keeps it): the router cannot tell from its state that it delivered it, so it
/// looks in the ticket (`has_event`) instead of appending it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_copy_of_an_expired_event_is_looked_for_in_its_still_known_ticket() -> anyhow::Result<()> {
    let _serial = serial().await;
    let stack = Stack::start(&[("OMNI__ROUTER__STATE_RETENTION_SECS", "8")]).await?;
    let run = nonce();
    let (first, second) = (event(&run, 0, 0), event(&run, 0, 1));
    send(&stack, &first).await?;
    send(&stack, &second).await?;
    wait_for_comments(&stack, &run, &[0, 1]).await?;
    // A third event 5 s later keeps the conversation (its ticket record) alive past the moment
    // the second one's record expires.
    tokio::time::sleep(Duration::from_secs(5)).await;
    send(&stack, &event(&run, 0, 2)).await?;
    wait_for_comments(&stack, &run, &[0, 1, 2]).await?;
    let event_key = format!("event/zendesk/{}", second.event_id);
    let ticket_key = format!("ticket/zendesk/{}", second.conversation_id);
    eventually("the second event's record tombstoned", Duration::from_secs(30), || {
        let done = tombstoned(&stack, &event_key);
        async move { Ok(done) }
    })
    .await?;
    assert!(!tombstoned(&stack, &ticket_key), "the ticket must still be known for this test");
    send(&stack, &second).await?;
    eventually("the copy routed", Duration::from_secs(30), || {
        let copies = stack
            .pipeline
            .deliveries()
            .map(|d| d.iter().filter(|d| d.event_id == second.event_id).count())
            .unwrap_or(0);
        async move { Ok(copies >= 2) }
    })
    .await?;
    let outcomes: Vec<_> = stack
        .pipeline
        .deliveries()?
        .into_iter()
        .filter(|d| d.event_id == second.event_id)
        .map(|d| d.outcome())
        .collect();
    use omni_proto::v1::delivery::Outcome;
    assert_eq!(outcomes, [Outcome::Appended, Outcome::Duplicate]);
    let arrived = numbers(&comments(&stack.zendesk, &run), 0);
    assert_eq!(arrived, [0, 1, 2], "the copy was not appended again");
    Ok(())
}

/// A conversation another router replica went on with after this one started: this replica's
/// own map still has the ticket record's old time, but each expiry round judges on the state
/// topic read again, so the ticket record the other replica's events keep alive stays; once
/// they stop, it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_another_replica_keeps_active_is_not_expired_here() -> anyhow::Result<()> {
    let _serial = serial().await;
    let (stack, run, first) = first_event_delivered("4").await?;
    let ticket_key = format!("ticket/zendesk/{}", first.conversation_id);
    let bootstrap = stack.pipeline.broker.bootstrap();
    // What another replica writes as it delivers this conversation's next events: a DONE record
    // each second, for three retentions.
    for n in 0..12 {
        let record = RouterState {
            entry: Some(Entry::Event(EventDelivery {
                status: Status::Done as i32,
                ticket_id: "elsewhere".into(),
                updated_at: Some(SystemTime::now().into()),
                conversation_id: first.conversation_id.clone(),
            })),
        };
        let key = format!("event/zendesk/{run}-elsewhere-{n}");
        produce(
            &bootstrap,
            omni_kafka::topics::STATE_ROUTER,
            key.as_bytes(),
            &record.encode_to_vec(),
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !tombstoned(&stack, &ticket_key),
            "ticket record tombstoned while the conversation was active ({n} s)"
        );
    }
    eventually(
        "the ticket record tombstoned once the other replica stopped",
        Duration::from_secs(30),
        || {
            let done = tombstoned(&stack, &ticket_key);
            async move { Ok(done) }
        },
    )
    .await
}

/// `make bench-state`: restore time and memory of a large router state, and what the retention
/// does to it. Writes `OMNI_BENCH_STATE_EVENTS` (default 200,000) delivered-event records in
/// conversations of 4 (with their ticket records) to `omni.state.router.v1`, half of the
/// conversations last active 60 days ago; restarts the router (30-day retention), which restores
/// them and tombstones the old half; restarts it again. Figures, not a timed test: `#[ignore]`d,
/// asserting only that exactly the old half expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with `make bench-state`"]
async fn router_state_restore_benchmark() -> anyhow::Result<()> {
    use omni_proto::v1::{EventDelivery, RouterState, TicketRef, event_delivery::Status, router_state::Entry};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
    use std::time::{Instant, SystemTime};

    let _serial = serial().await;
    let events: usize = std::env::var("OMNI_BENCH_STATE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let mut stack = Stack::start(&[("OMNI__ROUTER__STATE_RESTORE_TIMEOUT_SECS", "900")]).await?;
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", stack.pipeline.broker.bootstrap())
        .set("linger.ms", "50")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let old = SystemTime::now() - Duration::from_secs(60 * 86_400);
    let now = SystemTime::now();
    let written = Instant::now();
    let mut records = Vec::with_capacity(events + events / 4);
    for n in 0..events {
        let conversation = n / 4;
        let at = if conversation % 2 == 0 { old } else { now };
        let event = RouterState {
            entry: Some(Entry::Event(EventDelivery {
                status: Status::Done as i32,
                ticket_id: conversation.to_string(),
                updated_at: Some(at.into()),
                conversation_id: format!("bench-c{conversation}"),
            })),
        };
        records.push((format!("event/zendesk/bench-e{n}"), event.encode_to_vec()));
        if n % 4 == 0 {
            let ticket = RouterState {
                entry: Some(Entry::Ticket(TicketRef {
                    ticket_id: conversation.to_string(),
                    ticket_url: String::new(),
                    updated_at: Some(at.into()),
                    origin_event_id: format!("bench-e{n}"),
                })),
            };
            records.push((format!("ticket/zendesk/bench-c{conversation}"), ticket.encode_to_vec()));
        }
    }
    for (key, value) in &records {
        let mut record = BaseRecord::<String, Vec<u8>>::to(omni_kafka::topics::STATE_ROUTER)
            .key(key)
            .payload(value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(600))?;
    let write_secs = written.elapsed().as_secs_f64();
    let conversations = events.div_ceil(4);

    let mut figures = Vec::new();
    for round in ["restore", "restore after expiry"] {
        stack.pipeline.router.restart_with(&[]).await?;
        let ready = Instant::now();
        let restored = stack
            .pipeline
            .router
            .metric(r#"omni_router_state_restore_seconds{destination="zendesk"}"#)
            .await?;
        if round == "restore" {
            eventually("the old half expired", Duration::from_secs(600), || {
                let stack = &stack;
                async move {
                    let events_gone = zendesk_state(stack, "expired_total", "event").await?;
                    let tickets_gone = zendesk_state(stack, "expired_total", "ticket").await?;
                    Ok(events_gone >= (events / 2) as f64 && tickets_gone >= (conversations / 2) as f64)
                }
            })
            .await?;
        }
        let expiry_secs = ready.elapsed().as_secs_f64();
        let tickets = zendesk_state(&stack, "entries", "ticket").await?;
        let known = zendesk_state(&stack, "entries", "event").await?;
        let rss = stack.pipeline.router.usage().map_or(0, |u| u.rss_kib) as f64 / 1024.0;
        figures.push(format!(
            "{round}: {restored:.2} s to read the state topic; then {known} events and {tickets} conversations held, router RSS {rss:.1} MiB{}",
            if round == "restore" { format!(" (expiry took {:.1} s more)", expiry_secs) } else { String::new() }
        ));
        if round == "restore" {
            assert_eq!(known as usize, events - events / 2, "the recent half of the events kept");
            assert_eq!(tickets as usize, conversations / 2, "the recent half of the conversations kept");
        }
    }
    println!(
        "router state: {events} delivered events in {conversations} conversations ({} records) written in {write_secs:.1} s; half last active 60 days ago, retention 30 days (tansu 0.6, SQLite)",
        records.len()
    );
    for line in figures {
        println!("  {line}");
    }
    Ok(())
}
