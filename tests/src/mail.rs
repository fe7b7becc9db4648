//! Mail in the tests: the shared Dovecot and Postfix instances `make test` starts, and raw
//! messages to put there.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::bail;

use crate::{binary, nonce};

/// A folder of its own in the shared Dovecot test instance (`make test` starts it; account
/// `support`), filled the way mail really arrives: `doveadm save`, Dovecot's local delivery.
#[derive(Clone)]
pub struct Mailbox {
    conf: String,
    /// The IMAP port.
    pub port: u16,
    /// The folder, unique per test run.
    pub folder: String,
}

impl Mailbox {
    /// Creates a fresh folder.
    pub fn create() -> Self {
        let conf = std::env::var("OMNI_TEST_DOVECOT_CONF")
            .unwrap_or_else(|_| format!("{}/../.omni/dovecot-11143/dovecot.conf", env!("CARGO_MANIFEST_DIR")));
        assert!(
            std::path::Path::new(&conf).is_file(),
            "no dovecot config at {conf}: start it with `deploy/local/dovecot.sh start 11143` (make test does)"
        );
        let port = std::env::var("OMNI_TEST_IMAP_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(11143);
        let mailbox = Self {
            conf,
            port,
            folder: format!("t{}", nonce()),
        };
        mailbox.doveadm(&["mailbox", "create", "-u", "support", &mailbox.folder], None);
        mailbox
    }

    fn doveadm(&self, args: &[&str], stdin: Option<&[u8]>) {
        // Right after a folder was recreated, a save can meet the connector's session noticing
        // the deletion ("Mailbox was deleted under us"); the same save then succeeds.
        let mut attempt = 1;
        loop {
            match self.try_doveadm(args, stdin) {
                Ok(()) => return,
                Err(error) if attempt < 5 => {
                    eprintln!("doveadm {args:?} failed, retrying: {error}");
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(error) => panic!("doveadm {args:?} failed: {error}"),
            }
        }
    }

    fn try_doveadm(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<(), String> {
        use std::io::Write;
        let mut child = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run doveadm");
        if let Some(bytes) = stdin {
            child.stdin.take().unwrap().write_all(bytes).expect("write to doveadm");
        }
        drop(child.stdin.take());
        let output = child.wait_with_output().expect("doveadm");
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// Delivers one message to the folder.
    pub fn deliver(&self, message: &[u8]) {
        self.doveadm(&["save", "-u", "support", "-m", &self.folder], Some(message));
    }

    /// The folder as a mailbox of the email connector's config (account `support`, plain IMAP
    /// on loopback), for filing with [`omni_email::Appender`].
    pub fn imap_config(&self) -> omni_email::MailboxConfig {
        serde_json::from_value(serde_json::json!({
            "host": "127.0.0.1",
            "port": self.port,
            "security": "plain",
            "username": "support",
            "password": "support",
            "folder": self.folder,
        }))
        .expect("a valid mailbox config")
    }

    /// Files every message file in `dir` (by name) into the folder over IMAP APPEND, with
    /// `omni mail append`, the command the README gives newcomers.
    pub fn append_dir(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        let output = Command::new(binary("omni"))
            .env_remove("OMNI_CONFIG")
            .env("OMNI__EMAIL__MAILBOXES__SUPPORT__PORT", self.port.to_string())
            .args(["mail", "append", "--folder", &self.folder])
            .arg(dir)
            .output()?;
        if !output.status.success() {
            bail!("omni mail append failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }

    /// The full text of every message in `user`'s INBOX matching an IMAP SEARCH (for example
    /// `["to", "jan@example.nl"]`), in UID order, read with `doveadm search` and `fetch`.
    pub fn fetch(&self, user: &str, search: &[&str]) -> anyhow::Result<Vec<String>> {
        let doveadm = |args: &[&str]| -> anyhow::Result<String> {
            let output = Command::new("doveadm").arg("-c").arg(&self.conf).args(args).output()?;
            if !output.status.success() {
                bail!("doveadm {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
            }
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        };
        let mut query = vec!["search", "-u", user, "mailbox", "INBOX"];
        query.extend_from_slice(search);
        // One `<mailbox guid> <uid>` line per message.
        let found = doveadm(&query)?;
        let mut uids: Vec<u32> = found
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1)?.parse().ok())
            .collect();
        uids.sort_unstable();
        uids.into_iter()
            .map(|uid| {
                let text = doveadm(&["fetch", "-u", user, "text", "mailbox", "INBOX", "uid", &uid.to_string()])?;
                Ok(text.strip_prefix("text:\n").unwrap_or(&text).to_owned())
            })
            .collect()
    }

    /// Deletes and creates the folder again: the server gives it a new UIDVALIDITY.
    pub fn recreate(&self) {
        self.doveadm(&["mailbox", "delete", "-u", "support", &self.folder], None);
        self.doveadm(&["mailbox", "create", "-u", "support", &self.folder], None);
    }
}

/// The SMTP server `make test` starts (deploy/local/postfix.sh), which delivers every mail to
/// the local Dovecot's `customers` account.
pub fn smtp_port() -> u16 {
    std::env::var("OMNI_TEST_SMTP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(12525)
}

/// A plain-text mail to the support mailbox; `headers` are added as they are (each ending in
/// CRLF), for example thread headers or `Auto-Submitted`.
pub fn mail(from: &str, message_id: &str, headers: &str, subject: &str, text: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: Support <support@omni.local>\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n{headers}Date: Fri, 04 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    )
    .into_bytes()
}

/// The value of a header in a raw message (first occurrence, unfolded).
pub fn header(message: &str, name: &str) -> Option<String> {
    let parsed = mail_parser::MessageParser::default().parse(message.as_bytes())?;
    parsed.header_raw(name).map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
}
