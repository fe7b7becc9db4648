//! WhatsApp Cloud API webhooks (`object: whatsapp_business_account`, field `messages`).
//!
//! Documents followed (Meta's "messages webhook reference" and its per-type pages):
//! <https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages>,
//! `…/messages/{text,image,audio,video,document,sticker,location,contacts,interactive,button,reaction,unsupported,status}`.
//! Signature and handshake: [`crate::meta`].
//!
//! Items: every `messages[]` and every `statuses[]` entry of every `changes[]` whose `field` is
//! `messages`, in payload order (other fields, such as template or account updates, and the
//! value-level `errors[]` are acknowledged and not stored).
//!
//! | item | provider id | normalized to |
//! |---|---|---|
//! | message `text` | `id` (the wamid) | the text |
//! | `image`, `audio`, `video`, `document`, `sticker` | `id` | an attachment referencing the media id (fetched later with the Graph API, never here); caption as text, else "Sent image/jpeg: name" |
//! | `location` | `id` | `locations` + a readable line |
//! | `contacts` | `id` | `contacts` + a readable line per card |
//! | `interactive` (`button_reply`, `list_reply`) | `id` | the tapped title as text; `context.id` (the message with the buttons) as `in_reply_to` |
//! | `button` (template quick reply) | `id` | the button text (else its payload) |
//! | `reaction` with an emoji | `id` | "Reacted 👍 to a message", `in_reply_to` the message (a 👍 often answers "did this solve it?") |
//! | `reaction` removed (no emoji) | `id` | `None` |
//! | `system` (the customer changed number) | `id` | its body |
//! | `unsupported` and any unknown type | `id` | an event saying what was sent: a customer's message is never dropped silently |
//! | status `sent`, `delivered`, `read` | `<status id>/<status>` | `None` |
//! | status `failed` | `<status id>/failed` | an event in the customer's conversation, with a `System` participant "WhatsApp", saying which of our messages did not arrive and why (a closed 24-hour window, a number not on WhatsApp): the agent must know the customer never got the reply |
//!
//! `context.id` (a quoted message) is always `in_reply_to`. The customer is the `wa_id` (its E.164
//! phone number and the WhatsApp id) with the profile name; one conversation per (whatsapp,
//! account, business `phone_number_id`, `wa_id`); replies go to the `wa_id` (`reply_to`), from the
//! business number (`thread_id`): see [`send`].

pub mod media;
pub mod send;

use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::delivery_receipt as receipt;
use omni_proto::v1::participant::Role;
use omni_proto::v1::{
    Attachment, Body, Channel, ContactIdentifier, ConversationEvent, DeliveryReceipt, Direction, Location, Participant, ProviderReference,
    RawRecord, SharedContact, attachment,
};
use serde::{Deserialize, Deserializer};

use crate::meta::Text;
use crate::webhook::{self, Accepted, Item, Rejection, Reply, WebhookAccount, WebhookAdapter, WebhookRequest};
use crate::{KnownEvents, Normalize, NormalizeError, ids};

/// The `provider` of this adapter's raw records and its URL segment.
pub const PROVIDER: &str = "whatsapp";
/// The channel name in ids.
const ID_CHANNEL: &str = "whatsapp";
/// The webhook `object` of the Cloud API.
const OBJECT: &str = "whatsapp_business_account";

/// The WhatsApp Cloud API adapter.
pub struct WhatsApp;

// ---------------------------------------------------------------------------------------------
// Payload shapes (only the fields read; everything else is ignored).

#[derive(Debug, Deserialize)]
struct Envelope {
    object: String,
    entry: Option<Vec<Entry>>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
struct Change {
    #[serde(default)]
    field: String,
    /// Read as [`Value`] only for the `messages` field; other fields have other shapes.
    #[serde(default)]
    value: serde_json::Value,
}

#[derive(Debug, Default, Deserialize)]
struct Value {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    statuses: Vec<Status>,
}

#[derive(Debug, Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    phone_number_id: Text,
}

#[derive(Debug, Deserialize)]
struct Contact {
    #[serde(default)]
    profile: Profile,
    #[serde(default)]
    wa_id: Text,
}

#[derive(Debug, Default, Deserialize)]
struct Profile {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    from: Text,
    #[serde(default)]
    id: String,
    #[serde(default)]
    timestamp: Text,
    #[serde(default, rename = "type")]
    kind: String,
    context: Option<Context>,
    text: Option<TextBody>,
    image: Option<Media>,
    audio: Option<Media>,
    video: Option<Media>,
    document: Option<Media>,
    sticker: Option<Media>,
    location: Option<WaLocation>,
    contacts: Option<Vec<Card>>,
    interactive: Option<Interactive>,
    button: Option<Button>,
    reaction: Option<Reaction>,
    system: Option<System>,
    unsupported: Option<Unsupported>,
    #[serde(default)]
    errors: Vec<Error>,
}

#[derive(Debug, Deserialize)]
struct Context {
    #[serde(default)]
    id: String,
}

#[derive(Debug, Deserialize)]
struct TextBody {
    #[serde(default)]
    body: String,
}

#[derive(Debug, Deserialize)]
struct Media {
    #[serde(default)]
    id: Text,
    #[serde(default)]
    url: String,
    #[serde(default)]
    mime_type: String,
    #[serde(default)]
    sha256: String,
    #[serde(default)]
    caption: String,
    #[serde(default)]
    filename: String,
}

#[derive(Debug, Deserialize)]
struct WaLocation {
    #[serde(deserialize_with = "number")]
    latitude: f64,
    #[serde(deserialize_with = "number")]
    longitude: f64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    url: String,
}

#[derive(Debug, Deserialize)]
struct Card {
    #[serde(default)]
    name: CardName,
    #[serde(default)]
    phones: Vec<CardPhone>,
    #[serde(default)]
    emails: Vec<CardEmail>,
    org: Option<Org>,
}

#[derive(Debug, Default, Deserialize)]
struct CardName {
    #[serde(default)]
    formatted_name: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
}

#[derive(Debug, Deserialize)]
struct CardPhone {
    #[serde(default)]
    phone: String,
    #[serde(default)]
    wa_id: Text,
}

#[derive(Debug, Deserialize)]
struct CardEmail {
    #[serde(default)]
    email: String,
}

#[derive(Debug, Deserialize)]
struct Org {
    #[serde(default)]
    company: String,
}

#[derive(Debug, Deserialize)]
struct Interactive {
    #[serde(default, rename = "type")]
    kind: String,
    button_reply: Option<Choice>,
    list_reply: Option<Choice>,
    nfm_reply: Option<FlowReply>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    title: String,
}

#[derive(Debug, Deserialize)]
struct FlowReply {
    #[serde(default)]
    name: String,
    #[serde(default)]
    response_json: String,
}

#[derive(Debug, Deserialize)]
struct Button {
    #[serde(default)]
    text: String,
    #[serde(default)]
    payload: String,
}

#[derive(Debug, Deserialize)]
struct Reaction {
    #[serde(default)]
    message_id: String,
    #[serde(default)]
    emoji: String,
}

#[derive(Debug, Deserialize)]
struct System {
    #[serde(default)]
    body: String,
}

#[derive(Debug, Deserialize)]
struct Unsupported {
    #[serde(default, rename = "type")]
    kind: Text,
}

#[derive(Debug, Deserialize)]
struct Error {
    #[serde(default)]
    code: Text,
    #[serde(default)]
    title: String,
    error_data: Option<ErrorData>,
}

#[derive(Debug, Deserialize)]
struct ErrorData {
    #[serde(default)]
    details: String,
}

#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    timestamp: Text,
    #[serde(default)]
    recipient_id: Text,
    #[serde(default)]
    errors: Vec<Error>,
}

/// A latitude or longitude, as a number (or, leniently, a numeric string).
fn number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Number(number) => number.as_f64().ok_or_else(|| serde::de::Error::custom("not a coordinate")),
        serde_json::Value::String(text) => text.trim().parse().map_err(serde::de::Error::custom),
        other => Err(serde::de::Error::custom(format!("expected a coordinate, got {other}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Items.

enum What<'a> {
    Message(&'a Message),
    Status(&'a Status),
}

/// One message or status with the ids derived from it.
struct Found<'a> {
    value: &'a Value,
    what: What<'a>,
    /// The business phone number id.
    business: String,
    /// The customer's `wa_id`.
    customer: String,
    provider_message_id: String,
}

/// The `messages` values of a payload, in order.
fn values(payload: &[u8]) -> Result<Vec<Value>, String> {
    let envelope: Envelope = serde_json::from_slice(payload).map_err(|error| format!("not a WhatsApp webhook body: {error}"))?;
    if envelope.object != OBJECT {
        return Err(format!("webhook object is `{}`, expected `{OBJECT}`", envelope.object));
    }
    let Some(entries) = envelope.entry else {
        return Err("webhook body has no `entry`".to_owned());
    };
    let mut values = Vec::new();
    for change in entries.into_iter().flat_map(|entry| entry.changes) {
        if change.field == "messages" {
            values.push(Value::deserialize(change.value).map_err(|error| format!("a `messages` change is not readable: {error}"))?);
        }
    }
    Ok(values)
}

/// Every message and status, in payload order, with its ids. `accept` and `normalize` both use
/// this, so an item index means the same item in both.
fn found(values: &[Value]) -> Result<Vec<Found<'_>>, String> {
    let mut found = Vec::new();
    for value in values {
        let business = value.metadata.phone_number_id.0.clone();
        if business.is_empty() && !(value.messages.is_empty() && value.statuses.is_empty()) {
            return Err("a `messages` change has no metadata.phone_number_id".to_owned());
        }
        for message in &value.messages {
            if message.id.is_empty() {
                return Err("a message has no `id`".to_owned());
            }
            let customer = sender(value, message)
                .map(|c| c.wa_id.0.clone())
                .unwrap_or_else(|| message.from.0.clone());
            if customer.is_empty() {
                return Err("a message has neither `from` nor a contact `wa_id`".to_owned());
            }
            found.push(Found {
                value,
                what: What::Message(message),
                business: business.clone(),
                customer,
                provider_message_id: message.id.clone(),
            });
        }
        for status in &value.statuses {
            if status.id.is_empty() || status.recipient_id.0.is_empty() {
                return Err("a status has no `id` or `recipient_id`".to_owned());
            }
            found.push(Found {
                value,
                what: What::Status(status),
                business: business.clone(),
                customer: status.recipient_id.0.clone(),
                provider_message_id: format!("{}/{}", status.id, status.status),
            });
        }
    }
    Ok(found)
}

/// The contact entry of a message's sender: the one whose `wa_id` is `from`, else the only one.
fn sender<'a>(value: &'a Value, message: &Message) -> Option<&'a Contact> {
    let with_id = value.contacts.iter().filter(|c| !c.wa_id.0.is_empty());
    with_id
        .clone()
        .find(|c| c.wa_id.0 == message.from.0 || c.wa_id.0 == message.from.0.trim_start_matches('+'))
        .or_else(|| {
            if with_id.clone().count() == 1 {
                with_id.clone().next()
            } else {
                None
            }
        })
}

/// The partition key fields: channel, business, customer. `accept` is not told the account's
/// name, and the business phone number already belongs to one account.
fn key_fields(found: &Found<'_>) -> Vec<String> {
    vec![ID_CHANNEL.to_owned(), found.business.clone(), found.customer.clone()]
}

fn malformed(reason: impl Into<String>) -> NormalizeError {
    NormalizeError::malformed(PROVIDER, reason)
}

// ---------------------------------------------------------------------------------------------
// Events.

/// What a message says.
#[derive(Default)]
struct Content {
    text: String,
    attachments: Vec<Attachment>,
    locations: Vec<Location>,
    contacts: Vec<SharedContact>,
    in_reply_to: String,
}

/// The customer: the E.164 number (when `wa_id` is one) and the WhatsApp id.
fn customer(wa_id: &str, name: &str) -> Participant {
    let mut identifiers = Vec::new();
    let phone = webhook::e164(wa_id);
    if phone.starts_with('+') {
        identifiers.push(ContactIdentifier {
            kind: Kind::Phone as i32,
            value: phone,
            platform: String::new(),
        });
    }
    identifiers.push(ContactIdentifier {
        kind: Kind::PlatformUserId as i32,
        value: wa_id.to_owned(),
        platform: PROVIDER.to_owned(),
    });
    Participant {
        role: Role::Customer as i32,
        display_name: name.to_owned(),
        identifiers,
    }
}

/// A media message's attachment and readable text (its caption, else "Sent image/jpeg: name").
fn media(media: &Media, content: &mut Content) {
    let reference = if media.id.0.is_empty() {
        media.url.clone()
    } else {
        media.id.0.clone()
    };
    let file = Attachment {
        name: media.filename.clone(),
        media_type: media.mime_type.clone(),
        size_bytes: 0,
        sha256: sha256_hex(&media.sha256),
        content: Some(attachment::Content::Reference(reference)),
        inline: false,
        content_id: String::new(),
    };
    content.text = if media.caption.trim().is_empty() {
        webhook::text::attachment(&file)
    } else {
        media.caption.clone()
    };
    content.attachments.push(file);
}

/// WhatsApp's media `sha256` as lowercase hex: it is documented as a hash and seen both as hex
/// and as base64; anything else is dropped (empty = unknown).
fn sha256_hex(given: &str) -> String {
    let given = given.trim();
    if given.len() == 64 && given.bytes().all(|b| b.is_ascii_hexdigit()) {
        return given.to_ascii_lowercase();
    }
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(given) {
        Ok(bytes) if bytes.len() == 32 => hex::encode(bytes),
        _ => String::new(),
    }
}

fn shared_contact(card: &Card) -> SharedContact {
    let display_name = if card.name.formatted_name.is_empty() {
        format!("{} {}", card.name.first_name, card.name.last_name).trim().to_owned()
    } else {
        card.name.formatted_name.clone()
    };
    let mut identifiers = Vec::new();
    for phone in &card.phones {
        let number = if phone.phone.is_empty() { &phone.wa_id.0 } else { &phone.phone };
        if !number.is_empty() {
            identifiers.push(ContactIdentifier {
                kind: Kind::Phone as i32,
                value: webhook::e164(number),
                platform: String::new(),
            });
        }
        if !phone.wa_id.0.is_empty() {
            identifiers.push(ContactIdentifier {
                kind: Kind::PlatformUserId as i32,
                value: phone.wa_id.0.clone(),
                platform: PROVIDER.to_owned(),
            });
        }
    }
    for email in card.emails.iter().filter(|e| !e.email.is_empty()) {
        identifiers.push(ContactIdentifier {
            kind: Kind::Email as i32,
            value: email.email.clone(),
            platform: String::new(),
        });
    }
    SharedContact {
        display_name,
        identifiers,
        organization: card.org.as_ref().map(|o| o.company.clone()).unwrap_or_default(),
    }
}

/// "Message type unknown (131051): Message type is currently not supported." from `errors[]`.
fn describe(errors: &[Error]) -> String {
    errors
        .iter()
        .map(|error| {
            let mut text = error.title.clone();
            if !error.code.0.is_empty() {
                text.push_str(&format!(" ({})", error.code.0));
            }
            if let Some(details) = error.error_data.as_ref().map(|d| d.details.trim()).filter(|d| !d.is_empty()) {
                text.push_str(&format!(": {details}"));
            }
            text.trim().to_owned()
        })
        .filter(|text| !text.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a message says, or `None` for a removed reaction.
fn message_content(message: &Message) -> Option<Content> {
    let mut content = Content {
        in_reply_to: message.context.as_ref().map(|c| c.id.clone()).unwrap_or_default(),
        ..Default::default()
    };
    let kind = message.kind.as_str();
    let same_named_media = match kind {
        "image" => message.image.as_ref(),
        "audio" => message.audio.as_ref(),
        "video" => message.video.as_ref(),
        "document" => message.document.as_ref(),
        "sticker" => message.sticker.as_ref(),
        _ => None,
    };
    match (kind, message) {
        ("text", Message { text: Some(text), .. }) => content.text = text.body.clone(),
        (_, _) if let Some(found) = same_named_media => media(found, &mut content),
        (
            "location",
            Message {
                location: Some(location), ..
            },
        ) => {
            let location = Location {
                latitude: location.latitude,
                longitude: location.longitude,
                name: location.name.clone(),
                address: location.address.clone(),
                url: location.url.clone(),
            };
            content.text = webhook::text::location(&location);
            content.locations.push(location);
        }
        ("contacts", Message { contacts: Some(cards), .. }) if !cards.is_empty() => {
            content.contacts = cards.iter().map(shared_contact).collect();
            content.text = content.contacts.iter().map(webhook::text::contact).collect::<Vec<_>>().join("\n");
        }
        (
            "interactive",
            Message {
                interactive: Some(interactive),
                ..
            },
        ) => {
            content.text = match interactive {
                Interactive {
                    button_reply: Some(choice),
                    ..
                }
                | Interactive {
                    list_reply: Some(choice), ..
                } => choice.title.clone(),
                Interactive { nfm_reply: Some(flow), .. } => {
                    format!("Submitted the form {}: {}", flow.name, flow.response_json).replace("  ", " ")
                }
                _ => format!("Answered an interactive message ({}).", interactive.kind),
            };
        }
        ("button", Message { button: Some(button), .. }) => {
            content.text = if button.text.is_empty() {
                button.payload.clone()
            } else {
                button.text.clone()
            };
        }
        (
            "reaction",
            Message {
                reaction: Some(reaction), ..
            },
        ) => {
            if reaction.emoji.is_empty() {
                return None;
            }
            content.text = format!("Reacted {} to a message", reaction.emoji);
            content.in_reply_to = reaction.message_id.clone();
        }
        ("system", Message { system: Some(system), .. }) if !system.body.is_empty() => content.text = system.body.clone(),
        ("unsupported", _) => {
            let what = message
                .unsupported
                .as_ref()
                .map(|u| u.kind.0.as_str())
                .filter(|k| !k.is_empty())
                .unwrap_or("unknown");
            content.text = format!("Sent a message of a type WhatsApp does not pass on to businesses ({what}).");
            let errors = describe(&message.errors);
            if !errors.is_empty() {
                content.text.push_str(&format!(" WhatsApp says: {errors}"));
            }
        }
        _ => {
            content.text = format!("Sent a WhatsApp message of type `{kind}` that cannot be shown here.");
        }
    }
    if content.text.trim().is_empty() {
        content.text = format!("Sent an empty WhatsApp message of type `{kind}`.");
    }
    Some(content)
}

fn event(
    raw: &RawRecord,
    found: &Found<'_>,
    participants: Vec<Participant>,
    content: Content,
    timestamp: &Text,
    message_id: &str,
) -> ConversationEvent {
    ConversationEvent {
        event_id: raw.event_id.clone(),
        conversation_id: ids::conversation_id(&[ID_CHANNEL, &raw.account, &found.business, &found.customer]),
        channel: Channel::Whatsapp as i32,
        direction: Direction::Inbound as i32,
        participants,
        body: Some(Body {
            text: content.text.clone(),
            html: String::new(),
            new_text: content.text,
        }),
        attachments: content.attachments,
        occurred_at: timestamp.integer().map(crate::meta::timestamp).or(raw.received_at),
        received_at: raw.received_at,
        provider: Some(ProviderReference {
            provider: PROVIDER.to_owned(),
            account: raw.account.clone(),
            message_id: message_id.to_owned(),
            // The business number the customer wrote to: the answer is sent from it.
            thread_id: found.business.clone(),
            reply_to: found.customer.clone(),
            in_reply_to: content.in_reply_to,
            references: Vec::new(),
        }),
        locations: content.locations,
        contacts: content.contacts,
        ..Default::default()
    }
}

fn normalize_found(raw: &RawRecord, found: &Found<'_>) -> Option<ConversationEvent> {
    match found.what {
        What::Message(message) => {
            let content = message_content(message)?;
            let name = sender(found.value, message).map(|c| c.profile.name.as_str()).unwrap_or_default();
            Some(event(
                raw,
                found,
                vec![customer(&found.customer, name)],
                content,
                &message.timestamp,
                &message.id,
            ))
        }
        What::Status(status) if status.status == "failed" => {
            let to = webhook::e164(&found.customer);
            let mut text = format!("WhatsApp could not deliver our message {} to {to}", status.id);
            let errors = describe(&status.errors);
            text.push_str(&if errors.is_empty() { ".".to_owned() } else { format!(": {errors}") });
            let system = Participant {
                role: Role::System as i32,
                display_name: "WhatsApp".to_owned(),
                identifiers: Vec::new(),
            };
            let content = Content {
                text,
                in_reply_to: status.id.clone(),
                ..Default::default()
            };
            Some(event(
                raw,
                found,
                vec![customer(&found.customer, ""), system],
                content,
                &status.timestamp,
                &found.provider_message_id,
            ))
        }
        // sent, delivered, read (and any other progress state): receipts.
        What::Status(_) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The traits.

impl Normalize for WhatsApp {
    fn folder(&self) -> &'static str {
        "whatsapp"
    }

    fn as_webhook(&self) -> Option<&dyn WebhookAdapter> {
        Some(self)
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn receipt(&self, raw: &RawRecord) -> Result<Option<DeliveryReceipt>, NormalizeError> {
        let index = webhook::item_index(raw, PROVIDER)?;
        let values = values(&raw.payload).map_err(malformed)?;
        let found = found(&values).map_err(malformed)?;
        let Some(Found {
            what: What::Status(status),
            business,
            customer,
            ..
        }) = found.get(index)
        else {
            return Ok(None);
        };
        let step = match status.status.as_str() {
            "sent" => receipt::Status::Sent,
            "delivered" => receipt::Status::Delivered,
            "read" => receipt::Status::Read,
            "failed" => receipt::Status::Failed,
            _ => return Ok(None),
        };
        Ok(Some(DeliveryReceipt {
            receipt_id: ids::receipt_id(PROVIDER, &raw.account, &status.id, &status.status),
            conversation_id: ids::conversation_id(&[ID_CHANNEL, &raw.account, business, customer]),
            provider: PROVIDER.to_owned(),
            account: raw.account.clone(),
            provider_message_id: status.id.clone(),
            status: step as i32,
            reason: describe(&status.errors),
            occurred_at: status.timestamp.0.parse().ok().map(webhook::unix_seconds),
        }))
    }

    fn normalize(&self, raw: &RawRecord, _known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        let index = webhook::item_index(raw, PROVIDER)?;
        let values = values(&raw.payload).map_err(malformed)?;
        let found = found(&values).map_err(malformed)?;
        let item = found.get(index).ok_or_else(|| {
            malformed(format!(
                "item {index} is not in the payload ({} messages and statuses)",
                found.len()
            ))
        })?;
        Ok(normalize_found(raw, item))
    }
}

impl WebhookAdapter for WhatsApp {
    fn channel(&self) -> Channel {
        Channel::Whatsapp
    }

    fn id_channel(&self) -> &'static str {
        ID_CHANNEL
    }

    fn check_account(&self, account: &WebhookAccount, _loopback: bool) -> Vec<String> {
        crate::meta::check_account(account)
    }

    fn development_account(&self) -> WebhookAccount {
        crate::meta::development_account()
    }

    fn signature_headers(&self) -> &'static [&'static str] {
        &[crate::meta::SIGNATURE_HEADER]
    }

    fn sign(&self, account: &WebhookAccount, _url: &str, _content_type: &str, body: &[u8], _now: std::time::SystemTime) -> webhook::Signed {
        crate::meta::sign(account, body)
    }

    fn handshake(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Reply, Rejection> {
        crate::meta::handshake(account, request)
    }

    fn verify(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<(), Rejection> {
        crate::meta::verify(account, request)
    }

    fn accept(&self, _account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Accepted, Rejection> {
        let values = values(request.body).map_err(Rejection::BadRequest)?;
        let found = found(&values).map_err(Rejection::BadRequest)?;
        Ok(Accepted::Items(
            found
                .iter()
                .map(|f| Item {
                    provider_message_id: f.provider_message_id.clone(),
                    partition_key: key_fields(f),
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests;
