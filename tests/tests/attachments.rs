//! Files reach the agent: an email's photo far above what a record carries (the connector's
//! `max_inline_bytes`, 768 KiB) goes through the object store (`[objects]`, a directory here) and
//! lands in the Request Tracker ticket as a real attachment, byte for byte, with the customer's
//! text; a WhatsApp photo is fetched from the Graph API's media endpoints (a local stand-in,
//! `omni_e2e::whatsapp_media`) with the account's token and attached the same way, and a Telegram
//! photo through `getFile` (`omni_e2e::telegram_files`). A file above RT's 10 MB is listed with a
//! signed link instead when `[objects]` links are configured.

use std::time::Duration;

use base64::Engine as _;
use omni_e2e::{Pipeline, eventually, nonce, serial};
use sha2::{Digest as _, Sha256};

const TIMEOUT: Duration = Duration::from_secs(90);

/// A mail with a text part and a `image/jpeg` attachment of `photo`.
fn mail_with_photo(from: &str, message_id: &str, photo: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(photo);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
        .collect();
    format!(
        "From: {from}\r\nTo: Support <support@omni.local>\r\nSubject: Kapot aangekomen\r\nMessage-ID: <{message_id}>\r\n\
         Date: Sat, 05 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDe vaas is in scherven aangekomen, foto in de bijlage.\r\n\
         --b1\r\nContent-Type: image/jpeg; name=\"vaas.jpg\"\r\nContent-Disposition: attachment; filename=\"vaas.jpg\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        lines.join("\r\n")
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_mb_photo_by_email_is_in_the_ticket_byte_for_byte_with_the_text() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let run = nonce();
    let customer = format!("jan-{run}@example.nl");
    // Unique per run: the store (shared by the tests) must not have it from an earlier one.
    let mut rng = fastrand::Rng::new();
    let photo: Vec<u8> = (0..3 * 1024 * 1024).map(|_| rng.u8(..)).collect();
    pipeline.mailbox.deliver(&mail_with_photo(
        &format!("Jan de Vries <{customer}>"),
        &format!("photo-{run}@mail.example.nl"),
        &photo,
    ));
    let rt = &pipeline.rt;
    let ticket = rt.only_ticket_of(&customer).await?;
    eventually("the photo on the ticket", TIMEOUT, || async {
        Ok(rt.files(&ticket).await?.iter().any(|(name, _)| name == "vaas.jpg"))
    })
    .await?;
    assert_eq!(
        rt.file_hashes(&ticket).await?,
        [("vaas.jpg".to_owned(), hex::encode(Sha256::digest(&photo)))],
        "the photo byte for byte, once"
    );
    // The customer's words came too (the record carried the text, the store the photo).
    let subject = rt.get(&format!("/ticket/{ticket}")).await?["Subject"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(subject, "Kapot aangekomen");
    let text = create_text(rt, &ticket).await?;
    assert!(text.contains("De vaas is in scherven aangekomen"), "{text}");
    assert!(!text.contains("imap://"), "the photo is attached, not listed: {text}");
    Ok(())
}

/// The text part of the transaction that created `ticket` (what the customer wrote, and the
/// files listed rather than attached).
async fn create_text(rt: &omni_e2e::Rt, ticket: &str) -> anyhow::Result<String> {
    let history = rt.get(&format!("/ticket/{ticket}/history?fields=Type&per_page=20")).await?;
    let create = history["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|item| item["Type"] == "Create")
        .and_then(|item| item["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let parts = rt
        .get(&format!(
            "/transaction/{create}/attachments?fields=ContentType,Filename,ContentLength"
        ))
        .await?;
    let text_part = parts["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|part| part["ContentType"] == "text/plain" && part["Filename"].as_str().unwrap_or_default().is_empty())
        .and_then(|part| part["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let text = rt.get(&format!("/attachment/{text_part}")).await?["Content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(String::from_utf8(
        base64::engine::general_purpose::STANDARD.decode(text.split_whitespace().collect::<String>())?,
    )?)
}

/// A file above Request Tracker's 10 MB with `[objects] public_url` and `link_secret` set: not
/// attached (RT would refuse the message) but listed in the ticket with its signed link, which
/// serves it byte for byte; the customer's text is there as always.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_above_request_trackers_limit_is_linked_in_the_ticket() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mut pipeline = Pipeline::start(&[("OMNI__OBJECTS__LINK_SECRET", "file-links-test-secret-0123456789")]).await?;
    let gateway = pipeline.gateway_url.clone();
    pipeline.router.restart_with(&[("OMNI__OBJECTS__PUBLIC_URL", &gateway)]).await?;
    let run = nonce();
    let customer = format!("jan-{run}@example.nl");
    let mut rng = fastrand::Rng::new();
    let photo: Vec<u8> = (0..11 * 1024 * 1024).map(|_| rng.u8(..)).collect();
    pipeline.mailbox.deliver(&mail_with_photo(
        &format!("Jan de Vries <{customer}>"),
        &format!("large-{run}@mail.example.nl"),
        &photo,
    ));
    let rt = &pipeline.rt;
    let ticket = rt.only_ticket_of(&customer).await?;
    let text = create_text(rt, &ticket).await?;
    assert!(text.contains("De vaas is in scherven aangekomen"), "{text}");
    assert!(rt.files(&ticket).await?.is_empty(), "not attached");
    let sha256 = hex::encode(Sha256::digest(&photo));
    let prefix = format!("{gateway}/files/{sha256}?");
    let link = text
        .split_whitespace()
        .find(|word| word.starts_with(&prefix))
        .ok_or_else(|| anyhow::anyhow!("no link to the file in: {text}"))?;
    assert!(text.contains(&format!("vaas.jpg (image/jpeg, {} bytes)", photo.len())), "{text}");
    let response = reqwest::get(link).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await?.as_ref(), photo.as_slice(), "the file byte for byte");
    Ok(())
}

/// A WhatsApp image message (`whatsapp/fixtures/image-nl.json`) from `customer` carrying media
/// `media_id` whose bytes hash to `sha256`.
fn whatsapp_image(customer: &str, message_id: &str, media_id: &str, sha256: &str) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/omni-channels/src/whatsapp/fixtures/image-nl.json"
    ))
    .expect("the fixture");
    let mut update: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let value = &mut update["entry"][0]["changes"][0]["value"];
    value["contacts"][0]["wa_id"] = customer.into();
    let message = &mut value["messages"][0];
    message["from"] = customer.into();
    message["id"] = message_id.into();
    message["image"]["id"] = media_id.into();
    message["image"]["sha256"] = sha256.into();
    update.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whatsapp_photo_is_fetched_with_the_token_and_attached_and_a_bad_one_is_listed() -> anyhow::Result<()> {
    use omni_e2e::whatsapp_media::{Medium, WhatsAppMedia};
    let _serial = serial().await;
    let token = "EAAG-media-omni-test";
    let (graph, graph_url) = WhatsAppMedia::start(token).await?;
    let pipeline = Pipeline::start(&[
        ("OMNI__ROUTER__MEDIA__WHATSAPP__DEFAULT__ACCESS_TOKEN", token),
        ("OMNI__ROUTER__MEDIA__WHATSAPP__DEFAULT__API_BASE_URL", &graph_url),
    ])
    .await?;
    let run = nonce();
    let digits: String = run.chars().filter(char::is_ascii_digit).take(7).collect();
    // Unique per run: the store (shared by the tests) must not have it yet.
    let mut rng = fastrand::Rng::new();
    let photo: Vec<u8> = (0..1_500_000).map(|_| rng.u8(..)).collect();
    let sha = |bytes: &[u8]| hex::encode(Sha256::digest(bytes));
    // The photo fails twice before it is served (retried); the "photo" of the second customer is
    // served as an executable (refused: the message goes on, the file is listed).
    let (good, bad) = (format!("90{digits:0>7}1"), format!("90{digits:0>7}2"));
    graph.add(
        &good,
        Medium {
            bytes: photo.clone(),
            mime_type: "image/jpeg".into(),
            served_as: "image/jpeg".into(),
            failures: 2,
        },
    );
    // Unique per run too: once the replay below attached it, it is in the shared store.
    let fake = format!("MZ not a photo {run}").into_bytes();
    graph.add(
        &bad,
        Medium {
            bytes: fake.clone(),
            mime_type: "image/jpeg".into(),
            served_as: "application/x-msdownload".into(),
            failures: 0,
        },
    );
    let rt = &pipeline.rt;
    let mut tickets = Vec::new();
    for (n, (media_id, bytes)) in [(&good, &photo), (&bad, &fake)].into_iter().enumerate() {
        // A Dutch mobile number (+31 6 and eight digits), so the requestor is the phone's.
        let customer = format!("3161{}{n}", &format!("{digits:0>7}")[..6]);
        let body = whatsapp_image(&customer, &format!("wamid.IMG-{run}-{n}"), media_id, &sha(bytes));
        let (status, answer) = pipeline.post_webhook("whatsapp", "application/json", &body).await?;
        assert_eq!(status, 200, "{answer}");
        let requestor = format!("+{customer}@phone.invalid");
        eventually("the customer's ticket", TIMEOUT, || async {
            Ok(rt.tickets_of_requestor(&requestor).await?.len() == 1)
        })
        .await?;
        tickets.push(rt.tickets_of_requestor(&requestor).await?.remove(0));
    }
    let hashes = rt.file_hashes(&tickets[0]).await?;
    assert_eq!(hashes.len(), 1, "{hashes:?}");
    assert_eq!(hashes[0].1, sha(&photo), "the photo byte for byte");
    assert!(rt.file_hashes(&tickets[1]).await?.is_empty(), "nothing attached from a wrong type");
    let texts = rt.texts(&tickets[1]).await?;
    assert!(
        texts.iter().any(|t| t.contains(&bad)),
        "the file is listed by its media id: {texts:?}"
    );
    assert!(graph.requests().iter().all(|(_, authorized)| *authorized), "{:?}", graph.requests());
    let downloads = graph
        .requests()
        .iter()
        .filter(|(path, _)| path.contains(&format!("mid={good}")))
        .count();
    assert_eq!(downloads, 3, "two 500s, then the photo once");

    // The agent reads why on the wrong one's ticket; once the media server serves it right, a
    // replay of the router-media dead letters attaches it, once however often it is replayed.
    let bad_ticket = &tickets[1];
    eventually("a note naming the file that was not fetched", TIMEOUT, || async {
        Ok(rt
            .comments(bad_ticket)
            .await?
            .iter()
            .any(|c| c.contains("could not be fetched from whatsapp")))
    })
    .await?;
    graph.add(
        &bad,
        Medium {
            bytes: fake.clone(),
            mime_type: "image/jpeg".into(),
            served_as: "image/jpeg".into(),
            failures: 0,
        },
    );
    for _ in 0..2 {
        let replayed = pipeline.omni(&["deadletter", "replay", "--stage", "router-media"])?;
        assert!(replayed.contains("records replayed"), "{replayed}");
    }
    eventually("the file attached after the replay", TIMEOUT, || async {
        Ok(rt.file_hashes(bad_ticket).await?.iter().any(|(_, hash)| *hash == sha(&fake)))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attached = rt
        .file_hashes(bad_ticket)
        .await?
        .iter()
        .filter(|(_, hash)| *hash == sha(&fake))
        .count();
    assert_eq!(attached, 1, "replayed twice, attached once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_photo_is_fetched_with_get_file_and_attached() -> anyhow::Result<()> {
    let _serial = serial().await;
    let token = "123456:omni-files-test";
    let (files, api_url) = omni_e2e::telegram_files::TelegramFiles::start(token).await?;
    let pipeline = Pipeline::start(&[
        ("OMNI__ROUTER__MEDIA__TELEGRAM__DEFAULT__BOT_TOKEN", token),
        ("OMNI__ROUTER__MEDIA__TELEGRAM__DEFAULT__API_BASE_URL", &api_url),
    ])
    .await?;
    let run = nonce();
    let digits: String = run.chars().filter(char::is_ascii_digit).take(8).collect();
    let user = format!("7{digits:0>8}");
    let file_id = format!("AgACAgQAAxkBAAIBOmVk-{digits}-large");
    let mut rng = fastrand::Rng::new();
    let photo: Vec<u8> = (0..800_000).map(|_| rng.u8(..)).collect();
    files.add(&file_id, photo.clone());
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/omni-channels/src/telegram/fixtures/photo-nl.json"
    ))?;
    let mut update: serde_json::Value = serde_json::from_str(&text)?;
    update["update_id"] = digits.parse::<u64>()?.into();
    let message = &mut update["message"];
    message["from"]["id"] = user.parse::<u64>()?.into();
    message["chat"]["id"] = user.parse::<u64>()?.into();
    message["photo"][2]["file_id"] = file_id.clone().into();
    let (status, answer) = pipeline.post_webhook("telegram", "application/json", &update.to_string()).await?;
    assert_eq!(status, 200, "{answer}");
    let rt = &pipeline.rt;
    let requestor = format!("{user}@telegram.invalid");
    let ticket = rt.only_ticket_of(&requestor).await?;
    let hashes = rt.file_hashes(&ticket).await?;
    assert_eq!(hashes.len(), 1, "{hashes:?}");
    assert_eq!(hashes[0].1, hex::encode(Sha256::digest(&photo)), "the largest photo byte for byte");
    let requests = files.requests();
    assert!(requests.iter().all(|(_, right)| *right), "{requests:?}");
    assert!(
        requests.iter().any(|(what, _)| what == &format!("getFile {file_id}")),
        "getFile for the largest size only: {requests:?}"
    );
    Ok(())
}

/// What the webhook receiver of the file-link test got: each event's JSON body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

/// The generic webhook destination with `[objects] public_url` and `link_secret`: the email's
/// photo comes as a signed link to the gateway's `/files/`, not as bytes; the link serves the
/// photo byte for byte as an attachment, and a changed, unsigned or expired link nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_destination_gets_a_signed_expiring_link_to_each_file() -> anyhow::Result<()> {
    const LINK_SECRET: &str = "file-links-test-secret-0123456789";
    let _serial = serial().await;
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new()
        .route(
            "/omni",
            axum::routing::post(
                |axum::extract::State(received): axum::extract::State<Received>, body: axum::body::Bytes| async move {
                    if let Ok(event) = serde_json::from_slice(&body) {
                        received.lock().unwrap().push(event);
                    }
                    axum::http::StatusCode::OK
                },
            )
            .options(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("links.toml");
    std::fs::write(
        &config,
        format!(
            "[[router.rules]]\nname = \"mail to the hook\"\nchannels = [\"email\"]\ndestinations = [\"hook\"]\n\n\
             [router.destinations.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/omni\"\n\
             secret = \"file-links-test-hook-secret-0123\"\ntimeout_secs = 5\n"
        ),
    )?;
    let config_path = config.to_string_lossy().to_string();
    let mut pipeline = Pipeline::start(&[("OMNI_CONFIG", &config_path), ("OMNI__OBJECTS__LINK_SECRET", LINK_SECRET)]).await?;
    // The router links to the gateway as the receiver reaches it (known once it runs).
    let gateway = pipeline.gateway_url.clone();
    pipeline.router.restart_with(&[("OMNI__OBJECTS__PUBLIC_URL", &gateway)]).await?;
    let run = nonce();
    let mut rng = fastrand::Rng::new();
    let photo: Vec<u8> = (0..300 * 1024).map(|_| rng.u8(..)).collect();
    pipeline.mailbox.deliver(&mail_with_photo(
        &format!("Jan de Vries <jan-{run}@example.nl>"),
        &format!("link-{run}@mail.example.nl"),
        &photo,
    ));
    eventually("the event at the webhook", TIMEOUT, || {
        let got = received.lock().unwrap().iter().any(|event| event.to_string().contains(&run));
        async move { Ok(got) }
    })
    .await
    .map_err(|error| anyhow::anyhow!("{error}; router log:\n{}", pipeline.router.log()))?;
    let event = received
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.to_string().contains(&run))
        .cloned()
        .expect("found");
    let file = &event["attachments"][0];
    assert_eq!(file["name"], "vaas.jpg", "{event}");
    assert!(file.get("data").is_none(), "the bytes travelled instead of a link");
    let sha256 = hex::encode(Sha256::digest(&photo));
    assert_eq!(file["sha256"], sha256.as_str());
    let link = file["reference"].as_str().unwrap_or_default().to_owned();
    assert!(link.starts_with(&format!("{gateway}/files/{sha256}?")), "{link}");

    let http = reqwest::Client::new();
    let response = http.get(&link).send().await?;
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "image/jpeg");
    assert_eq!(header("content-disposition"), "attachment; filename*=UTF-8''vaas%2Ejpg");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(response.bytes().await?.as_ref(), photo.as_slice(), "the photo byte for byte");
    // A link changed to serve the photo as HTML, one without its signature, one expired.
    let as_html = link.replace("type=image%2Fjpeg", "type=text%2Fhtml");
    let unsigned = link.split("&sig=").next().unwrap_or_default().to_owned();
    let links = omni_objects::links::Links::new(&gateway, LINK_SECRET, Duration::from_secs(60)).expect("links");
    let expired = links.link_until(&sha256, "vaas.jpg", "image/jpeg", 1_700_000_000);
    for (what, url, status) in [("as HTML", as_html, 403), ("unsigned", unsigned, 403), ("expired", expired, 410)] {
        let response = http.get(&url).send().await?;
        assert_eq!(response.status(), status, "{what}: {url}");
        assert!(
            !response.bytes().await?.windows(64).any(|w| w == &photo[..64]),
            "{what} served the photo"
        );
    }
    Ok(())
}
