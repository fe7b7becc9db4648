//! Email end to end: Dovecot -> omni-email -> tansu -> normalizer -> router -> Request Tracker.

use std::time::Duration;

use omni_e2e::{Mailbox, Pipeline, nonce, serial};
use omni_proto::v1::delivery::Outcome;

const TIMEOUT: Duration = Duration::from_secs(90);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../crates/omni-channels/src/email/fixtures/{name}",
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
    // A client that drops References and keeps only In-Reply-To, naming the Turkish message
    // (not the root): joined through the normalizer's known events.
    let mobile = plain(
        &sender,
        &format!("mobile-{run}@mail.example.com"),
        &format!("In-Reply-To: <tr-{run}@mail.example.com>\r\n"),
        "Re: Siparişim nerede?",
        "Telefondan yazıyorum: acil lütfen.\n\nSent from my phone",
    );
    // An out-of-office reply to something that has no ticket, and one to the thread.
    let auto = replace(
        &fixture("auto-reply.eml"),
        "<auto-1@mail.example.com>",
        &format!("<auto-{run}@mail.example.com>"),
    );
    let auto_in_thread = replace(
        &replace(&auto, &format!("<auto-{run}@"), &format!("<auto-thread-{run}@")),
        "<shop-reply-9@shop.example>",
        &format!("<{root_id}>"),
    );

    for message in [&first, &turkish, &mobile, &auto, &auto_in_thread] {
        pipeline.mailbox.deliver(message);
    }
    let first_delivery = pipeline.delivery_of(&event_id_of(&first), TIMEOUT).await?;
    assert_eq!(first_delivery.outcome(), Outcome::Created, "{first_delivery:?}");
    let ticket = first_delivery.ticket_id.clone();
    for message in [&turkish, &mobile, &auto_in_thread] {
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

    // A mail without thread headers whose subject carries RT's ticket reference joins the ticket.
    let by_subject = plain(
        &sender,
        &format!("subject-{run}@mail.example.com"),
        "",
        &format!("Re: [omni-local #{ticket}] Siparişim nerede?"),
        "Kargo numarası nedir?",
    );
    pipeline.mailbox.deliver(&by_subject);
    let delivery = pipeline.delivery_of(&event_id_of(&by_subject), TIMEOUT).await?;
    assert_eq!(
        (delivery.outcome(), delivery.ticket_id.as_str()),
        (Outcome::Appended, ticket.as_str())
    );

    assert_eq!(
        pipeline.rt.tickets_of_requestor(&format!("ayse+{run}@example.com")).await?,
        [ticket.as_str()]
    );
    assert_eq!(pipeline.rt.requestors(&ticket).await?, [format!("ayse+{run}@example.com")]);
    let texts = pipeline.rt.texts(&ticket).await?;
    assert_eq!(texts.len(), 5, "{texts:?}");
    assert_eq!(texts[0], "Merhaba, 1042 numaralı siparişim nerede?");
    assert_eq!(
        texts[1],
        "Merhaba,\n\nSiparişim 1042 hâlâ gelmedi. İade etmek istiyorum.\n\nTeşekkürler,\nAyşe"
    );
    assert_eq!(texts[2], "Telefondan yazıyorum: acil lütfen.\n\nSent from my phone");
    assert_eq!(texts[3], "I am out of office until Monday.");
    assert_eq!(texts[4], "Kargo numarası nedir?");
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
    let once_each = |pipeline: &Pipeline| -> anyhow::Result<()> {
        let events = pipeline.conversation_events()?;
        for id in &ids {
            let copies = events.iter().filter(|e| &e.event_id == id).count();
            assert_eq!(copies, 1, "{id} is {copies} times in the conversation topic");
        }
        Ok(())
    };
    once_each(&pipeline)?;

    // The folder is recreated with the same mail: new UIDVALIDITY, everything read again; the
    // normalizer knows every event id, so neither the conversation topic nor the helpdesk gets
    // a second copy.
    let skipped_before = pipeline.normalizer.metric(omni_e2e::NORMALIZER_DUPLICATES).await?;
    pipeline.mailbox.recreate();
    for message in &messages {
        pipeline.mailbox.deliver(message);
    }
    pipeline.email.restart_with(&[]).await?;
    omni_e2e::eventually("the re-read mailbox to reach the normalizer", TIMEOUT, || async {
        Ok(pipeline.normalizer.metric(omni_e2e::NORMALIZER_DUPLICATES).await? >= skipped_before + count as f64)
    })
    .await
    .map_err(|error| anyhow::anyhow!("{error:#}\nemail log:\n{}", pipeline.email.log()))?;
    once_each(&pipeline)?;
    check(&pipeline).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_dead_lettered_and_the_mailbox_goes_on() -> anyhow::Result<()> {
    use prost::Message as _;
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let run = nonce();
    let before = plain(
        &format!("<piet+{run}@example.nl>"),
        &format!("before-{run}@example.nl"),
        "",
        "Retour",
        "Eerste bericht",
    );
    // Junk with no header at all: IMAP servers store whatever they are given.
    let junk = [b"\xff\xfe\x01 ".as_slice(), run.as_bytes(), b" ;; \x7f not mail\r\n"].concat();
    let after = plain(
        &format!("<piet+{run}@example.nl>"),
        &format!("after-{run}@example.nl"),
        "",
        "Retour 2",
        "Tweede bericht",
    );
    for message in [&before, &junk, &after] {
        pipeline.mailbox.deliver(message);
    }
    pipeline.delivery_of(&event_id_of(&before), TIMEOUT).await?;
    pipeline.delivery_of(&event_id_of(&after), TIMEOUT).await?;
    let letters: Vec<omni_proto::v1::DeadLetter> = pipeline
        .topic("omni.deadletter.v1")?
        .iter()
        .map(|r| omni_proto::v1::DeadLetter::decode(r.value.as_slice()))
        .collect::<Result<_, _>>()?;
    let junk_id = event_id_of(&junk);
    let letter = letters
        .iter()
        .find(|l| l.event_id == junk_id)
        .unwrap_or_else(|| panic!("no dead letter for the junk message: {letters:?}"));
    assert_eq!(letter.fault(), omni_proto::v1::dead_letter::Fault::Input);
    assert!(letter.reason.starts_with("malformed imap payload"), "{}", letter.reason);
    let raw = omni_proto::v1::RawRecord::decode(letter.original_value.as_slice())?;
    assert_eq!(raw.payload, junk, "the dead letter keeps the exact bytes");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_photo_too_large_for_a_record_leaves_its_text_in_the_ticket() -> anyhow::Result<()> {
    use base64::Engine as _;
    let _serial = serial().await;
    // Without an object store (with one, tests/tests/attachments.rs: the photo is attached).
    let pipeline = Pipeline::start(&[("OMNI__OBJECTS__URL", "")]).await?;
    let run = nonce();
    // A 3 MB photo: four times the connector's max_inline_bytes (768 KiB).
    let photo: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&photo);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    let message = format!(
        "From: Sanne de Wit <sanne+{run}@example.nl>\r\nTo: support@shop.example\r\nSubject: Kapotte vaas\r\n\
         Message-ID: <vaas-{run}@example.nl>\r\nDate: Sat, 05 Dec 2026 09:00:00 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         De vaas uit bestelling 10442 is gebroken aangekomen. Zie de foto.\r\n--b1\r\nContent-Type: image/jpeg\r\n\
         Content-Disposition: attachment; filename=\"vaas.jpg\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        lines.join("\r\n")
    )
    .into_bytes();
    pipeline.mailbox.deliver(&message);
    let delivery = pipeline.delivery_of(&event_id_of(&message), TIMEOUT).await?;
    assert_eq!(delivery.outcome(), Outcome::Created, "{delivery:?}");
    let texts = pipeline.rt.texts(&delivery.ticket_id).await?;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(
        texts[0].starts_with("De vaas uit bestelling 10442 is gebroken aangekomen. Zie de foto."),
        "{}",
        texts[0]
    );
    // The photo's bytes stayed on the server: listed with its size and its IMAP section.
    let listed = format!(
        "- vaas.jpg (image/jpeg, 3000000 bytes): imap://support/{};UIDVALIDITY=",
        pipeline.mailbox.folder
    );
    assert!(texts[0].contains(&listed), "{}", texts[0]);
    assert!(texts[0].trim_end().ends_with("/;UID=1/;SECTION=2"), "{}", texts[0]);
    Ok(())
}
