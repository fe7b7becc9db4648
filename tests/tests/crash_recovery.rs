//! The router killed with SIGKILL after the helpdesk took an event and before the router
//! recorded it (state not written, offset not stored), then restarted: exactly one ticket per
//! conversation and one correspondence per event.

use std::time::Duration;

use omni_e2e::{Pipeline, nonce, serial};
use omni_proto::v1::delivery::Outcome;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(90);

fn message(email: &str, thread: &str, external: &str, text: &str) -> String {
    json!({ "customer": { "email": email }, "text": text, "thread_id": thread, "external_id": external }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_killed_between_helpdesk_and_commit_leaves_one_ticket_and_one_reply_per_event() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut pipeline = Pipeline::start(&[]).await?;
    let run = nonce();
    let email = format!("jan+{run}@example.nl");
    let thread = format!("bestelling-{run}");

    // 1. Killed right after RT created the ticket.
    pipeline.router.restart_with(&[("OMNI_FAULT_PAUSE_AT", "after_create")]).await?;
    let first = pipeline
        .post_ok(&message(&email, &thread, &format!("{run}-1"), "Waar blijft mijn bestelling?"))
        .await?;
    pipeline.router.wait_for_log("fault injection: paused", TIMEOUT).await?;
    pipeline.router.sigkill();

    // 2. Restarted: it must find the ticket instead of opening a second one; then killed right
    //    after RT took the follow-up.
    pipeline.router.restart_with(&[("OMNI_FAULT_PAUSE_AT", "after_append")]).await?;
    let first_delivery = pipeline.delivery_of(&first, TIMEOUT).await?;
    assert_eq!(
        first_delivery.outcome(),
        Outcome::Duplicate,
        "the restarted router found the ticket it had created"
    );
    // ... and says this event opened it, so a notifier still acknowledges the new ticket.
    assert!(first_delivery.opened_ticket, "{first_delivery:?}");
    let ticket = first_delivery.ticket_id.clone();
    let second = pipeline
        .post_ok(&message(&email, &thread, &format!("{run}-2"), "Ik heb nog niets ontvangen."))
        .await?;
    pipeline.router.wait_for_log("fault injection: paused", TIMEOUT).await?;
    pipeline.router.sigkill();

    // 3. Restarted without faults: the follow-up is found in RT, not sent again.
    pipeline.router.restart_with(&[]).await?;
    let second_delivery = pipeline.delivery_of(&second, TIMEOUT).await?;
    assert_eq!(second_delivery.outcome(), Outcome::Duplicate);
    assert!(!second_delivery.opened_ticket, "a follow-up opened nothing: {second_delivery:?}");
    assert_eq!(second_delivery.ticket_id, ticket);
    let third = pipeline
        .post_ok(&message(&email, &thread, &format!("{run}-3"), "Graag een reactie."))
        .await?;
    assert_eq!(pipeline.delivery_of(&third, TIMEOUT).await?.outcome(), Outcome::Appended);

    assert_eq!(pipeline.rt.tickets_of_requestor(&email).await?, [ticket.as_str()]);
    assert_eq!(pipeline.rt.transactions(&ticket, "Correspond").await?.len(), 2);
    for event in [&second, &third] {
        assert_eq!(pipeline.rt.transactions_of_event(&ticket, event).await?.len(), 1, "event {event}");
    }
    assert_eq!(
        pipeline.rt.texts(&ticket).await?,
        ["Waar blijft mijn bestelling?", "Ik heb nog niets ontvangen.", "Graag een reactie."]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_killed_at_random_during_a_burst_delivers_every_event_once() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut pipeline = Pipeline::start(&[]).await?;
    let run = nonce();
    let conversations = 4;
    let per_conversation = 6;
    let mut events = Vec::new();
    for i in 0..per_conversation {
        for c in 0..conversations {
            let email = format!("burst{c}+{run}@example.com");
            let body = message(
                &email,
                &format!("t-{run}-{c}"),
                &format!("{run}-{c}-{i}"),
                &format!("bericht {i} van gesprek {c}"),
            );
            events.push((c, i, pipeline.post_ok(&body).await?));
        }
    }
    // Kill the router three times while it works through the burst.
    for delay_ms in [700_u64, 1300, 900] {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        pipeline.router.sigkill();
        pipeline.router.restart_with(&[]).await?;
    }
    for (_, _, event_id) in &events {
        pipeline.delivery_of(event_id, TIMEOUT).await?;
    }
    for c in 0..conversations {
        let email = format!("burst{c}+{run}@example.com");
        let tickets = pipeline.rt.tickets_of_requestor(&email).await?;
        assert_eq!(tickets.len(), 1, "conversation {c} has tickets {tickets:?}");
        let ticket = &tickets[0];
        assert_eq!(
            pipeline.rt.transactions(ticket, "Correspond").await?.len(),
            per_conversation - 1,
            "conversation {c}"
        );
        let expected: Vec<String> = (0..per_conversation).map(|i| format!("bericht {i} van gesprek {c}")).collect();
        assert_eq!(pipeline.rt.texts(ticket).await?, expected, "conversation {c} in order, each once");
    }
    Ok(())
}

/// The normalizer SIGKILLed after it handled a record and committed that (auto-commit, 1 s),
/// then a record arrives in the same partition while it is down: the restarted normalizer
/// starts at exactly that record. (Regression: the offset it stored was one too far, so the
/// record right after the last one handled was skipped in every partition after each restart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalizer_restarted_after_a_kill_resumes_at_the_record_after_the_last_it_handled() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut pipeline = Pipeline::start(&[]).await?;
    let run = nonce();
    let email = format!("noor+{run}@example.nl");
    let thread = format!("retour-{run}");
    // Same customer and thread: one conversation, one key, one partition.
    let first = pipeline
        .post_ok(&message(
            &email,
            &thread,
            &format!("{run}-1"),
            "Ik wil mijn bestelling retourneren.",
        ))
        .await?;
    omni_e2e::eventually("the first event normalized", TIMEOUT, || {
        let events = pipeline.conversation_events();
        let first = first.clone();
        async move { Ok(events?.iter().any(|e| e.event_id == first)) }
    })
    .await?;
    // Past the auto-commit interval, so the handled offset is committed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    pipeline.normalizer.sigkill();
    let second = pipeline
        .post_ok(&message(&email, &thread, &format!("{run}-2"), "Het pakket is nog dicht."))
        .await?;
    pipeline.normalizer.restart_with(&[]).await?;
    omni_e2e::eventually("the second event normalized", TIMEOUT, || {
        let events = pipeline.conversation_events();
        let second = second.clone();
        async move { Ok(events?.iter().any(|e| e.event_id == second)) }
    })
    .await
    .map_err(|error| error.context(format!("normalizer log:\n{}", pipeline.normalizer.log())))?;
    let events = pipeline.conversation_events()?;
    assert_eq!(events.iter().filter(|e| e.event_id == first).count(), 1, "the first event once");
    assert_eq!(events.iter().filter(|e| e.event_id == second).count(), 1, "the second event once");
    Ok(())
}

/// The router's started mark for `partition` (its `started/rt/<partition>/...` record) as the
/// state topic holds it last.
fn started_mark(pipeline: &Pipeline, partition: i32) -> anyhow::Result<Option<i64>> {
    use omni_proto::v1::{RouterState, router_state::Entry};
    use prost::Message as _;
    let prefix = format!("started/rt/{partition}/");
    let mut mark = None;
    for record in pipeline.topic(omni_kafka::topics::STATE_ROUTER)? {
        if record.key.starts_with(prefix.as_bytes())
            && let Some(Entry::Started(started)) = RouterState::decode(record.value.as_slice())?.entry
        {
            mark = Some(started.offset);
        }
    }
    Ok(mark)
}

/// The router marks a partition started a step ahead of the event it hands to the helpdesk (so
/// most events need no write of their own), and a clean stop moves the mark back to that event:
/// the next start looks up only what was in hand, not a step more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_moves_the_routers_started_mark_back_to_the_last_event_it_started() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut pipeline = Pipeline::start(&[]).await?;
    let run = nonce();
    let event_id = pipeline
        .post_ok(&message(
            &format!("mila+{run}@example.de"),
            &format!("rma-{run}"),
            &format!("f-{run}"),
            "Umtausch bitte",
        ))
        .await?;
    pipeline.delivery_of(&event_id, TIMEOUT).await?;
    let record = pipeline
        .topic("omni.conversations.v1")?
        .into_iter()
        .find(|r| r.header("ce_id") == Some(event_id.as_str()))
        .expect("the event on omni.conversations.v1");
    let ahead = started_mark(&pipeline, record.partition)?;
    assert_eq!(
        ahead,
        Some(record.offset + omni_router::state::MARK_STEP),
        "a step ahead while running"
    );
    assert!(
        pipeline.router.sigterm().is_some_and(|status| status.success()),
        "router stopped cleanly"
    );
    assert_eq!(
        started_mark(&pipeline, record.partition)?,
        Some(record.offset),
        "moved back on the stop"
    );
    Ok(())
}
