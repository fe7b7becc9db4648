//! `[email]` configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use omni_kafka::KafkaService;
use omni_runtime::settings::check_socket_addr;
use omni_runtime::{Problems, Validate};
use serde::Deserialize;

/// `[email]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub admin_listen: String,
    /// This connector's id: in raw records, checkpoints keys and the CloudEvents source.
    pub connector_id: String,
    /// Seconds to finish the batch in hand after SIGTERM.
    pub drain_timeout_secs: u64,
    /// Messages fetched and stored per batch; the checkpoint moves after each batch.
    pub fetch_batch: u32,
    /// Seconds before an IDLE is ended and re-issued (servers may drop it after 30 minutes).
    pub idle_renew_secs: u64,
    /// Seconds between polls of a server without IDLE.
    pub poll_interval_secs: u64,
    /// Messages up to this many bytes are stored whole; a larger one without the bytes of its
    /// large file parts (`omni_channels::email::large`), or, when even that is too large, as its
    /// header with its size, SHA-256 and IMAP UID in the record's attributes.
    pub max_inline_bytes: usize,
    /// Mailboxes by name; the name is the account recorded with each message.
    pub mailboxes: BTreeMap<String, MailboxConfig>,
}

/// One mailbox.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxConfig {
    /// IMAP server host (name or IP address).
    pub host: String,
    /// IMAP server port: usually 993 with `tls`, 143 with `starttls`.
    pub port: u16,
    /// Connection security.
    pub security: Security,
    /// `plain` to a host that is not loopback is refused unless this is true (a trusted network).
    #[serde(default)]
    pub allow_plain_remote: bool,
    /// PEM file of extra trusted CA certificates (a private CA), in addition to the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name the server certificate must match; `host` when unset.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// How to log in.
    #[serde(default)]
    pub auth: Auth,
    /// Login user (with `xoauth2`, the account the token belongs to).
    pub username: String,
    /// Login password (`auth = "password"`).
    #[serde(default)]
    pub password: Secret,
    /// OAuth 2.0 access token (`auth = "xoauth2"`).
    #[serde(default)]
    pub oauth2_token: Option<Secret>,
    /// File holding the OAuth 2.0 access token (`auth = "xoauth2"`), read again on every
    /// connection so an external refresher can replace it. It may not exist yet at start-up;
    /// until it can be read the mailbox is not ready.
    #[serde(default)]
    pub oauth2_token_file: Option<PathBuf>,
    /// Folder to read, for example `INBOX`.
    pub folder: String,
    /// What mail through a mailing list or group alias (`List-Id`, `Precedence: list`) is:
    /// `message` (the default: a customer writing to a group alias is a customer) or
    /// `automated` (never opens a ticket, like an auto-reply). Carried to the normalizer in the
    /// raw record's `list_mail` attribute.
    #[serde(default)]
    pub list_mail: omni_channels::email::ListMail,
    /// Subject markers of out-of-office replies that carry no auto-reply header ("Automatic
    /// reply: ..."): a subject opening with one of them and a colon is tagged `auto-reply`.
    /// Unset: omni's list (`omni_channels::email::DEFAULT_AUTO_REPLY_SUBJECTS`, English,
    /// German, Turkish, Dutch, Arabic, French); `[]` turns the check off.
    #[serde(default)]
    pub auto_reply_subjects: Option<Vec<String>>,
    /// The charset raw 8-bit header bytes (a subject sent without RFC 2047) are read in when the
    /// message's own declared charset does not fit them, for example `windows-1256` for a
    /// mailbox of Arabic customers. Unset: Windows-1254 when the bytes are Turkish, else
    /// Windows-1252.
    #[serde(default)]
    pub default_charset: Option<String>,
}

impl MailboxConfig {
    /// The name the server certificate is checked against.
    pub fn server_name(&self) -> &str {
        self.tls_server_name.as_deref().unwrap_or(&self.host)
    }
}

/// Connection security of a mailbox.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// No TLS: loopback, or a trusted network with `allow_plain_remote = true`.
    Plain,
    /// TLS from the first byte (IMAPS, port 993).
    Tls,
    /// Plain connection upgraded with STARTTLS before login (port 143); refused when the server
    /// does not offer STARTTLS.
    Starttls,
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plain => "plain",
            Self::Tls => "tls",
            Self::Starttls => "starttls",
        })
    }
}

/// How a mailbox logs in.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    /// IMAP LOGIN with `username` and `password`.
    #[default]
    Password,
    /// SASL XOAUTH2 (Google, Microsoft 365) with `username` and an OAuth 2.0 access token.
    Xoauth2,
}

impl fmt::Display for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Password => "password",
            Self::Xoauth2 => "xoauth2",
        })
    }
}

/// A password or token: its `Debug` never shows it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, to send to the server and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"<redacted>\"" })
    }
}

/// Whether `host` is this machine: `localhost` or a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl MailboxConfig {
    fn validate(&self, key: &str, problems: &mut Problems) {
        problems.check(!self.host.is_empty(), format!("{key}.host"), "must not be empty");
        problems.check(self.port != 0, format!("{key}.port"), "must not be 0");
        problems.check(!self.username.is_empty(), format!("{key}.username"), "must not be empty");
        problems.check(!self.folder.is_empty(), format!("{key}.folder"), "must not be empty");
        if let Some(charset) = &self.default_charset {
            problems.check(
                omni_channels::email::header::is_charset(charset),
                format!("{key}.default_charset"),
                format!("`{charset}` is not a charset name (WHATWG labels: windows-1256, iso-8859-9, koi8-r, ...)"),
            );
        }
        match self.security {
            Security::Plain => {
                problems.check(
                    is_loopback(&self.host) || self.allow_plain_remote,
                    format!("{key}.security"),
                    format!(
                        "`plain` would send the login unencrypted to {}, which is not loopback: use `tls` (port 993) or \
                         `starttls` (port 143), or set allow_plain_remote = true on a trusted network",
                        self.host
                    ),
                );
                for (set, field) in [
                    (self.ca_file.is_some(), "ca_file"),
                    (self.tls_server_name.is_some(), "tls_server_name"),
                ] {
                    problems.check(!set, format!("{key}.{field}"), "only used with security = \"tls\" or \"starttls\"");
                }
            }
            Security::Tls | Security::Starttls => {
                if crate::connect::server_name(self.server_name()).is_err() {
                    let field = if self.tls_server_name.is_some() {
                        "tls_server_name"
                    } else {
                        "host"
                    };
                    problems.push(
                        format!("{key}.{field}"),
                        format!(
                            "`{}` is neither a DNS name nor an IP address to check the server certificate against",
                            self.server_name()
                        ),
                    );
                }
                if let Some(path) = &self.ca_file
                    && let Err(error) = crate::connect::read_ca_file(path)
                {
                    problems.push(format!("{key}.ca_file"), error);
                }
            }
        }
        match self.auth {
            Auth::Password => {
                problems.check(
                    !self.password.is_empty(),
                    format!("{key}.password"),
                    "must not be empty with auth = \"password\"",
                );
                for (set, field) in [
                    (self.oauth2_token.is_some(), "oauth2_token"),
                    (self.oauth2_token_file.is_some(), "oauth2_token_file"),
                ] {
                    problems.check(
                        !set,
                        format!("{key}.{field}"),
                        "only used with auth = \"xoauth2\"; set auth = \"xoauth2\"",
                    );
                }
            }
            Auth::Xoauth2 => match (&self.oauth2_token, &self.oauth2_token_file) {
                (None, None) => problems.push(
                    format!("{key}.oauth2_token"),
                    "auth = \"xoauth2\" needs oauth2_token or oauth2_token_file",
                ),
                (Some(_), Some(_)) => problems.push(
                    format!("{key}.oauth2_token_file"),
                    "set either oauth2_token or oauth2_token_file, not both",
                ),
                (Some(token), None) => problems.check(!token.is_empty(), format!("{key}.oauth2_token"), "must not be empty"),
                // Not required to exist yet: a refresher started beside the connector may write it
                // a moment later. Until it can be read the mailbox is not ready, and says why.
                (None, Some(path)) => problems.check(
                    !path.as_os_str().is_empty(),
                    format!("{key}.oauth2_token_file"),
                    "must not be empty",
                ),
            },
        }
    }
}

impl Validate for EmailConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        check_socket_addr(&self.admin_listen, format!("{prefix}.admin_listen"), problems);
        problems.check(!self.connector_id.is_empty(), format!("{prefix}.connector_id"), "must not be empty");
        problems.check(
            (1..=10_000).contains(&self.fetch_batch),
            format!("{prefix}.fetch_batch"),
            "must be between 1 and 10000",
        );
        problems.check(
            (10..=1740).contains(&self.idle_renew_secs),
            format!("{prefix}.idle_renew_secs"),
            "must be between 10 and 1740 (29 minutes)",
        );
        problems.check(
            self.poll_interval_secs >= 1,
            format!("{prefix}.poll_interval_secs"),
            "must be at least 1",
        );
        problems.check(
            self.max_inline_bytes >= 64 * 1024,
            format!("{prefix}.max_inline_bytes"),
            "must be at least 65536",
        );
        for (name, mailbox) in &self.mailboxes {
            mailbox.validate(&format!("{prefix}.mailboxes.{name}"), problems);
        }
    }
}

omni_kafka::service_section!(EmailConfig, "email");

/// Everything the email connector reads: `[kafka]` and `[email]`.
pub type EmailServiceConfig = KafkaService<EmailConfig>;

#[cfg(test)]
mod tests {
    use omni_runtime::Settings;

    use super::*;

    const MAILBOX: &str = "OMNI__EMAIL__MAILBOXES__SUPPORT__";

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    /// The embedded defaults with `support` mailbox keys overridden; the config and every
    /// problem key.
    fn load(mailbox: &[(&str, &str)]) -> (Option<EmailConfig>, Vec<String>) {
        let env = mailbox
            .iter()
            .map(|(k, v)| (format!("{MAILBOX}{}", k.to_uppercase()), v.to_string()));
        let settings = Settings::load_from(None, env).unwrap();
        let mut problems = Problems::default();
        let config = settings.section("email", &mut problems);
        let keys = problems.items().iter().map(|(key, problem)| format!("{key}: {problem}")).collect();
        (config, keys)
    }

    fn problems(mailbox: &[(&str, &str)]) -> Vec<String> {
        load(mailbox).1
    }

    #[test]
    fn the_default_mailbox_is_plain_password_on_loopback() {
        let (config, problems) = load(&[]);
        assert!(problems.is_empty(), "{problems:?}");
        let config = config.unwrap();
        let mailbox = &config.mailboxes["support"];
        assert_eq!((mailbox.security, mailbox.auth), (Security::Plain, Auth::Password));
        assert!(is_loopback(&mailbox.host));
    }

    #[test]
    fn plain_is_refused_off_loopback_unless_allowed() {
        for host in ["localhost", "127.0.0.1", "::1", "[::1]", "127.0.0.2"] {
            assert!(problems(&[("host", host)]).is_empty(), "{host}");
        }
        let found = problems(&[("host", "imap.example.com")]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("email.mailboxes.support.security: `plain` would send the login unencrypted to imap.example.com"));
        assert!(problems(&[("host", "imap.example.com"), ("allow_plain_remote", "true")]).is_empty());
        assert!(problems(&[("host", "imap.example.com"), ("security", "tls")]).is_empty());
    }

    #[test]
    fn tls_settings_are_checked() {
        assert!(problems(&[("security", "starttls"), ("ca_file", &fixture("ca.pem"))]).is_empty());
        assert!(problems(&[("security", "tls"), ("tls_server_name", "imap.example.com")]).is_empty());
        assert_eq!(
            problems(&[("security", "tls"), ("ca_file", "/nonexistent/ca.pem")]),
            ["email.mailboxes.support.ca_file: cannot read /nonexistent/ca.pem: No such file or directory (os error 2)"]
        );
        let not_pem = fixture("../../../Cargo.toml");
        assert_eq!(
            problems(&[("security", "tls"), ("ca_file", &not_pem)]),
            [format!(
                "email.mailboxes.support.ca_file: {not_pem}: no PEM certificate (BEGIN CERTIFICATE) in it"
            )]
        );
        assert_eq!(
            problems(&[("security", "tls"), ("tls_server_name", "not a name")]),
            [
                "email.mailboxes.support.tls_server_name: `not a name` is neither a DNS name nor an IP address to check the server certificate against"
            ]
        );
        assert_eq!(
            problems(&[("ca_file", &fixture("ca.pem"))]),
            [r#"email.mailboxes.support.ca_file: only used with security = "tls" or "starttls""#]
        );
        let found = problems(&[("security", "ssl")]);
        assert_eq!(
            found,
            ["email: enum Security does not have variant constructor ssl for key `email`"]
        );
    }

    #[test]
    fn xoauth2_needs_exactly_one_token_source() {
        assert!(problems(&[("auth", "xoauth2"), ("oauth2_token", "ya29.token")]).is_empty());
        assert!(problems(&[("auth", "xoauth2"), ("oauth2_token_file", &fixture("ca.pem"))]).is_empty());
        assert_eq!(
            problems(&[("auth", "xoauth2")]),
            [r#"email.mailboxes.support.oauth2_token: auth = "xoauth2" needs oauth2_token or oauth2_token_file"#]
        );
        assert_eq!(
            problems(&[
                ("auth", "xoauth2"),
                ("oauth2_token", "t"),
                ("oauth2_token_file", &fixture("ca.pem"))
            ]),
            ["email.mailboxes.support.oauth2_token_file: set either oauth2_token or oauth2_token_file, not both"]
        );
        assert!(problems(&[("auth", "xoauth2"), ("oauth2_token_file", "/run/not-written-yet/token")]).is_empty());
        assert_eq!(
            problems(&[("oauth2_token", "ya29.token")]),
            [r#"email.mailboxes.support.oauth2_token: only used with auth = "xoauth2"; set auth = "xoauth2""#]
        );
        assert_eq!(
            problems(&[("password", "")]),
            [r#"email.mailboxes.support.password: must not be empty with auth = "password""#]
        );
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let config = load(&[
            ("password", "hunter2-password"),
            ("oauth2_token", "ya29.secret-token"),
            ("auth", "xoauth2"),
        ])
        .0
        .unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2-password"), "{printed}");
        assert!(!printed.contains("ya29.secret-token"), "{printed}");
        assert!(printed.contains("password: \"<redacted>\""), "{printed}");
        assert_eq!(config.mailboxes["support"].password.expose(), "hunter2-password");
    }
}
