//! Bounded router state (`[router] state_retention_secs`, 4 s here): what is past the retention
//! is tombstoned in `omni.state.router.v1` and forgotten, a late copy of an event whose record
//! expired is still not sent twice, and a follow-up after everything expired joins the
//! conversation's ticket (found in the helpdesk by its conversation id).
//!
//! The helpdesk is the Zendesk-shaped stub (`omni_e2e::zendesk`); events go straight to
//! `omni.conversations.v1` (`omni_e2e::router_sweep::event`).

use std::time::Duration;

use omni_e2e::router_sweep::{comments, event};
use omni_e2e::stack::Stack;
use omni_e2e::{eventually, nonce, produce, read_topic, serial};
use omni_proto::v1::ConversationEvent;
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
        let numbers: Vec<usize> = comments(&stack.zendesk, run)
            .remove(&0)
            .unwrap_or_default()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let done = numbers == expected;
        async move { Ok(done) }
    })
    .await
}

/// Whether the state topic holds a tombstone for `key`.
fn tombstoned(stack: &Stack, key: &str) -> bool {
    read_topic(&stack.pipeline.broker.bootstrap(), omni_kafka::topics::STATE_ROUTER)
        .is_ok_and(|records| records.iter().any(|r| r.key == key.as_bytes() && r.value.is_empty()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_past_its_retention_is_tombstoned_and_a_late_follow_up_still_joins_its_ticket() -> anyhow::Result<()> {
    let _serial = serial().await;
    let stack = Stack::start(&[("OMNI__ROUTER__STATE_RETENTION_SECS", "4")]).await?;
    let run = nonce();
    let first = event(&run, 0, 0);
    send(&stack, &first).await?;
    wait_for_comments(&stack, &run, &[0]).await?;

    let event_key = format!("event/zendesk/{}", first.event_id);
    let ticket_key = format!("ticket/zendesk/{}", first.conversation_id);
    eventually("the conversation's state tombstoned", Duration::from_secs(30), || {
        let done = tombstoned(&stack, &event_key) && tombstoned(&stack, &ticket_key);
        async move { Ok(done) }
    })
    .await?;
    let expired = stack
        .pipeline
        .router
        .metric(r#"omni_router_state_expired_total{destination="zendesk",kind="ticket"}"#)
        .await?;
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
    let numbers: Vec<usize> = comments(&stack.zendesk, &run)
        .remove(&0)
        .unwrap_or_default()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(numbers, [0, 1], "the copy was not sent again");
    let tickets = stack.zendesk.tickets();
    assert_eq!(
        tickets.iter().filter(|t| t.external_id == first.conversation_id).count(),
        1,
        "the follow-up joined the ticket"
    );
    Ok(())
}
