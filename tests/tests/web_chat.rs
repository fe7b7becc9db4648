//! Website live chat end to end: the widget in a real Chromium on the gateway's demo page, the
//! visitor's messages through the broker, the normalizer and the router into Request Tracker;
//! and the protocol's defences (origin, size, rate, forged identities) from a plain WebSocket
//! client, each refusal writing nothing.

use std::time::Duration;

use anyhow::Context as _;
use fantoccini::{Client, Locator};
use futures::{SinkExt as _, StreamExt as _};
use hmac::{Hmac, Mac};
use omni_e2e::browser::{ChromeDriver, screenshot};
use omni_e2e::{Pipeline, eventually, nonce, serial};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest as _};

const TIMEOUT: Duration = Duration::from_secs(90);
/// The embedded default's development chat secret (`[gateway.chat.default]`).
const SECRET: &str = "omni-dev-chat-secret";

fn css(selector: &str) -> Locator<'_> {
    Locator::Css(selector)
}

/// Opens the demo page in `lang`, opens the panel and waits until the widget is online.
async fn open_chat(browser: &Client, pipeline: &Pipeline, lang: &str) -> anyhow::Result<()> {
    open_page(browser, &format!("{}/chat/demo/default?lang={lang}", pipeline.gateway_url)).await
}

/// Opens `url` (a demo page), opens the panel and waits until the widget is online.
async fn open_page(browser: &Client, url: &str) -> anyhow::Result<()> {
    browser.goto(url).await?;
    let launcher = browser.wait().at_most(TIMEOUT).for_element(css("[data-omni=launcher]")).await?;
    launcher.click().await?;
    browser
        .wait()
        .at_most(TIMEOUT)
        .for_element(css("[data-omni=status][data-state=online]"))
        .await
        .with_context(|| format!("the widget online on {url}"))?;
    Ok(())
}

/// Writes an agent's answer to the chat's answer topic, as omni-sender does.
async fn publish_answer(pipeline: &Pipeline, conversation: &str, outbound_id: &str, text: &str) -> anyhow::Result<()> {
    use prost::Message as _;
    let answer = omni_proto::v1::OutboundMessage {
        outbound_id: outbound_id.into(),
        conversation_id: conversation.into(),
        kind: omni_proto::v1::outbound_message::Kind::Reply as i32,
        body: Some(omni_proto::v1::Body {
            text: text.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    omni_e2e::produce(
        &pipeline.broker.bootstrap(),
        "omni.webchat.v1",
        conversation.as_bytes(),
        &answer.encode_to_vec(),
    )
    .await
}

/// Types `text` and sends it; waits until the widget shows it sent (the broker took it).
async fn say(browser: &Client, text: &str) -> anyhow::Result<()> {
    let before = browser.find_all(css("[data-omni=message][data-state=sent]")).await?.len();
    browser.find(css("[data-omni=input]")).await?.send_keys(text).await?;
    browser.find(css("[data-omni=send]")).await?.click().await?;
    eventually("the message shown sent", TIMEOUT, || async {
        Ok(browser.find_all(css("[data-omni=message][data-state=sent]")).await?.len() > before)
    })
    .await
}

/// The visitor id in the widget's stored token (`v1.<visitor>.<signature>`).
async fn visitor_of(browser: &Client) -> anyhow::Result<String> {
    let token = browser
        .execute("return localStorage.getItem('omni-chat:default:token');", vec![])
        .await?;
    let token = token.as_str().context("a stored visitor token")?;
    Ok(token.split('.').nth(1).context("v1.<visitor>.<sig>")?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_writes_in_turkish_in_chromium_and_the_agents_answer_appears_in_both_tabs() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let (_replies, sender) = return_path(&pipeline, &[]).await?;
    let driver = ChromeDriver::start().await?;
    let browser = driver.session().await?;
    open_chat(&browser, &pipeline, "tr").await?;
    let panel = browser.find(css("[data-omni=panel]")).await?;
    assert_eq!(browser.find(css("html")).await?.attr("lang").await?.as_deref(), Some("tr"));
    let label = browser.find(css("[data-omni=input]")).await?.attr("aria-label").await?;
    assert!(label.is_some_and(|l| !l.is_empty()), "the input has an ARIA label");
    if let Ok(name) = browser.find(css("[data-omni=name]")).await {
        name.send_keys("Ayşe").await?;
    }
    let first = "Merhaba, 1042 numaralı siparişim nerede? <script>window.pwned = 1</script><b>acil</b>";
    say(&browser, first).await?;
    // Shown as typed, as text: the script did not run and no element was made of it.
    let shown = browser.find(css("[data-omni=message][data-from=visitor]")).await?.text().await?;
    assert!(shown.contains("<script>window.pwned = 1</script><b>acil</b>"), "{shown}");
    assert_eq!(browser.execute("return typeof window.pwned;", vec![]).await?, json!("undefined"));
    assert!(
        panel.find(Locator::Css("script, b")).await.is_err(),
        "markup from a message in the page"
    );
    screenshot(&browser, "widget-tr").await?;

    let visitor = visitor_of(&browser).await?;
    let requestor = format!("{visitor}@webchat.invalid");
    let rt = &pipeline.rt;
    let ticket = rt.only_ticket_of(&requestor).await?;
    let texts = rt.texts(&ticket).await?;
    assert!(texts[0].contains("1042 numaralı siparişim nerede?"), "{texts:?}");

    // A second tab of the same browser: the same visitor. The agent answers in RT; the answer
    // appears in both open tabs without a reload, once each.
    let first_tab = browser.window().await?;
    let second_tab = browser.new_window(true).await?.handle;
    browser.switch_to_window(second_tab.clone()).await?;
    open_chat(&browser, &pipeline, "tr").await?;
    rt.answer(&ticket, "Merhaba Ayşe, siparişiniz yarın kargoda.").await?;
    for tab in [&second_tab, &first_tab] {
        browser.switch_to_window(tab.clone()).await?;
        eventually("the agent's answer in the tab", TIMEOUT, || async {
            Ok(!browser.find_all(css("[data-omni=message][data-from=agent]")).await?.is_empty())
        })
        .await
        .with_context(|| format!("omni-sender log:\n{}\nomni-gateway log:\n{}", sender.log(), pipeline.gateway.log()))?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for tab in [&first_tab, &second_tab] {
        browser.switch_to_window(tab.clone()).await?;
        let answers = browser.find_all(css("[data-omni=message][data-from=agent]")).await?;
        assert_eq!(answers.len(), 1, "the answer shown once");
        assert!(answers[0].text().await?.contains("siparişiniz yarın kargoda"));
    }
    screenshot(&browser, "widget-tr-answered").await?;

    // A reload continues the same visitor and the same conversation: the same ticket, and the
    // answer seen before is not shown twice.
    browser.refresh().await?;
    open_chat(&browser, &pipeline, "tr").await?;
    say(&browser, "Bir de fatura lazım.").await?;
    assert_eq!(visitor_of(&browser).await?, visitor);
    eventually("the second message on the same ticket", TIMEOUT, || async {
        Ok(rt.texts(&ticket).await?.iter().any(|t| t.contains("fatura lazım")))
    })
    .await?;
    assert_eq!(rt.tickets_of_requestor(&requestor).await?, std::slice::from_ref(&ticket));
    assert_eq!(browser.find_all(css("[data-omni=message][data-from=agent]")).await?.len(), 1);

    // The widget in English and in Arabic (right to left), for people to look at.
    for (lang, dir) in [("en", "ltr"), ("ar", "rtl")] {
        open_chat(&browser, &pipeline, lang).await?;
        let panel = browser.find(css("[data-omni=panel]")).await?;
        let direction = browser
            .execute(
                "return getComputedStyle(arguments[0]).direction;",
                vec![serde_json::to_value(&panel)?],
            )
            .await?;
        assert_eq!(direction, json!(dir), "{lang}");
        let path = screenshot(&browser, &format!("widget-{lang}")).await?;
        eprintln!("screenshot: {}", path.display());
    }
    browser.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_while_the_visitor_types_and_the_agent_answers_loses_and_doubles_nothing() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut pipeline = Pipeline::start(&[]).await?;
    let _replies = pipeline
        .spawn_beside("replies", &[("OMNI__REPLIES__POLL_INTERVAL_MS", "500")])
        .await?;
    let _sender = pipeline.spawn_beside("sender", &[]).await?;
    let driver = ChromeDriver::start().await?;
    let browser = driver.session().await?;
    open_chat(&browser, &pipeline, "tr").await?;
    let run = nonce();
    say(&browser, &format!("Merhaba, iade kodum çalışmıyor ({run}).")).await?;
    let requestor = format!("{}@webchat.invalid", visitor_of(&browser).await?);
    let rt = &pipeline.rt;
    let ticket = rt.only_ticket_of(&requestor).await?;

    // The gateway dies; the visitor types two messages (they wait in the browser) and the agent
    // answers meanwhile.
    pipeline.gateway.sigkill();
    for text in ["Kod: TR-4410.", "Hâlâ bekliyorum."] {
        browser.find(css("[data-omni=input]")).await?.send_keys(text).await?;
        browser.find(css("[data-omni=send]")).await?.click().await?;
    }
    rt.answer(&ticket, "Yeni kodunuz: TR-5521.").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent_before = browser
        .find_all(css("[data-omni=message][data-from=visitor][data-state=sent]"))
        .await?
        .len();
    assert_eq!(sent_before, 1, "a message shown sent while the gateway was down");
    pipeline.gateway.restart_with(&[]).await?;

    eventually("both messages sent after the reconnect", TIMEOUT, || async {
        Ok(browser
            .find_all(css("[data-omni=message][data-from=visitor][data-state=sent]"))
            .await?
            .len()
            == 3)
    })
    .await?;
    eventually("the answer in the widget", TIMEOUT, || async {
        Ok(!browser.find_all(css("[data-omni=message][data-from=agent]")).await?.is_empty())
    })
    .await?;
    eventually("both messages on the ticket", TIMEOUT, || async {
        let texts = rt.texts(&ticket).await?;
        Ok(texts.iter().any(|t| t.contains("TR-4410")) && texts.iter().any(|t| t.contains("Hâlâ bekliyorum")))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let texts = rt.texts(&ticket).await?;
    for needle in ["TR-4410", "Hâlâ bekliyorum"] {
        assert_eq!(
            texts.iter().filter(|t| t.contains(needle)).count(),
            1,
            "{needle} on the ticket: {texts:#?}"
        );
    }
    assert_eq!(browser.find_all(css("[data-omni=message][data-from=agent]")).await?.len(), 1);
    browser.close().await?;
    Ok(())
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the chat socket with `origin` (none: no header).
async fn connect(pipeline: &Pipeline, origin: Option<&str>) -> Result<Socket, tungstenite::Error> {
    let url = format!("{}/chat/ws/default", pipeline.gateway_url.replacen("http", "ws", 1));
    let mut request = url.into_client_request()?;
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", origin.parse().expect("an origin"));
    }
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

async fn send(socket: &mut Socket, frame: Value) -> anyhow::Result<()> {
    socket.send(tungstenite::Message::text(frame.to_string())).await?;
    Ok(())
}

/// The next text frame, as JSON.
async fn next(socket: &mut Socket) -> anyhow::Result<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .context("a frame within 20 s")?
            .context("the socket open")??;
        if let tungstenite::Message::Text(text) = frame {
            return Ok(serde_json::from_str(&text)?);
        }
    }
}

/// Says hello; returns the welcome.
async fn hello(socket: &mut Socket, token: Option<&str>, identity: Option<Value>) -> anyhow::Result<Value> {
    send(
        socket,
        json!({"type": "hello", "token": token, "identity": identity, "name": null, "language": "tr"}),
    )
    .await?;
    let welcome = next(socket).await?;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    Ok(welcome)
}

async fn message(socket: &mut Socket, client_id: &str, text: &str) -> anyhow::Result<Value> {
    send(socket, json!({"type": "message", "client_id": client_id, "text": text})).await?;
    next(socket).await
}

fn identity(id: &str, email: &str, secret: &str) -> Value {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{id}\n{email}").as_bytes());
    json!({"id": id, "email": email, "name": "Jan de Vries", "hash": hex::encode(mac.finalize().into_bytes())})
}

/// The raw chat records stored.
fn raw_chat_records(pipeline: &Pipeline) -> anyhow::Result<Vec<omni_proto::v1::RawRecord>> {
    use prost::Message as _;
    Ok(pipeline
        .topic("omni.raw.chat.v1")?
        .iter()
        .filter_map(|r| omni_proto::v1::RawRecord::decode(r.value.as_slice()).ok())
        .collect())
}

/// The chat records stored for these event ids.
fn stored(pipeline: &Pipeline, event_ids: &[String]) -> anyhow::Result<usize> {
    Ok(raw_chat_records(pipeline)?
        .iter()
        .filter(|r| event_ids.contains(&r.event_id))
        .count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_sizes_rates_and_forged_identities_are_refused_and_write_nothing() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let own = pipeline.gateway_url.clone();
    for origin in [Some("https://evil.example"), None] {
        match connect(&pipeline, origin).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403, "{origin:?}"),
            other => panic!("{origin:?}: expected 403, got {:?}", other.map(|_| "a socket")),
        }
    }

    let mut socket = connect(&pipeline, Some(&own)).await?;
    let welcome = hello(&mut socket, None, None).await?;
    assert_eq!(welcome["verified"], false);
    let run = nonce();
    let too_long = "ç".repeat(4001);
    let refused = message(&mut socket, &format!("big-{run}"), &too_long).await?;
    assert_eq!(refused["code"], "too_large", "{refused}");
    let refused = message(&mut socket, "not a valid id!", "merhaba").await?;
    assert_eq!(refused["code"], "invalid", "{refused}");
    // A flood: the first 20 (the per-visitor burst) are stored, the rest refused with a wait.
    let mut acked = Vec::new();
    let mut limited = 0;
    for n in 0..25 {
        let answer = message(&mut socket, &format!("flood-{run}-{n}"), &format!("mesaj {n}")).await?;
        match answer["type"].as_str() {
            Some("ack") => acked.push(answer["event_id"].as_str().unwrap_or_default().to_owned()),
            _ => {
                assert_eq!(answer["code"], "rate_limited", "{answer}");
                assert!(answer["retry_after_ms"].as_u64().unwrap_or(0) > 0, "{answer}");
                limited += 1;
            }
        }
    }
    assert_eq!((acked.len(), limited), (20, 5));
    // Sent again after a reconnect with the same client id: the same event.
    let again = message(&mut socket, &format!("flood-{run}-0"), "mesaj 0").await?;
    assert!(again["type"] == "ack" || again["code"] == "rate_limited", "{again}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stored(&pipeline, &acked)?, 20 + usize::from(again["type"] == "ack"));

    // A verified identity continues one conversation from a second device; a forged one is an
    // anonymous visitor of its own.
    let customer = format!("cust-{run}");
    let email = format!("jan-{run}@example.nl");
    let mut first = connect(&pipeline, Some(&own)).await?;
    assert_eq!(
        hello(&mut first, None, Some(identity(&customer, &email, SECRET))).await?["verified"],
        true
    );
    let a = message(&mut first, "a1", "Hoi, waar is mijn pakket?").await?;
    let mut second = connect(&pipeline, Some(&own)).await?;
    assert_eq!(
        hello(&mut second, None, Some(identity(&customer, &email, SECRET))).await?["verified"],
        true
    );
    let b = message(&mut second, "b1", "Ik schrijf nu vanaf mijn telefoon.").await?;
    let mut forged = connect(&pipeline, Some(&own)).await?;
    let welcome = hello(&mut forged, None, Some(identity(&customer, &email, "not-the-shops-secret"))).await?;
    assert_eq!(welcome["verified"], false);
    let c = message(&mut forged, "c1", "Ik ben Jan, echt waar.").await?;
    let ids: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|m| m["event_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let pipeline_ref = &pipeline;
    eventually("the three messages normalized", TIMEOUT, || async {
        Ok(pipeline_ref
            .conversation_events()?
            .iter()
            .filter(|e| ids.contains(&e.event_id))
            .count()
            == 3)
    })
    .await?;
    let events = pipeline.conversation_events()?;
    let conversation = |id: &str| events.iter().find(|e| e.event_id == id).map(|e| e.conversation_id.clone());
    assert_eq!(conversation(&ids[0]), conversation(&ids[1]), "one conversation on both devices");
    assert_ne!(
        conversation(&ids[0]),
        conversation(&ids[2]),
        "a forged identity joined the customer's conversation"
    );
    // The verified customer's ticket carries the email; the forged one's does not.
    let rt = &pipeline.rt;
    let ticket = rt.only_ticket_of(&email).await?;
    eventually("both devices' messages on it", TIMEOUT, || async {
        Ok(rt.texts(&ticket).await?.len() == 2)
    })
    .await?;
    assert!(!rt.texts(&ticket).await?.iter().any(|t| t.contains("echt waar")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_on_the_chat_topic_reaches_every_open_chat_once_and_a_reconnect_gets_what_it_missed() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let own = pipeline.gateway_url.clone();
    let mut first = connect(&pipeline, Some(&own)).await?;
    let token = hello(&mut first, None, None).await?["token"]
        .as_str()
        .context("a token")?
        .to_owned();
    let mut second = connect(&pipeline, Some(&own)).await?;
    hello(&mut second, Some(&token), None).await?;
    let visitor = token.split('.').nth(1).context("a visitor")?.to_owned();
    let conversation = omni_channels::web_chat::conversation_of("default", &visitor, None);
    publish_answer(&pipeline, &conversation, "o1", "Merhaba!").await?;
    // The sender's copy after a crash: the same outbound id, shown once.
    publish_answer(&pipeline, &conversation, "o1", "Merhaba!").await?;
    let mut seqs = Vec::new();
    for socket in [&mut first, &mut second] {
        let frame = next(socket).await?;
        assert_eq!(
            (frame["type"].as_str(), frame["text"].as_str()),
            (Some("agent"), Some("Merhaba!")),
            "{frame}"
        );
        seqs.push(frame["seq"].as_i64().context("a seq")?);
    }
    assert_eq!(seqs[0], seqs[1]);
    publish_answer(&pipeline, &conversation, "o2", "Kargonuz yolda.").await?;
    let frame = next(&mut first).await?;
    assert_eq!(frame["text"], "Kargonuz yolda.", "the copy of o1 was shown again: {frame}");
    // A reconnect that saw the first answer gets the second only.
    let with_seq =
        |seen: &str| json!({"type": "hello", "token": token, "identity": null, "name": null, "last_seq": seqs[0], "conversation": seen});
    let mut third = connect(&pipeline, Some(&own)).await?;
    send(&mut third, with_seq(&conversation)).await?;
    let welcome = next(&mut third).await?;
    assert_eq!(welcome["conversation"], conversation.as_str(), "{welcome}");
    let missed = next(&mut third).await?;
    assert_eq!(missed["text"], "Kargonuz yolda.", "{missed}");
    // A last seq of another conversation (the widget's before a login) means nothing: all come.
    let mut fourth = connect(&pipeline, Some(&own)).await?;
    send(&mut fourth, with_seq("another-conversation")).await?;
    assert_eq!(next(&mut fourth).await?["type"], "welcome");
    assert_eq!(next(&mut fourth).await?["text"], "Merhaba!");
    assert_eq!(next(&mut fourth).await?["text"], "Kargonuz yolda.");
    // Another visitor's chat gets none of it.
    let mut stranger = connect(&pipeline, Some(&own)).await?;
    hello(&mut stranger, None, None).await?;
    send(&mut stranger, json!({"type": "ping"})).await?;
    assert_eq!(next(&mut stranger).await?["type"], "pong");
    Ok(())
}

/// A request of the HTTP fallback (`/chat/poll` or `/chat/send`) from a page of `origin`.
async fn fallback(pipeline: &Pipeline, path: &str, origin: Option<&str>, body: &Value) -> anyhow::Result<reqwest::Response> {
    let mut request = reqwest::Client::new()
        .post(format!("{}/chat/{path}/default", pipeline.gateway_url))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(body.to_string());
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    Ok(request.send().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_websockets_the_same_frames_go_over_http_with_the_same_checks() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let own = pipeline.gateway_url.clone();
    let anonymous = json!({"type": "hello", "token": null, "identity": null, "name": null, "language": "nl"});
    // Another page's origin, or none: refused before anything is read, and no CORS grant.
    for origin in [Some("https://evil.example"), None] {
        let refused = fallback(&pipeline, "poll", origin, &json!({"hello": anonymous, "first": true})).await?;
        assert_eq!(refused.status(), 403, "{origin:?}");
        assert!(refused.headers().get("access-control-allow-origin").is_none());
    }
    // The first poll answers at once with the welcome, readable by the page's origin.
    let first = fallback(&pipeline, "poll", Some(&own), &json!({"hello": anonymous, "first": true})).await?;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["access-control-allow-origin"], own.as_str());
    let frames: Value = first.json().await?;
    let welcome = &frames["frames"][0];
    assert_eq!(welcome["type"], "welcome", "{frames}");
    let token = welcome["token"].as_str().context("a token")?.to_owned();
    let conversation = welcome["conversation"].as_str().context("a conversation")?.to_owned();
    let hello = json!({"type": "hello", "token": token, "identity": null, "name": "Jan", "language": "nl"});

    // A message before any welcome (no token) would open a conversation of its own: refused.
    let run = nonce();
    let message = |client_id: &str, text: &str| json!({"type": "message", "client_id": client_id, "text": text});
    let orphan = fallback(
        &pipeline,
        "send",
        Some(&own),
        &json!({"hello": anonymous, "frame": message("x1", "hoi")}),
    )
    .await?;
    assert_eq!(orphan.status(), 400);
    let forged = json!({"type": "hello", "token": "v1.0123456789abcdef0123456789abcdef.00", "identity": null});
    let forged = fallback(
        &pipeline,
        "send",
        Some(&own),
        &json!({"hello": forged, "frame": message("x2", "hoi")}),
    )
    .await?;
    assert_eq!(forged.status(), 400, "a token that does not check is no welcome's");
    // Stored once, acknowledged with the same event id when sent again.
    let send = |frame: Value| {
        let body = json!({"hello": hello, "frame": frame});
        let pipeline = &pipeline;
        let own = own.clone();
        async move { fallback(pipeline, "send", Some(&own), &body).await }
    };
    let ack: Value = send(message(&format!("m-{run}"), "Waar blijft mijn pakket?")).await?.json().await?;
    assert_eq!(ack["type"], "ack", "{ack}");
    let again: Value = send(message(&format!("m-{run}"), "Waar blijft mijn pakket?")).await?.json().await?;
    assert_eq!(again["event_id"], ack["event_id"], "{again}");
    let event_id = ack["event_id"].as_str().context("an event id")?.to_owned();
    // The socket's refusals, with their HTTP statuses; none writes anything.
    let before = raw_chat_records(&pipeline)?.len();
    let too_long = send(message(&format!("big-{run}"), &"ç".repeat(4001))).await?;
    assert_eq!(too_long.status(), 413);
    assert_eq!(too_long.json::<Value>().await?["code"], "too_large");
    let invalid = send(json!({"type": "hello"})).await?;
    assert_eq!(invalid.status(), 400);
    // A body above the frame limit (twice the 5 MiB image limit in base64, plus room): refused as
    // a whole before it is parsed, whatever it holds.
    let padded = json!({"hello": {"type": "hello", "token": token, "name": "a".repeat(15 << 20)}, "frame": message("h1", "hoi")});
    let huge = fallback(&pipeline, "send", Some(&own), &padded).await?;
    assert_eq!(huge.status(), 413, "a body above the frame limit");
    assert_eq!(huge.json::<Value>().await?["client_id"], Value::Null);
    let (mut acked, mut limited) = (0, None);
    for n in 0..25 {
        let answer = send(message(&format!("flood-{run}-{n}"), &format!("bericht {n}"))).await?;
        if answer.status() == 429 {
            limited = Some(answer);
            break;
        }
        assert_eq!(answer.status(), 200);
        acked += 1;
    }
    let limited = limited.context("a flood above the visitor's rate is refused")?;
    assert!(limited.headers().get("retry-after").is_some());
    assert_eq!(limited.json::<Value>().await?["code"], "rate_limited");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(stored(&pipeline, &[event_id])? >= 1, "the message stored");
    assert_eq!(
        raw_chat_records(&pipeline)?.len() - before,
        acked,
        "only what was acknowledged written"
    );

    // A poll waits for the agent's answer and brings it; one that has seen it waits for the next;
    // one that missed it gets it at once.
    let waiting = {
        let body = json!({"hello": hello});
        let pipeline = &pipeline;
        let own = own.clone();
        async move { anyhow::Ok(fallback(pipeline, "poll", Some(&own), &body).await?.json::<Value>().await?) }
    };
    let publish = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        publish_answer(&pipeline, &conversation, &format!("o-{run}"), "Het is onderweg.").await
    };
    let (polled, published) = tokio::join!(waiting, publish);
    published?;
    let polled = polled?;
    let frames = polled["frames"].as_array().context("frames")?;
    assert_eq!(frames.len(), 2, "{polled}");
    assert_eq!(frames[1]["text"], "Het is onderweg.", "{polled}");
    // A visitor who polls with its token is present for omni-sender, like one with an open socket.
    let pipeline_ref = &pipeline;
    eventually("the polling visitor present", TIMEOUT, || async {
        use prost::Message as _;
        Ok(pipeline_ref.topic("omni.state.webchat.v1")?.iter().any(|r| {
            omni_proto::v1::ChatPresence::decode(r.value.as_slice()).is_ok_and(|p| p.conversation_id == conversation && p.open_chats == 1)
        }))
    })
    .await?;
    let seq = frames[1]["seq"].as_i64().context("a seq")?;
    let missed = json!({"hello": {"type": "hello", "token": token, "last_seq": seq - 1, "conversation": conversation}});
    let again: Value = fallback(&pipeline, "poll", Some(&own), &missed).await?.json().await?;
    assert_eq!(again["frames"][1]["text"], "Het is onderweg.", "missed answers at once: {again}");
    let seen = json!({"hello": {"type": "hello", "token": token, "last_seq": seq, "conversation": conversation}});
    let waits = tokio::time::timeout(Duration::from_secs(3), fallback(&pipeline, "poll", Some(&own), &seen)).await;
    assert!(waits.is_err(), "a poll that has seen every answer waits for the next");
    Ok(())
}

/// A proxy in front of the gateway that blocks every WebSocket upgrade (as some corporate
/// proxies do: refused with 403, or with `swallow` held open unanswered) and passes every other
/// request on, one request per connection. Returns its address and the upgrades it blocked.
async fn websocket_blocking_proxy(
    gateway: &str,
    swallow: bool,
) -> anyhow::Result<(String, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let upstream = gateway.trim_start_matches("http://").to_owned();
    let refused = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = refused.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (upstream, counter) = (upstream.clone(), counter.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if text.contains("\r\nupgrade: websocket") {
                    counter.fetch_add(1, Ordering::SeqCst);
                    if swallow {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        return;
                    }
                    let _ = client
                        .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
                // One request per connection: the next one comes on a new connection, checked again.
                let head = String::from_utf8_lossy(&head)
                    .split("\r\n")
                    .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
                    .collect::<Vec<_>>()
                    .join("\r\n")
                    .replacen("\r\n\r\n", "\r\nconnection: close\r\n\r\n", 1);
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                if server.write_all(head.as_bytes()).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    Ok((format!("http://{address}"), refused))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_that_blocks_websockets_the_widget_chats_over_http_in_chromium() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let (_replies, sender) = return_path(&pipeline, &[]).await?;
    let (proxy, refused_upgrades) = websocket_blocking_proxy(&pipeline.gateway_url, false).await?;
    let driver = ChromeDriver::start().await?;
    let browser = driver.session().await?;
    open_page(&browser, &format!("{proxy}/chat/demo/default?lang=nl")).await?;
    assert!(
        refused_upgrades.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the widget tried WebSockets first"
    );
    say(&browser, "Mijn bestelling 5521 is beschadigd aangekomen.").await?;
    let visitor = visitor_of(&browser).await?;
    let requestor = format!("{visitor}@webchat.invalid");
    let rt = &pipeline.rt;
    let ticket = rt.only_ticket_of(&requestor).await?;
    rt.answer(&ticket, "Vervelend! We sturen vandaag een nieuwe.").await?;
    eventually("the agent's answer in the widget", TIMEOUT, || async {
        Ok(!browser.find_all(css("[data-omni=message][data-from=agent]")).await?.is_empty())
    })
    .await
    .with_context(|| format!("omni-sender log:\n{}\nomni-gateway log:\n{}", sender.log(), pipeline.gateway.log()))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answers = browser.find_all(css("[data-omni=message][data-from=agent]")).await?;
    assert_eq!(answers.len(), 1, "the answer shown once");
    assert!(answers[0].text().await?.contains("We sturen vandaag een nieuwe"));
    let texts = rt.texts(&ticket).await?;
    assert_eq!(
        texts.iter().filter(|t| t.contains("5521")).count(),
        1,
        "the visitor's message once in RT: {texts:?}"
    );
    screenshot(&browser, "widget-nl-fallback").await?;
    browser.close().await?;
    Ok(())
}

/// A count from the environment, else `default`.
fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// p50 and p99 of `samples`, in ms.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |p: usize| samples[((p * samples.len()).div_ceil(100)).clamp(1, samples.len()) - 1].as_secs_f64() * 1000.0;
    (at(50), at(99))
}

/// `make bench-chat`: figures, not a test. Agent answer in RT -> the widget's socket, visitor
/// message -> broker acknowledgement, and the gateway's memory per 1,000 idle chat connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: make bench-chat"]
async fn chat_benchmark() -> anyhow::Result<()> {
    let _serial = serial().await;
    let connections = env_count("OMNI_BENCH_CHAT_CONNECTIONS", 10_000);
    let messages = env_count("OMNI_BENCH_CHAT_MESSAGES", 300);
    let answers = env_count("OMNI_BENCH_CHAT_ANSWERS", 20);
    let unlimited = "1000000";
    let pipeline = Pipeline::start(&[
        ("OMNI__GATEWAY__CHAT__DEFAULT__MAX_CONNECTIONS_PER_IP", unlimited),
        ("OMNI__GATEWAY__CHAT__DEFAULT__MESSAGES_PER_MINUTE", unlimited),
        ("OMNI__GATEWAY__CHAT__DEFAULT__IP_MESSAGES_PER_MINUTE", unlimited),
    ])
    .await?;
    let poll_ms = "250";
    let _replies = pipeline
        .spawn_beside("replies", &[("OMNI__REPLIES__POLL_INTERVAL_MS", poll_ms)])
        .await?;
    let _sender = pipeline.spawn_beside("sender", &[]).await?;
    let own = pipeline.gateway_url.clone();

    // Agent answers: one visitor, one ticket, `answers` answers in RT one after the other.
    let mut visitor = connect(&pipeline, Some(&own)).await?;
    let token = hello(&mut visitor, None, None).await?["token"]
        .as_str()
        .context("a token")?
        .to_owned();
    message(&mut visitor, "first", "Merhaba, kargom nerede?").await?;
    let requestor = format!("{}@webchat.invalid", token.split('.').nth(1).context("a visitor")?);
    let rt = &pipeline.rt;
    let ticket = rt.only_ticket_of(&requestor).await?;
    let mut answer_latency = Vec::new();
    for n in 0..answers {
        let started = std::time::Instant::now();
        rt.answer(&ticket, &format!("Yanıt {n}: kargonuz yolda.")).await?;
        loop {
            let frame = next(&mut visitor).await?;
            if frame["type"] == "agent" && frame["text"].as_str().is_some_and(|t| t.starts_with(&format!("Yanıt {n}:"))) {
                break;
            }
        }
        answer_latency.push(started.elapsed());
    }

    // Visitor messages: one after the other, each until its ack (the broker's acknowledgement).
    let mut ack_latency = Vec::new();
    for n in 0..messages {
        let started = std::time::Instant::now();
        let ack = message(&mut visitor, &format!("bench-{n}"), &format!("Mesaj {n}")).await?;
        anyhow::ensure!(ack["type"] == "ack", "{ack}");
        ack_latency.push(started.elapsed());
    }

    // Idle connections: the gateway's resident memory before and after.
    let before = pipeline.gateway.usage().context("the gateway's usage")?.rss_kib;
    let mut idle = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut socket = connect(&pipeline, Some(&own)).await?;
        hello(&mut socket, None, None).await?;
        idle.push(socket);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = pipeline.gateway.usage().context("the gateway's usage")?.rss_kib;
    let per_thousand = (after.saturating_sub(before)) as f64 / 1024.0 / connections as f64 * 1000.0;
    let (answer_p50, answer_p99) = percentiles(&mut answer_latency);
    let (ack_p50, ack_p99) = percentiles(&mut ack_latency);
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    let report = format!(
        "\n## Website chat\n\n{build} build, loopback, 2 cores. Agent answer in RT -> widget socket, {answers} answers \
         (RT reply poll {poll_ms} ms): p50 {answer_p50:.0} ms, p99 {answer_p99:.0} ms. Visitor message -> broker ack, \
         {messages} messages: p50 {ack_p50:.1} ms, p99 {ack_p99:.1} ms. {connections} idle chat connections: gateway RSS \
         {:.1} -> {:.1} MiB, {per_thousand:.2} MiB per 1,000.\n",
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
    println!("{report}");
    // `make bench` adds this to target/bench/report.md and keeps the figures beside it.
    if let Ok(dir) = std::env::var("OMNI_BENCH_REPORT_DIR") {
        use std::io::Write as _;
        let figures = json!({"answers": answers, "answer_to_widget_p50_ms": answer_p50, "answer_to_widget_p99_ms": answer_p99,
            "messages": messages, "message_to_ack_p50_ms": ack_p50, "message_to_ack_p99_ms": ack_p99,
            "idle_connections": connections, "mib_per_1000_idle_connections": per_thousand, "build": build});
        let dir = std::path::Path::new(&dir);
        std::fs::write(dir.join("chat.json"), serde_json::to_vec_pretty(&figures)?)?;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join("report.md"))?
            .write_all(report.as_bytes())?;
    }
    drop(idle);
    Ok(())
}

/// Bytes a JPEG opens with (SOI, a JFIF APP0 segment), `size` in all, the rest random: the
/// gateway checks an image's type by its magic number, as the `infer` crate reads it.
fn jpeg(size: usize) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00];
    bytes.extend((bytes.len()..size.saturating_sub(2)).map(|_| fastrand::u8(..)));
    bytes.extend([0xFF, 0xD9]);
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Whether the tests' object store holds these bytes.
fn in_store(bytes: &[u8]) -> bool {
    let sha = sha256_hex(bytes);
    std::path::Path::new(&omni_e2e::objects_dir())
        .join("sha256")
        .join(&sha[..2])
        .join(&sha)
        .exists()
}

async fn image(socket: &mut Socket, client_id: &str, media_type: &str, bytes: &[u8]) -> anyhow::Result<Value> {
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    let frame = json!({"type": "image", "client_id": client_id, "name": "../../etc/kutu.jpg", "media_type": media_type, "data": data});
    send(socket, frame).await?;
    next(socket).await
}

/// Raw chat records whose message has one of these client ids.
fn stored_client_ids(pipeline: &Pipeline, client_ids: &[String]) -> anyhow::Result<usize> {
    Ok(raw_chat_records(pipeline)?
        .iter()
        .filter(|r| client_ids.contains(&r.provider_message_id))
        .count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_reaches_the_ticket_byte_for_byte_and_a_refused_one_writes_nothing() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[("OMNI__GATEWAY__CHAT__DEFAULT__MAX_IMAGE_BYTES", "300000")]).await?;
    let mut socket = connect(&pipeline, Some(&pipeline.gateway_url.clone())).await?;
    let welcome = hello(&mut socket, None, None).await?;
    assert_eq!(welcome["max_image_bytes"], 300_000, "{welcome}");
    assert!(
        welcome["image_types"].as_array().is_some_and(|t| t.contains(&json!("image/jpeg"))),
        "{welcome}"
    );
    let run = nonce();

    // Refused, each with its reason, nothing stored: too large, an executable sent as a JPEG, a
    // JPEG sent as a PNG, bytes that are not base64.
    let too_large = jpeg(300_001);
    let executable: Vec<u8> = [b"MZ\x90\x00".as_slice(), &[0u8; 4000]].concat();
    let as_png = jpeg(5_000);
    let mut refused_ids = Vec::new();
    for (n, (media_type, bytes, code)) in [
        ("image/jpeg", &too_large, "too_large"),
        ("image/jpeg", &executable, "invalid"),
        ("image/png", &as_png, "invalid"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("bad-{run}-{n}");
        let answer = image(&mut socket, &id, media_type, bytes).await?;
        assert_eq!(
            (answer["type"].as_str(), answer["code"].as_str()),
            (Some("error"), Some(code)),
            "{id}: {answer}"
        );
        assert!(!in_store(bytes), "{id}: a refused image was kept");
        refused_ids.push(id);
    }
    let id = format!("bad-{run}-base64");
    send(
        &mut socket,
        json!({"type": "image", "client_id": id, "name": "x.jpg", "media_type": "image/jpeg", "data": "not base64!"}),
    )
    .await?;
    assert_eq!(next(&mut socket).await?["code"], "invalid");
    refused_ids.push(id);

    let photo = jpeg(200_000);
    let acked = image(&mut socket, &format!("img-{run}"), "image/jpeg", &photo).await?;
    assert_eq!(acked["type"], "ack", "{acked}");
    let event_id = acked["event_id"].as_str().context("an event id")?.to_owned();
    let pipeline_ref = &pipeline;
    let event_ref = &event_id;
    eventually("the image's event", TIMEOUT, || async move {
        Ok(pipeline_ref.conversation_events()?.iter().any(|e| &e.event_id == event_ref))
    })
    .await?;
    let event = pipeline
        .conversation_events()?
        .into_iter()
        .find(|e| e.event_id == event_id)
        .context("the event")?;
    let file = &event.attachments[0];
    assert_eq!(
        (file.name.as_str(), file.media_type.as_str()),
        ("kutu.jpg", "image/jpeg"),
        "no path from the browser"
    );
    assert_eq!(file.sha256, sha256_hex(&photo));

    let rt = &pipeline.rt;
    let conversation = event.conversation_id.clone();
    let conversation_ref = &conversation;
    eventually("the visitor's ticket", TIMEOUT, || async move {
        Ok(rt.tickets_of_conversation(conversation_ref).await?.len() == 1)
    })
    .await?;
    let ticket = rt.tickets_of_conversation(&conversation).await?.remove(0);
    let expected = ("kutu.jpg".to_owned(), sha256_hex(&photo));
    let expected_ref = &expected;
    let ticket_ref = &ticket;
    eventually("the image on the ticket, byte for byte", TIMEOUT, || async move {
        Ok(rt.file_hashes(ticket_ref).await?.contains(expected_ref))
    })
    .await?;
    assert_eq!(stored_client_ids(&pipeline, &refused_ids)?, 0, "a refused image was written");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_picked_in_chromium_is_sent_and_an_oversized_one_is_refused_in_the_widget() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[("OMNI__GATEWAY__CHAT__DEFAULT__MAX_IMAGE_BYTES", "300000")]).await?;
    let driver = ChromeDriver::start().await?;
    let browser = driver.session().await?;
    open_chat(&browser, &pipeline, "nl").await?;
    let dir = tempfile::tempdir()?;
    let photo = jpeg(150_000);
    let (small, large) = (dir.path().join("pakket.jpg"), dir.path().join("groot.jpg"));
    std::fs::write(&small, &photo)?;
    std::fs::write(&large, jpeg(400_000))?;
    assert!(
        browser.find(css("[data-omni=attach]")).await?.is_displayed().await?,
        "the image button shown"
    );

    // Too large: refused by the widget itself, nothing sent.
    let file_input = browser.find(css("[data-omni=file]")).await?;
    file_input.send_keys(&large.display().to_string()).await?;
    let failed = browser
        .wait()
        .at_most(TIMEOUT)
        .for_element(css("[data-omni=message][data-state=failed]"))
        .await?;
    assert!(failed.text().await?.contains("groot.jpg"), "{}", failed.text().await?);

    let file_input = browser.find(css("[data-omni=file]")).await?;
    file_input.send_keys(&small.display().to_string()).await?;
    eventually("the image shown sent", TIMEOUT, || async {
        Ok(!browser.find_all(css("[data-omni=message][data-state=sent]")).await?.is_empty())
    })
    .await?;
    let visitor = visitor_of(&browser).await?;
    let requestor = format!("{visitor}@webchat.invalid");
    let rt = &pipeline.rt;
    let requestor_ref = &requestor;
    eventually("the visitor's ticket", TIMEOUT, || async move {
        Ok(rt.tickets_of_requestor(requestor_ref).await?.len() == 1)
    })
    .await?;
    let ticket = rt.tickets_of_requestor(&requestor).await?.remove(0);
    let expected = ("pakket.jpg".to_owned(), sha256_hex(&photo));
    let (ticket_ref, expected_ref) = (&ticket, &expected);
    eventually("the picked image on the ticket, byte for byte", TIMEOUT, || async move {
        Ok(rt.file_hashes(ticket_ref).await?.contains(expected_ref))
    })
    .await?;
    screenshot(&browser, "widget-nl-image").await?;
    browser.close().await?;
    Ok(())
}

/// The demo page as a shop whose logged-in customer is `identity` (the tag's `data-customer-*`).
async fn open_chat_as(browser: &Client, pipeline: &Pipeline, identity: &Value) -> anyhow::Result<()> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("lang", "nl")
        .append_pair("customer_id", identity["id"].as_str().unwrap_or_default())
        .append_pair("customer_email", identity["email"].as_str().unwrap_or_default())
        .append_pair("customer_name", identity["name"].as_str().unwrap_or_default())
        .append_pair("customer_hash", identity["hash"].as_str().unwrap_or_default())
        .finish();
    open_page(browser, &format!("{}/chat/demo/default?{query}", pipeline.gateway_url)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_customer_continues_in_a_second_browser_profile_and_a_forged_one_sees_nothing() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let _replies = pipeline
        .spawn_beside("replies", &[("OMNI__REPLIES__POLL_INTERVAL_MS", "500")])
        .await?;
    let _sender = pipeline.spawn_beside("sender", &[]).await?;
    let driver = ChromeDriver::start().await?;
    let run = nonce();
    let (customer, email) = (format!("cust-{run}"), format!("jan-{run}@example.nl"));
    let signed = identity(&customer, &email, SECRET);

    // First profile: the shop's logged-in customer writes.
    let laptop = driver.session().await?;
    open_chat_as(&laptop, &pipeline, &signed).await?;
    assert_eq!(
        laptop.find(css("[data-omni=panel]")).await?.attr("data-verified").await?.as_deref(),
        Some("true")
    );
    say(&laptop, "Hoi, mijn bestelling 5521 is nog niet binnen.").await?;
    let rt = &pipeline.rt;
    let email_ref = &email;
    eventually("the customer's ticket, with their email", TIMEOUT, || async move {
        Ok(rt.tickets_of_requestor(email_ref).await?.len() == 1)
    })
    .await?;
    let ticket = rt.tickets_of_requestor(&email).await?.remove(0);

    // Second profile (another device, no shared storage): the same customer, the same ticket.
    let phone = driver.session().await?;
    open_chat_as(&phone, &pipeline, &signed).await?;
    say(&phone, "Ik schrijf nu vanaf mijn telefoon.").await?;
    let ticket_ref = &ticket;
    eventually("both profiles' messages on one ticket", TIMEOUT, || async move {
        Ok(rt.texts(ticket_ref).await?.iter().any(|t| t.contains("vanaf mijn telefoon")))
    })
    .await?;

    // Third profile with a forged hash: anonymous, a conversation of its own.
    let mut forged = signed.clone();
    forged["hash"] = json!("0".repeat(64));
    let stranger = driver.session().await?;
    open_chat_as(&stranger, &pipeline, &forged).await?;
    assert_eq!(
        stranger
            .find(css("[data-omni=panel]"))
            .await?
            .attr("data-verified")
            .await?
            .as_deref(),
        Some("false")
    );
    say(&stranger, "Ik ben Jan, echt waar.").await?;

    // The agent answers the customer: both of the customer's profiles show it, the stranger not.
    rt.answer(&ticket, "Beste Jan, het pakket komt morgen.").await?;
    for browser in [&laptop, &phone] {
        eventually("the answer in the customer's widget", TIMEOUT, || async {
            Ok(browser.find_all(css("[data-omni=message][data-from=agent]")).await?.len() == 1)
        })
        .await?;
    }
    let stranger_visitor = visitor_of(&stranger).await?;
    let stranger_requestor = format!("{stranger_visitor}@webchat.invalid");
    let stranger_ref = &stranger_requestor;
    eventually("the stranger's own ticket", TIMEOUT, || async move {
        Ok(rt.tickets_of_requestor(stranger_ref).await?.len() == 1)
    })
    .await?;
    assert!(
        !rt.texts(&ticket).await?.iter().any(|t| t.contains("echt waar")),
        "the forged identity joined the customer's ticket"
    );
    assert!(
        stranger.find_all(css("[data-omni=message][data-from=agent]")).await?.is_empty(),
        "the forged identity saw the customer's answer"
    );
    for browser in [laptop, phone, stranger] {
        browser.close().await?;
    }
    Ok(())
}

/// The return path beside `pipeline`: omni-replies polling RT every 500 ms and omni-sender with
/// `sender_env`.
async fn return_path(pipeline: &Pipeline, sender_env: &[(&str, &str)]) -> anyhow::Result<(omni_e2e::Service, omni_e2e::Service)> {
    let replies = pipeline
        .spawn_beside("replies", &[("OMNI__REPLIES__POLL_INTERVAL_MS", "500")])
        .await?;
    let sender = pipeline.spawn_beside("sender", sender_env).await?;
    Ok((replies, sender))
}

/// The reply intake (RT polled every 0.5 s) and the sender mailing through the test Postfix,
/// a visitor counting as left 2 s after their last chat closed.
async fn away_return_path(pipeline: &Pipeline) -> anyhow::Result<(omni_e2e::Service, omni_e2e::Service)> {
    let smtp = format!("smtp://127.0.0.1:{}", omni_e2e::smtp_port());
    return_path(
        pipeline,
        &[
            ("OMNI__SENDER__EMAIL__SMTP_URL", smtp.as_str()),
            ("OMNI__SENDER__CHAT_AWAY_AFTER_SECS", "2"),
        ],
    )
    .await
}

/// Item 4 of the chat: an answer reaches a visitor who is there in the chat; one who left and
/// whose email the shop signed gets it by email (and not in the chat later); an anonymous one
/// who left gets it on the next visit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_who_left_is_answered_by_email_and_an_anonymous_one_on_the_next_visit() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let (_replies, sender) = away_return_path(&pipeline).await?;
    let own = pipeline.gateway_url.clone();
    let run = nonce();
    let email = format!("jan-{run}@example.nl");
    let signed = identity(&format!("cust-{run}"), &email, SECRET);
    let (rt, customers) = (&pipeline.rt, &pipeline.mailbox);
    let mails_to = |to: &str| customers.fetch("customers", &["to", to]).map(|found| found.len());

    // The customer writes and stays: the answer comes into the chat, no mail.
    let mut chat = connect(&pipeline, Some(&own)).await?;
    let token = hello(&mut chat, None, Some(signed.clone())).await?["token"]
        .as_str()
        .context("a token")?
        .to_owned();
    assert_eq!(
        message(&mut chat, &format!("m1-{run}"), "Waar is mijn pakket?").await?["type"],
        "ack"
    );
    let ticket = rt.only_ticket_of(&email).await?;
    rt.answer(&ticket, "Het pakket is onderweg.").await?;
    let frame = next(&mut chat)
        .await
        .with_context(|| format!("omni-sender log:\n{}", sender.log()))?;
    assert_eq!(frame["text"], "Het pakket is onderweg.", "{frame}");

    // The customer closes the tab; the next answer goes by email.
    chat.close(None).await?;
    drop(chat);
    tokio::time::sleep(Duration::from_secs(3)).await;
    rt.answer(&ticket, "Het pakket is vandaag bezorgd.").await?;
    eventually("the answer in the customer's mailbox", TIMEOUT, || async {
        Ok(mails_to(&email)? == 1)
    })
    .await
    .with_context(|| format!("omni-sender log:\n{}", sender.log()))?;
    let mail = customers.fetch("customers", &["to", &email])?.remove(0);
    let parsed = mail_parser::MessageParser::default().parse(mail.as_bytes()).context("a mail")?;
    assert_eq!(parsed.body_text(0).unwrap_or_default().trim(), "Het pakket is vandaag bezorgd.");
    assert!(
        !mail.contains("Het pakket is onderweg."),
        "the answer given in the chat was mailed too: {mail}"
    );
    // Back on the site: the chat has the first answer only (the mailed one is not pushed).
    let mut back = connect(&pipeline, Some(&own)).await?;
    hello(&mut back, Some(&token), Some(signed)).await?;
    assert_eq!(next(&mut back).await?["text"], "Het pakket is onderweg.");
    send(&mut back, json!({"type": "ping"})).await?;
    let after = next(&mut back).await?;
    assert_eq!(after["type"], "pong", "the mailed answer came into the chat as well: {after}");

    // An anonymous visitor writes and leaves: no address, the answer waits for the next visit.
    let mut anonymous = connect(&pipeline, Some(&own)).await?;
    let anonymous_token = hello(&mut anonymous, None, None).await?["token"]
        .as_str()
        .context("a token")?
        .to_owned();
    assert_eq!(
        message(&mut anonymous, &format!("a1-{run}"), "Hebben jullie maat 42?").await?["type"],
        "ack"
    );
    let visitor = anonymous_token.split('.').nth(1).context("a visitor")?.to_owned();
    let requestor = format!("{visitor}@webchat.invalid");
    anonymous.close(None).await?;
    drop(anonymous);
    let anonymous_ticket = rt.only_ticket_of(&requestor).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    rt.answer(&anonymous_ticket, "Ja, maat 42 is er.").await?;
    let outbox_sent = || {
        pipeline
            .topic("omni.webchat.v1")
            .map(|records| records.iter().any(|r| String::from_utf8_lossy(&r.value).contains("maat 42 is er")))
    };
    eventually("the anonymous visitor's answer kept for the chat", TIMEOUT, || async {
        outbox_sent()
    })
    .await
    .with_context(|| format!("omni-sender log:\n{}", sender.log()))?;
    let mut again = connect(&pipeline, Some(&own)).await?;
    hello(&mut again, Some(&anonymous_token), None).await?;
    assert_eq!(next(&mut again).await?["text"], "Ja, maat 42 is er.");
    Ok(())
}

/// Item 5 of the chat: outside the account's business hours (a holiday today) the widget in
/// Chromium says so in the visitor's language (Dutch) and asks for an email; a malformed one is
/// refused in the widget, a good one goes to the ticket as a note of the visitor's, and once the
/// visitor has left the agent's answer is mailed there, not pushed into the chat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_business_hours_the_widget_asks_for_an_email_and_the_answer_goes_there() -> anyhow::Result<()> {
    let _serial = serial().await;
    let today = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    let tomorrow = today.tomorrow()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("hours.toml");
    let week: String = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
        .iter()
        .map(|day| format!("{day} = [\"00:00-24:00\"]\n"))
        .collect();
    std::fs::write(
        &config,
        format!(
            "[gateway.chat.default.business_hours]\ntimezone = \"UTC\"\nholidays = [\"{today}\", \"{tomorrow}\"]\n\
             [gateway.chat.default.business_hours.week]\n{week}"
        ),
    )?;
    let config_path = config.to_string_lossy().to_string();
    let pipeline = Pipeline::start(&[("OMNI_CONFIG", &config_path)]).await?;
    let (_replies, sender) = away_return_path(&pipeline).await?;
    let driver = ChromeDriver::start().await?;
    let browser = driver.session().await?;
    open_chat(&browser, &pipeline, "nl").await?;
    let notice = browser.find(css("[data-omni=notice]")).await?;
    eventually("the offline notice", TIMEOUT, || async { Ok(notice.is_displayed().await?) }).await?;
    let text = notice.text().await?;
    assert!(text.contains("We zijn er nu niet"), "not the Dutch offline notice: {text}");
    say(&browser, "Mijn bestelling 7731 is beschadigd.").await?;
    // A malformed email stays in the widget.
    let contact = browser.find(css("[data-omni=contact]")).await?;
    contact.send_keys("jan@").await?;
    browser.find(css("[data-omni=contact-save]")).await?.click().await?;
    assert_eq!(contact.attr("aria-invalid").await?.as_deref(), Some("true"));
    let run = nonce();
    let email = format!("jan-{run}@example.nl");
    contact.clear().await?;
    contact.send_keys(&email).await?;
    browser.find(css("[data-omni=contact-save]")).await?.click().await?;
    eventually("the note with the email shown sent", TIMEOUT, || async {
        let sent = browser.find_all(css("[data-omni=message][data-state=sent]")).await?;
        let mut found = false;
        for message in sent {
            found |= message.text().await?.contains(&email);
        }
        Ok(found)
    })
    .await?;
    screenshot(&browser, "web-chat-offline-nl").await?;
    let visitor = visitor_of(&browser).await?;
    let requestor = format!("{visitor}@webchat.invalid");
    let rt = &pipeline.rt;
    let requestor_ref = &requestor;
    eventually("the visitor's ticket with the note", TIMEOUT, || async move {
        let tickets = rt.tickets_of_requestor(requestor_ref).await?;
        Ok(match tickets.first() {
            Some(ticket) => rt.texts(ticket).await?.iter().any(|t| t.contains("Antwoord me graag op")),
            None => false,
        })
    })
    .await?;
    let ticket = rt.tickets_of_requestor(&requestor).await?.remove(0);
    browser.close().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    rt.answer(&ticket, "We sturen morgen een nieuwe.").await?;
    let customers = &pipeline.mailbox;
    eventually("the answer at the email the visitor left", TIMEOUT, || async {
        Ok(!customers.fetch("customers", &["to", &email])?.is_empty())
    })
    .await
    .with_context(|| format!("omni-sender log:\n{}", sender.log()))?;
    let mail = customers.fetch("customers", &["to", &email])?.remove(0);
    let parsed = mail_parser::MessageParser::default().parse(mail.as_bytes()).context("a mail")?;
    assert_eq!(parsed.body_text(0).unwrap_or_default().trim(), "We sturen morgen een nieuwe.");
    assert!(
        !pipeline
            .topic("omni.webchat.v1")?
            .iter()
            .any(|r| String::from_utf8_lossy(&r.value).contains("nieuwe")),
        "the mailed answer was pushed into the chat too"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_left_unanswered_past_busy_after_secs_shows_the_busy_notice_until_an_answer() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[("OMNI__GATEWAY__CHAT__DEFAULT__BUSY_AFTER_SECS", "3")]).await?;
    let driver = ChromeDriver::start().await?;
    let browser = driver.session().await?;
    open_chat(&browser, &pipeline, "tr").await?;
    let notice = browser.find(css("[data-omni=notice]")).await?;
    assert!(!notice.is_displayed().await?, "no notice while open and nothing waits");
    say(&browser, "Kargom nerede?").await?;
    eventually("the busy notice", TIMEOUT, || async { Ok(notice.is_displayed().await?) }).await?;
    assert_eq!(notice.attr("data-kind").await?.as_deref(), Some("busy"));
    let text = notice.text().await?;
    assert!(text.contains("her zamankinden uzun"), "not the Turkish busy notice: {text}");
    assert!(
        browser.find(css("[data-omni=contact]")).await?.is_displayed().await?,
        "asks for an email"
    );
    // The agent's answer takes the notice away.
    let conversation = omni_channels::web_chat::conversation_of("default", &visitor_of(&browser).await?, None);
    publish_answer(&pipeline, &conversation, &format!("busy-{}", nonce()), "Yolda, yarın elinizde.").await?;
    eventually("the answer shown and the notice gone", TIMEOUT, || async {
        let answered = !browser.find_all(css("[data-omni=message][data-from=agent]")).await?.is_empty();
        Ok(answered && !notice.is_displayed().await?)
    })
    .await?;
    browser.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_that_swallows_websocket_upgrades_the_widget_falls_back_after_its_open_timeout() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let (proxy, swallowed) = websocket_blocking_proxy(&pipeline.gateway_url, true).await?;
    let driver = ChromeDriver::start().await?;
    let browser = driver.session().await?;
    // Two attempts that never open (10 s each), then HTTP.
    open_page(&browser, &format!("{proxy}/chat/demo/default?lang=en")).await?;
    assert!(swallowed.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    say(&browser, "Do you ship to Belgium?").await?;
    let visitor = visitor_of(&browser).await?;
    let conversation = omni_channels::web_chat::conversation_of("default", &visitor, None);
    let records = raw_chat_records(&pipeline)?;
    assert!(
        records
            .iter()
            .any(|r| String::from_utf8_lossy(&r.payload).contains("ship to Belgium")),
        "the message stored for conversation {conversation}"
    );
    browser.close().await?;
    Ok(())
}
