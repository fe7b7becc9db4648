//! The walking skeleton, end to end: HTTP API -> gateway -> tansu -> normalizer -> router ->
//! Request Tracker, with the real binaries, a real broker and a real RT.

use std::time::Duration;

use omni_e2e::{Pipeline, nonce, serial};
use prost::Message as _;
use serde_json::json;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

fn form(email: &str, thread: Option<&str>, external: Option<&str>, text: &str) -> String {
    let mut body = json!({
        "customer": { "name": "Ayşe Yılmaz", "email": email, "phone": "+905551112233" },
        "subject": "Siparişim nerede?",
        "text": text,
    });
    if let Some(thread) = thread {
        body["thread_id"] = json!(thread);
    }
    if let Some(external) = external {
        body["external_id"] = json!(external);
    }
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_becomes_a_ticket_follow_ups_join_it_and_repeats_change_nothing() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let run = nonce();
    let email = format!("ayse+{run}@example.com");
    let thread = format!("order-1042-{run}");

    // First message: a new ticket, the customer as requestor, the text as content.
    let first_text = "Merhaba, 1042 numaralı siparişim hâlâ kargoya verilmedi. Ne zaman gelir?";
    let first = pipeline
        .post_ok(&form(&email, Some(&thread), Some(&format!("form-77-{run}")), first_text))
        .await?;
    let delivery = pipeline.delivery_of(&first, DELIVERY_TIMEOUT).await?;
    assert_eq!(delivery.outcome(), omni_proto::v1::delivery::Outcome::Created, "{delivery:?}");
    let ticket = delivery.ticket_id.clone();
    assert_eq!(pipeline.rt.tickets_of_requestor(&email).await?, [ticket.as_str()]);
    assert_eq!(pipeline.rt.requestors(&ticket).await?, [email.as_str()]);
    let ticket_json = pipeline.rt.get(&format!("/ticket/{ticket}")).await?;
    assert_eq!(ticket_json["Subject"], "Siparişim nerede?");
    assert_eq!(pipeline.rt.texts(&ticket).await?, [first_text]);

    // A follow-up in the same thread: correspondence on the same ticket.
    let second_text = "Kargo takip numarasını da paylaşır mısınız?";
    let second = pipeline
        .post_ok(&form(&email, Some(&thread), Some(&format!("form-78-{run}")), second_text))
        .await?;
    let delivery = pipeline.delivery_of(&second, DELIVERY_TIMEOUT).await?;
    assert_eq!(delivery.outcome(), omni_proto::v1::delivery::Outcome::Appended, "{delivery:?}");
    assert_eq!(delivery.ticket_id, ticket);
    assert_eq!(pipeline.rt.transactions(&ticket, "Correspond").await?.len(), 1);
    assert_eq!(pipeline.rt.texts(&ticket).await?, [first_text, second_text]);

    // The same POST again (same external_id): same event id, nothing new in RT.
    let again = pipeline
        .post_ok(&form(&email, Some(&thread), Some(&format!("form-78-{run}")), second_text))
        .await?;
    assert_eq!(again, second);
    // The normalizer knows the event id: it skips the repeat, so no second conversation event
    // and no second delivery.
    omni_e2e::eventually("the normalizer to skip the repeat", DELIVERY_TIMEOUT, || async {
        Ok(pipeline.normalizer.metric(omni_e2e::NORMALIZER_DUPLICATES).await? >= 1.0)
    })
    .await?;
    let events = pipeline.conversation_events()?;
    assert_eq!(events.iter().filter(|e| e.event_id == second).count(), 1);
    assert_eq!(pipeline.deliveries()?.iter().filter(|d| d.event_id == second).count(), 1);
    assert_eq!(pipeline.rt.transactions(&ticket, "Correspond").await?.len(), 1);
    assert_eq!(pipeline.rt.tickets_of_requestor(&email).await?, [ticket.as_str()]);

    // A different thread of the same customer: a second ticket.
    let other = pipeline
        .post_ok(&form(&email, Some(&format!("{thread}-b")), None, "Bir de iade talebim var."))
        .await?;
    let delivery = pipeline.delivery_of(&other, DELIVERY_TIMEOUT).await?;
    assert_eq!(delivery.outcome(), omni_proto::v1::delivery::Outcome::Created);
    assert_ne!(delivery.ticket_id, ticket);

    // The normalized event on the conversation topic, with CloudEvents headers.
    let records = pipeline.topic("omni.conversations.v1")?;
    let record = records
        .iter()
        .find(|r| omni_proto::v1::ConversationEvent::decode(r.value.as_slice()).is_ok_and(|e| e.event_id == first))
        .expect("first event on the conversation topic");
    let event = omni_proto::v1::ConversationEvent::decode(record.value.as_slice())?;
    assert_eq!(record.key, event.conversation_id.as_bytes());
    assert_eq!(record.header("ce_id"), Some(first.as_str()));
    assert_eq!(record.header("ce_type"), Some("omni.v1.ConversationEvent"));
    assert_eq!(record.header("content-type"), Some("application/protobuf"));
    assert_eq!(event.body.as_ref().unwrap().text, first_text);

    // The state records written on the way carry no headers (omni_kafka::state::headers).
    for topic in ["omni.state.normalizer.v1", "omni.state.router.v1"] {
        let records = pipeline.topic(topic)?;
        assert!(!records.is_empty(), "{topic} has records");
        assert!(records.iter().all(|r| r.headers.is_empty()), "{topic} records carry headers");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_known_only_by_phone_gets_a_ticket() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let run = nonce();
    // A unique number per run in an allocated mobile range (Turkcell, +90 532), so the shared RT
    // has no earlier ticket for it.
    let digits: String = run
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| char::from(b'0' + (c.to_digit(16).unwrap() % 10) as u8))
        .collect();
    let phone = format!("+90532{}", &digits[digits.len() - 7..]);
    let body = json!({ "customer": { "phone": phone }, "text": "Bel mij terug over mijn retour.", "thread_id": run }).to_string();
    let event_id = pipeline.post_ok(&body).await?;
    let delivery = pipeline.delivery_of(&event_id, DELIVERY_TIMEOUT).await?;
    assert_eq!(delivery.outcome(), omni_proto::v1::delivery::Outcome::Created, "{delivery:?}");
    assert_eq!(
        pipeline.rt.requestors(&delivery.ticket_id).await?,
        [format!("{phone}@phone.invalid")]
    );
    let ticket_json = pipeline.rt.get(&format!("/ticket/{}", delivery.ticket_id)).await?;
    assert_eq!(ticket_json["Subject"], "Bel mij terug over mijn retour.");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omni_tail_and_an_independent_python_client_decode_the_event() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let run = nonce();
    let text = "أين طلبي؟ Where is my order 1042?";
    let event_id = pipeline
        .post_ok(&form(&format!("ahmed+{run}@example.com"), Some(&run), None, text))
        .await?;
    omni_e2e::eventually("the event on the conversation topic", DELIVERY_TIMEOUT, || async {
        Ok(pipeline.conversation_events()?.iter().any(|e| e.event_id == event_id))
    })
    .await?;

    // Our CLI: proto3 JSON with enum names.
    let output = std::process::Command::new(omni_e2e::bin_dir().join("omni"))
        .args(["tail", "omni.conversations.v1"])
        .env("OMNI__KAFKA__BOOTSTRAP_SERVERS", pipeline.broker.bootstrap())
        .output()?;
    assert!(
        output.status.success(),
        "omni tail failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout)?;
    let line = stdout.lines().find(|l| l.contains(&event_id)).expect("omni tail printed the event");
    let line: serde_json::Value = serde_json::from_str(line)?;
    assert_eq!(line["value"]["eventId"], event_id);
    assert_eq!(line["value"]["channel"], "CHANNEL_API");
    assert_eq!(line["value"]["body"]["text"], text);
    assert_eq!(line["headers"]["ce_type"], "omni.v1.ConversationEvent");

    // A client that is not ours: confluent-kafka + classes generated by protoc from proto/.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/decode_conversation.py");
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
    let output = std::process::Command::new("python3")
        .args([script, &pipeline.broker.bootstrap(), proto_dir, &event_id])
        .output()?;
    assert!(
        output.status.success(),
        "python consumer failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let decoded: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(decoded["event_id"], event_id);
    assert_eq!(decoded["channel"], "CHANNEL_API");
    assert_eq!(decoded["text"], text);
    assert_eq!(decoded["ce_type"], "omni.v1.ConversationEvent");
    Ok(())
}
