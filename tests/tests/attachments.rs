//! Files reach the agent: an email's photo far above what a record carries (the connector's
//! `max_inline_bytes`, 768 KiB) goes through the object store (`[objects]`, a directory here) and
//! lands in the Request Tracker ticket as a real attachment, byte for byte, with the customer's
//! text (issue: "Attachments reach the agent").

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
    let mut rng = fastrand::Rng::with_seed(3);
    let photo: Vec<u8> = (0..3 * 1024 * 1024).map(|_| rng.u8(..)).collect();
    pipeline.mailbox.deliver(&mail_with_photo(
        &format!("Jan de Vries <{customer}>"),
        &format!("photo-{run}@mail.example.nl"),
        &photo,
    ));
    let rt = &pipeline.rt;
    eventually("the customer's ticket", TIMEOUT, || async {
        Ok(rt.tickets_of_requestor(&customer).await?.len() == 1)
    })
    .await?;
    let ticket = rt.tickets_of_requestor(&customer).await?.remove(0);
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
    let text = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(text.split_whitespace().collect::<String>())?)?;
    assert!(text.contains("De vaas is in scherven aangekomen"), "{text}");
    assert!(!text.contains("imap://"), "the photo is attached, not listed: {text}");
    Ok(())
}
