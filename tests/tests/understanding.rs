//! Understanding end to end: a customer's message reaches Request Tracker with the language,
//! problem areas and order numbers the normalizer found in it (Dovecot and the HTTP API ->
//! omni -> RT's `omni Tags`, `omni Language`, `omni Order Numbers`).

use std::time::Duration;

use omni_e2e::{Pipeline, nonce, serial};
use omni_proto::v1::delivery::Outcome;

const TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turkish_return_and_an_arabic_card_problem_arrive_tagged_in_their_language() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let run = nonce();

    // A Turkish email typed partly without Turkish letters, about a return and its refund.
    let message_id = format!("iade-{run}@mail.example.com");
    let email = format!(
        "From: Ayşe Yılmaz <ayse+{run}@example.com>\r\nTo: support@shop.example\r\nSubject: İADE talebi\r\nMessage-ID: <{message_id}>\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nMerhaba, gecen hafta aldigim ayakkabilari iade etmek istiyorum, sipariş numaram 4829113. Paramı ne zaman geri alırım?\r\n"
    );
    pipeline.mailbox.deliver(email.as_bytes());
    let event_id = omni_channels::email::ids("support", email.as_bytes()).event_id;
    let delivery = pipeline.delivery_of(&event_id, TIMEOUT).await?;
    assert_eq!(delivery.outcome(), Outcome::Created, "{delivery:?}");
    let ticket = &delivery.ticket_id;
    assert_eq!(pipeline.rt.custom_field(ticket, "omni Language").await?, ["tr"]);
    let mut tags = pipeline.rt.custom_field(ticket, "omni Tags").await?;
    tags.sort();
    assert_eq!(tags, ["channel-email", "refunds", "returns"]);
    assert_eq!(pipeline.rt.custom_field(ticket, "omni Order Numbers").await?, ["4829113"]);

    // An Arabic chat message through the HTTP API, with letter variants and tatweel.
    let body = serde_json::json!({
        "customer": {"email": format!("khalid+{run}@example.com")},
        "text": "السلام عليكم، البطاقـــة انرفضت وأنا أدفع الطلب رقم ٥٥١٢٣٤٨، وش الحل؟",
        "thread_id": format!("ar-{run}"),
    });
    let event_id = pipeline.post_ok(&body.to_string()).await?;
    let delivery = pipeline.delivery_of(&event_id, TIMEOUT).await?;
    assert_eq!(delivery.outcome(), Outcome::Created, "{delivery:?}");
    let ticket = &delivery.ticket_id;
    assert_eq!(pipeline.rt.custom_field(ticket, "omni Language").await?, ["ar"]);
    let mut tags = pipeline.rt.custom_field(ticket, "omni Tags").await?;
    tags.sort();
    assert_eq!(tags, ["cards", "channel-api"]);
    assert_eq!(pipeline.rt.custom_field(ticket, "omni Order Numbers").await?, ["5512348"]);

    // What the normalizer wrote carries the same, and its counters saw both.
    let events = pipeline.conversation_events()?;
    let event = events.iter().find(|e| e.event_id == event_id).expect("the Arabic event");
    assert_eq!(
        (event.language.as_str(), event.tags.as_slice()),
        ("ar", ["cards".to_owned()].as_slice())
    );
    assert_eq!(event.order_numbers, ["5512348"]);
    assert!(pipeline.normalizer.metric("omni_normalizer_tags_total{tag=\"returns\"}").await? >= 1.0);
    assert!(
        pipeline
            .normalizer
            .metric("omni_normalizer_languages_total{language=\"ar\"}")
            .await?
            >= 1.0
    );
    Ok(())
}
