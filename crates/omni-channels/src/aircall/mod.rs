//! Aircall webhooks (Aircall Public API, <https://developer.aircall.io/api-references/#webhooks>,
//! <https://developer.aircall.io/docs/webhooks-overview>).
//!
//! Every request is one JSON event: `{"resource": "call", "event": "call.ended", "timestamp": ...,
//! "token": "<webhook token>", "data": {<the call object>}}`.
//!
//! - Verification: Aircall signs nothing; the body's `token` (the webhook's token) must equal the
//!   account's `secret` (constant time). Only that field is read before the check: missing (or a
//!   body that is not JSON) 401, different 403.
//! - Items: one per `call` event; events of other resources (`user`, `number`, `contact`,
//!   `message`, ...) are acknowledged and not stored. `provider_message_id` = `<call id>/<event>`,
//!   `<call id>/call.commented/<comment id>` for a comment (the newest of `comments`), and
//!   `<call id>/voicemail` for both `call.voicemail_left` and a `call.ended` carrying the
//!   voicemail, so one voicemail is one event whichever of the two comes first.
//! - Events: `call.ended` is a call event (answered when `answered_at` is set, voicemail when
//!   `voicemail` is, else missed, with `missed_call_reason` in the text); `call.voicemail_left` a
//!   voicemail event; `call.commented` the comment's text (an agent's internal note, direction
//!   outbound, the agent as second participant). Every other call event (`call.created`,
//!   `call.ringing_on_agent`, `call.answered`, `call.tagged`, `call.hungup`, ...) normalizes to `None`.
//! - Customer: `raw_digits` with the Aircall contact's name, emails, numbers and id; business:
//!   `number.digits`; numbers keyed leniently ([`webhook::lenient_phone`]: E.164 where they
//!   parse, a national number in the line's `number.country`, else their digits, so a sample or
//!   short code still keys one conversation); agent: `user.name`, else the `participants` entry
//!   of type `user`. Conversation per (`voice`, account, business
//!   number, customer number); an anonymous caller (no number in `raw_digits`) gets a
//!   conversation per call. The partition key is (`voice`, business, customer).
//! - Recordings: `asset` (Aircall's stable, signed-in page of the recording or voicemail) when
//!   present, else `recording` / `voicemail` (direct links that expire after minutes).
//! - Tags: `call` plus the outcome's tag, and the call's Aircall tags, lowercased.

#[cfg(test)]
mod tests;

use omni_proto::v1::call_data::Outcome;
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::{
    Body, CallData, Channel, ContactIdentifier, ConversationEvent, Direction, Participant, ProviderReference, RawRecord, participant,
};
use serde::Deserialize;
use serde_json::Value;

use crate::webhook::signature::tokens_equal;
use crate::webhook::{self, Accepted, Item, Rejection, WebhookAccount, WebhookAdapter, WebhookRequest, json_str};
use crate::{KnownEvents, Normalize, NormalizeError, ids};

/// The `provider` of this adapter's raw records and its URL segment.
pub const PROVIDER: &str = "aircall";
/// The channel name in event ids and conversation ids.
const ID_CHANNEL: &str = "voice";

/// The Aircall adapter.
pub struct Aircall;

/// The body's `token`, and nothing else.
#[derive(Deserialize)]
struct TokenOnly {
    #[serde(default)]
    token: Option<String>,
}

/// A call event, read.
#[derive(Debug)]
struct CallEvent {
    event: String,
    timestamp: Option<i64>,
    call: Value,
    call_id: String,
}

fn i64_at(value: &Value, path: &[&str]) -> Option<i64> {
    let value = path.iter().try_fold(value, |v, key| v.get(key))?;
    value.as_i64().or_else(|| value.as_str()?.trim().parse().ok())
}

/// An id given as a number or a string.
fn id_at(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

impl CallEvent {
    fn inbound(&self) -> bool {
        json_str(&self.call, &["direction"]) != "outbound"
    }

    /// A number as a key ([`webhook::lenient_phone`], national numbers read in the country of
    /// the Aircall line), or `None` when it is none (`anonymous`, empty).
    fn phone(&self, raw: &str) -> Option<String> {
        let country = json_str(&self.call, &["number", "country"]);
        webhook::lenient_phone(raw, (!country.is_empty()).then_some(country))
    }

    fn customer_number(&self) -> Option<String> {
        self.phone(json_str(&self.call, &["raw_digits"]))
    }

    fn business_number(&self) -> String {
        let digits = json_str(&self.call, &["number", "digits"]);
        self.phone(digits).unwrap_or_else(|| digits.to_owned())
    }

    /// The agent's user object: `user`, else the participant of type `user` (a call whose
    /// `user` is empty may still name the agent among its participants).
    fn agent_user(&self) -> Option<&Value> {
        self.call.get("user").filter(|user| user.is_object()).or_else(|| {
            self.call
                .get("participants")?
                .as_array()?
                .iter()
                .find(|p| json_str(p, &["type"]) == "user")
        })
    }

    fn customer_key(&self) -> String {
        self.customer_number().unwrap_or_else(|| format!("call:{}", self.call_id))
    }

    fn answered(&self) -> bool {
        i64_at(&self.call, &["answered_at"]).is_some()
    }

    fn voicemail(&self) -> &str {
        json_str(&self.call, &["voicemail"])
    }

    /// The newest comment: the greatest `posted_at`, the last one on a tie.
    fn newest_comment(&self) -> Option<&Value> {
        let comments = self.call.get("comments")?.as_array()?;
        comments
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (i64_at(c, &["posted_at"]).unwrap_or(i64::MIN), *i))
            .map(|(_, c)| c)
    }

    fn provider_message_id(&self) -> String {
        let id = &self.call_id;
        match self.event.as_str() {
            "call.voicemail_left" => format!("{id}/voicemail"),
            "call.ended" if !self.answered() && !self.voicemail().is_empty() => format!("{id}/voicemail"),
            "call.commented" => match self.newest_comment().and_then(|c| id_at(c, "id")) {
                Some(comment) => format!("{id}/call.commented/{comment}"),
                None => format!("{id}/call.commented"),
            },
            event => format!("{id}/{event}"),
        }
    }

    fn conversation_id(&self, account: &str) -> String {
        ids::conversation_id(&[ID_CHANNEL, account, &self.business_number(), &self.customer_key()])
    }

    fn customer(&self) -> Participant {
        let mut identifiers = Vec::new();
        let mut push = |kind: Kind, value: String, platform: &str| {
            if !value.is_empty()
                && !identifiers
                    .iter()
                    .any(|i: &ContactIdentifier| i.kind == kind as i32 && i.value == value)
            {
                identifiers.push(ContactIdentifier {
                    kind: kind as i32,
                    value,
                    platform: platform.to_owned(),
                });
            }
        };
        if let Some(number) = self.customer_number() {
            push(Kind::Phone, number, "");
        }
        let contact = self.call.get("contact").filter(|c| c.is_object()).unwrap_or(&Value::Null);
        for email in contact.get("emails").and_then(Value::as_array).into_iter().flatten() {
            push(Kind::Email, json_str(email, &["value"]).to_owned(), "");
        }
        for number in contact.get("phone_numbers").and_then(Value::as_array).into_iter().flatten() {
            if let Some(number) = self.phone(json_str(number, &["value"])) {
                push(Kind::Phone, number, "");
            }
        }
        if let Some(id) = id_at(contact, "id") {
            push(Kind::PlatformUserId, id, PROVIDER);
        }
        let name = format!("{} {}", json_str(contact, &["first_name"]), json_str(contact, &["last_name"]));
        Participant {
            role: participant::Role::Customer as i32,
            display_name: name.trim().to_owned(),
            identifiers,
        }
    }

    /// An agent participant from a user object, when it names someone.
    fn agent(user: Option<&Value>) -> Option<Participant> {
        let user = user?;
        let name = json_str(user, &["name"]);
        let email = json_str(user, &["email"]);
        if name.is_empty() && email.is_empty() {
            return None;
        }
        Some(Participant {
            role: participant::Role::Agent as i32,
            display_name: name.to_owned(),
            identifiers: (!email.is_empty())
                .then(|| ContactIdentifier {
                    kind: Kind::Email as i32,
                    value: email.to_owned(),
                    platform: String::new(),
                })
                .into_iter()
                .collect(),
        })
    }

    fn call_data(&self, outcome: Outcome) -> CallData {
        let customer = self
            .customer_number()
            .unwrap_or_else(|| json_str(&self.call, &["raw_digits"]).to_owned());
        let business = self.business_number();
        let (from, to) = if self.inbound() {
            (customer, business)
        } else {
            (business, customer)
        };
        let direct = if outcome == Outcome::Voicemail {
            self.voicemail()
        } else {
            json_str(&self.call, &["recording"])
        };
        let asset = json_str(&self.call, &["asset"]);
        CallData {
            from,
            to,
            started_at: i64_at(&self.call, &["started_at"]).map(webhook::unix_seconds),
            duration: i64_at(&self.call, &["duration"])
                .filter(|&s| s > 0)
                .map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
            outcome: outcome as i32,
            agent: self
                .agent_user()
                .map(|user| json_str(user, &["name"]))
                .unwrap_or_default()
                .to_owned(),
            recording_reference: if asset.is_empty() { direct } else { asset }.to_owned(),
            call_id: self.call_id.clone(),
            ..Default::default()
        }
    }

    /// The call's Aircall tags, lowercased (given as objects with `name` or as strings).
    fn aircall_tags(&self) -> Vec<String> {
        let tags = self.call.get("tags").and_then(Value::as_array).into_iter().flatten();
        tags.filter_map(|tag| tag.as_str().or_else(|| tag.get("name")?.as_str()))
            .map(|name| name.trim().to_lowercase())
            .filter(|name| !name.is_empty())
            .collect()
    }
}

/// Reads a body into its call event (`None` for other resources), as `accept` and `normalize` do.
fn parse(payload: &[u8]) -> Result<Option<CallEvent>, String> {
    let body: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    let event = json_str(&body, &["event"]).to_owned();
    if event.is_empty() {
        return Err("no `event`".to_owned());
    }
    let resource = match json_str(&body, &["resource"]) {
        "" => event.split('.').next().unwrap_or_default(),
        resource => resource,
    };
    if resource != "call" {
        return Ok(None);
    }
    let call = body
        .get("data")
        .filter(|d| d.is_object())
        .ok_or("a call event without a `data` object")?
        .clone();
    let call_id = id_at(&call, "id").ok_or("a call without `id`")?;
    Ok(Some(CallEvent {
        timestamp: i64_at(&body, &["timestamp"]),
        event,
        call,
        call_id,
    }))
}

/// The items of a payload: one per call event, none for other resources.
fn items(payload: &[u8]) -> Result<(Option<CallEvent>, Vec<Item>), String> {
    let event = parse(payload)?;
    let items = event
        .iter()
        .map(|e| Item {
            provider_message_id: e.provider_message_id(),
            partition_key: vec![ID_CHANNEL.to_owned(), e.business_number(), e.customer_key()],
        })
        .collect();
    Ok((event, items))
}

fn malformed(reason: impl Into<String>) -> NormalizeError {
    NormalizeError::malformed(PROVIDER, reason)
}

impl Normalize for Aircall {
    fn folder(&self) -> &'static str {
        "aircall"
    }

    fn as_webhook(&self) -> Option<&dyn WebhookAdapter> {
        Some(self)
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn normalize(&self, raw: &RawRecord, _known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        let index = webhook::item_index(raw, PROVIDER)?;
        let (event, items) = items(&raw.payload).map_err(malformed)?;
        let (Some(event), Some(item)) = (event, items.get(index)) else {
            return Err(malformed(format!("no item {index} in the payload")));
        };
        let customer = event.customer();
        let reply_to = event.customer_number().unwrap_or_default();
        let (text, call, participants, direction, tags, occurred_at) = match event.event.as_str() {
            "call.ended" | "call.voicemail_left" => {
                let outcome = if event.event == "call.voicemail_left" {
                    Outcome::Voicemail
                } else if event.answered() {
                    Outcome::Answered
                } else if !event.voicemail().is_empty() {
                    Outcome::Voicemail
                } else {
                    Outcome::Missed
                };
                let call = event.call_data(outcome);
                let mut text = webhook::text::call(&call);
                let reason = json_str(&event.call, &["missed_call_reason"]);
                if outcome != Outcome::Answered && !reason.is_empty() {
                    text.push_str(&format!("\nReason: {}", reason.replace('_', " ")));
                }
                let mut tags = webhook::text::call_tags(outcome);
                for tag in event.aircall_tags() {
                    if !tags.contains(&tag) {
                        tags.push(tag);
                    }
                }
                let participants = std::iter::once(customer).chain(CallEvent::agent(event.agent_user())).collect();
                let direction = if event.inbound() { Direction::Inbound } else { Direction::Outbound };
                let occurred_at = call.started_at;
                (text, Some(call), participants, direction, tags, occurred_at)
            }
            "call.commented" => {
                let Some(comment) = event.newest_comment() else {
                    return Ok(None);
                };
                let content = json_str(comment, &["content"]);
                if content.is_empty() {
                    return Ok(None);
                }
                let author = comment.get("posted_by").filter(|u| u.is_object()).or_else(|| event.agent_user());
                let agent = CallEvent::agent(author);
                let text = match agent.as_ref().map(|a| a.display_name.as_str()).filter(|n| !n.is_empty()) {
                    Some(name) => format!("Call note by {name}: {content}"),
                    None => format!("Call note: {content}"),
                };
                let occurred_at = i64_at(comment, &["posted_at"]).map(webhook::unix_seconds);
                let participants = std::iter::once(customer).chain(agent).collect();
                (text, None, participants, Direction::Outbound, Vec::new(), occurred_at)
            }
            _ => return Ok(None),
        };
        Ok(Some(ConversationEvent {
            event_id: raw.event_id.clone(),
            conversation_id: event.conversation_id(&raw.account),
            channel: Channel::Voice as i32,
            direction: direction as i32,
            participants,
            body: Some(Body {
                text: text.clone(),
                html: String::new(),
                new_text: text,
            }),
            call,
            tags,
            occurred_at: occurred_at
                .or_else(|| event.timestamp.map(webhook::unix_seconds))
                .or(raw.received_at),
            received_at: raw.received_at,
            provider: Some(ProviderReference {
                provider: PROVIDER.to_owned(),
                account: raw.account.clone(),
                message_id: item.provider_message_id.clone(),
                thread_id: String::new(),
                reply_to,
                in_reply_to: String::new(),
                references: Vec::new(),
            }),
            ..Default::default()
        }))
    }
}

impl WebhookAdapter for Aircall {
    fn channel(&self) -> Channel {
        Channel::Voice
    }

    fn id_channel(&self) -> &'static str {
        ID_CHANNEL
    }

    fn development_account(&self) -> WebhookAccount {
        WebhookAccount::new("omni-dev-aircall-webhook-token")
    }

    /// None: Aircall's token travels in the body's `token` member.
    fn signature_headers(&self) -> &'static [&'static str] {
        &[]
    }

    /// The body with its `token` member set to the account's token, as Aircall sends it.
    fn sign(&self, account: &WebhookAccount, _url: &str, _content_type: &str, body: &[u8], _now: std::time::SystemTime) -> webhook::Signed {
        webhook::Signed {
            headers: Vec::new(),
            body: webhook::replace_json_string_member(body, "token", &account.secret).into_owned(),
        }
    }

    fn verify(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<(), Rejection> {
        let token = serde_json::from_slice::<TokenOnly>(request.body)
            .ok()
            .and_then(|body| body.token)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| Rejection::Unauthorized("no webhook `token` in the body".to_owned()))?;
        if tokens_equal(&token, &account.secret) {
            Ok(())
        } else {
            Err(Rejection::Forbidden("webhook `token` does not match".to_owned()))
        }
    }

    fn accept(&self, _account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Accepted, Rejection> {
        let (_, items) = items(request.body).map_err(Rejection::BadRequest)?;
        Ok(Accepted::Items(items))
    }

    fn stored_payload<'a>(&self, body: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        // The webhook token is a credential: never stored in the raw topic.
        webhook::redact_json_string_member(body, "token")
    }
}
