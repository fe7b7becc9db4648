//! A customer's file as a download request: what a channel's `media` module
//! (`slack::media`, `meta::media`, `twilio_sms::media`, `viber::media`, `x::media`;
//! `whatsapp::media` and `telegram::media` look the file up through the API first) makes of the
//! reference an attachment
//! carries, for the router to fetch. Pure: nothing is fetched here, and the router checks the
//! host, size, type and hash of what comes back.

/// One GET that brings a customer's file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Download {
    /// The URL, as the provider gave it in the webhook.
    pub url: String,
    /// The credentials the provider asks for.
    pub auth: Auth,
}

/// How a download authenticates. Secrets print as `<redacted>` in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials: a signed, expiring CDN URL.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTP Basic `<user>:<password>`.
    Basic {
        /// The user name (Twilio: the Account SID).
        user: String,
        /// The password (Twilio: the Auth Token).
        password: String,
    },
    /// A ready `Authorization` value made for this one request (X: an OAuth 1.0a signature,
    /// with its nonce and timestamp).
    Authorization(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Self::Authorization(_) => f.write_str("Authorization(<redacted>)"),
        }
    }
}

/// The URL in `reference` when it is an absolute http(s) URL without user info whose path
/// starts with `path_prefix`; otherwise why not (a file id, a relative path, `user@host`).
pub fn url_under(reference: &str, path_prefix: &str) -> Result<http::Uri, String> {
    let uri = http::Uri::try_from(reference).map_err(|_| "the reference is not a URL".to_owned())?;
    let web = matches!(uri.scheme_str(), Some("https" | "http"));
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    if !web || authority.is_empty() || authority.contains('@') {
        return Err("the reference is not an http(s) URL of a host".to_owned());
    }
    if !uri.path().starts_with(path_prefix) {
        return Err(format!("the reference's path is not under `{path_prefix}`"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let bearer = format!("{:?}", Auth::Bearer("xoxb-secret".into()));
        let basic = format!(
            "{:?}",
            Auth::Basic {
                user: "AC1".into(),
                password: "token-secret".into()
            }
        );
        assert!(!bearer.contains("secret") && !basic.contains("secret"), "{bearer} {basic}");
        let signed = format!("{:?}", Auth::Authorization("OAuth oauth_signature=\"secret\"".into()));
        assert!(!signed.contains("secret"), "{signed}");
        assert!(basic.contains("AC1"));
    }

    #[test]
    fn only_absolute_web_urls_under_the_prefix_pass() {
        assert!(url_under("https://files.slack.com/files-pri/T1-F1/a.png", "/files-pri/").is_ok());
        assert!(url_under("https://files.slack.com/files-tmb/T1-F1/a.png", "/files-pri/").is_err());
        assert!(url_under("F0RDC39U1", "/").is_err(), "a bare file id");
        assert!(url_under("/files-pri/T1-F1/a.png", "/").is_err(), "relative");
        assert!(url_under("file:///etc/passwd", "/").is_err());
        assert!(url_under("https://files.slack.com@evil.example/files-pri/x", "/").is_err());
    }
}
