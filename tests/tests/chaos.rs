//! The short chaos run (`omni_e2e::chaos`, `ChaosOptions::short`): 90 s of mixed load on every
//! channel through 14 SIGKILLs over the seven services (omni-replies and omni-sender among them,
//! while agents answer), a broker restart and a helpdesk outage; every message must reach the
//! helpdesk exactly once, and every answer its customer (or be noted as cut by a kill, where the
//! channel is at-most-once). `make chaos` runs the long one.

use omni_e2e::chaos::{self, ChaosOptions};
use omni_e2e::serial;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_through_kills_a_broker_restart_and_a_helpdesk_outage_arrives_once() -> anyhow::Result<()> {
    let _serial = serial().await;
    let report = chaos::run(ChaosOptions::short()).await?;
    println!("{}", report.markdown());
    assert!(report.sent > 200, "the load ran: {} messages", report.sent);
    assert_eq!(report.kills, 14);
    assert_eq!(report.broker_restarts, 1);
    assert!(report.lost.is_empty(), "lost: {:?}", report.lost);
    assert!(report.duplicated.is_empty(), "duplicated: {:?}", report.duplicated);
    assert!(
        report.split_conversations.is_empty(),
        "conversations split over tickets: {:?}",
        report.split_conversations
    );
    assert!(
        report.merged_tickets.is_empty(),
        "tickets holding two conversations: {:?}",
        report.merged_tickets
    );
    assert_eq!(
        report.comments - report.notes,
        report.sent,
        "one helpdesk comment per message, nothing else but the sender's notes"
    );
    let answers = &report.answers;
    assert!(answers.announced >= 20, "the agents answered: {answers:?}");
    assert!(answers.lost.is_empty(), "answers lost: {:?}", answers.lost);
    assert!(answers.duplicated.is_empty(), "answers sent twice: {:?}", answers.duplicated);
    assert!(answers.delivered_once > 0, "answers delivered: {answers:?}");
    assert!(report.passed());
    Ok(())
}
