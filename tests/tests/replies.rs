//! The way back, end to end on real servers: a customer's mail opens an RT ticket, an agent
//! answers in RT (as `root`, through REST2, while omni writes as its own user `omni`),
//! omni-replies takes the answer, omni-sender mails it through the local Postfix, and the
//! customer's copy lands in the local Dovecot's catch-all account `customers`.

use std::time::Duration;

use anyhow::Context as _;
use omni_e2e::slack_api::SlackApi;
use omni_e2e::telegram::TelegramApi;
use omni_e2e::whatsapp_api::WhatsAppApi;
use omni_e2e::{Pipeline, Service, eventually, header, mail, nonce, serial, smtp_port};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(90);

/// omni-replies and omni-sender beside a running pipeline, with `extra` in their environment.
async fn return_path(pipeline: &Pipeline, extra: &[(&str, &str)]) -> anyhow::Result<(Service, Service)> {
    let smtp = format!("smtp://127.0.0.1:{}", smtp_port());
    let mut env = vec![
        ("OMNI__REPLIES__POLL_INTERVAL_MS", "500"),
        ("OMNI__SENDER__EMAIL__SMTP_URL", smtp.as_str()),
    ];
    env.extend_from_slice(extra);
    let replies = pipeline.spawn_beside("replies", &env).await?;
    let sender = pipeline.spawn_beside("sender", &env).await?;
    Ok((replies, sender))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_answer_in_rt_reaches_the_customer_once_threaded_and_the_answer_comes_back() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let (_replies, _sender) = return_path(&pipeline, &[]).await?;
    let run = nonce();
    let customer = format!("jan-{run}@example.nl");
    let first_id = format!("first-{run}@mail.example.nl");
    pipeline.mailbox.deliver(&mail(
        &format!("Jan de Vries <{customer}>"),
        &first_id,
        "",
        "Waar blijft mijn bestelling?",
        "Hallo, mijn bestelling 1042 is nog niet binnen.",
    ));
    let rt = &pipeline.rt;
    let ticket = rt.only_ticket_of(&customer).await?;

    rt.answer(&ticket, "Beste Jan, uw pakket is onderweg en komt morgen.").await?;
    let customers = &pipeline.mailbox;
    eventually("the answer in the customer's mailbox", TIMEOUT, || async {
        Ok(!customers.fetch("customers", &["to", &customer])?.is_empty())
    })
    .await?;
    let answer = customers.fetch("customers", &["to", &customer])?.remove(0);
    assert_eq!(header(&answer, "In-Reply-To").as_deref(), Some(format!("<{first_id}>").as_str()));
    assert!(header(&answer, "References").unwrap_or_default().contains(&first_id), "{answer}");
    let subject = header(&answer, "Subject").unwrap_or_default();
    assert!(subject.contains(&format!("[omni-local #{ticket}]")), "subject: {subject}");
    assert!(answer.contains("uw pakket is onderweg"), "{answer}");
    assert_eq!(header(&answer, "From").as_deref(), Some("Support <support@omni.local>"));
    let our_id = header(&answer, "Message-ID").unwrap_or_default();
    assert!(our_id.starts_with("<omni-reply."), "{our_id}");

    // The customer answers the agent's mail: the same ticket, no new one.
    let second_id = format!("second-{run}@mail.example.nl");
    let thread = format!("In-Reply-To: {our_id}\r\nReferences: <{first_id}> {our_id}\r\n");
    pipeline.mailbox.deliver(&mail(
        &format!("Jan de Vries <{customer}>"),
        &second_id,
        &thread,
        &format!("Re: {subject}"),
        "Dank u, ik wacht af.",
    ));
    eventually("the customer's answer on the same ticket", TIMEOUT, || async {
        Ok(rt.texts(&ticket).await?.iter().any(|text| text.contains("ik wacht af")))
    })
    .await?;
    // A copy of omni's own mail coming back into the support mailbox (a Bcc) opens nothing and
    // adds nothing: the normalizer keeps it out.
    let ignored = "omni_normalizer_records_total{outcome=\"ignored\"";
    let before = pipeline.normalizer.metric(ignored).await.unwrap_or(0.0);
    pipeline.mailbox.deliver(answer.as_bytes());
    eventually("the copy of omni's answer ignored", TIMEOUT, || async {
        Ok(pipeline.normalizer.metric(ignored).await.unwrap_or(0.0) > before)
    })
    .await?;
    assert_eq!(rt.tickets_of_requestor(&customer).await?, std::slice::from_ref(&ticket));
    // The agent's answer and the customer's: nothing more, not even a comment.
    assert_eq!(rt.transactions(&ticket, "Correspond").await?.len(), 2);
    assert!(rt.transactions(&ticket, "Comment").await?.is_empty());
    // Exactly one mail reached the customer; the customer's own answer did not start another.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(customers.fetch("customers", &["to", &customer])?.len(), 1);
    Ok(())
}

/// Message-ID and body of each mail, in arrival order.
fn ids_and_bodies(mails: &[String]) -> Vec<(String, String)> {
    mails
        .iter()
        .map(|mail| {
            let parsed = mail_parser::MessageParser::default().parse(mail.as_bytes()).expect("a mail");
            let id = parsed.message_id().unwrap_or_default().to_owned();
            (id, parsed.body_text(0).unwrap_or_default().trim().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_killed_again_and_again_loses_no_answer_and_keeps_their_order() -> anyhow::Result<()> {
    const ANSWERS: usize = 6;
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let (replies, mut sender) = return_path(&pipeline, &[]).await?;
    let run = nonce();
    let customer = format!("ayse-{run}@example.com");
    pipeline.mailbox.deliver(&mail(
        &format!("Ayşe Yılmaz <{customer}>"),
        &format!("k-{run}@mail.example.com"),
        "",
        "Siparişim nerede?",
        "Merhaba, siparişim nerede?",
    ));
    let rt = &pipeline.rt;
    let ticket = rt.only_ticket_of(&customer).await?;
    let mut kills = 0;
    for answer in 0..ANSWERS {
        rt.answer(&ticket, &format!("Yanıt {answer}: kargonuz yolda.")).await?;
        // Kill the sender at some point of its work on the answers so far, and start it again.
        tokio::time::sleep(Duration::from_millis(150 + 200 * (answer as u64 % 4))).await;
        sender.relaunch();
        kills += 1;
    }
    sender.wait_ready().await?;
    let customers = &pipeline.mailbox;
    eventually("every answer in the customer's mailbox", TIMEOUT, || async {
        let mails = customers.fetch("customers", &["to", &customer])?;
        let mut ids: Vec<String> = ids_and_bodies(&mails).into_iter().map(|(id, _)| id).collect();
        ids.sort();
        ids.dedup();
        Ok(ids.len() >= ANSWERS)
    })
    .await
    .with_context(|| format!("omni-sender log:\n{}\nomni-replies log:\n{}", sender.log(), replies.log()))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mails = ids_and_bodies(&customers.fetch("customers", &["to", &customer])?);
    let mut first_seen: Vec<&(String, String)> = Vec::new();
    for mail in &mails {
        match first_seen.iter().find(|(id, _)| *id == mail.0) {
            // Email is at-least-once after a crash: a copy is the same mail, same id and text.
            Some(first) => assert_eq!(first.1, mail.1, "two mails share Message-ID {}", mail.0),
            None => first_seen.push(mail),
        }
    }
    let texts: Vec<String> = first_seen.iter().map(|(_, text)| text.clone()).collect();
    let expected: Vec<String> = (0..ANSWERS).map(|a| format!("Yanıt {a}: kargonuz yolda.")).collect();
    assert_eq!(texts, expected, "every answer once, in the agent's order");
    println!(
        "{ANSWERS} answers, {kills} sender kills: {} mails ({} copies sent again after a crash)",
        mails.len(),
        mails.len() - ANSWERS
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_customer_gets_the_answer_once_through_429s_and_a_refusal_is_noted_on_the_ticket() -> anyhow::Result<()> {
    let _serial = serial().await;
    let token = "123456:omni-test-token";
    let (telegram, api_url) = TelegramApi::start(token).await?;
    let pipeline = Pipeline::start(&[]).await?;
    let (replies, sender) = return_path(
        &pipeline,
        &[
            ("OMNI__SENDER__TELEGRAM__DEFAULT__BOT_TOKEN", token),
            ("OMNI__SENDER__TELEGRAM__DEFAULT__API_BASE_URL", &api_url),
        ],
    )
    .await?;
    // A chat of its own, so the conversation (one per chat) is new in the shared RT.
    let chat: u64 = 7_000_000_000 + (std::process::id() as u64 * 7919 + nonce().len() as u64) % 1_000_000_000;
    let update = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/omni-channels/src/telegram/fixtures/message-tr.json"
    ))?
    .replace("1111111", &chat.to_string());
    let (status, answer) = pipeline.post_webhook("telegram", "application/json", &update).await?;
    assert_eq!(status, 200, "{answer}");
    let rt = &pipeline.rt;
    let requestor = format!("{chat}@telegram.invalid");
    let ticket = rt.only_ticket_of(&requestor).await?;

    telegram.rate_limit_next(2);
    rt.answer(&ticket, "Merhaba Ayşe, siparişiniz yarın teslim edilecek.").await?;
    eventually("the answer sent to Telegram", TIMEOUT, || async {
        Ok(telegram.calls().iter().any(|c| c.status == 200))
    })
    .await
    .with_context(|| {
        format!(
            "calls: {:?}\nomni-sender log:\n{}\nomni-replies log:\n{}",
            telegram.calls(),
            sender.log(),
            replies.log()
        )
    })?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = telegram.calls();
    for call in &calls {
        assert!(
            call.violations.is_empty(),
            "request not as the Bot API documents: {:?}",
            call.violations
        );
    }
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 429, 200], "two 429s waited out, then exactly one message");
    let sent = &calls[2].body;
    assert_eq!(sent["chat_id"], chat);
    assert_eq!(sent["text"], "Merhaba Ayşe, siparişiniz yarın teslim edilecek.");
    assert_eq!(sent["reply_parameters"]["message_id"], 1365, "a reply to the customer's message");

    // The customer blocks the bot: the next answer is refused, and the agent reads why on the
    // ticket, as an internal note (never mailed to anyone), once.
    telegram.block_next(1);
    rt.answer(&ticket, "Kargo takip numaranız TR123.").await?;
    eventually("the refusal noted on the ticket", TIMEOUT, || async {
        Ok(rt
            .comments(&ticket)
            .await?
            .iter()
            .any(|c| c.contains("bot was blocked by the user")))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let comments = rt.comments(&ticket).await?;
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(
        comments[0].starts_with("omni: this answer was not delivered to the customer on telegram"),
        "{comments:?}"
    );
    assert_eq!(telegram.calls().len(), 4, "the refused answer was not tried again");
    Ok(())
}

/// The WhatsApp text fixture from a customer of its own, sent `age_secs` ago.
fn whatsapp_message(customer: &str, run: &str, age_secs: u64) -> String {
    let sent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - age_secs;
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/omni-channels/src/whatsapp/fixtures/text-tr.json"
    ))
    .unwrap()
    .replace("905551112233", customer)
    .replace(
        "wamid.HBgMOTA1NTUxMTEyMjMzFQIAEhgUM0E0QjY1OTlBRUUwMzgxMDE0NEYA",
        &format!("wamid.IN-{run}-{age_secs}"),
    )
    .replace("1749416383", &sent.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_answers_are_text_inside_the_24_hour_window_and_a_template_outside() -> anyhow::Result<()> {
    let _serial = serial().await;
    let token = "EAAG-omni-test";
    let (whatsapp, api_url) = WhatsAppApi::start(token).await?;
    let pipeline = Pipeline::start(&[]).await?;
    let (_replies, _sender) = return_path(
        &pipeline,
        &[
            ("OMNI__SENDER__WHATSAPP__DEFAULT__ACCESS_TOKEN", token),
            ("OMNI__SENDER__WHATSAPP__DEFAULT__API_BASE_URL", &api_url),
            ("OMNI__SENDER__WHATSAPP__DEFAULT__TEMPLATE", "support_answer"),
            ("OMNI__SENDER__WHATSAPP__DEFAULT__TEMPLATE_LANGUAGE", "tr"),
        ],
    )
    .await?;
    let run = nonce();
    let digits: String = run.chars().filter(char::is_ascii_digit).take(6).collect();
    let (recent, old) = (format!("9055{digits:0>6}01"), format!("9055{digits:0>6}02"));
    let rt = &pipeline.rt;
    let mut tickets = Vec::new();
    for (customer, age) in [(&recent, 60), (&old, 30 * 3600)] {
        let (status, body) = pipeline
            .post_webhook("whatsapp", "application/json", &whatsapp_message(customer, &run, age))
            .await?;
        assert_eq!(status, 200, "{body}");
        let requestor = format!("+{customer}@phone.invalid");
        eventually("the customer's ticket", TIMEOUT, || async {
            Ok(rt.tickets_of_requestor(&requestor).await?.len() == 1)
        })
        .await?;
        tickets.push(rt.tickets_of_requestor(&requestor).await?.remove(0));
    }
    rt.answer(&tickets[0], "Kargonuz yolda, takip numarası TR123.").await?;
    rt.answer(&tickets[1], "Geç cevap için özür dileriz: kargonuz yolda.").await?;
    eventually("both answers sent", TIMEOUT, || async { Ok(whatsapp.calls().len() >= 2) }).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = whatsapp.calls();
    assert_eq!(calls.len(), 2, "one request per answer: {calls:?}");
    for call in &calls {
        assert!(call.violations.is_empty(), "not as the Cloud API documents: {:?}", call.violations);
        assert_eq!(
            call.path["phone_number_id"], "106540352242922",
            "sent from the number the customer wrote to"
        );
    }
    let by_to = |to: &str| {
        calls
            .iter()
            .find(|c| c.body["to"] == to)
            .unwrap_or_else(|| panic!("nothing sent to {to}: {calls:?}"))
    };
    let inside = &by_to(&recent).body;
    assert_eq!(inside["type"], "text");
    assert_eq!(inside["text"]["body"], "Kargonuz yolda, takip numarası TR123.");
    assert_eq!(inside["context"]["message_id"], format!("wamid.IN-{run}-60"));
    let outside = &by_to(&old).body;
    assert_eq!(outside["type"], "template", "30 hours after the customer's message: a template");
    assert_eq!(outside["template"]["name"], "support_answer");
    assert_eq!(
        outside["template"]["components"][0]["parameters"][0]["text"],
        "Geç cevap için özür dileriz: kargonuz yolda."
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_answers_go_into_the_customers_thread_paced_and_through_a_429() -> anyhow::Result<()> {
    let _serial = serial().await;
    let token = "xoxb-omni-test";
    let (slack, api_url) = SlackApi::start(token).await?;
    let pipeline = Pipeline::start(&[]).await?;
    let (_replies, _sender) = return_path(
        &pipeline,
        &[
            ("OMNI__SENDER__SLACK__DEFAULT__BOT_TOKEN", token),
            ("OMNI__SENDER__SLACK__DEFAULT__API_BASE_URL", &api_url),
        ],
    )
    .await?;
    let run = nonce();
    let user = format!("U{}", run.to_uppercase());
    let event = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/omni-channels/src/slack/fixtures/message-im.json"
    ))?
    .replace("U2147483697", &user)
    .replace("Ev0PV52K21", &format!("Ev{run}"));
    let (status, body) = pipeline.post_webhook("slack", "application/json", &event).await?;
    assert_eq!(status, 200, "{body}");
    let sent: Value = serde_json::from_str(&event)?;
    let rt = &pipeline.rt;
    let requestor = format!("{user}@slack.invalid");
    let ticket = rt.only_ticket_of(&requestor).await?;
    slack.rate_limit_next(1);
    for answer in ["Dank u, we kijken het na.", "Uw pakket is onderweg."] {
        rt.answer(&ticket, answer).await?;
    }
    eventually("both answers posted", TIMEOUT, || async {
        Ok(slack.calls().iter().filter(|c| c.status == 200).count() >= 2)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = slack.calls();
    for call in &calls {
        assert!(
            call.violations.is_empty(),
            "not as chat.postMessage documents: {:?}",
            call.violations
        );
        assert_eq!(call.body["channel"], sent["event"]["channel"]);
        assert_eq!(call.body["thread_ts"], sent["event"]["ts"], "in the customer's thread");
    }
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 200, 200], "the 429 waited out, then each answer once");
    let texts: Vec<&str> = calls[1..].iter().map(|c| c.body["text"].as_str().unwrap_or_default()).collect();
    assert_eq!(
        texts,
        ["Dank u, we kijken het na.", "Uw pakket is onderweg."],
        "in the agent's order"
    );
    let gap = calls[2].at.duration_since(calls[1].at);
    assert!(gap >= Duration::from_millis(900), "one message a second per channel, got {gap:?}");
    Ok(())
}

/// A Meta fixture (`messenger/text-tr.json`, `instagram/text-ar.json`) from a customer of its
/// own, sent `age_secs` ago.
fn meta_message(fixture: &str, customer: &str, run: &str, age_secs: u64) -> String {
    let sent_ms = (std::time::SystemTime::now() - Duration::from_secs(age_secs))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let text = std::fs::read_to_string(format!("{}/../crates/omni-channels/src/{fixture}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut update: Value = serde_json::from_str(&text).unwrap();
    let event = &mut update["entry"][0]["messaging"][0];
    event["sender"]["id"] = Value::from(customer);
    event["timestamp"] = Value::from(sent_ms as u64);
    event["message"]["mid"] = Value::from(format!("m_IN-{run}-{age_secs}"));
    update.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messenger_and_instagram_answers_go_through_the_send_api_with_human_agent_after_a_day() -> anyhow::Result<()> {
    let _serial = serial().await;
    let token = "EAAB-page-omni-test";
    let (meta, api_url) = omni_e2e::meta_api::MetaApi::start(token).await?;
    let pipeline = Pipeline::start(&[]).await?;
    let (_replies, sender) = return_path(
        &pipeline,
        &[
            ("OMNI__SENDER__MESSENGER__DEFAULT__PAGE_ACCESS_TOKEN", token),
            ("OMNI__SENDER__MESSENGER__DEFAULT__API_BASE_URL", &api_url),
            ("OMNI__SENDER__INSTAGRAM__DEFAULT__PAGE_ACCESS_TOKEN", token),
            ("OMNI__SENDER__INSTAGRAM__DEFAULT__API_BASE_URL", &api_url),
            ("OMNI__SENDER__INSTAGRAM__DEFAULT__HUMAN_AGENT", "true"),
        ],
    )
    .await?;
    let run = nonce();
    let digits: String = run.chars().filter(char::is_ascii_digit).take(8).collect();
    let (messenger_user, instagram_user) = (format!("65{digits:0>8}11"), format!("13{digits:0>8}22"));
    let rt = &pipeline.rt;
    let mut tickets = Vec::new();
    for (provider, fixture, user, age) in [
        ("messenger", "messenger/fixtures/text-tr.json", &messenger_user, 60),
        ("instagram", "instagram/fixtures/text-ar.json", &instagram_user, 30 * 3600),
    ] {
        let (status, body) = pipeline
            .post_webhook(provider, "application/json", &meta_message(fixture, user, &run, age))
            .await?;
        assert_eq!(status, 200, "{body}");
        let requestor = format!("{user}@{provider}.invalid");
        eventually("the customer's ticket", TIMEOUT, || async {
            Ok(rt.tickets_of_requestor(&requestor).await?.len() == 1)
        })
        .await?;
        tickets.push(rt.tickets_of_requestor(&requestor).await?.remove(0));
    }
    // A rate limit (613) first: the answer waits, then goes once.
    meta.rate_limit_next(1);
    rt.answer(&tickets[0], "Merhaba, siparişiniz yarın kargoda.").await?;
    rt.answer(&tickets[1], "مرحباً، طلبك في الطريق.").await?;
    let sent = || meta.calls().into_iter().filter(|c| c.status == 200).collect::<Vec<_>>();
    eventually("both answers sent", TIMEOUT, || async { Ok(sent().len() >= 2) })
        .await
        .with_context(|| format!("calls: {:?}\nomni-sender log:\n{}", meta.calls(), sender.log()))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = meta.calls();
    assert_eq!(
        calls.iter().filter(|c| c.status != 200).count(),
        1,
        "one rate-limited call: {calls:?}"
    );
    assert_eq!(sent().len(), 2, "one request per answer: {calls:?}");
    for call in &calls {
        assert!(call.violations.is_empty(), "not as the Send API documents: {:?}", call.violations);
    }
    let to = |user: &str| {
        sent()
            .into_iter()
            .find(|c| c.body["recipient"]["id"] == user)
            .unwrap_or_else(|| panic!("nothing sent to {user}: {calls:?}"))
            .body
    };
    let messenger = to(&messenger_user);
    assert_eq!(messenger["messaging_type"], "RESPONSE");
    assert_eq!(messenger["message"]["text"], "Merhaba, siparişiniz yarın kargoda.");
    let instagram = to(&instagram_user);
    assert_eq!(
        instagram["messaging_type"], "MESSAGE_TAG",
        "30 hours after the customer: HUMAN_AGENT"
    );
    assert_eq!(instagram["tag"], "HUMAN_AGENT");
    assert_eq!(instagram["message"]["text"], "مرحباً، طلبك في الطريق.");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_answers_and_answers_to_calls_are_texted_through_twilio() -> anyhow::Result<()> {
    let _serial = serial().await;
    let (sid, auth) = ("AC3f0b7c1e9d2a4b6c8e0f1a2b3c4d5e6f", "twilio-auth-token");
    let (twilio, api_url) = omni_e2e::twilio_api::TwilioApi::start(sid, auth).await?;
    let pipeline = Pipeline::start(&[]).await?;
    let (_replies, sender) = return_path(
        &pipeline,
        &[
            ("OMNI__SENDER__SMS__DEFAULT__ACCOUNT_SID", sid),
            ("OMNI__SENDER__SMS__DEFAULT__AUTH_TOKEN", auth),
            ("OMNI__SENDER__SMS__DEFAULT__API_BASE_URL", &api_url),
            ("OMNI__SENDER__SMS__DEFAULT__FROM", "+14155550199"),
            ("OMNI__SENDER__ANSWER_CALLS_BY_SMS", "default"),
        ],
    )
    .await?;
    let run = nonce();
    let digits: String = run.chars().filter(char::is_ascii_digit).take(7).collect();
    let (texter, caller) = (format!("+9055{digits:0>7}1"), format!("+3161{digits:0>7}"));
    // A customer's SMS to the shop's number, and a missed call from another customer.
    let sms = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/omni-channels/src/twilio_sms/fixtures/incoming-sms-tr.form"
    ))?
    .replace("From=%2B905551112233", &format!("From=%2B{}", &texter[1..]))
    .replace("SM1f0e2d3c4b5a69788796a5b4c3d2e1f0", &format!("SM{digits:0>32}"));
    let (status, body) = pipeline
        .post_webhook("twilio-sms", "application/x-www-form-urlencoded", &sms)
        .await?;
    assert_eq!(status, 200, "{body}");
    let call = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/omni-channels/src/aircall/fixtures/call-ended-missed.json"
    ))?
    .replace("+31 6 12345678", &caller)
    .replace("1834279456", &format!("19{digits:0>8}"));
    let (status, body) = pipeline.post_webhook("aircall", "application/json", &call).await?;
    assert_eq!(status, 200, "{body}");
    let rt = &pipeline.rt;
    let mut tickets = Vec::new();
    for number in [&texter, &caller] {
        let requestor = format!("{number}@phone.invalid");
        eventually("the customer's ticket", TIMEOUT, || async {
            Ok(rt.tickets_of_requestor(&requestor).await?.len() == 1)
        })
        .await?;
        tickets.push(rt.tickets_of_requestor(&requestor).await?.remove(0));
    }
    twilio.rate_limit_next(1);
    rt.answer(&tickets[0], "Merhaba, kargo takip numaranız TR123.").await?;
    rt.answer(&tickets[1], "Sorry we missed your call: your refund was sent today.")
        .await?;
    let sent = || twilio.calls().into_iter().filter(|c| c.status == 201).collect::<Vec<_>>();
    eventually("both texts sent", TIMEOUT, || async { Ok(sent().len() >= 2) })
        .await
        .with_context(|| format!("calls: {:?}\nomni-sender log:\n{}", twilio.calls(), sender.log()))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = twilio.calls();
    assert_eq!(calls.iter().filter(|c| c.status == 429).count(), 1, "{calls:?}");
    assert_eq!(sent().len(), 2, "one message per answer: {calls:?}");
    for call in &calls {
        assert!(
            call.violations.is_empty(),
            "not as the Messages API documents: {:?}",
            call.violations
        );
    }
    let to = |number: &str| {
        sent()
            .into_iter()
            .find(|c| c.params.get("To").map(String::as_str) == Some(number))
            .unwrap_or_else(|| panic!("nothing texted to {number}: {calls:?}"))
            .params
    };
    let sms = to(&texter);
    assert_eq!(sms["From"], "+14155552671", "from the number the customer wrote to");
    assert_eq!(sms["Body"], "Merhaba, kargo takip numaranız TR123.");
    let call = to(&caller);
    assert_eq!(call["From"], "+14155550199", "a call is answered from [sender.sms] from");
    assert_eq!(call["Body"], "Sorry we missed your call: your refund was sent today.");

    // Twilio's status callbacks: the SMS was delivered, the caller's text was not. The outbox
    // records both; the agent reads the failure on the call's ticket.
    let sid_to = |number: &str| sent().into_iter().find(|c| c.params["To"] == number).unwrap().sid;
    for (number, from, status) in [(&texter, "+14155552671", "delivered"), (&caller, "+14155550199", "undelivered")] {
        let callback = form_urlencoded::Serializer::new(String::new())
            .append_pair("ErrorCode", if status == "undelivered" { "30003" } else { "" })
            .append_pair("MessageSid", &sid_to(number))
            .append_pair("SmsSid", &sid_to(number))
            .append_pair("MessageStatus", status)
            .append_pair("SmsStatus", status)
            .append_pair("To", number)
            .append_pair("From", from)
            .append_pair("AccountSid", sid)
            .append_pair("ApiVersion", "2010-04-01")
            .finish();
        let (code, body) = pipeline
            .post_webhook("twilio-sms", "application/x-www-form-urlencoded", &callback)
            .await?;
        assert_eq!(code, 200, "{body}");
    }
    eventually("the failure noted on the call's ticket", TIMEOUT, || async {
        Ok(rt.comments(&tickets[1]).await?.iter().any(|c| c.contains("30003")))
    })
    .await
    .with_context(|| format!("omni-sender log:\n{}", sender.log()))?;
    let comments = rt.comments(&tickets[1]).await?;
    assert!(
        comments
            .iter()
            .any(|c| c.starts_with("omni: this answer was not delivered to the customer on voice: the provider reported it undelivered")),
        "{comments:?}"
    );
    assert!(rt.comments(&tickets[0]).await?.is_empty(), "a delivered answer adds no note");
    let mut steps = std::collections::BTreeMap::new();
    for record in pipeline.topic(omni_kafka::topics::STATE_SENDER)? {
        use prost::Message as _;
        if let Ok(omni_proto::v1::SenderState {
            entry: Some(omni_proto::v1::sender_state::Entry::Outbox(entry)),
        }) = omni_proto::v1::SenderState::decode(record.value.as_slice())
        {
            steps.insert(entry.provider_message_id.clone(), entry.delivery());
        }
    }
    use omni_proto::v1::delivery_receipt::Status as Step;
    assert_eq!(steps.get(&sid_to(&texter)), Some(&Step::Delivered), "{steps:?}");
    assert_eq!(steps.get(&sid_to(&caller)), Some(&Step::Failed), "{steps:?}");

    // A failure reported while the sender still waits for Twilio's answer (before SENT is
    // recorded) is kept and applied once it is.
    let before = twilio.calls().len();
    twilio.hold_next(Duration::from_secs(4));
    rt.answer(&tickets[0], "Kargonuz bugün yola çıktı.").await?;
    eventually("the held call", TIMEOUT, || async { Ok(twilio.calls().len() > before) }).await?;
    let held = twilio.calls()[before].sid.clone();
    let callback = form_urlencoded::Serializer::new(String::new())
        .append_pair("ErrorCode", "30005")
        .append_pair("MessageSid", &held)
        .append_pair("MessageStatus", "failed")
        .append_pair("To", &texter)
        .append_pair("From", "+14155552671")
        .append_pair("AccountSid", sid)
        .finish();
    let (code, body) = pipeline
        .post_webhook("twilio-sms", "application/x-www-form-urlencoded", &callback)
        .await?;
    assert_eq!(code, 200, "{body}");
    eventually("the early failure noted on the SMS ticket", TIMEOUT, || async {
        Ok(rt.comments(&tickets[0]).await?.iter().any(|c| c.contains("30005")))
    })
    .await
    .with_context(|| format!("omni-sender log:\n{}", sender.log()))?;
    Ok(())
}

/// A channel fixture (`x/fixtures/dm-tr.json`) as JSON, to be given this run's ids.
fn fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(format!("{}/../crates/omni-channels/src/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_and_viber_answers_are_sent_once_as_their_apis_document_through_rate_limits() -> anyhow::Result<()> {
    let _serial = serial().await;
    let x_api = omni_e2e::x_api::XApi {
        consumer_key: "xck-omni-test".into(),
        consumer_secret: "xcs-omni-test".into(),
        access_token: "4337869213-omni-test".into(),
        access_token_secret: "xats-omni-test".into(),
    };
    let viber_token = "4c5a9f1e2b7d3a60-omni-test";
    let (x, x_url) = x_api.start().await?;
    let (viber, viber_url) = omni_e2e::viber_api::ViberApi {
        auth_token: viber_token.into(),
    }
    .start()
    .await?;
    let pipeline = Pipeline::start(&[]).await?;
    let (_replies, sender) = return_path(
        &pipeline,
        &[
            ("OMNI__SENDER__X__DEFAULT__CONSUMER_KEY", "xck-omni-test"),
            ("OMNI__SENDER__X__DEFAULT__CONSUMER_SECRET", "xcs-omni-test"),
            ("OMNI__SENDER__X__DEFAULT__ACCESS_TOKEN", "4337869213-omni-test"),
            ("OMNI__SENDER__X__DEFAULT__ACCESS_TOKEN_SECRET", "xats-omni-test"),
            ("OMNI__SENDER__X__DEFAULT__API_BASE_URL", &x_url),
            ("OMNI__SENDER__VIBER__DEFAULT__AUTH_TOKEN", viber_token),
            ("OMNI__SENDER__VIBER__DEFAULT__API_BASE_URL", &viber_url),
        ],
    )
    .await?;
    let run = nonce();
    let digits: String = run.chars().filter(char::is_ascii_digit).take(8).collect();
    // An X DM and a Viber message from customers of this run.
    let x_user = format!("30{digits:0>8}57");
    let mut dm = fixture("x/fixtures/dm-tr.json");
    let event = &mut dm["direct_message_events"][0];
    event["id"] = Value::from(format!("10{digits:0>8}404"));
    event["message_create"]["sender_id"] = Value::from(x_user.clone());
    dm["users"][&x_user] = serde_json::json!({"id": x_user, "name": "Ayşe Yılmaz", "screen_name": format!("ayse{digits}")});
    // (A Viber id often ends in `==`, which the requestor address leaves out.)
    let viber_user = format!("Vb{digits:0>8}Tb9Vg");
    let mut message = fixture("viber/fixtures/message-text-tr.json");
    message["sender"]["id"] = Value::from(viber_user.clone());
    message["message_token"] = Value::from(format!("59{digits:0>8}27730").parse::<u64>()?);
    let rt = &pipeline.rt;
    let mut tickets = Vec::new();
    for (provider, body, user) in [("x", &dm, &x_user), ("viber", &message, &viber_user)] {
        let (status, answer) = pipeline.post_webhook(provider, "application/json", &body.to_string()).await?;
        assert_eq!(status, 200, "{answer}");
        let requestor = format!("{user}@{provider}.invalid");
        eventually("the customer's ticket", TIMEOUT, || async {
            Ok(rt.tickets_of_requestor(&requestor).await?.len() == 1)
        })
        .await?;
        tickets.push(rt.tickets_of_requestor(&requestor).await?.remove(0));
    }
    // Each provider rate-limits the first call: the answer waits, then goes once.
    x.rate_limit_next(1);
    viber.rate_limit_next(1);
    rt.answer(&tickets[0], "Merhaba Ayşe, yeni kutu yarın kargoda.").await?;
    rt.answer(&tickets[1], "Merhaba, değişim için kargo kodunuz: 4821.").await?;
    eventually("both answers sent", TIMEOUT, || async {
        Ok(x.calls().iter().any(|c| c.status == 201) && viber.calls().iter().filter(|c| c.status == 200).count() >= 2)
    })
    .await
    .with_context(|| format!("X: {:?}\nViber: {:?}\nomni-sender log:\n{}", x.calls(), viber.calls(), sender.log()))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let x_calls = x.calls();
    for call in &x_calls {
        assert!(call.violations.is_empty(), "not as X documents: {:?}", call.violations);
    }
    let statuses: Vec<u16> = x_calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 201], "one rate-limited call, then the DM once");
    assert_eq!(x_calls[1].path["participant_id"], x_user);
    assert_eq!(
        x_calls[1].body,
        serde_json::json!({"text": "Merhaba Ayşe, yeni kutu yarın kargoda."})
    );
    // Viber answers every call with HTTP 200: the first was refused by its status 12.
    let viber_calls = viber.calls();
    for call in &viber_calls {
        assert!(call.violations.is_empty(), "not as Viber documents: {:?}", call.violations);
    }
    assert_eq!(
        viber_calls.len(),
        2,
        "one rate-limited call, then the message once: {viber_calls:?}"
    );
    let sent = &viber_calls[1].body;
    assert_eq!(sent["receiver"], viber_user.as_str());
    assert_eq!(sent["text"], "Merhaba, değişim için kargo kodunuz: 4821.");
    assert_eq!(sent["sender"]["name"], "Omni Support", "the embedded account's sender name");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_customers_are_answered_by_email_and_those_without_one_are_noted() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let (_replies, sender) = return_path(&pipeline, &[]).await?;
    let run = nonce();
    let customer = format!("ayse-{run}@example.com");
    let phone_only = format!("+9055{}", run.chars().filter(char::is_ascii_digit).take(8).collect::<String>());
    for (who, body) in [
        (
            &customer,
            serde_json::json!({"customer": {"name": "Ayşe Yılmaz", "email": customer, "phone": "+905551112233"},
                               "subject": "Siparişim nerede?", "text": "Merhaba, 1042 numaralı siparişim gelmedi.",
                               "external_id": format!("form-{run}")}),
        ),
        (
            &phone_only,
            serde_json::json!({"customer": {"name": "Mehmet Kaya", "phone": phone_only},
                               "text": "İade nasıl yapılır?", "external_id": format!("form-{run}-phone")}),
        ),
    ] {
        let (status, answer) = pipeline.post(omni_e2e::DEV_TOKEN, &body.to_string()).await?;
        assert_eq!(status, 202, "{who}: {answer}");
    }
    let rt = &pipeline.rt;
    let mut tickets = Vec::new();
    for requestor in [customer.clone(), format!("{phone_only}@phone.invalid")] {
        eventually("the customer's ticket", TIMEOUT, || async {
            Ok(rt.tickets_of_requestor(&requestor).await?.len() == 1)
        })
        .await?;
        tickets.push(rt.tickets_of_requestor(&requestor).await?.remove(0));
    }
    rt.answer(&tickets[0], "Merhaba Ayşe, siparişiniz yarın teslim edilecek.").await?;
    rt.answer(&tickets[1], "Merhaba Mehmet, iade formu ektedir.").await?;
    let customers = &pipeline.mailbox;
    eventually("the answer in the customer's mailbox", TIMEOUT, || async {
        Ok(!customers.fetch("customers", &["to", &customer])?.is_empty())
    })
    .await
    .with_context(|| format!("omni-sender log:\n{}", sender.log()))?;
    let mail = customers.fetch("customers", &["to", &customer])?.remove(0);
    assert_eq!(header(&mail, "From").as_deref(), Some("Support <support@omni.local>"));
    let parsed = mail_parser::MessageParser::default().parse(mail.as_bytes()).expect("a mail");
    let subject = parsed.subject().unwrap_or_default();
    assert!(
        subject.contains("Siparişim nerede?") && subject.contains(&format!("#{}]", tickets[0])),
        "subject: {subject}"
    );
    assert_eq!(header(&mail, "In-Reply-To"), None, "nothing to thread to: {mail}");
    assert_eq!(
        parsed.body_text(0).unwrap_or_default().trim(),
        "Merhaba Ayşe, siparişiniz yarın teslim edilecek."
    );
    // The customer without an email: no channel, a note for the agent on the ticket.
    eventually("the note on the phone-only customer's ticket", TIMEOUT, || async {
        Ok(rt.comments(&tickets[1]).await?.iter().any(|text| text.contains("no email address")))
    })
    .await
    .with_context(|| format!("omni-sender log:\n{}", sender.log()))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(customers.fetch("customers", &["to", &customer])?.len(), 1, "one mail");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_files_go_with_an_email_answer_and_the_agent_hears_of_those_that_do_not() -> anyhow::Result<()> {
    use sha2::{Digest as _, Sha256};
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let (_replies, sender) = return_path(&pipeline, &[]).await?;
    let run = nonce();
    let customer = format!("jan-{run}@example.nl");
    pipeline.mailbox.deliver(&mail(
        &format!("Jan de Vries <{customer}>"),
        &format!("files-{run}@mail.example.nl"),
        "",
        "Retourlabel?",
        "Kunt u mij een retourlabel sturen?",
    ));
    let rt = &pipeline.rt;
    let ticket = rt.only_ticket_of(&customer).await?;
    // A label (binary, carried) and a catalogue above what an answer's record carries.
    let mut rng = fastrand::Rng::with_seed(16);
    let label: Vec<u8> = (0..40_000).map(|_| rng.u8(..)).collect();
    let catalogue: Vec<u8> = (0..600_000).map(|_| rng.u8(..)).collect();
    rt.answer_with_files(
        &ticket,
        "Beste Jan, het retourlabel zit in de bijlage.",
        &[
            ("retourlabel.png", "image/png", &label),
            ("catalogus.pdf", "application/pdf", &catalogue),
        ],
    )
    .await?;
    let customers = &pipeline.mailbox;
    eventually("the answer in the customer's mailbox", TIMEOUT, || async {
        Ok(!customers.fetch("customers", &["to", &customer])?.is_empty())
    })
    .await
    .with_context(|| format!("omni-sender log:\n{}", sender.log()))?;
    let mail = customers.fetch("customers", &["to", &customer])?.remove(0);
    let parsed = mail_parser::MessageParser::default().parse(mail.as_bytes()).expect("a mail");
    assert_eq!(
        parsed.body_text(0).unwrap_or_default().trim(),
        "Beste Jan, het retourlabel zit in de bijlage."
    );
    let files: Vec<(String, String)> = parsed
        .attachments()
        .map(|a| {
            use mail_parser::MimeHeaders as _;
            (
                a.attachment_name().unwrap_or_default().to_owned(),
                hex::encode(Sha256::digest(a.contents())),
            )
        })
        .collect();
    assert_eq!(
        files,
        [("retourlabel.png".to_owned(), hex::encode(Sha256::digest(&label)))],
        "the label byte for byte, not the catalogue"
    );
    eventually("the note about the catalogue", TIMEOUT, || async {
        Ok(rt
            .comments(&ticket)
            .await?
            .iter()
            .any(|c| c.contains("catalogus.pdf (600000 bytes)")))
    })
    .await
    .with_context(|| format!("omni-sender log:\n{}", sender.log()))?;
    Ok(())
}

/// Bounded sender state (`[sender] state_retention_secs`, 3 s here): a conversation's reply
/// address whose customer has been silent for longer is tombstoned in `omni.state.sender.v1`
/// and forgotten (`omni_sender_state_expired_total`, `omni_sender_conversations`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_address_past_its_retention_is_tombstoned_and_forgotten() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let (_replies, sender) = return_path(&pipeline, &[("OMNI__SENDER__STATE_RETENTION_SECS", "3")]).await?;
    let run = nonce();
    let body = serde_json::json!({
        "customer": { "email": format!("retention+{run}@example.com") },
        "text": "Waar blijft mijn pakket?",
        "thread_id": run,
    })
    .to_string();
    let event_id = pipeline.post_ok(&body).await?;
    let conversation = pipeline.delivery_of(&event_id, TIMEOUT).await?.conversation_id;
    let key = format!("conversation/{conversation}");
    let bootstrap = pipeline.broker.bootstrap();
    let values_of = |key: &str| -> Vec<usize> {
        omni_e2e::read_topic(&bootstrap, omni_kafka::topics::STATE_SENDER)
            .map(|records| records.iter().filter(|r| r.key == key.as_bytes()).map(|r| r.value.len()).collect())
            .unwrap_or_default()
    };
    eventually("the reply address written, then tombstoned", TIMEOUT, || {
        let values = values_of(&key);
        // A record with the address, then one without a value.
        let done = values.first().is_some_and(|len| *len > 0) && values.last() == Some(&0);
        async move { Ok(done) }
    })
    .await
    .with_context(|| format!("records of {key}: {:?}\nomni-sender log:\n{}", values_of(&key), sender.log()))?;
    assert!(sender.metric("omni_sender_state_expired_total").await? >= 1.0);
    assert_eq!(sender.metric("omni_sender_conversations").await?, 0.0, "forgotten in memory too");
    Ok(())
}
