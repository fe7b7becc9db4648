//! Twilio Voice webhooks: call status callbacks, `<Record>` voicemails, their transcriptions and
//! recording status callbacks.
//!
//! Twilio posts `application/x-www-form-urlencoded` parameters; the signature check is
//! [`crate::twilio::verify`]. Five kinds of request, one item each:
//!
//! 1. Call status callbacks (<https://www.twilio.com/docs/voice/api/call-resource#statuscallback>),
//!    and the Voice URL's own request (<https://www.twilio.com/docs/voice/twiml#request-parameters>):
//!    `CallSid`, `From`, `To`, `Direction`, `CallStatus`, `CallDuration`, `Timestamp`, ...
//!    `provider_message_id` = `<CallSid>/status/<CallStatus>`. Terminal statuses become call
//!    events: `completed` with `CallDuration` > 0 answered (0 s: missed), `no-answer` and
//!    `canceled` missed, `busy` busy, `failed` failed; `queued`, `initiated`, `ringing`,
//!    `in-progress` normalize to `None`.
//! 2. `<Record action>` requests (<https://www.twilio.com/docs/voice/twiml/record#attributes-action>):
//!    the call's parameters plus `RecordingUrl`, `RecordingDuration`, `RecordingSid`: a voicemail,
//!    `provider_message_id` = `<CallSid>/recording/<RecordingSid>`.
//! 3. Transcription callbacks (<https://www.twilio.com/docs/voice/twiml/record#attributes-transcribe-callback>):
//!    `TranscriptionText`, `TranscriptionStatus`, `TranscriptionSid`, `TranscriptionUrl`,
//!    `RecordingSid`, `RecordingUrl` and the call's parameters: a voicemail event with the
//!    transcript, `provider_message_id` = `<CallSid>/transcription/<TranscriptionSid>`; a
//!    `failed` transcription normalizes to `None` (the voicemail itself came as 2).
//! 4. Recording status callbacks (<https://www.twilio.com/docs/voice/api/recording#recordingstatuscallback>):
//!    `RecordingSid`, `RecordingUrl`, `RecordingStatus`, `RecordingDuration`, `CallSid`, no
//!    `From`/`To`. `provider_message_id` = `<CallSid>/recording/<RecordingSid>` when `completed`
//!    (the id of 2, so a voicemail announced both ways is one event), else
//!    `<CallSid>/recording/<RecordingSid>/<RecordingStatus>`, normalizing to `None`. The customer
//!    is not in the payload: the conversation is the one the call's terminal status callback
//!    joined (found through [`KnownEvents`]); when that was not normalized yet the record is
//!    [`NormalizeError::Malformed`], goes to the dead-letter topic and can be replayed with
//!    `omni` once the status callback is in.
//! 5. `<Dial action>` requests (<https://www.twilio.com/docs/voice/twiml/dial#action>): the call's
//!    parameters plus `DialCallStatus`, `DialCallSid`, `DialCallDuration`: how the dialled leg
//!    (the agent's phone) ended, which says better than `CallDuration` whether someone talked
//!    to the customer (`completed`/`answered` answered, `no-answer`/`canceled` missed, `busy`,
//!    `failed`); `provider_message_id` = `<CallSid>/dial/<DialCallSid>`, never the status
//!    callback's id. A call the IVR answered but no agent took shows as answered in its status
//!    callback (Twilio counts the IVR) and as missed here: point the `<Dial action>` at omni.
//!
//! Customer: `From` on inbound calls, `To` on outbound ones (`outbound-api`, `outbound-dial`);
//! business: the other. Conversation per (`voice`, account, business number, customer number);
//! a withheld caller id (`anonymous`, Twilio's `+266696687` ...) is no customer key, so such a
//! call gets a conversation of its own (keyed by its `CallSid`). The partition key is (`voice`,
//! business, customer), or (`voice`, `call`, `CallSid`) for recording status callbacks.
//!
//! Requests are classified in this order: `TranscriptionSid` present: 3; `RecordingStatus`
//! present: 4; `DialCallStatus` present: 5; `CallbackSource` = `call-progress-events` or no
//! `RecordingSid`: 1 (a status callback of a recorded call carries `RecordingUrl`
//! too, kept as the call's recording); else 2. Other TwiML requests (`<Gather>` actions) are 1
//! with a non-terminal `CallStatus`, so `None`.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use omni_proto::v1::call_data::Outcome;
use omni_proto::v1::{Body, CallData, Channel, ConversationEvent, Direction, Participant, ProviderReference, RawRecord, participant};

use crate::webhook::{self, Item, WebhookAdapter};
use crate::{KnownEvents, Normalize, NormalizeError, ids, twilio};

/// The `provider` of this adapter's raw records and its URL segment.
pub const PROVIDER: &str = "twilio-voice";
/// The channel name in event ids and conversation ids.
const ID_CHANNEL: &str = "voice";
/// The call statuses after which Twilio sends no more status callbacks.
pub const TERMINAL_STATUSES: [&str; 5] = ["completed", "no-answer", "canceled", "busy", "failed"];

/// The Twilio Voice adapter.
pub struct TwilioVoice;

/// What a request is about.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// A call status callback (or the Voice URL's request).
    Status { status: String },
    /// A `<Dial action>` request: how the dialled leg (the agent) ended, the best answer to
    /// "did someone talk to the customer"; its own id, so it never collides with the status callback.
    Dial { dial_status: String, dial_sid: String },
    /// A `<Record action>` request: a voicemail.
    Recording { recording_sid: String },
    /// A transcription callback.
    Transcription { transcription_sid: String },
    /// A recording status callback.
    RecordingStatus { recording_sid: String, status: String },
}

/// Who is on the call, from the business's side.
#[derive(Debug)]
struct Parties {
    /// The customer's address as Twilio gives it.
    customer: String,
    /// The business's number.
    business: String,
    inbound: bool,
}

/// One request's parameters, read.
#[derive(Debug)]
struct CallRequest {
    params: BTreeMap<String, String>,
    call_sid: String,
    kind: Kind,
    /// `None` when the request has no `From`/`To` (recording status callbacks).
    parties: Option<Parties>,
}

impl CallRequest {
    fn parse(payload: &[u8]) -> Result<CallRequest, String> {
        let params = webhook::parse_form(payload);
        let get = |name: &str| params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_owned);
        let call_sid = get("CallSid").ok_or("no CallSid parameter")?;
        if get("AccountSid").is_none() {
            return Err("no AccountSid parameter".to_owned());
        }
        let kind = if let Some(transcription_sid) = get("TranscriptionSid") {
            Kind::Transcription { transcription_sid }
        } else if let Some(status) = get("RecordingStatus") {
            let recording_sid = get("RecordingSid").ok_or("a recording status callback without RecordingSid")?;
            Kind::RecordingStatus { recording_sid, status }
        } else if let Some(dial_status) = get("DialCallStatus") {
            Kind::Dial {
                dial_sid: get("DialCallSid").unwrap_or_else(|| dial_status.clone()),
                dial_status,
            }
        } else {
            match get("RecordingSid") {
                // Status callbacks of recorded calls and `<Dial record>` actions carry a recording
                // too; neither is a voicemail.
                Some(recording_sid)
                    if get("CallbackSource").as_deref() != Some("call-progress-events") && get("DialCallStatus").is_none() =>
                {
                    Kind::Recording { recording_sid }
                }
                _ => Kind::Status {
                    status: get("CallStatus").ok_or("no CallStatus parameter")?,
                },
            }
        };
        let parties = match (get("From"), get("To")) {
            (Some(from), Some(to)) => {
                let inbound = !get("Direction").is_some_and(|d| d.starts_with("outbound"));
                let (customer, business) = if inbound { (from, to) } else { (to, from) };
                Some(Parties {
                    customer,
                    business,
                    inbound,
                })
            }
            _ if matches!(kind, Kind::RecordingStatus { .. } | Kind::Transcription { .. }) => None,
            _ => return Err("a call request without From or To".to_owned()),
        };
        Ok(CallRequest {
            params,
            call_sid,
            kind,
            parties,
        })
    }

    fn get(&self, name: &str) -> &str {
        self.params.get(name).map(|v| v.trim()).unwrap_or_default()
    }

    fn seconds(&self, name: &str) -> i64 {
        self.get(name).parse::<i64>().unwrap_or(0).max(0)
    }

    fn provider_message_id(&self) -> String {
        let call = &self.call_sid;
        match &self.kind {
            Kind::Status { status } => format!("{call}/status/{status}"),
            Kind::Dial { dial_sid, .. } => format!("{call}/dial/{dial_sid}"),
            Kind::Recording { recording_sid } => format!("{call}/recording/{recording_sid}"),
            Kind::Transcription { transcription_sid } => format!("{call}/transcription/{transcription_sid}"),
            Kind::RecordingStatus { recording_sid, status } if status == "completed" => format!("{call}/recording/{recording_sid}"),
            Kind::RecordingStatus { recording_sid, status } => format!("{call}/recording/{recording_sid}/{status}"),
        }
    }

    /// The customer's conversation key: the number, or the call for a withheld caller id.
    fn customer_key(&self, parties: &Parties) -> String {
        if twilio::is_withheld(&parties.customer) {
            format!("call:{}", self.call_sid)
        } else {
            twilio::call_number(&parties.customer)
        }
    }

    fn key_fields(&self) -> Vec<String> {
        match &self.parties {
            Some(parties) => vec![
                ID_CHANNEL.to_owned(),
                twilio::call_number(&parties.business),
                self.customer_key(parties),
            ],
            None => vec![ID_CHANNEL.to_owned(), "call".to_owned(), self.call_sid.clone()],
        }
    }

    /// The conversation of this call: from the parties, else the one an earlier record of the
    /// same call joined.
    fn conversation_id(&self, account: &str, known: &dyn KnownEvents) -> Result<String, NormalizeError> {
        if let Some(parties) = &self.parties {
            return Ok(ids::conversation_id(&[
                ID_CHANNEL,
                account,
                &twilio::call_number(&parties.business),
                &self.customer_key(parties),
            ]));
        }
        let mut earlier: Vec<String> = TERMINAL_STATUSES
            .iter()
            .map(|status| format!("{}/status/{status}", self.call_sid))
            .collect();
        let recording = self.get("RecordingSid");
        if matches!(self.kind, Kind::Transcription { .. }) && !recording.is_empty() {
            earlier.insert(0, format!("{}/recording/{recording}", self.call_sid));
        }
        earlier
            .iter()
            .find_map(|id| known.conversation_of(&ids::event_id(ID_CHANNEL, account, Some(id), b"")))
            .ok_or_else(|| {
                malformed(format!(
                    "no From/To, and the status callback of call {} was not seen yet; replay this record once it is",
                    self.call_sid
                ))
            })
    }
}

/// The items of a payload: always one. `accept` and `normalize` both read payloads through this.
fn items(payload: &[u8]) -> Result<(CallRequest, Vec<Item>), String> {
    let request = CallRequest::parse(payload)?;
    let item = Item {
        provider_message_id: request.provider_message_id(),
        partition_key: request.key_fields(),
    };
    Ok((request, vec![item]))
}

fn malformed(reason: impl Into<String>) -> NormalizeError {
    NormalizeError::malformed(PROVIDER, reason)
}

fn duration(seconds: i64) -> Option<prost_types::Duration> {
    (seconds > 0).then_some(prost_types::Duration { seconds, nanos: 0 })
}

impl Normalize for TwilioVoice {
    fn folder(&self) -> &'static str {
        "twilio_voice"
    }

    fn as_webhook(&self) -> Option<&dyn WebhookAdapter> {
        Some(self)
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn normalize(&self, raw: &RawRecord, known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        let index = webhook::item_index(raw, PROVIDER)?;
        let (request, items) = items(&raw.payload).map_err(malformed)?;
        let Some(item) = items.get(index) else {
            return Err(malformed(format!("no item {index} in the payload")));
        };
        let mut call = CallData {
            call_id: request.call_sid.clone(),
            ..Default::default()
        };
        match &request.kind {
            Kind::Status { status } => {
                let seconds = request.seconds("CallDuration");
                let outcome = match status.as_str() {
                    "completed" if seconds > 0 => Outcome::Answered,
                    "completed" | "no-answer" | "canceled" => Outcome::Missed,
                    "busy" => Outcome::Busy,
                    "failed" => Outcome::Failed,
                    _ => return Ok(None),
                };
                call.outcome = outcome as i32;
                call.duration = duration(seconds);
                // `Timestamp` is when the status changed, so the call started `CallDuration` before.
                call.started_at = twilio::rfc2822(request.get("Timestamp")).map(|at| webhook::unix_seconds(at - seconds));
                call.recording_reference = request.get("RecordingUrl").to_owned();
            }
            Kind::Dial { dial_status, .. } => {
                let seconds = request.seconds("DialCallDuration");
                let outcome = match dial_status.as_str() {
                    "completed" | "answered" => Outcome::Answered,
                    "no-answer" | "canceled" => Outcome::Missed,
                    "busy" => Outcome::Busy,
                    "failed" => Outcome::Failed,
                    _ => return Ok(None),
                };
                call.outcome = outcome as i32;
                call.duration = duration(seconds);
                call.recording_reference = request.get("RecordingUrl").to_owned();
            }
            Kind::Recording { .. } => {
                call.outcome = Outcome::Voicemail as i32;
                call.duration = duration(request.seconds("RecordingDuration"));
                call.recording_reference = request.get("RecordingUrl").to_owned();
            }
            Kind::Transcription { .. } => {
                if request.get("TranscriptionStatus") != "completed" {
                    return Ok(None);
                }
                call.outcome = Outcome::Voicemail as i32;
                call.recording_reference = request.get("RecordingUrl").to_owned();
                call.transcript = request.get("TranscriptionText").to_owned();
                call.transcript_reference = request.get("TranscriptionUrl").to_owned();
            }
            Kind::RecordingStatus { status, .. } => {
                if status != "completed" {
                    return Ok(None);
                }
                call.duration = duration(request.seconds("RecordingDuration"));
                call.started_at = twilio::rfc2822(request.get("RecordingStartTime")).map(webhook::unix_seconds);
                call.recording_reference = request.get("RecordingUrl").to_owned();
            }
        }
        let conversation_id = request.conversation_id(&raw.account, known)?;
        let (participants, direction, reply_to) = match &request.parties {
            Some(parties) => {
                call.from = twilio::call_number(request.get("From"));
                call.to = twilio::call_number(request.get("To"));
                let customer = Participant {
                    role: participant::Role::Customer as i32,
                    display_name: if parties.inbound {
                        request.get("CallerName").to_owned()
                    } else {
                        String::new()
                    },
                    identifiers: twilio::identifiers(&parties.customer, PROVIDER),
                };
                let direction = if parties.inbound { Direction::Inbound } else { Direction::Outbound };
                let reply_to = if twilio::is_withheld(&parties.customer) {
                    String::new()
                } else {
                    parties.customer.clone()
                };
                (vec![customer], direction, reply_to)
            }
            // The customer is not in the payload; the conversation already has them.
            None => (Vec::new(), Direction::Unspecified, String::new()),
        };
        let text = webhook::text::call(&call);
        Ok(Some(ConversationEvent {
            event_id: raw.event_id.clone(),
            conversation_id,
            channel: Channel::Voice as i32,
            direction: direction as i32,
            participants,
            body: Some(Body {
                text: text.clone(),
                html: String::new(),
                new_text: text,
            }),
            tags: webhook::text::call_tags(call.outcome()),
            occurred_at: call.started_at.or(raw.received_at),
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
            call: Some(call),
            ..Default::default()
        }))
    }
}

impl twilio::TwilioWebhook for TwilioVoice {
    const CHANNEL: Channel = Channel::Voice;
    const ID_CHANNEL: &'static str = ID_CHANNEL;
    const WEBHOOKS: &'static str = "Twilio Voice webhooks";

    fn items(body: &[u8]) -> Result<Vec<Item>, String> {
        Ok(items(body)?.1)
    }
}
