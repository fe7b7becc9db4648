//! Files that Slack, Messenger, Instagram, Twilio MMS, Viber and X messages only reference reach the agent:
//! each provider's webhook goes through the real gateway, normalizer and router, the router
//! fetches the file from a local stand-in that checks the request the provider documents
//! (`omni_e2e::media_files`: Slack's bearer token, Meta's signed CDN URLs and Instagram's
//! redirect, Twilio's HTTP Basic and its redirect to a CDN that refuses credentials, Viber's
//! signed media URLs, X's OAuth 1.0a-signed downloads), and the
//! Request Tracker ticket has it byte for byte. A file served as something else, on a host or
//! behind a redirect not allowed, stays listed in the ticket with its reference and is not
//! fetched (`[router.media.<provider>.<account>] media_hosts` lists the stand-in's origins).

use std::time::Duration;

use omni_e2e::media_files::{Listener, MediaFiles, OAuth1Keys, Taken};
use omni_e2e::{Pipeline, Rt, eventually, nonce, serial};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const TIMEOUT: Duration = Duration::from_secs(90);
const SLACK_TOKEN: &str = "xoxb-omni-media-test";
const TWILIO_SID: &str = "AC3f0b7c1e9d2a4b6c8e0f1a2b3c4d5e6f";
const TWILIO_TOKEN: &str = "omni-media-auth-token";
/// The X app's keys and the account's access token the router signs media downloads with.
fn x_keys() -> OAuth1Keys {
    OAuth1Keys {
        consumer_key: "omni-x-media-consumer-key".into(),
        consumer_secret: "omni-x-media-consumer-secret".into(),
        token: "4337869213-omni-x-media-token".into(),
        token_secret: "omni-x-media-token-secret".into(),
    }
}

/// The pipeline with every provider's fetcher pointed at the stand-in (lists of hosts cannot
/// be environment variables: they go in an `OMNI_CONFIG` file).
async fn pipeline(files: &MediaFiles, dir: &tempfile::TempDir) -> anyhow::Result<Pipeline> {
    let both = format!("[\"{}\", \"{}\"]", files.url, files.cdn_url);
    let x = x_keys();
    let config = format!(
        "[router.media.slack.default]\nbot_token = \"{SLACK_TOKEN}\"\nmedia_hosts = [\"{}\"]\n\
         [router.media.messenger.default]\nmedia_hosts = [\"{}\"]\n\
         [router.media.instagram.default]\nmedia_hosts = {both}\n\
         [router.media.twilio.default]\naccount_sid = \"{TWILIO_SID}\"\nauth_token = \"{TWILIO_TOKEN}\"\n\
         api_base_url = \"{}\"\nmedia_hosts = [\"{}\"]\n\
         [router.media.viber.default]\nmedia_hosts = [\"{}\"]\n\
         [router.media.x.default]\nconsumer_key = \"{}\"\nconsumer_secret = \"{}\"\naccess_token = \"{}\"\n\
         access_token_secret = \"{}\"\nmedia_hosts = [\"{}\"]\n",
        files.url, files.url, files.url, files.cdn_url, files.url, x.consumer_key, x.consumer_secret, x.token, x.token_secret, files.url
    );
    let path = dir.path().join("media.toml");
    std::fs::write(&path, config)?;
    let path = path.to_string_lossy().into_owned();
    Pipeline::start(&[("OMNI_CONFIG", &path)]).await
}

/// Random bytes, unique per run (the object store, shared by the tests, must not have them).
fn random_bytes(len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::new();
    (0..len).map(|_| rng.u8(..)).collect()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn fixture(path: &str) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(format!(
        "{}/../crates/omni-channels/src/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))?)
}

/// The one ticket of `requestor`, once it is there.
async fn ticket_of(rt: &Rt, requestor: &str) -> anyhow::Result<String> {
    eventually("the customer's ticket", TIMEOUT, || async {
        Ok(rt.tickets_of_requestor(requestor).await?.len() == 1)
    })
    .await?;
    Ok(rt.tickets_of_requestor(requestor).await?.remove(0))
}

/// The ticket's files as (name, SHA-256), sorted.
async fn hashes(rt: &Rt, ticket: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut hashes = rt.file_hashes(ticket).await?;
    hashes.sort();
    Ok(hashes)
}

fn requests_to(taken: &[Taken], path_start: &str) -> Vec<Taken> {
    taken.iter().filter(|t| t.path.starts_with(path_start)).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_file_is_fetched_with_the_bot_token_and_a_sign_in_page_is_not_attached() -> anyhow::Result<()> {
    let _serial = serial().await;
    let files = MediaFiles::start().await?;
    let dir = tempfile::tempdir()?;
    let pipeline = pipeline(&files, &dir).await?;
    let run = nonce();
    let (user, team) = (format!("U{}", run.to_uppercase()), "T061EG9R6");
    let photo = random_bytes(600_000);
    let photo_path = format!("/files-pri/{team}-F{run}1/ghostrap.png");
    let photo_url = files.slack_file(&photo_path, photo.clone(), "image/png", SLACK_TOKEN);
    // A file the app's token may not read: Slack answers with its sign-in page.
    let locked_path = format!("/files-pri/{team}-F{run}2/contract.pdf");
    let locked_url = files.slack_file(&locked_path, b"%PDF-1.7".to_vec(), "application/pdf", "xoxb-another-app");
    let mut event: Value = serde_json::from_str(&fixture("slack/fixtures/file-share.json")?)?;
    event["event_id"] = format!("Ev{run}").into();
    event["event"]["user"] = user.clone().into();
    let file = event["event"]["files"][0].clone();
    event["event"]["files"] = json!([
        slack_file(&file, &format!("F{run}1"), "ghostrap.png", "image/png", photo.len(), &photo_url),
        slack_file(&file, &format!("F{run}2"), "contract.pdf", "application/pdf", 8, &locked_url),
    ]);
    let (status, answer) = pipeline.post_webhook("slack", "application/json", &event.to_string()).await?;
    assert_eq!(status, 200, "{answer}");
    let rt = &pipeline.rt;
    let ticket = ticket_of(rt, &format!("{user}@slack.invalid")).await?;
    assert_eq!(
        hashes(rt, &ticket).await?,
        [("ghostrap.png".to_owned(), sha(&photo))],
        "the photo, byte for byte, once"
    );
    let texts = rt.texts(&ticket).await?;
    assert!(
        texts.iter().any(|t| t.contains(&locked_url)),
        "the locked file is listed: {texts:?}"
    );
    let taken = files.taken();
    let photo_requests = requests_to(&taken, &photo_path);
    assert_eq!(photo_requests.len(), 1, "{taken:?}");
    assert_eq!(photo_requests[0].authorization, format!("Bearer {SLACK_TOKEN}"));
    assert!(
        taken
            .iter()
            .all(|t| t.listener == Listener::Provider && t.path.starts_with("/files-pri/"))
    );
    assert!(!pipeline.router.log().contains(SLACK_TOKEN), "the token is never logged");
    Ok(())
}

/// A `files[]` entry like Slack's `template` (the fixture's), for another file.
fn slack_file(template: &Value, id: &str, name: &str, mimetype: &str, size: usize, url: &str) -> Value {
    let mut file = template.clone();
    file["id"] = id.into();
    file["name"] = name.into();
    file["title"] = name.into();
    file["mimetype"] = mimetype.into();
    file["size"] = size.into();
    file["url_private"] = url.into();
    file["url_private_download"] = url.replace(&format!("/{name}"), &format!("/download/{name}")).into();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messenger_photos_and_files_are_fetched_from_the_cdn_and_other_hosts_are_not() -> anyhow::Result<()> {
    let _serial = serial().await;
    let files = MediaFiles::start().await?;
    let dir = tempfile::tempdir()?;
    let pipeline = pipeline(&files, &dir).await?;
    let run = nonce();
    let digits: String = run.chars().filter(char::is_ascii_digit).take(8).collect();
    let customer = format!("65{digits:0>8}33");
    let (photo, form) = (random_bytes(400_000), random_bytes(90_000));
    let photo_path = format!("/v/t1.15752-9/{digits}_n.jpg?_nc_cat=104&ccb=1-7&oh=00_AYB{run}");
    let form_path = format!("/v/t59.2708-21/{digits}_n.pdf/iade-formu.pdf?_nc_cat=101&ccb=1-7&oh={run}");
    let photo_url = files.cdn_file(Listener::Provider, &photo_path, photo.clone(), "image/jpeg");
    let form_url = files.cdn_file(Listener::Provider, &form_path, form.clone(), "application/pdf");
    // The same server by another name: not one of the account's media_hosts.
    let elsewhere_path = format!("/v/t1.15752-9/{digits}_o.jpg?oh={run}");
    files.cdn_file(Listener::Provider, &elsewhere_path, b"never fetched".to_vec(), "image/jpeg");
    let elsewhere = format!("{}{elsewhere_path}", files.url.replace("127.0.0.1", "localhost"));
    let mut update: Value = serde_json::from_str(&fixture("messenger/fixtures/attachments.json")?)?;
    let event = &mut update["entry"][0]["messaging"][0];
    event["sender"]["id"] = customer.clone().into();
    event["message"]["mid"] = format!("m_MEDIA-{run}").into();
    event["message"]["attachments"][0]["payload"]["url"] = photo_url.into();
    event["message"]["attachments"][1]["payload"]["url"] = form_url.into();
    let third = json!({"type": "image", "payload": {"url": elsewhere}});
    event["message"]["attachments"].as_array_mut().unwrap().push(third);
    update["entry"][0]["messaging"].as_array_mut().unwrap().truncate(1);
    let (status, answer) = pipeline.post_webhook("messenger", "application/json", &update.to_string()).await?;
    assert_eq!(status, 200, "{answer}");
    let rt = &pipeline.rt;
    let ticket = ticket_of(rt, &format!("{customer}@messenger.invalid")).await?;
    let expected = [(format!("{digits}_n.jpg"), sha(&photo)), ("iade-formu.pdf".to_owned(), sha(&form))];
    assert_eq!(hashes(rt, &ticket).await?, expected, "the photo and the form, byte for byte");
    let texts = rt.texts(&ticket).await?;
    assert!(
        texts.iter().any(|t| t.contains(&elsewhere)),
        "the other host's file is listed: {texts:?}"
    );
    let taken = files.taken();
    assert!(
        requests_to(&taken, &elsewhere_path).is_empty(),
        "nothing asked of another host: {taken:?}"
    );
    assert!(taken.iter().all(|t| t.authorization.is_empty()), "no token to the CDN: {taken:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instagram_photo_follows_the_lookaside_redirect_to_an_allowed_cdn_only() -> anyhow::Result<()> {
    let _serial = serial().await;
    let files = MediaFiles::start().await?;
    let dir = tempfile::tempdir()?;
    let pipeline = pipeline(&files, &dir).await?;
    let run = nonce();
    let digits: String = run.chars().filter(char::is_ascii_digit).take(8).collect();
    let customer = format!("13{digits:0>8}44");
    let photo = random_bytes(700_000);
    let cdn_path = format!("/v/t51.2885-15/{digits}_n.jpg?stp=dst-jpg&oh={run}");
    let cdn_url = files.cdn_file(Listener::Cdn, &cdn_path, photo.clone(), "image/jpeg");
    let lookaside = files.cdn_redirect(&format!("/ig_messaging_cdn/?asset_id=179{digits}&signature=Ab{run}"), &cdn_url);
    // Another asset redirects to a host that is not allowed: not followed.
    let away_path = format!("/v/t51.2885-15/{digits}_x.jpg?oh={run}");
    files.cdn_file(Listener::Cdn, &away_path, b"never fetched".to_vec(), "image/jpeg");
    let away = format!("{}{away_path}", files.cdn_url.replace("127.0.0.1", "localhost"));
    let away_lookaside = files.cdn_redirect(&format!("/ig_messaging_cdn/?asset_id=178{digits}&signature=Cd{run}"), &away);
    let mut update: Value = serde_json::from_str(&fixture("instagram/fixtures/media.json")?)?;
    let event = &mut update["entry"][0]["messaging"][0];
    event["sender"]["id"] = customer.clone().into();
    event["message"]["mid"] = format!("aWdfMEDIA{run}").into();
    event["message"]["attachments"] = json!([
        {"type": "image", "payload": {"url": lookaside}},
        {"type": "image", "payload": {"url": away_lookaside}},
    ]);
    update["entry"][0]["messaging"].as_array_mut().unwrap().truncate(1);
    let (status, answer) = pipeline.post_webhook("instagram", "application/json", &update.to_string()).await?;
    assert_eq!(status, 200, "{answer}");
    let rt = &pipeline.rt;
    let ticket = ticket_of(rt, &format!("{customer}@instagram.invalid")).await?;
    assert_eq!(
        hashes(rt, &ticket).await?,
        [("attachment".to_owned(), sha(&photo))],
        "the photo, byte for byte"
    );
    let types: Vec<String> = rt.files(&ticket).await?.into_iter().map(|(_, kind)| kind).collect();
    assert_eq!(types, ["image/jpeg"], "the type it was served as, not `image/*`");
    let texts = rt.texts(&ticket).await?;
    assert!(
        texts.iter().any(|t| t.contains(&away_lookaside)),
        "the other asset is listed: {texts:?}"
    );
    let cdn: Vec<String> = files
        .taken()
        .into_iter()
        .filter(|t| t.listener == Listener::Cdn)
        .map(|t| t.path)
        .collect();
    assert_eq!(cdn, [cdn_path], "only the allowed redirect was followed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_mms_media_are_fetched_with_basic_auth_through_the_cdn_redirect() -> anyhow::Result<()> {
    let _serial = serial().await;
    let files = MediaFiles::start().await?;
    let dir = tempfile::tempdir()?;
    let pipeline = pipeline(&files, &dir).await?;
    let run = nonce();
    let digits: String = run.chars().filter(char::is_ascii_digit).take(8).collect();
    let (texter, message) = (format!("+9055{digits:0>8}"), format!("MM{digits:0>32}"));
    let (photo, receipt) = (random_bytes(500_000), random_bytes(60_000));
    let (photo_sid, receipt_sid) = (format!("ME{digits:0>31}1"), format!("ME{digits:0>31}2"));
    // The photo answers 404 once, as a medium can right after the webhook: tried again.
    let photo_url = files.twilio_medium(TWILIO_SID, TWILIO_TOKEN, &message, &photo_sid, photo.clone(), "image/jpeg", 1);
    let receipt_url = files.twilio_medium(
        TWILIO_SID,
        TWILIO_TOKEN,
        &message,
        &receipt_sid,
        receipt.clone(),
        "application/pdf",
        0,
    );
    let mut params: Vec<(String, String)> = form_urlencoded::parse(fixture("twilio_sms/fixtures/incoming-mms.form")?.trim().as_bytes())
        .into_owned()
        .collect();
    for (name, value) in &mut params {
        match name.as_str() {
            "MessageSid" | "SmsMessageSid" | "SmsSid" => *value = message.clone(),
            "From" => *value = texter.clone(),
            "MediaUrl0" => *value = photo_url.clone(),
            "MediaUrl1" => *value = receipt_url.clone(),
            _ => {}
        }
    }
    let form = form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
    let (status, answer) = pipeline
        .post_webhook("twilio-sms", "application/x-www-form-urlencoded", &form)
        .await?;
    assert_eq!(status, 200, "{answer}");
    let rt = &pipeline.rt;
    let ticket = ticket_of(rt, &format!("{texter}@phone.invalid")).await?;
    let mut expected = vec![sha(&photo), sha(&receipt)];
    expected.sort();
    let mut got: Vec<String> = hashes(rt, &ticket).await?.into_iter().map(|(_, hash)| hash).collect();
    got.sort();
    assert_eq!(got, expected, "both media, byte for byte");
    let taken = files.taken();
    let api = requests_to(&taken, "/2010-04-01/");
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{TWILIO_SID}:{TWILIO_TOKEN}"))
    );
    assert!(
        api.iter().all(|t| t.authorization == basic),
        "HTTP Basic with the SID and token: {api:?}"
    );
    let photo_answers: Vec<u16> = api.iter().filter(|t| t.path.ends_with(&photo_sid)).map(|t| t.status).collect();
    assert_eq!(photo_answers, [404, 307], "the 404 tried again, then the redirect");
    let cdn: Vec<&Taken> = taken.iter().filter(|t| t.listener == Listener::Cdn).collect();
    assert_eq!(cdn.len(), 2, "{taken:?}");
    assert!(
        cdn.iter().all(|t| t.authorization.is_empty() && t.status == 200),
        "no credentials to the CDN: {cdn:?}"
    );
    assert!(!pipeline.router.log().contains(TWILIO_TOKEN), "the token is never logged");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viber_picture_is_fetched_from_its_media_url_at_the_size_announced() -> anyhow::Result<()> {
    let _serial = serial().await;
    let files = MediaFiles::start().await?;
    let dir = tempfile::tempdir()?;
    let pipeline = pipeline(&files, &dir).await?;
    let run = nonce();
    let digits: String = run.chars().filter(char::is_ascii_digit).take(8).collect();
    let sender = format!("Vb{run}");
    let (photo, video) = (random_bytes(300_000), random_bytes(200_000));
    let photo_path = format!("/1/share/2/long/vibes/bots/photo/jpg/{run}.jpg?Expires=1735734844&Signature=Ab{run}");
    let photo_url = files.cdn_file(Listener::Provider, &photo_path, photo.clone(), "image/jpeg");
    let video_path = format!("/1/share/2/long/vibes/bots/video/mp4/{run}.mp4?Expires=1735734844&Signature=Cd{run}");
    let video_url = files.cdn_file(Listener::Provider, &video_path, video.clone(), "video/mp4");
    let callback = |token: &str, kind: &str, url: &str, name: &str, size: usize| -> anyhow::Result<String> {
        let mut callback: Value = serde_json::from_str(&fixture("viber/fixtures/message-picture.json")?)?;
        callback["sender"]["id"] = sender.clone().into();
        callback["message_token"] = Value::from(format!("59{digits:0>8}{token}").parse::<u64>()?);
        callback["message"]["type"] = kind.into();
        callback["message"]["media"] = url.into();
        callback["message"]["file_name"] = name.into();
        callback["message"]["file_size"] = size.into();
        Ok(callback.to_string())
    };
    let photo_name = format!("IMG_{digits}.jpg");
    let photo_callback = callback("11111", "picture", &photo_url, &photo_name, photo.len())?;
    let (status, answer) = pipeline.post_webhook("viber", "application/json", &photo_callback).await?;
    assert_eq!(status, 200, "{answer}");
    let rt = &pipeline.rt;
    let ticket = ticket_of(rt, &format!("{sender}@viber.invalid")).await?;
    assert_eq!(hashes(rt, &ticket).await?, [(photo_name, sha(&photo))], "the photo, byte for byte");

    // A video whose callback announces another size than the server has: not attached, listed.
    let video_callback = callback("22222", "video", &video_url, "unboxing.mp4", video.len() + 1)?;
    let (status, answer) = pipeline.post_webhook("viber", "application/json", &video_callback).await?;
    assert_eq!(status, 200, "{answer}");
    eventually("the video listed with its reference", TIMEOUT, || async {
        Ok(rt.texts(&ticket).await?.iter().any(|t| t.contains(&video_url)))
    })
    .await?;
    assert_eq!(hashes(rt, &ticket).await?.len(), 1, "the video of another size is not attached");
    let taken = files.taken();
    assert_eq!(requests_to(&taken, "/1/share/2/long/vibes/bots/photo/").len(), 1, "{taken:?}");
    assert!(
        taken.iter().all(|t| t.authorization.is_empty()),
        "no credentials to Viber's media: {taken:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_dm_media_are_fetched_signed_as_the_account_and_a_wrong_key_gets_nothing() -> anyhow::Result<()> {
    let _serial = serial().await;
    let files = MediaFiles::start().await?;
    let dir = tempfile::tempdir()?;
    let pipeline = pipeline(&files, &dir).await?;
    let run = nonce();
    let digits: String = run.chars().filter(char::is_ascii_digit).take(10).collect();
    let customer = format!("30{digits:0>10}");
    let (photo, video) = (random_bytes(500_000), random_bytes(300_000));
    let photo_path = format!("/1.1/ton/data/dm/108{digits}/109{digits}/kA{run}.jpg");
    let photo_url = files.x_medium(&photo_path, photo.clone(), "image/jpeg", x_keys());
    // A video variant: its query is signed among the OAuth parameters.
    let video_path = format!("/dm_video/109{digits}/vid/640x360/{run}.mp4?tag=1&v=a+b%2Fc");
    let video_url = files.x_medium(&video_path, video.clone(), "video/mp4", x_keys());
    // A medium served for other keys: the router's signature is refused (401), it stays listed.
    let other_keys = OAuth1Keys {
        consumer_secret: "not-the-apps-secret".into(),
        ..x_keys()
    };
    let refused_path = format!("/1.1/ton/data/dm/108{digits}/110{digits}/zz{run}.jpg");
    let refused_url = files.x_medium(&refused_path, b"never served".to_vec(), "image/jpeg", other_keys);
    let dm = |n: u32, media: Value| -> anyhow::Result<String> {
        let mut update: Value = serde_json::from_str(&fixture("x/fixtures/dm-media.json")?)?;
        let event = &mut update["direct_message_events"][0];
        event["id"] = format!("108{digits}{n}").into();
        event["message_create"]["sender_id"] = customer.clone().into();
        let users = update["users"].as_object_mut().unwrap();
        let mut user = users.remove("3001969357").unwrap();
        user["id"] = customer.clone().into();
        users.insert(customer.clone(), user);
        let attached = &mut update["direct_message_events"][0]["message_create"]["message_data"]["attachment"]["media"];
        for (key, value) in media.as_object().unwrap() {
            attached[key] = value.clone();
        }
        Ok(update.to_string())
    };
    let photo_dm = dm(1, json!({"media_url_https": photo_url, "media_url": photo_url}))?;
    let video_dm = dm(
        2,
        json!({"type": "video", "media_url_https": format!("{}/dm_video_thumb/{run}.jpg", files.url),
               "video_info": {"variants": [{"bitrate": 832000, "content_type": "video/mp4", "url": video_url}]}}),
    )?;
    let refused_dm = dm(3, json!({"media_url_https": refused_url, "media_url": refused_url}))?;
    let rt = &pipeline.rt;
    let mut ticket = String::new();
    for update in [photo_dm, video_dm, refused_dm] {
        let (status, answer) = pipeline.post_webhook("x", "application/json", &update).await?;
        assert_eq!(status, 200, "{answer}");
        if ticket.is_empty() {
            ticket = ticket_of(rt, &format!("{customer}@x.invalid")).await?;
        }
    }
    eventually("the refused medium listed with its reference", TIMEOUT, || async {
        Ok(rt.texts(&ticket).await?.iter().any(|t| t.contains(&refused_url)))
    })
    .await?;
    let mut expected = vec![(format!("kA{run}.jpg"), sha(&photo)), (format!("{run}.mp4"), sha(&video))];
    expected.sort();
    assert_eq!(hashes(rt, &ticket).await?, expected, "the photo and the video, byte for byte");
    let taken = files.taken();
    let refused = requests_to(&taken, &refused_path);
    assert!(!refused.is_empty() && refused.iter().all(|t| t.status == 401), "{refused:?}");
    for path in [&photo_path, &video_path] {
        let served = requests_to(&taken, path);
        assert!(served.iter().any(|t| t.status == 200), "{path}: {served:?}");
        assert!(served.iter().all(|t| t.authorization.starts_with("OAuth ")), "{served:?}");
    }
    let keys = x_keys();
    let secrets = [keys.consumer_secret, keys.token_secret];
    assert!(
        taken.iter().all(|t| secrets.iter().all(|s| !t.authorization.contains(s.as_str()))),
        "secrets never sent: {taken:?}"
    );
    Ok(())
}
