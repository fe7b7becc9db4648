//! The email connector over TLS, STARTTLS and XOAUTH2, against the Dovecot test instance:
//! `deploy/local/dovecot.sh` offers STARTTLS on its IMAP port, IMAPS on the next port, and checks
//! XOAUTH2 bearer tokens with an RFC 7662 introspection endpoint on the port after that, which
//! these tests serve themselves. Its certificates come from a CA in its state directory
//! (`tls/ca.pem`, beside `dovecot.conf`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use omni_e2e::{Broker, Mailbox, Pipeline, Service, free_port, nonce, serial};
use omni_proto::v1::delivery::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(90);
const MAILBOX: &str = "OMNI__EMAIL__MAILBOXES__SUPPORT__";

/// The Dovecot test instance's directory (as `Mailbox` finds its config).
fn dovecot_dir() -> PathBuf {
    let conf = std::env::var("OMNI_TEST_DOVECOT_CONF")
        .unwrap_or_else(|_| format!("{}/../.omni/dovecot-11143/dovecot.conf", env!("CARGO_MANIFEST_DIR")));
    PathBuf::from(conf).parent().expect("dovecot.conf has a directory").to_path_buf()
}

/// The Dovecot test instance's IMAP port (as `Mailbox` finds it).
fn imap_port() -> u16 {
    std::env::var("OMNI_TEST_IMAP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(11143)
}

/// The CA that signed the Dovecot test instance's certificate.
fn dovecot_ca() -> String {
    let ca = dovecot_dir().join("tls/ca.pem");
    assert!(
        ca.is_file(),
        "{} is missing: restart Dovecot with `deploy/local/dovecot.sh reset 11143` (make test does)",
        ca.display()
    );
    ca.display().to_string()
}

/// A CA that did not sign anything Dovecot has.
fn unrelated_ca() -> String {
    format!(
        "{}/../crates/omni-email/tests/fixtures/tls/other-ca.pem",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn key(name: &str) -> String {
    format!("{MAILBOX}{name}")
}

fn message(run: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Sofie Peeters <sofie+{run}@example.be>\r\nTo: support@shop.example\r\nSubject: {subject}\r\nMessage-ID: <{run}@mail.example.be>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nWaar blijft mijn bestelling?\r\n"
    )
    .into_bytes()
}

/// Starts the pipeline with the `support` mailbox set by `mailbox_env`, delivers a message and
/// waits until it opened a ticket; returns the pipeline.
async fn deliver_through(mailbox_env: &[(String, String)], expect_security: &str) -> anyhow::Result<Pipeline> {
    let mut env: Vec<(&str, &str)> = mailbox_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("OMNI__TELEMETRY__LOG_FORMAT", "json"));
    let pipeline = Pipeline::start_with_mailbox(Mailbox::create(), &env).await?;
    let log = pipeline.email.log();
    assert!(
        log.lines()
            .any(|line| line.contains("mailbox selected") && line.contains(&format!(r#""security":"{expect_security}""#))),
        "no `mailbox selected` with security {expect_security}:\n{log}"
    );
    let run = nonce();
    let mail = message(&run, "Bestelling 1042");
    pipeline.mailbox.deliver(&mail);
    let delivery = pipeline
        .delivery_of(&omni_channels::email::ids("support", &mail).event_id, TIMEOUT)
        .await
        .with_context(|| format!("email log:\n{}", pipeline.email.log()))?;
    assert_eq!(delivery.outcome(), Outcome::Created, "{delivery:?}");
    assert_eq!(
        pipeline.rt.tickets_of_requestor(&format!("sofie+{run}@example.be")).await?,
        [delivery.ticket_id.as_str()]
    );
    Ok(pipeline)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_read_over_imaps_reaches_the_helpdesk() -> anyhow::Result<()> {
    let _serial = serial().await;
    let imaps = (imap_port() + 1).to_string();
    let env = [
        (key("SECURITY"), "tls".to_owned()),
        (key("PORT"), imaps),
        (key("CA_FILE"), dovecot_ca()),
    ];
    deliver_through(&env, "tls").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_read_with_starttls_reaches_the_helpdesk() -> anyhow::Result<()> {
    let _serial = serial().await;
    // The harness's plain IMAP port; the certificate is checked against `localhost` here.
    let env = [
        (key("SECURITY"), "starttls".to_owned()),
        (key("CA_FILE"), dovecot_ca()),
        (key("TLS_SERVER_NAME"), "localhost".to_owned()),
    ];
    deliver_through(&env, "starttls").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_logged_in_with_xoauth2_reaches_the_helpdesk_and_the_token_is_never_logged() -> anyhow::Result<()> {
    let _serial = serial().await;
    let imap_port = imap_port();
    let token = format!("test-token-{}", nonce());
    let introspection = Introspection::start(imap_port + 2, &token).await?;
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("access-token");
    std::fs::write(&token_file, format!("{token}\n"))?;
    let env = [
        (key("SECURITY"), "tls".to_owned()),
        (key("PORT"), (imap_port + 1).to_string()),
        (key("CA_FILE"), dovecot_ca()),
        (key("AUTH"), "xoauth2".to_owned()),
        (key("OAUTH2_TOKEN_FILE"), token_file.display().to_string()),
    ];
    let pipeline = deliver_through(&env, "tls").await?;
    assert!(introspection.active_answers() >= 1, "Dovecot never asked about the token");
    let log = pipeline.email.log();
    assert!(log.contains(r#""auth":"xoauth2""#), "{log}");
    assert!(!log.contains(&token), "the token is in the log:\n{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_an_unknown_ca_keeps_the_mailbox_unready_with_the_tls_error() -> anyhow::Result<()> {
    let _serial = serial().await;
    let mailbox = Mailbox::create();
    let broker = Broker::start().await;
    let admin = free_port();
    let env: Vec<(String, String)> = vec![
        ("OMNI__KAFKA__BOOTSTRAP_SERVERS".into(), broker.bootstrap()),
        ("OMNI__EMAIL__ADMIN_LISTEN".into(), format!("127.0.0.1:{admin}")),
        (key("FOLDER"), mailbox.folder.clone()),
        (key("SECURITY"), "tls".into()),
        (key("PORT"), (mailbox.port + 1).to_string()),
        (key("CA_FILE"), unrelated_ca()),
    ];
    let email = Service::spawn("email", admin, &env);
    email.wait_for_log("invalid peer certificate: UnknownIssuer", TIMEOUT).await?;
    let readyz = reqwest::get(format!("http://127.0.0.1:{admin}/readyz")).await?;
    let status = readyz.status().as_u16();
    let body: serde_json::Value = readyz.json().await?;
    assert_eq!(status, 503, "{body}");
    let check = body["checks"]["mailbox:support"].as_str().unwrap_or_default();
    assert!(
        check.starts_with(&format!("TLS handshake with 127.0.0.1:{} ", mailbox.port + 1))
            && check.ends_with("failed: invalid peer certificate: UnknownIssuer"),
        "{body}"
    );
    assert!(!email.log().contains("mailbox selected"), "{}", email.log());
    Ok(())
}

/// A token introspection endpoint (RFC 7662) for Dovecot's oauth2 passdb: `token` is active for
/// `support`, anything else is not.
struct Introspection {
    active: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Introspection {
    async fn start(port: u16, token: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("bind the introspection endpoint on 127.0.0.1:{port} (dovecot.sh points Dovecot there)"))?;
        let active = Arc::new(AtomicUsize::new(0));
        let expected = format!("token={token}");
        let counter = active.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let expected = expected.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(body) = read_request_body(&mut stream).await else {
                        return;
                    };
                    let is_active = body.split('&').any(|pair| pair == expected);
                    let answer = if is_active {
                        counter.fetch_add(1, Ordering::SeqCst);
                        r#"{"active": true, "username": "support"}"#
                    } else {
                        r#"{"active": false}"#
                    };
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Self { active, task })
    }

    fn active_answers(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

impl Drop for Introspection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP request and returns its body.
async fn read_request_body(stream: &mut tokio::net::TcpStream) -> anyhow::Result<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        let read = stream.read(&mut chunk).await?;
        anyhow::ensure!(read > 0, "connection closed mid-request");
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(position) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break position + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await?;
        anyhow::ensure!(read > 0, "connection closed mid-body");
        buffer.extend_from_slice(&chunk[..read]);
    }
    Ok(String::from_utf8_lossy(&buffer[head_end..head_end + length]).into_owned())
}
