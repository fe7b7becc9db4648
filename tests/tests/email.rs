//! Email end to end: Dovecot -> omni-email -> tansu -> normalizer -> router -> Request Tracker.

use std::time::Duration;

use omni_e2e::{Mailbox, Pipeline, nonce, serial};
use omni_proto::v1::delivery::Outcome;

const TIMEOUT: Duration = Duration::from_secs(90);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../crates/omni-channels/tests/fixtures/email/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn replace(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let position = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("`{from}` not in message"));
    [&bytes[..position], to.as_bytes(), &bytes[position + from.len()..]].concat()
}

fn plain(from: &str, message_id: &str, headers: &str, subject: &str, text: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@shop.example\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n{headers}Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    )
    .into_bytes()
}

fn event_id_of(message: &[u8]) -> String {
    omni_channels::email::ids("support", message).event_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_of_mails_becomes_one_ticket_and_an_auto_reply_opens_none() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let run = nonce();
    let sender = format!("Ayşe Yılmaz <ayse+{run}@example.com>");
    let root_id = format!("root-{run}@mail.example.com");

    let first = plain(
        &sender,
        &root_id,
        "",
        "Siparişim nerede?",
        "Merhaba, 1042 numaralı siparişim nerede?",
    );
    // The Turkish windows-1254 fixture as a reply in the thread.
    let turkish = replace(
        &fixture("tr-windows-1254.eml"),
        "<tr-1@mail.example.com>",
        &format!("<tr-{run}@mail.example.com>\r\nIn-Reply-To: <{root_id}>\r\nReferences: <{root_id}>"),
    );
    let turkish = replace(&turkish, "ayse@example.com", &format!("ayse+{run}@example.com"));
    // A client that drops References and keeps only In-Reply-To.
    let mobile = plain(
        &sender,
        &format!("mobile-{run}@mail.example.com"),
        &format!("In-Reply-To: <{root_id}>\r\n"),
        "Re: Siparişim nerede?",
        "Telefondan yazıyorum: acil lütfen.\n\nSent from my phone",
    );
    // An out-of-office reply to something that has no ticket.
    let auto = replace(
        &fixture("auto-reply.eml"),
        "<auto-1@mail.example.com>",
        &format!("<auto-{run}@mail.example.com>"),
    );

    for message in [&first, &turkish, &mobile, &auto] {
        pipeline.mailbox.deliver(message);
    }
    let first_delivery = pipeline.delivery_of(&event_id_of(&first), TIMEOUT).await?;
    assert_eq!(first_delivery.outcome(), Outcome::Created, "{first_delivery:?}");
    let ticket = first_delivery.ticket_id.clone();
    for message in [&turkish, &mobile] {
        let delivery = pipeline.delivery_of(&event_id_of(message), TIMEOUT).await?;
        assert_eq!(
            (delivery.outcome(), delivery.ticket_id.as_str()),
            (Outcome::Appended, ticket.as_str())
        );
    }
    assert_eq!(
        pipeline.delivery_of(&event_id_of(&auto), TIMEOUT).await?.outcome(),
        Outcome::Skipped
    );

    assert_eq!(
        pipeline.rt.tickets_of_requestor(&format!("ayse+{run}@example.com")).await?,
        [ticket.as_str()]
    );
    assert_eq!(pipeline.rt.requestors(&ticket).await?, [format!("ayse+{run}@example.com")]);
    let texts = pipeline.rt.texts(&ticket).await?;
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert_eq!(texts[0], "Merhaba, 1042 numaralı siparişim nerede?");
    assert_eq!(
        texts[1],
        "Merhaba,\n\nSiparişim 1042 hâlâ gelmedi. İade etmek istiyorum.\n\nTeşekkürler,\nAyşe"
    );
    assert_eq!(texts[2], "Telefondan yazıyorum: acil lütfen.\n\nSent from my phone");
    let subject = pipeline.rt.get(&format!("/ticket/{ticket}")).await?["Subject"].clone();
    assert_eq!(subject, "Siparişim nerede?");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_survives_connector_kills_and_a_uidvalidity_change_without_doubles() -> anyhow::Result<()> {
    let _serial = serial().await;
    let run = nonce();
    let count = 120;
    let root_id = format!("bf-0-{run}@mail.example.com");
    let sender = format!("Jan de Vries <jan+{run}@example.nl>");
    let messages: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let thread = if i == 0 {
                String::new()
            } else {
                format!("References: <{root_id}>\r\n")
            };
            plain(
                &sender,
                &format!("bf-{i}-{run}@mail.example.com"),
                &thread,
                "Bestelling 1042",
                &format!("bericht {i}"),
            )
        })
        .collect();
    let mailbox = Mailbox::create();
    for message in &messages {
        mailbox.deliver(message);
    }
    let mut pipeline = Pipeline::start_with_mailbox(mailbox, &[("OMNI__EMAIL__FETCH_BATCH", "10")]).await?;
    for delay_ms in [300_u64, 700, 500] {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        pipeline.email.sigkill();
        pipeline.email.restart_with(&[]).await?;
    }
    let ids: Vec<String> = messages.iter().map(|m| event_id_of(m)).collect();
    for id in &ids {
        pipeline.delivery_of(id, TIMEOUT).await?;
    }
    let check = |pipeline: &Pipeline| {
        let rt = pipeline.rt.clone();
        let expected: Vec<String> = (0..count).map(|i| format!("bericht {i}")).collect();
        let email = format!("jan+{run}@example.nl");
        async move {
            let tickets = rt.tickets_of_requestor(&email).await?;
            assert_eq!(tickets.len(), 1, "{tickets:?}");
            let texts = rt.texts(&tickets[0]).await?;
            assert_eq!(
                texts.len(),
                expected.len(),
                "ticket {} has {} of {} messages",
                tickets[0],
                texts.len(),
                expected.len()
            );
            assert_eq!(texts, expected, "every message once, in order");
            anyhow::Ok(())
        }
    };
    check(&pipeline).await?;
    let events = pipeline.conversation_events()?;
    for id in &ids {
        assert!(events.iter().any(|e| &e.event_id == id), "{id} missing from the conversation topic");
    }

    // The folder is recreated with the same mail: new UIDVALIDITY, everything read again, and
    // the helpdesk still has every message once.
    pipeline.mailbox.recreate();
    for message in &messages {
        pipeline.mailbox.deliver(message);
    }
    pipeline.email.restart_with(&[]).await?;
    omni_e2e::eventually("the re-read mailbox to reach the router", TIMEOUT, || async {
        let last = ids.last().unwrap();
        Ok(pipeline.deliveries()?.iter().filter(|d| &d.event_id == last).count() >= 2)
    })
    .await
    .map_err(|error| anyhow::anyhow!("{error:#}\nemail log:\n{}", pipeline.email.log()))?;
    check(&pipeline).await?;
    Ok(())
}
