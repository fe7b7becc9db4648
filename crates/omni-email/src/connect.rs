//! Opening an IMAP session: TCP, TLS (from the first byte or after STARTTLS), then LOGIN or
//! SASL XOAUTH2.
//!
//! TLS is rustls with the aws-lc-rs provider. Trusted roots are the system's certificate store
//! plus the mailbox's `ca_file`; the certificate must match `tls_server_name` (else `host`).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::imap_proto::{Capability, Response, ResponseCode, Status};
use async_imap::types::UnsolicitedResponse;
use async_imap::{Authenticator, Client, Session};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, InvalidDnsNameError, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::config::{Auth, MailboxConfig, Security};

/// Longest time from TCP connect to a logged-in session.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// An IMAP session over a plain or a TLS connection.
pub(crate) type ImapSession = Session<MailStream>;

/// Why a session could not be opened. Never carries a password or token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("cannot connect to {address}: {source}")]
    Tcp { address: String, source: io::Error },
    #[error("timed out after {}s opening an IMAP session with {address}", OPEN_TIMEOUT.as_secs())]
    Timeout { address: String },
    #[error("no IMAP greeting from {address}: {reason}")]
    Greeting { address: String, reason: String },
    #[error("TLS setup for {address}: {reason}")]
    TlsSetup { address: String, reason: String },
    #[error("TLS handshake with {address} (expecting a certificate for `{server_name}`) failed: {source}")]
    TlsHandshake {
        address: String,
        server_name: String,
        source: io::Error,
    },
    #[error(
        "{address} does not offer STARTTLS (capabilities: {capabilities}): refusing to log in without TLS; \
         use security = \"tls\" (port 993) if the server has it"
    )]
    NoStartTls { address: String, capabilities: String },
    #[error("STARTTLS with {address} failed: {source}")]
    StartTls { address: String, source: async_imap::error::Error },
    #[error("cannot read the OAuth 2.0 token from {path}: {reason}")]
    TokenFile { path: String, reason: String },
    #[error("the server refused the login of `{user}`: {source}")]
    Login { user: String, source: async_imap::error::Error },
    #[error("the server refused XOAUTH2 for `{user}`: {source}{detail}")]
    Xoauth2 {
        user: String,
        source: async_imap::error::Error,
        /// The server's error challenge (JSON with Google and Microsoft), if it sent one.
        detail: String,
    },
    #[error("imap: {0}")]
    Imap(#[from] async_imap::error::Error),
}

/// Connects, secures the connection as configured and logs in.
pub(crate) async fn open(mailbox: &MailboxConfig) -> Result<ImapSession, ConnectError> {
    let address = format!("{}:{}", mailbox.host, mailbox.port);
    match tokio::time::timeout(OPEN_TIMEOUT, open_within(mailbox, &address)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout { address }),
    }
}

async fn open_within(mailbox: &MailboxConfig, address: &str) -> Result<ImapSession, ConnectError> {
    let tcp = TcpStream::connect((mailbox.host.as_str(), mailbox.port))
        .await
        .map_err(|source| ConnectError::Tcp {
            address: address.to_owned(),
            source,
        })?;
    let client = match mailbox.security {
        Security::Plain => {
            let mut client = Client::new(MailStream::Plain(tcp));
            greeting(&mut client, address).await?;
            client
        }
        Security::Tls => {
            let mut client = Client::new(MailStream::Tls(Box::new(handshake(mailbox, address, tcp).await?)));
            greeting(&mut client, address).await?;
            client
        }
        Security::Starttls => {
            let mut client = Client::new(MailStream::Plain(tcp));
            let advertised = greeting(&mut client, address).await?;
            let capabilities = match advertised {
                Some(capabilities) => capabilities,
                None => capabilities(&mut client).await?,
            };
            if !capabilities.iter().any(|c| c == "STARTTLS") {
                return Err(ConnectError::NoStartTls {
                    address: address.to_owned(),
                    capabilities: capabilities.join(" "),
                });
            }
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|source| ConnectError::StartTls {
                    address: address.to_owned(),
                    source,
                })?;
            // Anything the server sent after its OK and before the handshake is dropped with the
            // plain client's buffer, as RFC 3501 section 6.2.1 asks (no response injection).
            let MailStream::Plain(tcp) = client.into_inner() else {
                unreachable!("the client was created over a plain stream")
            };
            Client::new(MailStream::Tls(Box::new(handshake(mailbox, address, tcp).await?)))
        }
    };
    login(mailbox, client).await
}

async fn login(mailbox: &MailboxConfig, client: Client<MailStream>) -> Result<ImapSession, ConnectError> {
    let user = mailbox.username.as_str();
    match mailbox.auth {
        Auth::Password => client
            .login(user, mailbox.password.expose())
            .await
            .map_err(|(source, _)| ConnectError::Login {
                user: user.to_owned(),
                source,
            }),
        Auth::Xoauth2 => {
            let token = oauth2_token(mailbox).await?;
            let mut authenticator = XOAuth2::new(user, &token);
            let result = client.authenticate("XOAUTH2", &mut authenticator).await;
            result.map_err(|(source, _)| ConnectError::Xoauth2 {
                user: user.to_owned(),
                source,
                detail: authenticator.server_error.map(|e| format!(" ({e})")).unwrap_or_default(),
            })
        }
    }
}

/// The access token: `oauth2_token`, else the contents of `oauth2_token_file`, read now so a
/// refreshed token is used on the next connection.
async fn oauth2_token(mailbox: &MailboxConfig) -> Result<String, ConnectError> {
    if let Some(token) = &mailbox.oauth2_token {
        return Ok(token.expose().to_owned());
    }
    let Some(path) = &mailbox.oauth2_token_file else {
        return Err(ConnectError::TokenFile {
            path: "(none)".into(),
            reason: "neither oauth2_token nor oauth2_token_file is set".into(),
        });
    };
    let error = |reason: String| ConnectError::TokenFile {
        path: path.display().to_string(),
        reason,
    };
    let text = tokio::fs::read_to_string(path).await.map_err(|e| error(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(error("the file is empty".into()));
    }
    Ok(token.to_owned())
}

/// Reads the server greeting; returns the capabilities it announced, if it did.
async fn greeting(client: &mut Client<MailStream>, address: &str) -> Result<Option<Vec<String>>, ConnectError> {
    let error = |reason: String| ConnectError::Greeting {
        address: address.to_owned(),
        reason,
    };
    let response = client
        .read_response()
        .await
        .map_err(|e| error(e.to_string()))?
        .ok_or_else(|| error("the server closed the connection".into()))?;
    match response.parsed() {
        Response::Data {
            status: Status::Ok,
            outcome,
        } => Ok(match &outcome.code {
            Some(ResponseCode::Capabilities(capabilities)) => Some(capability_names(capabilities)),
            _ => None,
        }),
        Response::Data { status, outcome } => Err(error(format!("{status:?} {}", outcome.information.as_deref().unwrap_or_default()))),
        other => Err(error(format!("unexpected {other:?}"))),
    }
}

/// Asks for the capabilities (before login, on a server that did not list them in its greeting).
async fn capabilities(client: &mut Client<MailStream>) -> Result<Vec<String>, ConnectError> {
    let (sender, receiver) = async_channel::unbounded();
    client.run_command_and_check_ok("CAPABILITY", Some(sender)).await?;
    let mut names = Vec::new();
    while let Ok(response) = receiver.try_recv() {
        if let UnsolicitedResponse::Other(data) = response
            && let Response::Capabilities(capabilities) = data.parsed()
        {
            names.extend(capability_names(capabilities));
        }
    }
    Ok(names)
}

fn capability_names(capabilities: &[Capability<'_>]) -> Vec<String> {
    capabilities
        .iter()
        .map(|capability| match capability {
            Capability::Imap4rev1 => "IMAP4REV1".to_owned(),
            Capability::Auth(mechanism) => format!("AUTH={}", mechanism.to_ascii_uppercase()),
            Capability::Atom(atom) => atom.to_ascii_uppercase(),
        })
        .collect()
}

async fn handshake(mailbox: &MailboxConfig, address: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>, ConnectError> {
    let setup_error = |reason: String| ConnectError::TlsSetup {
        address: address.to_owned(),
        reason,
    };
    let config = client_config(mailbox.ca_file.as_deref()).map_err(setup_error)?;
    let server_name = server_name(mailbox.server_name()).map_err(|e| setup_error(format!("`{}`: {e}", mailbox.server_name())))?;
    TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|source| ConnectError::TlsHandshake {
            address: address.to_owned(),
            server_name: mailbox.server_name().to_owned(),
            source,
        })
}

/// The name a server certificate is checked against: a DNS name or an IP address.
pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>, InvalidDnsNameError> {
    ServerName::try_from(name.trim_start_matches('[').trim_end_matches(']').to_owned())
}

/// The TLS client configuration: system roots plus `ca_file`, aws-lc-rs, TLS 1.2 and 1.3.
/// Built for each connection, so a replaced `ca_file` is read on the next one.
fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (_added, _unparsable) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for certificate in read_ca_file(path)? {
            roots
                .add(certificate)
                .map_err(|e| format!("ca_file {}: unusable certificate: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        let why = native.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
        return Err(format!(
            "no trusted root certificates: the system store is empty{why} and no ca_file is set; install ca-certificates or set ca_file"
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificates of a PEM file; an error when it cannot be read or holds none.
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{}: no PEM certificate (BEGIN CERTIFICATE) in it", path.display()));
    }
    Ok(certificates)
}

/// The SASL XOAUTH2 initial response (Google and Microsoft): `user=<user>^Aauth=Bearer <token>^A^A`.
pub(crate) fn xoauth2_response(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// Answers the server's first (empty) challenge with the token; a second challenge is the
/// server's error description, kept for the message and answered empty as the mechanism wants.
struct XOAuth2<'a> {
    user: &'a str,
    token: &'a str,
    answered: bool,
    server_error: Option<String>,
}

impl<'a> XOAuth2<'a> {
    fn new(user: &'a str, token: &'a str) -> Self {
        Self {
            user,
            token,
            answered: false,
            server_error: None,
        }
    }
}

impl Authenticator for &mut XOAuth2<'_> {
    type Response = Vec<u8>;

    fn process(&mut self, challenge: &[u8]) -> Self::Response {
        if self.answered {
            self.server_error = Some(String::from_utf8_lossy(challenge).into_owned());
            return Vec::new();
        }
        self.answered = true;
        xoauth2_response(self.user, self.token).into_bytes()
    }
}

/// A connection to the IMAP server, plain or TLS.
pub(crate) enum MailStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl std::fmt::Debug for MailStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, tcp) = match self {
            Self::Plain(tcp) => ("plain", tcp),
            Self::Tls(tls) => ("tls", tls.get_ref().0),
        };
        f.debug_struct("MailStream")
            .field("security", &kind)
            .field("peer", &tcp.peer_addr().ok())
            .finish()
    }
}

impl AsyncRead for MailStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MailStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(tcp) => tcp.is_write_vectored(),
            Self::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::pki_types::PrivateKeyDer;

    use super::*;
    use crate::config::Secret;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
    }

    fn mailbox(port: u16, security: Security) -> MailboxConfig {
        MailboxConfig {
            host: "127.0.0.1".into(),
            port,
            security,
            allow_plain_remote: false,
            ca_file: None,
            tls_server_name: None,
            auth: Auth::Password,
            username: "support".into(),
            password: Secret::from("secret"),
            oauth2_token: None,
            oauth2_token_file: None,
            folder: "INBOX".into(),
            list_mail: Default::default(),
            auto_reply_subjects: None,
            default_charset: None,
        }
    }

    fn acceptor() -> TlsAcceptor {
        let certificates = CertificateDer::pem_file_iter(fixture("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(fixture("server-key.pem")).unwrap();
        let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certificates, key)
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }

    /// One side of a scripted IMAP conversation.
    struct Peer<S> {
        stream: BufReader<S>,
        /// Every line the client sent.
        heard: Vec<String>,
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
        fn new(stream: S) -> Self {
            Self {
                stream: BufReader::new(stream),
                heard: Vec::new(),
            }
        }

        async fn send(&mut self, text: &str) {
            self.stream.write_all(text.as_bytes()).await.unwrap();
            self.stream.flush().await.unwrap();
        }

        /// Reads a command line; returns its tag.
        async fn hear(&mut self) -> String {
            let mut line = String::new();
            self.stream.read_line(&mut line).await.unwrap();
            let line = line.trim_end().to_owned();
            self.heard.push(line.clone());
            line.split(' ').next().unwrap_or_default().to_owned()
        }
    }

    async fn listen() -> (TcpListener, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    #[test]
    fn the_xoauth2_response_is_the_documented_sasl_string() {
        assert_eq!(
            xoauth2_response("support@shop.example", "ya29.token"),
            "user=support@shop.example\u{1}auth=Bearer ya29.token\u{1}\u{1}"
        );
    }

    #[tokio::test]
    async fn tls_with_the_ca_file_logs_in_over_tls() {
        let (listener, port) = listen().await;
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut peer = Peer::new(acceptor().accept(tcp).await.unwrap());
            peer.send("* OK ready\r\n").await;
            let tag = peer.hear().await;
            peer.send(&format!("{tag} OK logged in\r\n")).await;
            peer.heard
        });
        let mut config = mailbox(port, Security::Tls);
        config.ca_file = Some(fixture("ca.pem"));
        let session = open(&config).await.unwrap();
        assert!(format!("{:?}", session.get_ref()).contains("tls"), "{:?}", session.get_ref());
        assert_eq!(server.await.unwrap(), ["A0001 LOGIN \"support\" \"secret\""]);
    }

    #[tokio::test]
    async fn tls_refuses_a_certificate_from_an_untrusted_ca_or_for_another_name() {
        let (listener, port) = listen().await;
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = acceptor().accept(tcp).await;
            }
        });
        let mut config = mailbox(port, Security::Tls);
        config.ca_file = Some(fixture("other-ca.pem"));
        let error = open(&config).await.unwrap_err().to_string();
        assert!(error.contains("TLS handshake with 127.0.0.1:"), "{error}");
        assert!(error.contains("invalid peer certificate: UnknownIssuer"), "{error}");

        config.ca_file = Some(fixture("ca.pem"));
        config.tls_server_name = Some("imap.example.com".into());
        let error = open(&config).await.unwrap_err().to_string();
        assert!(error.contains("`imap.example.com`"), "{error}");
        assert!(
            error.contains(r#"invalid peer certificate: certificate not valid for name "imap.example.com""#),
            "{error}"
        );
    }

    #[tokio::test]
    async fn starttls_upgrades_the_connection_before_the_login() {
        let (listener, port) = listen().await;
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut plain = Peer::new(tcp);
            plain.send("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n").await;
            let tag = plain.hear().await;
            plain.send(&format!("{tag} OK Begin TLS negotiation now\r\n")).await;
            let mut heard = plain.heard;
            let tcp = plain.stream.into_inner();
            let mut secure = Peer::new(acceptor().accept(tcp).await.unwrap());
            let tag = secure.hear().await;
            secure.send(&format!("{tag} OK logged in\r\n")).await;
            heard.extend(secure.heard);
            heard
        });
        let mut config = mailbox(port, Security::Starttls);
        config.ca_file = Some(fixture("ca.pem"));
        open(&config).await.unwrap();
        assert_eq!(server.await.unwrap(), ["A0001 STARTTLS", "A0001 LOGIN \"support\" \"secret\""]);
    }

    #[tokio::test]
    async fn starttls_refuses_to_log_in_when_the_server_does_not_offer_it() {
        let (listener, port) = listen().await;
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut peer = Peer::new(tcp);
            // No capabilities in the greeting: the client asks.
            peer.send("* OK ready\r\n").await;
            let tag = peer.hear().await;
            peer.send(&format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN IDLE\r\n{tag} OK done\r\n"))
                .await;
            let mut rest = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut peer.stream, &mut rest).await;
            peer.heard.push(rest);
            peer.heard
        });
        let mut config = mailbox(port, Security::Starttls);
        config.ca_file = Some(fixture("ca.pem"));
        let error = open(&config).await.unwrap_err().to_string();
        assert!(error.contains("does not offer STARTTLS"), "{error}");
        assert!(error.contains("IMAP4REV1 AUTH=PLAIN IDLE"), "{error}");
        // The client hung up after CAPABILITY: the password never crossed.
        assert_eq!(server.await.unwrap(), ["A0001 CAPABILITY", ""]);
    }

    #[tokio::test]
    async fn xoauth2_sends_the_bearer_token_read_from_the_token_file() {
        let (listener, port) = listen().await;
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut peer = Peer::new(tcp);
            peer.send("* OK ready\r\n").await;
            let tag = peer.hear().await;
            peer.send("+ \r\n").await;
            peer.hear().await;
            peer.send(&format!("{tag} OK logged in\r\n")).await;
            peer.heard
        });
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "test-token\n").unwrap();
        let mut config = mailbox(port, Security::Plain);
        config.auth = Auth::Xoauth2;
        config.oauth2_token_file = Some(token_file);
        open(&config).await.unwrap();
        // base64 of "user=support\x01auth=Bearer test-token\x01\x01"
        assert_eq!(
            server.await.unwrap(),
            ["A0001 AUTHENTICATE XOAUTH2", "dXNlcj1zdXBwb3J0AWF1dGg9QmVhcmVyIHRlc3QtdG9rZW4BAQ=="]
        );
    }

    #[tokio::test]
    async fn a_refused_xoauth2_token_is_reported_with_the_server_error_and_without_the_token() {
        let (listener, port) = listen().await;
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut peer = Peer::new(tcp);
            peer.send("* OK ready\r\n").await;
            let tag = peer.hear().await;
            peer.send("+ \r\n").await;
            peer.hear().await;
            // base64 of {"status":"401","schemes":"bearer"}
            peer.send("+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=\r\n").await;
            peer.hear().await;
            peer.send(&format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"))
                .await;
        });
        let mut config = mailbox(port, Security::Plain);
        config.auth = Auth::Xoauth2;
        config.oauth2_token = Some(Secret::from("very-secret-token"));
        let error = open(&config).await.unwrap_err().to_string();
        assert!(error.contains("refused XOAUTH2 for `support`"), "{error}");
        assert!(error.contains(r#"{"status":"401","schemes":"bearer"}"#), "{error}");
        assert!(!error.contains("very-secret-token"), "{error}");
    }
}
