//! The HTTP half of every chat channel: one request built by the channel folder, sent.

use std::collections::BTreeMap;
use std::time::Duration;

use omni_channels::outbound::{Refusal, Request, Response};
use omni_proto::v1::ReplyAddress;

use crate::SendError;

/// One channel's configured accounts (`[sender.<channel>.<account>]`), each with its own HTTP
/// client, found by the account the customer wrote to.
pub struct Accounts<C> {
    channel: &'static str,
    accounts: BTreeMap<String, (C, reqwest::Client)>,
}

impl<C: Clone> Accounts<C> {
    /// A client per account, with the timeout `timeout_secs` reads from its config.
    pub fn new(channel: &'static str, config: &BTreeMap<String, C>, timeout_secs: impl Fn(&C) -> u64) -> Result<Self, reqwest::Error> {
        let accounts = config
            .iter()
            .map(|(name, account)| Ok((name.clone(), (account.clone(), client(timeout_secs(account))?))))
            .collect::<Result<_, reqwest::Error>>()?;
        Ok(Self { channel, accounts })
    }

    /// The config and client of the account `address` was written to; refused when none is
    /// configured (the answer cannot go out until one is, and its dead letter replayed).
    pub fn of(&self, address: &ReplyAddress) -> Result<(&C, &reqwest::Client), SendError> {
        let name = address.provider.as_ref().map(|p| p.account.as_str()).unwrap_or_default();
        self.accounts
            .get(name)
            .map(|(config, client)| (config, client))
            .ok_or_else(|| SendError::Refused(format!("no [sender.{}.{name}] account to answer with", self.channel)))
    }
}

/// A client for one account's API, with its timeout.
pub fn client(timeout_secs: u64) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_secs))
        // A connection not made in time is a connect error (tried again), not an answer lost.
        .connect_timeout(Duration::from_secs(timeout_secs.div_ceil(2).clamp(1, 10)))
        .user_agent(concat!("omni-sender/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// POSTs the request; returns what the provider answered, or why it could not be asked.
pub async fn post(client: &reqwest::Client, request: &Request, provider: &str) -> Result<Response, SendError> {
    let mut builder = if request.form {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (key, value) in request.body.as_object().into_iter().flatten() {
            form.append_pair(key, value.as_str().unwrap_or_default());
        }
        client
            .post(&request.url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form.finish())
    } else {
        client.post(&request.url).json(&request.body)
    };
    if let Some(token) = &request.bearer {
        builder = builder.bearer_auth(token);
    }
    if let Some((user, password)) = &request.basic {
        builder = builder.basic_auth(user, Some(password));
    }
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    let response = builder.send().await.map_err(|error| unsent(request, provider, error))?;
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await.map_err(|error| maybe_sent(provider, &error))?;
    Ok(Response {
        status,
        retry_after,
        body: body.to_vec(),
    })
}

/// How long the provider asks to wait: `Retry-After` in seconds, else X's `x-rate-limit-reset`
/// (the epoch second the window reopens).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok());
    if let Some(seconds) = number(reqwest::header::RETRY_AFTER.as_str()) {
        return Some(Duration::from_secs(seconds));
    }
    let reset = number("x-rate-limit-reset")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now).max(1)))
}

/// A request that failed. Not connected: tried again later, except toward the local sandbox,
/// which is not there outside `make run` (a refusal then, not an answer held forever). Connected
/// but no answer: the provider may have sent it, and the chat channels are at-most-once.
fn unsent(request: &Request, provider: &str, error: reqwest::Error) -> SendError {
    // URLs can carry tokens (Telegram's): never in a log line or a reason.
    let error = error.without_url();
    if error.is_builder() {
        return SendError::Refused(format!("{provider}: the request could not be built: {error}"));
    }
    if !error.is_connect() {
        return maybe_sent(provider, &error);
    }
    if request.url.contains(crate::config::SANDBOX) {
        return SendError::Refused(format!(
            "{provider}: this account sends to the local sandbox ({}), which does not answer: configure the account",
            crate::config::SANDBOX
        ));
    }
    SendError::Unavailable {
        reason: format!("{provider} unreachable: {error}"),
        retry_after: None,
    }
}

/// The request reached the provider, its answer did not: not sent again (at-most-once).
fn maybe_sent(provider: &str, error: &reqwest::Error) -> SendError {
    SendError::Refused(format!(
        "may not have reached the customer: {provider} took the request but its answer was lost ({error}); not sent again"
    ))
}

/// A channel's refusal as the sender's error.
pub fn refusal(refusal: Refusal) -> SendError {
    match refusal {
        Refusal::Refused(reason) => SendError::Refused(reason),
        Refusal::Later(retry_after, reason) => SendError::Unavailable { reason, retry_after },
    }
}
