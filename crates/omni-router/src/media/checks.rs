//! What every download keeps to, whoever the provider: only allowed hosts (redirects only among
//! them, credentials never carried to another host), at most `max_file_bytes` (refused before
//! the body when announced, and cut off while reading when not), only `allowed_types`, served as
//! the webhook announced, of the announced size and SHA-256 when given. Errors say whether
//! trying again can help and never hold a URL (Telegram's carry the bot token).

use std::sync::Arc;
use std::time::Duration;

use omni_channels::media::{Auth, Download};
use omni_proto::v1::Attachment;
use reqwest::{StatusCode, Url};
use sha2::{Digest as _, Sha256};

use super::{Fetched, MediaConfig, MediaError};

/// Redirects followed at most, each to an allowed host.
const MAX_REDIRECTS: usize = 3;

/// The limits of `[router.media]` and the HTTP client without redirects.
pub(crate) struct Checks {
    max_file_bytes: u64,
    allowed_types: Vec<String>,
    /// For the API calls of WhatsApp and Telegram: a redirect is not followed.
    plain: reqwest::Client,
}

/// A response read whole.
pub(crate) struct Downloaded {
    pub(crate) content_type: String,
    pub(crate) bytes: Vec<u8>,
}

fn client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
}

impl Checks {
    pub(crate) fn new(config: &MediaConfig) -> Result<Self, reqwest::Error> {
        Ok(Self {
            max_file_bytes: config.max_file_bytes,
            allowed_types: config.allowed_types.clone(),
            plain: client().redirect(reqwest::redirect::Policy::none()).build()?,
        })
    }

    /// `[router.media] max_file_bytes`.
    pub(crate) fn max_file_bytes(&self) -> u64 {
        self.max_file_bytes
    }

    /// A client that follows up to [`MAX_REDIRECTS`] redirects, each only to one of `hosts`
    /// (reqwest drops `Authorization` when a redirect changes host, port or scheme).
    pub(crate) fn following(hosts: Arc<AllowedHosts>) -> Result<reqwest::Client, reqwest::Error> {
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if hosts.allows(attempt.url()) {
                attempt.follow()
            } else {
                let host = attempt.url().host_str().unwrap_or_default().to_owned();
                attempt.error(format!("redirected to `{host}`, not one of the account's media_hosts"))
            }
        });
        client().redirect(policy).build()
    }

    /// GET without following redirects, with `token` as bearer unless empty.
    pub(crate) async fn get(&self, url: &str, token: &str) -> Result<Downloaded, MediaError> {
        let mut request = self.plain.get(url);
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        self.read(request.send().await, |_| false).await
    }

    /// `download` of `file` through `http` (a [`Checks::following`] client for `hosts`), checked
    /// against what the webhook announced. `not_yet`: statuses that mean "try again later".
    pub(crate) async fn download(
        &self,
        http: &reqwest::Client,
        hosts: &AllowedHosts,
        download: Download,
        file: &Attachment,
        not_yet: fn(StatusCode) -> bool,
    ) -> Result<Fetched, MediaError> {
        let url = Url::parse(&download.url).map_err(|_| MediaError::Refused("the reference is not a URL".into()))?;
        if !hosts.allows(&url) {
            let host = url.host_str().unwrap_or_default();
            return Err(MediaError::Refused(format!("`{host}` is not one of the account's media_hosts")));
        }
        self.check_announced(file)?;
        let request = match download.auth {
            Auth::None => http.get(url),
            Auth::Bearer(token) => http.get(url).bearer_auth(token),
            Auth::Basic { user, password } => http.get(url).basic_auth(user, Some(password)),
            Auth::Authorization(value) => {
                let mut value = reqwest::header::HeaderValue::try_from(value)
                    .map_err(|_| MediaError::Refused("the signed Authorization is no header value".into()))?;
                // As bearer_auth and basic_auth mark theirs: kept out of debug output.
                value.set_sensitive(true);
                http.get(url).header(reqwest::header::AUTHORIZATION, value)
            }
        };
        let downloaded = self.read(request.send().await, not_yet).await?;
        self.check_served(file, downloaded)
    }

    /// Refuses before downloading what the webhook already says is too large or of a type not
    /// allowed (a type it does not know is checked once served).
    fn check_announced(&self, file: &Attachment) -> Result<(), MediaError> {
        if file.size_bytes > self.max_file_bytes {
            return Err(too_large(self.max_file_bytes));
        }
        let announced = base_type(&file.media_type);
        if unknown_type(&announced) {
            Ok(())
        } else {
            self.check_type(&announced)
        }
    }

    /// The served file, when it is what the webhook announced and allowed.
    fn check_served(&self, file: &Attachment, downloaded: Downloaded) -> Result<Fetched, MediaError> {
        let served = base_type(&downloaded.content_type);
        if !served_as_announced(&file.media_type, &served) {
            return Err(MediaError::Refused(format!(
                "served as `{served}`, announced as `{}`",
                file.media_type
            )));
        }
        self.check_type(&served)?;
        if file.size_bytes > 0 && downloaded.bytes.len() as u64 != file.size_bytes {
            return Err(MediaError::Refused("the file is not the size the webhook announced".into()));
        }
        self.check_bytes(&downloaded.bytes, &file.sha256)?;
        Ok(Fetched {
            bytes: downloaded.bytes,
            media_type: served,
        })
    }

    /// A `media_type` in `allowed_types`.
    pub(crate) fn check_type(&self, media_type: &str) -> Result<(), MediaError> {
        let media_type = media_type.to_ascii_lowercase();
        let family = media_type.split('/').next().unwrap_or_default();
        let allowed = self
            .allowed_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&media_type) || t.strip_suffix("/*").is_some_and(|f| f.eq_ignore_ascii_case(family)));
        if allowed {
            Ok(())
        } else {
            Err(MediaError::Refused(format!(
                "`{media_type}` is not in [router.media] allowed_types"
            )))
        }
    }

    /// Bytes within `max_file_bytes` that hash to `expected_sha256` (when one was announced).
    pub(crate) fn check_bytes(&self, bytes: &[u8], expected_sha256: &str) -> Result<(), MediaError> {
        if bytes.len() as u64 > self.max_file_bytes {
            return Err(too_large(self.max_file_bytes));
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        if !expected_sha256.is_empty() && sha256 != expected_sha256 {
            return Err(MediaError::Refused(
                "the file does not match the SHA-256 the webhook announced".into(),
            ));
        }
        Ok(())
    }

    /// The answer to a request: 5xx, 429 and `not_yet` are worth another try, other failures
    /// are final; the body is read up to `max_file_bytes`.
    async fn read(&self, sent: reqwest::Result<reqwest::Response>, not_yet: fn(StatusCode) -> bool) -> Result<Downloaded, MediaError> {
        let mut response = sent.map_err(request_error)?;
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || not_yet(status) {
            return Err(MediaError::Unavailable(format!("the provider answered {status}")));
        }
        if !status.is_success() {
            return Err(MediaError::Refused(format!("the provider answered {status}")));
        }
        if response.content_length().is_some_and(|length| length > self.max_file_bytes) {
            return Err(too_large(self.max_file_bytes));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if (bytes.len() + chunk.len()) as u64 > self.max_file_bytes {
                return Err(too_large(self.max_file_bytes));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Downloaded { content_type, bytes })
    }
}

fn too_large(max_file_bytes: u64) -> MediaError {
    MediaError::Refused(format!("the file is larger than [router.media] max_file_bytes ({max_file_bytes})"))
}

/// A request that failed: a refused redirect is final, the rest (network, cut body) is not. The
/// text has the causes and never the URL.
fn request_error(error: reqwest::Error) -> MediaError {
    let redirect = error.is_redirect();
    let error = error.without_url();
    let mut text = format!("media request failed: {error}");
    let mut cause = std::error::Error::source(&error);
    while let Some(source) = cause {
        text.push_str(&format!(": {source}"));
        cause = std::error::Error::source(source);
    }
    if redirect {
        MediaError::Refused(text)
    } else {
        MediaError::Unavailable(text)
    }
}

/// `image/jpeg` of `image/JPEG; charset=x`.
fn base_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// A type that says nothing: none, or `application/octet-stream`.
fn unknown_type(media_type: &str) -> bool {
    media_type.is_empty() || media_type == "application/octet-stream"
}

/// Whether `served` is what `announced` said: the same type, one of an announced family
/// (`image/*`, as Meta's attachment kinds give it), or anything when nothing was announced.
fn served_as_announced(announced: &str, served: &str) -> bool {
    let announced = base_type(announced);
    let family = |media_type: &str| media_type.split('/').next().unwrap_or_default().to_owned();
    unknown_type(&announced) || announced == served || announced.strip_suffix("/*").is_some_and(|f| f == family(served))
}

/// The hosts an account's downloads may be on, each entry one of: a host name (`files.slack.com`:
/// https on its default port), `*.<domain>` (its subdomains, https on the default port), or an
/// origin (`http://127.0.0.1:9000`: exactly that scheme, host and port, for a local stand-in).
#[derive(Debug, Default)]
pub(crate) struct AllowedHosts(Vec<Allowed>);

#[derive(Debug)]
enum Allowed {
    Host(String),
    Subdomains(String),
    Origin(String, String, Option<u16>),
}

impl AllowedHosts {
    /// The entries read, or the first that is none of the three forms.
    pub(crate) fn parse(entries: &[String]) -> Result<Self, String> {
        entries.iter().map(|entry| parse_entry(entry)).collect::<Result<_, _>>().map(Self)
    }

    /// Whether `url` is on one of the hosts (never with user info).
    pub(crate) fn allows(&self, url: &Url) -> bool {
        if !url.username().is_empty() || url.password().is_some() {
            return false;
        }
        let host = url.host_str().unwrap_or_default();
        let https = url.scheme() == "https" && url.port().is_none();
        self.0.iter().any(|allowed| match allowed {
            Allowed::Host(name) => https && host == name,
            Allowed::Subdomains(dot_domain) => https && host.strip_suffix(dot_domain.as_str()).is_some_and(|sub| !sub.is_empty()),
            Allowed::Origin(scheme, name, port) => url.scheme() == scheme && host == name && url.port_or_known_default() == *port,
        })
    }
}

fn parse_entry(entry: &str) -> Result<Allowed, String> {
    let not_one = || format!("`{entry}` is not a host name, `*.<domain>` or an origin (scheme://host[:port])");
    if entry.contains("://") {
        let url = Url::parse(entry).map_err(|_| not_one())?;
        let bare = url.path() == "/" && url.query().is_none() && url.username().is_empty() && url.password().is_none();
        return match (url.scheme(), url.host_str()) {
            ("http" | "https", Some(host)) if bare => Ok(Allowed::Origin(url.scheme().into(), host.into(), url.port_or_known_default())),
            _ => Err(not_one()),
        };
    }
    let (wildcard, name) = entry.strip_prefix("*.").map_or((false, entry), |name| (true, name));
    // The name as a URL's host: lower case, and nothing but a host.
    let url = Url::parse(&format!("https://{name}/")).map_err(|_| not_one())?;
    if url.host_str() != Some(name.to_ascii_lowercase().as_str()) || url.port().is_some() || name.contains('*') {
        return Err(not_one());
    }
    let name = name.to_ascii_lowercase();
    Ok(if wildcard {
        Allowed::Subdomains(format!(".{name}"))
    } else {
        Allowed::Host(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn allowed(hosts: &AllowedHosts, url: &str) -> bool {
        hosts.allows(&Url::parse(url).unwrap())
    }

    #[test]
    fn host_names_and_subdomains_are_https_only() {
        let meta = hosts(&["*.fbcdn.net", "lookaside.fbsbx.com", "files.slack.com"]);
        assert!(allowed(&meta, "https://scontent.xx.fbcdn.net/v/t1/1_n.jpg?oh=1"));
        assert!(allowed(&meta, "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1"));
        assert!(
            allowed(&meta, "https://FILES.slack.com:443/files-pri/T1-F1/a.png"),
            "the default port, any case"
        );
        assert!(!allowed(&meta, "http://scontent.xx.fbcdn.net/v/1.jpg"), "not https");
        assert!(!allowed(&meta, "https://fbcdn.net/v/1.jpg"), "the domain itself is not a subdomain");
        assert!(!allowed(&meta, "https://evilfbcdn.net/v/1.jpg"));
        assert!(!allowed(&meta, "https://lookaside.fbsbx.com.evil.example/x"));
        assert!(!allowed(&meta, "https://files.slack.com:8443/files-pri/x"), "another port");
        assert!(!allowed(&meta, "https://files.slack.com@evil.example/files-pri/x"));
        assert!(!allowed(&meta, "https://user:pw@files.slack.com/files-pri/x"), "user info");
        assert!(!allowed(&meta, "https://169.254.169.254/latest/meta-data"));
    }

    #[test]
    fn an_origin_allows_exactly_its_scheme_host_and_port() {
        let local = hosts(&["http://127.0.0.1:9000"]);
        assert!(allowed(&local, "http://127.0.0.1:9000/files-pri/T1-F1/a.png"));
        assert!(!allowed(&local, "http://127.0.0.1:9001/files-pri/T1-F1/a.png"));
        assert!(!allowed(&local, "https://127.0.0.1:9000/x"));
        assert!(!allowed(&local, "http://localhost:9000/x"));
        assert!(!allowed(&hosts(&[]), "https://files.slack.com/files-pri/x"), "nothing when none");
    }

    #[test]
    fn entries_that_are_no_host_are_refused() {
        for bad in [
            "",
            "*",
            "*.",
            "files.slack.com/files-pri",
            "https://files.slack.com/x",
            "ftp://h",
            "a b",
            "files.*.com",
            "h:8443",
        ] {
            assert!(AllowedHosts::parse(&[bad.to_owned()]).is_err(), "{bad:?}");
        }
        assert!(AllowedHosts::parse(&["Files.Slack.com".to_owned(), "https://h:1".to_owned()]).is_ok());
    }

    #[test]
    fn the_served_type_must_be_the_announced_one() {
        assert!(served_as_announced("image/png", "image/png"));
        assert!(served_as_announced("image/*", "image/webp"), "a family announced");
        assert!(
            served_as_announced("application/octet-stream", "application/pdf"),
            "nothing announced"
        );
        assert!(!served_as_announced("image/png", "text/html"), "Slack's sign-in page");
        assert!(!served_as_announced("image/*", "application/x-msdownload"));
        assert_eq!(base_type("Image/JPEG; charset=binary"), "image/jpeg");
    }

    #[test]
    fn only_allowed_types_and_matching_bytes_pass() {
        let checks = Checks::new(&MediaConfig::default()).unwrap();
        assert!(checks.check_type("image/jpeg").is_ok());
        assert!(checks.check_type("application/pdf").is_ok());
        assert!(checks.check_type("application/x-msdownload").is_err());
        let bytes = b"photo";
        let sha = hex::encode(Sha256::digest(bytes));
        assert!(checks.check_bytes(bytes, &sha).is_ok());
        assert!(checks.check_bytes(bytes, &"0".repeat(64)).is_err());
    }
}
