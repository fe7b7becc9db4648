//! Acknowledgements end to end on real servers: a customer's message opens an RT ticket,
//! omni-notifier writes the acknowledgement, omni-sender delivers it (email through the local
//! Postfix into Dovecot's catch-all `customers`; WhatsApp through a stub of the Cloud API that
//! checks the request as the "Send messages" reference documents it, tests/src/whatsapp_api.rs).

use std::time::Duration;

use omni_e2e::whatsapp_api::WhatsAppApi;
use omni_e2e::{Pipeline, Service, eventually, header, mail, nonce, serial, smtp_port};
use omni_proto::v1::delivery::Outcome;

const TIMEOUT: Duration = Duration::from_secs(90);

/// omni-sender and omni-notifier beside the pipeline, with `extra` in their environment.
async fn acknowledging(pipeline: &Pipeline, extra: &[(&str, &str)]) -> anyhow::Result<(Service, Service)> {
    let smtp = format!("smtp://127.0.0.1:{}", smtp_port());
    let mut env = vec![("OMNI__SENDER__EMAIL__SMTP_URL", smtp.as_str())];
    env.extend_from_slice(extra);
    let sender = pipeline.spawn_beside("sender", &env).await?;
    let notifier = pipeline.spawn_beside("notifier", &env).await?;
    Ok((sender, notifier))
}

fn body(message: &str) -> String {
    let parsed = mail_parser::MessageParser::default().parse(message.as_bytes()).expect("a mail");
    parsed.body_text(0).unwrap_or_default().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turkish_return_is_acknowledged_once_in_turkish_and_robots_and_lists_are_not() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let (_sender, notifier) = acknowledging(&pipeline, &[]).await?;
    let run = nonce();
    let customer = format!("ayse-{run}@example.com");
    let first_id = format!("iade-{run}@mail.example.com");
    pipeline.mailbox.deliver(&mail(
        &format!("Ayşe Yılmaz <{customer}>"),
        &first_id,
        "",
        "İADE talebi",
        "Merhaba, geçen hafta aldığım ayakkabıları iade etmek istiyorum. Nasıl yapabilirim?",
    ));
    let rt = &pipeline.rt;
    let ticket = rt.only_ticket_of(&customer).await?;
    assert_eq!(rt.custom_field(&ticket, "omni Language").await?, ["tr"]);
    assert!(rt.custom_field(&ticket, "omni Tags").await?.contains(&"returns".to_owned()));

    let customers = &pipeline.mailbox;
    eventually("the acknowledgement in the customer's mailbox", TIMEOUT, || async {
        Ok(!customers.fetch("customers", &["to", &customer])?.is_empty())
    })
    .await?;
    let ack = customers.fetch("customers", &["to", &customer])?.remove(0);
    assert_eq!(header(&ack, "Auto-Submitted").as_deref(), Some("auto-replied"), "{ack}");
    assert_eq!(header(&ack, "In-Reply-To").as_deref(), Some(format!("<{first_id}>").as_str()));
    let subject = header(&ack, "Subject").unwrap_or_default();
    assert!(subject.contains(&format!("[omni-local #{ticket}]")), "subject: {subject}");
    let text = body(&ack);
    assert!(text.contains(&format!("Talep numaranız #{ticket}.")), "{text}");
    // The expected answer, from the shipped business hours: a date and time, Turkish style.
    let expected = text.split("En geç ").nth(1).unwrap_or_default();
    let stamp: String = expected.chars().take(16).collect();
    assert!(
        jiff::civil::DateTime::strptime("%d.%m.%Y %H:%M", &stamp).is_ok(),
        "no expected time in: {text}"
    );
    assert!(text.contains("https://shop.example/tr/yardim/iade"), "the returns article: {text}");

    // A second message in the same conversation: added to the ticket, no second acknowledgement.
    let our_id = header(&ack, "Message-ID").unwrap_or_default();
    let thread = format!("In-Reply-To: {our_id}\r\nReferences: <{first_id}> {our_id}\r\n");
    pipeline.mailbox.deliver(&mail(
        &format!("Ayşe Yılmaz <{customer}>"),
        &format!("iade2-{run}@mail.example.com"),
        &thread,
        &format!("Re: {subject}"),
        "Sipariş numaram 4829113, teşekkürler.",
    ));
    eventually("the follow-up on the same ticket", TIMEOUT, || async {
        Ok(rt.texts(&ticket).await?.iter().any(|text| text.contains("4829113")))
    })
    .await?;

    // Robots and lists: an auto-reply and a bounce open no ticket; list mail and a noreply
    // address open one, without an acknowledgement.
    let robots = robot_mails(&run);
    for (_, bytes) in &robots {
        pipeline.mailbox.deliver(bytes);
    }
    for (address, _) in &robots {
        let event_id = omni_channels::email::ids("support", robots_mail(&robots, address)).event_id;
        let delivery = pipeline.delivery_of(&event_id, TIMEOUT).await?;
        let expected = if address.starts_with("list") || address.starts_with("noreply") {
            Outcome::Created
        } else {
            Outcome::Skipped
        };
        assert_eq!(delivery.outcome(), expected, "{address}: {delivery:?}");
    }
    for reason in ["mailing_list", "robot_address"] {
        let series = format!("omni_notifier_suppressed_total{{reason=\"{reason}\"");
        eventually(&format!("a suppression counted as {reason}"), TIMEOUT, || async {
            Ok(notifier.metric(&series).await.unwrap_or(0.0) >= 1.0)
        })
        .await?;
    }
    // Every delivery handled again, as after a crash before the offsets were stored: a second
    // notifier in a group of its own writes the same acknowledgement again, which the sender's
    // outbox does not send twice.
    let again = pipeline
        .spawn_beside(
            "notifier",
            &[
                ("OMNI__NOTIFIER__GROUP_ID", "omni-notifier-again"),
                ("OMNI__NOTIFIER__INSTANCE_ID", "notifier-again"),
            ],
        )
        .await?;
    let written = "omni_notifier_acknowledgements_total{channel=\"email\"";
    eventually("the acknowledgement written again", TIMEOUT, || async {
        Ok(again.metric(written).await.unwrap_or(0.0) >= 1.0)
    })
    .await?;
    // Let anything wrongly sent arrive, then count: one mail to the customer, none to the others.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(customers.fetch("customers", &["to", &customer])?.len(), 1);
    for (address, _) in &robots {
        assert!(customers.fetch("customers", &["to", address])?.is_empty(), "{address} got mail");
    }
    Ok(())
}

fn robots_mail<'a>(robots: &'a [(String, Vec<u8>)], address: &str) -> &'a [u8] {
    &robots.iter().find(|(a, _)| a == address).expect("listed").1
}

/// An auto-reply, a bounce, a list message and a noreply address, each from an address of its own.
fn robot_mails(run: &str) -> Vec<(String, Vec<u8>)> {
    let auto = format!("away-{run}@example.com");
    let bounce = format!("mailer-{run}@mx.example.com");
    let list = format!("list-{run}@lists.example.com");
    let noreply = format!("noreply-{run}@shop.example.com");
    vec![
        (
            auto.clone(),
            mail(
                &auto,
                &format!("auto-{run}@example.com"),
                "Auto-Submitted: auto-replied\r\n",
                "Out of office",
                "I am away until Monday.",
            ),
        ),
        (
            bounce.clone(),
            format!(
                "From: {bounce}\r\nTo: support@omni.local\r\nSubject: Undelivered Mail\r\nMessage-ID: <bounce-{run}@mx.example.com>\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; x@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n--b--\r\n"
            )
            .into_bytes(),
        ),
        (
            list.clone(),
            mail(
                &list,
                &format!("list-{run}@lists.example.com"),
                "List-Id: <customers.lists.example.com>\r\nPrecedence: list\r\n",
                "Where is my order?",
                "My order has not arrived yet, can you check?",
            ),
        ),
        (
            noreply.clone(),
            mail(
                &noreply,
                &format!("noreply-{run}@shop.example.com"),
                "",
                "Your order",
                "Your order 4829113 has shipped and is on its way to you.",
            ),
        ),
    ]
}

/// The WhatsApp text fixture from a customer of its own, with `text`.
fn whatsapp_message(customer: &str, run: &str, text: &str) -> String {
    let mut body: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/omni-channels/src/whatsapp/fixtures/text-tr.json"
    )))
    .expect("the fixture");
    let value = &mut body["entry"][0]["changes"][0]["value"];
    value["contacts"][0]["wa_id"] = customer.into();
    let message = &mut value["messages"][0];
    message["from"] = customer.into();
    message["id"] = format!("wamid.ACK-{run}").into();
    message["text"]["body"] = text.into();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    message["timestamp"] = now.to_string().into();
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arabic_whatsapp_message_gets_one_arabic_acknowledgement_through_the_cloud_api() -> anyhow::Result<()> {
    let _serial = serial().await;
    let token = "EAAG-omni-test";
    let (whatsapp, api_url) = WhatsAppApi::start(token).await?;
    let pipeline = Pipeline::start(&[]).await?;
    let (_sender, _notifier) = acknowledging(
        &pipeline,
        &[
            ("OMNI__SENDER__WHATSAPP__DEFAULT__ACCESS_TOKEN", token),
            ("OMNI__SENDER__WHATSAPP__DEFAULT__API_BASE_URL", &api_url),
            ("OMNI__NOTIFIER__CHANNELS__WHATSAPP__FIRST_RESPONSE_MINUTES", "120"),
        ],
    )
    .await?;
    let run = nonce();
    let digits: String = run.chars().filter(char::is_ascii_digit).take(6).collect();
    let customer = format!("9665{digits:0>6}01");
    let text = "السلام عليكم، طلبت حذاء قبل أسبوع وأريد إرجاعه لأن المقاس صغير. كيف أرجعه؟";
    let (status, answer) = pipeline
        .post_webhook("whatsapp", "application/json", &whatsapp_message(&customer, &run, text))
        .await?;
    assert_eq!(status, 200, "{answer}");
    let requestor = format!("+{customer}@phone.invalid");
    let rt = &pipeline.rt;
    let ticket = rt.only_ticket_of(&requestor).await?;
    eventually("the acknowledgement sent", TIMEOUT, || async { Ok(!whatsapp.calls().is_empty()) }).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = whatsapp.calls();
    assert_eq!(calls.len(), 1, "one acknowledgement: {calls:?}");
    let call = &calls[0];
    assert!(call.violations.is_empty(), "not as the Cloud API documents: {:?}", call.violations);
    assert_eq!(call.body["to"], customer.as_str());
    assert_eq!(call.body["type"], "text");
    assert_eq!(call.body["context"]["message_id"], format!("wamid.ACK-{run}"));
    let sent = call.body["text"]["body"].as_str().unwrap_or_default();
    assert!(sent.contains(&format!("رقم طلبك #{ticket}.")), "{sent}");
    assert!(
        sent.contains("https://shop.example/ar/help/returns"),
        "the Arabic returns article: {sent}"
    );
    Ok(())
}

/// A customer's acknowledgement record decides only within `[notifier] window_secs` (3 s here):
/// past it, it is tombstoned in `omni.state.notifier.v1` (`omni_notifier_state_expired_total`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_record_past_its_window_is_tombstoned() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let (_sender, notifier) = acknowledging(&pipeline, &[("OMNI__NOTIFIER__WINDOW_SECS", "3")]).await?;
    let run = nonce();
    let customer = format!("jan-{run}@example.nl");
    pipeline.mailbox.deliver(&mail(
        &format!("Jan de Vries <{customer}>"),
        &format!("window-{run}@mail.example.nl"),
        "",
        "Retour",
        "Ik wil mijn bestelling retourneren.",
    ));
    let bootstrap = pipeline.broker.bootstrap();
    let values_of = || -> Vec<usize> {
        omni_e2e::read_topic(&bootstrap, omni_kafka::topics::STATE_NOTIFIER)
            .map(|records| {
                let mine = records.iter().filter(|r| String::from_utf8_lossy(&r.key).contains(&customer));
                mine.map(|r| r.value.len()).collect()
            })
            .unwrap_or_default()
    };
    eventually("the acknowledgement recorded, then tombstoned", TIMEOUT, || {
        let values = values_of();
        let done = values.first().is_some_and(|len| *len > 0) && values.last() == Some(&0);
        async move { Ok(done) }
    })
    .await
    .map_err(|error| error.context(format!("records: {:?}\nomni-notifier log:\n{}", values_of(), notifier.log())))?;
    assert!(notifier.metric("omni_notifier_state_expired_total").await? >= 1.0);
    Ok(())
}
