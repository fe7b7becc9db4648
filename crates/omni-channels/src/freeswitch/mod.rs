//! FreeSWITCH call records, posted by `mod_json_cdr` at the end of every call leg.
//!
//! Why this and not CDR files: FreeSWITCH writes JSON CDRs to disk or POSTs them, and the POST is
//! what deployments feeding other systems configure (billing, CRMs, FusionPBX-style call logs):
//! it needs no shared file system, `mod_json_cdr` retries a failed POST (`retries`, `delay`) and
//! falls back to `err-log-dir`, and omni answers only once the record is in the broker, so a
//! call is never lost between the two. (Asterisk is read from `Master.csv` because it has no such
//! POST.) Set in `autoload_configs/json_cdr.conf.xml`:
//!
//! ```xml
//! <param name="url" value="https://omni.example.com/webhooks/freeswitch/<account>"/>
//! <param name="auth-scheme" value="basic"/>
//! <param name="cred" value="<user>:<password>"/>  <!-- the account's `secret`, as written -->
//! <param name="encode" value="false"/>             <!-- or true / base64: all three are read -->
//! <param name="log-b-leg" value="false"/>          <!-- B legs are acknowledged and dropped anyway -->
//! <param name="retries" value="3"/>
//! ```
//!
//! - Verification: `mod_json_cdr` signs nothing; it sends `cred` as HTTP Basic credentials
//!   (`CURLOPT_USERPWD`), which must equal the account's `secret` (`user:password`, compared in
//!   constant time). No `Authorization`: 401; another scheme, undecodable or different: 403. Use
//!   `auth-scheme` `basic` (the module's default): curl then sends the credentials with the first
//!   request instead of waiting for a challenge. There is no signed timestamp, so no replay window:
//!   a replay is a redelivery of the same leg, and its `uuid` gives it the same event id.
//! - Bodies: with `encode` false, the CDR as `application/json`; true (the module's default),
//!   `cdr=<url-encoded CDR>` as `application/x-www-form-urlencoded`; `base64`,
//!   `cdr=<base64 CDR>` as `application/x-www-form-base64-encoded`. With `encode-values` true (the
//!   default) every value under `variables` is itself URL-encoded: they are percent-decoded (a
//!   value with a literal `%` followed by two hex digits, sent with `encode-values` false, would
//!   be decoded too). The POST's `?uuid=` query is not needed: the body has the uuid.
//! - Items: one per A leg (`provider_message_id` = `cdr/<variables.uuid>`). A B leg (its caller
//!   profile has an `originator`: the leg FreeSWITCH placed to an agent's phone) is acknowledged
//!   and not stored: the A leg tells the whole call.
//! - The call: `callflow` (an array in FreeSWITCH 1.10, repeated `callflow` members in older
//!   versions: either is read) gives the caller profile; `channel_data.direction` `inbound` is a
//!   customer calling in (customer = `caller_id_number`, business = `destination_number`),
//!   `outbound` a call the team placed (the other way round). Answered: bridged to someone
//!   (`bridge_epoch` not 0) for an inbound call, `answer_epoch` not 0 for an outbound one; a
//!   voicemail when `voicemail_message_len` is set (mod_voicemail), with `voicemail_file_path`
//!   as the recording; `USER_BUSY` is busy; anything else missed, with the hangup cause in the
//!   text. The agent is `callee_id_name` (else `callee_id_number`) of the bridged leg. Duration:
//!   `billsec` when answered, else `duration`. Started: `start_epoch`.
//! - Conversation per (`voice`, account, business number, customer number), as for Aircall;
//!   numbers in E.164 where they parse (a leading `00` read as `+`), extensions as given; the
//!   caller's name is `caller_id_name` unless it is empty, a number or FreeSWITCH's placeholder.
//!
//! Documents followed: the `mod_json_cdr` configuration reference
//! (<https://developer.signalwire.com/freeswitch/FreeSWITCH-Explained/Modules/mod_json_cdr_4653124>,
//! <https://developer.signalwire.com/freeswitch/module-reference/event-handlers/mod_json_cdr/>), the
//! channel variables catalog and "CDR and accounting variables"
//! (<https://developer.signalwire.com/freeswitch/FreeSWITCH-Explained/Dialplan/Variables-WIP/CDR-and-accounting-variables_7766283/>),
//! mod_voicemail's channel variables.

use base64::Engine;
use omni_proto::v1::call_data::Outcome;
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::{
    Body, CallData, Channel, ContactIdentifier, ConversationEvent, Direction, Participant, ProviderReference, RawRecord, participant,
};
use serde_json::Value;

use crate::webhook::signature::tokens_equal;
use crate::webhook::{self, Accepted, Item, Rejection, WebhookAccount, WebhookAdapter, WebhookRequest, json_str, phone_number};
use crate::{KnownEvents, Normalize, NormalizeError, ids};

/// The `provider` of this adapter's raw records and its URL segment.
pub const PROVIDER: &str = "freeswitch";
/// The channel name in event ids and conversation ids.
const ID_CHANNEL: &str = "voice";
/// `Content-Type` of a body posted with `encode` set to `base64`.
const BASE64_FORM: &str = "application/x-www-form-base64-encoded";

/// The FreeSWITCH `mod_json_cdr` adapter.
pub struct FreeSwitch;

/// One leg's CDR, read.
#[derive(Debug)]
struct Cdr {
    variables: Value,
    profile: Value,
    outbound: bool,
    uuid: String,
    /// The customer's number (E.164 where it parses) and the business's, whichever called.
    customer: String,
    business: String,
}

/// The CDR document inside a body, by the body's content type.
fn document(content_type: &str, body: &[u8]) -> Result<Value, String> {
    let json = match webhook::media_type(content_type).as_str() {
        "application/x-www-form-urlencoded" => form_cdr(body)?.into_bytes(),
        BASE64_FORM => {
            let encoded = body.strip_prefix(b"cdr=").ok_or("a base64 body without `cdr=`")?;
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim_ascii())
                .map_err(|error| format!("`cdr` is not base64: {error}"))?
        }
        _ => body.to_vec(),
    };
    serde_json::from_slice(&json).map_err(|error| format!("not a JSON CDR: {error}"))
}

fn form_cdr(body: &[u8]) -> Result<String, String> {
    form_urlencoded::parse(body)
        .find(|(name, _)| name == "cdr")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| "a form body without `cdr`".to_owned())
}

impl Cdr {
    fn parse(content_type: &str, body: &[u8]) -> Result<Option<Cdr>, String> {
        let document = document(content_type, body)?;
        let variables = document
            .get("variables")
            .filter(|v| v.is_object())
            .ok_or("a CDR without `variables`")?;
        let callflow = match document.get("callflow") {
            Some(Value::Array(flows)) => flows.first(),
            other => other,
        };
        let profile = callflow
            .and_then(|flow| flow.get("caller_profile"))
            .filter(|p| p.is_object())
            .ok_or("a CDR without `callflow.caller_profile`")?;
        if profile.get("originator").is_some() {
            return Ok(None);
        }
        let caller = [json_str(profile, &["caller_id_number"]), json_str(profile, &["ani"])]
            .into_iter()
            .find(|number| !number.is_empty())
            .map(phone_number)
            .unwrap_or_default();
        let dialled = phone_number(json_str(profile, &["destination_number"]));
        let outbound = json_str(&document, &["channel_data", "direction"]) == "outbound";
        let (customer, business) = if outbound { (dialled, caller) } else { (caller, dialled) };
        let mut cdr = Cdr {
            variables: variables.clone(),
            profile: profile.clone(),
            outbound,
            uuid: String::new(),
            customer,
            business,
        };
        cdr.uuid = [cdr.variable("uuid"), json_str(&cdr.profile, &["uuid"]).to_owned()]
            .into_iter()
            .find(|uuid| !uuid.is_empty())
            .ok_or("a CDR without a `uuid`")?;
        Ok(Some(cdr))
    }

    /// A channel variable, percent-decoded (`encode-values`), trimmed; empty when absent.
    fn variable(&self, name: &str) -> String {
        let raw = json_str(&self.variables, &[name]);
        percent_encoding::percent_decode_str(raw).decode_utf8_lossy().trim().to_owned()
    }

    fn epoch(&self, name: &str) -> Option<i64> {
        self.variable(name).parse().ok().filter(|&seconds: &i64| seconds > 0)
    }

    /// The customer's number, or the call when it has none (an anonymous caller).
    fn customer_key(&self) -> String {
        let anonymous = self.customer.is_empty() || self.customer.eq_ignore_ascii_case("anonymous");
        if anonymous {
            format!("call:{}", self.uuid)
        } else {
            self.customer.clone()
        }
    }

    fn outcome(&self) -> Outcome {
        if !self.variable("voicemail_message_len").is_empty() {
            return Outcome::Voicemail;
        }
        let answered = if self.outbound {
            self.epoch("answer_epoch")
        } else {
            self.epoch("bridge_epoch")
        };
        match (answered, self.variable("hangup_cause").as_str()) {
            (Some(_), _) => Outcome::Answered,
            (None, "USER_BUSY") => Outcome::Busy,
            (None, _) => Outcome::Missed,
        }
    }

    fn agent(&self) -> String {
        [self.variable("callee_id_name"), self.variable("callee_id_number")]
            .into_iter()
            .find(|name| !name.is_empty())
            .unwrap_or_default()
    }

    /// `caller_id_name` when it names someone: not empty, not a number, not a placeholder.
    fn customer_name(&self) -> String {
        if self.outbound {
            return String::new();
        }
        let name = json_str(&self.profile, &["caller_id_name"]);
        let placeholder = ["", "unknown", "anonymous", "outbound call"].contains(&name.to_ascii_lowercase().as_str());
        let number = name.chars().all(|c| c.is_ascii_digit() || "+-() ".contains(c));
        if placeholder || number { String::new() } else { name.to_owned() }
    }

    fn call_data(&self, outcome: Outcome) -> CallData {
        let (from, to) = if self.outbound {
            (self.business.clone(), self.customer.clone())
        } else {
            (self.customer.clone(), self.business.clone())
        };
        let seconds = if outcome == Outcome::Answered {
            self.variable("billsec")
        } else {
            self.variable("duration")
        };
        CallData {
            from,
            to,
            started_at: self.epoch("start_epoch").map(webhook::unix_seconds),
            duration: seconds
                .parse()
                .ok()
                .filter(|&s: &i64| s > 0)
                .map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
            outcome: outcome as i32,
            agent: if outcome == Outcome::Answered {
                self.agent()
            } else {
                String::new()
            },
            recording_reference: if outcome == Outcome::Voicemail {
                self.variable("voicemail_file_path")
            } else {
                String::new()
            },
            call_id: self.uuid.clone(),
            ..Default::default()
        }
    }

    fn item(&self) -> Item {
        Item {
            provider_message_id: format!("cdr/{}", self.uuid),
            partition_key: vec![ID_CHANNEL.to_owned(), self.business.clone(), self.customer_key()],
        }
    }
}

fn malformed(reason: impl Into<String>) -> NormalizeError {
    NormalizeError::malformed(PROVIDER, reason)
}

/// The hangup cause as words (`ORIGINATOR_CANCEL` -> `originator cancel`).
fn cause_words(cause: &str) -> String {
    cause.to_ascii_lowercase().replace('_', " ")
}

impl Normalize for FreeSwitch {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn folder(&self) -> &'static str {
        "freeswitch"
    }

    fn as_webhook(&self) -> Option<&dyn WebhookAdapter> {
        Some(self)
    }

    fn normalize(&self, raw: &RawRecord, _known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        let index = webhook::item_index(raw, PROVIDER)?;
        let cdr = Cdr::parse(&raw.content_type, &raw.payload)
            .map_err(malformed)?
            .filter(|_| index == 0)
            .ok_or_else(|| malformed(format!("no item {index} in the CDR")))?;
        let outcome = cdr.outcome();
        let call = cdr.call_data(outcome);
        let mut text = webhook::text::call(&call);
        let cause = cdr.variable("hangup_cause");
        if !matches!(outcome, Outcome::Answered | Outcome::Voicemail) && !cause.is_empty() {
            text.push_str(&format!("\nReason: {}", cause_words(&cause)));
        }
        let customer_number = cdr.customer.clone();
        let customer = Participant {
            role: participant::Role::Customer as i32,
            display_name: cdr.customer_name(),
            identifiers: customer_number
                .starts_with('+')
                .then(|| ContactIdentifier {
                    kind: Kind::Phone as i32,
                    value: customer_number.clone(),
                    platform: String::new(),
                })
                .into_iter()
                .collect(),
        };
        let agent = (!call.agent.is_empty()).then(|| Participant {
            role: participant::Role::Agent as i32,
            display_name: call.agent.clone(),
            identifiers: Vec::new(),
        });
        let item = cdr.item();
        Ok(Some(ConversationEvent {
            event_id: raw.event_id.clone(),
            conversation_id: ids::conversation_id(&[ID_CHANNEL, &raw.account, &item.partition_key[1], &item.partition_key[2]]),
            channel: Channel::Voice as i32,
            direction: if cdr.outbound { Direction::Outbound } else { Direction::Inbound } as i32,
            participants: std::iter::once(customer).chain(agent).collect(),
            body: Some(Body {
                text: text.clone(),
                html: String::new(),
                new_text: text,
            }),
            tags: webhook::text::call_tags(outcome),
            occurred_at: call.started_at.or(raw.received_at),
            received_at: raw.received_at,
            call: Some(call),
            provider: Some(ProviderReference {
                provider: PROVIDER.to_owned(),
                account: raw.account.clone(),
                message_id: item.provider_message_id,
                thread_id: String::new(),
                reply_to: if customer_number.starts_with('+') {
                    customer_number
                } else {
                    String::new()
                },
                in_reply_to: String::new(),
                references: Vec::new(),
            }),
            ..Default::default()
        }))
    }
}

impl WebhookAdapter for FreeSwitch {
    fn channel(&self) -> Channel {
        Channel::Voice
    }

    fn id_channel(&self) -> &'static str {
        ID_CHANNEL
    }

    /// `cred` must be `user:password`, the password at least 8 characters.
    fn check_account(&self, account: &WebhookAccount, _loopback: bool) -> Vec<String> {
        let mut problems = Vec::new();
        match account.secret.split_once(':') {
            Some((user, password)) if !user.is_empty() && password.chars().count() >= 8 => {}
            _ => problems.push("secret must be mod_json_cdr's `cred`: `user:password`, the password at least 8 characters".to_owned()),
        }
        if let Err(error) = account.settings::<webhook::NoSettings>() {
            problems.push(error);
        }
        problems
    }

    fn development_account(&self) -> WebhookAccount {
        WebhookAccount::new("omni-dev-freeswitch:omni-dev-json-cdr")
    }

    fn signature_headers(&self) -> &'static [&'static str] {
        &["authorization"]
    }

    /// HTTP Basic with the account's `user:password`, as curl sends `cred`.
    fn sign(&self, account: &WebhookAccount, _url: &str, _content_type: &str, body: &[u8], _now: std::time::SystemTime) -> webhook::Signed {
        let credentials = base64::engine::general_purpose::STANDARD.encode(account.secret.as_bytes());
        webhook::Signed {
            headers: vec![("authorization", format!("Basic {credentials}"))],
            body: body.to_vec(),
        }
    }

    fn verify(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<(), Rejection> {
        let header = request
            .header("authorization")
            .ok_or_else(|| Rejection::Unauthorized("Authorization (HTTP Basic, mod_json_cdr `cred`) is missing".to_owned()))?;
        let forbidden = || Rejection::Forbidden("the HTTP Basic credentials do not match".to_owned());
        let (scheme, encoded) = header.trim().split_once(' ').ok_or_else(forbidden)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(Rejection::Forbidden(format!("Authorization scheme `{scheme}` is not Basic")));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(forbidden)?;
        if tokens_equal(&decoded, &account.secret) {
            Ok(())
        } else {
            Err(forbidden())
        }
    }

    fn accept(&self, _account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Accepted, Rejection> {
        let content_type = request.header("content-type").unwrap_or_default();
        let cdr = Cdr::parse(content_type, request.body).map_err(Rejection::BadRequest)?;
        Ok(Accepted::Items(cdr.map(|cdr| cdr.item()).into_iter().collect()))
    }
}

#[cfg(test)]
mod tests;
