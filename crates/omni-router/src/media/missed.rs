//! A customer's file the provider did not serve when the router delivered the message (down,
//! timing out, serving another type...): the message goes on without it, with the file listed,
//! and for each such file the router writes
//!
//! - a note on the ticket (an outbound system event on the conversation, like omni-sender's
//!   notes) that says which file and why, and how it gets attached;
//! - a dead letter (stage [`STAGE`], fault external) holding a *retry*: an outbound system event
//!   on the conversation that carries only that file, by its reference. `omni deadletter replay
//!   --stage router-media` puts it on `omni.conversations.v1`; the router fetches the file again
//!   and appends it to the ticket as an internal comment, or, still not served, dead-letters the
//!   same retry again. Both ids derive from the message's event id and the file's reference, so
//!   a note or a retry written or replayed twice is delivered once (the router's state).

use omni_proto::v1::participant::Role;
use omni_proto::v1::{Attachment, Body, ConversationEvent, Direction, Participant, attachment::Content};
use sha2::{Digest as _, Sha256};

/// The dead-letter stage of retries.
pub const STAGE: &str = "router-media";
/// The tag of a retry event.
pub const RETRY_TAG: &str = "omni-media-retry";
/// The tag of the note.
pub const NOTE_TAG: &str = "omni-media-missed";

/// A file of a message that was not fetched, and why.
#[derive(Clone, Debug)]
pub struct Missed {
    /// The file as the message carried it (with its reference).
    pub file: Attachment,
    /// Why it was not fetched (no URL, no secret).
    pub reason: String,
}

/// The tag prefix naming the one destination a note or retry is for.
const FOR_PREFIX: &str = "omni-media-for:";

/// Whether omni wrote `event` (an outbound event of the system participant): a customer's or an
/// API client's event never counts as a note or retry, whatever its tags.
fn omnis_own(event: &ConversationEvent) -> bool {
    event.direction() == Direction::Outbound
        && !event.participants.is_empty()
        && event.participants.iter().all(|p| p.role() == Role::System)
}

/// Whether `event` is a retry of a file (then it is delivered only with the file).
pub fn is_retry(event: &ConversationEvent) -> bool {
    omnis_own(event) && event.tags.iter().any(|tag| tag == RETRY_TAG)
}

/// The destination a note or retry is for: only that destination missed the file (another may
/// have fetched it and must not get the note, nor the file twice).
pub fn addressed_to(event: &ConversationEvent) -> Option<&str> {
    if !omnis_own(event) {
        return None;
    }
    event.tags.iter().find_map(|tag| tag.strip_prefix(FOR_PREFIX))
}

/// Why a retry still cannot be delivered: a file not fetched, or (no fetcher configured any
/// more, the store failing) still without its bytes; `None` when every file is there.
pub fn still_missing(event: &ConversationEvent, missed: &[Missed]) -> Option<String> {
    if !missed.is_empty() {
        return Some(reason(missed));
    }
    let bare: Vec<&str> = event
        .attachments
        .iter()
        .filter(|file| !matches!(file.content, Some(Content::Data(_))))
        .map(|file| file.name.as_str())
        .collect();
    (!bare.is_empty()).then(|| {
        format!(
            "a customer's file not fetched ({}: no fetcher or store could give it)",
            bare.join(", ")
        )
    })
}

/// The id shared by a file's note and retry: over the destination, the message's event id and
/// the reference.
fn file_key(event: &ConversationEvent, file: &Attachment, destination: &str) -> String {
    let reference = match &file.content {
        Some(Content::Reference(reference)) => reference.as_str(),
        _ => file.name.as_str(),
    };
    let digest = Sha256::digest(format!("{destination}\n{}\n{reference}", event.event_id));
    hex::encode(&digest[..16])
}

/// The note for the agent of `destination`: which file, from where, why, and how it comes.
pub fn note(event: &ConversationEvent, missed: &Missed, destination: &str) -> ConversationEvent {
    let provider = event.provider.as_ref().map_or("the provider", |p| p.provider.as_str());
    let text = format!(
        "omni: the customer's file {} could not be fetched from {provider} ({}). It is listed with the message; \
         `omni deadletter replay --stage {STAGE}` attaches it here once {provider} serves it.",
        missed.file.name, missed.reason
    );
    let id = format!("media-missed-{}", file_key(event, &missed.file, destination));
    system_event(event, id, text, [NOTE_TAG, &format!("{FOR_PREFIX}{destination}")], Vec::new())
}

/// The retry kept in the dead letter for `destination`: the file alone, by its reference.
pub fn retry(event: &ConversationEvent, missed: &Missed, destination: &str) -> ConversationEvent {
    let text = format!("omni: the customer's file {}, fetched again.", missed.file.name);
    let id = format!("media-retry-{}", file_key(event, &missed.file, destination));
    system_event(
        event,
        id,
        text,
        [RETRY_TAG, &format!("{FOR_PREFIX}{destination}")],
        vec![missed.file.clone()],
    )
}

/// Why a message's files were not fetched, for a dead letter's reason.
pub fn reason(missed: &[Missed]) -> String {
    let files: Vec<String> = missed.iter().map(|m| format!("{}: {}", m.file.name, m.reason)).collect();
    format!("a customer's file not fetched ({})", files.join("; "))
}

/// An outbound system event on `event`'s conversation, channel and provider (the provider, so
/// that a retry is fetched with the same account).
fn system_event(event: &ConversationEvent, id: String, text: String, tags: [&str; 2], attachments: Vec<Attachment>) -> ConversationEvent {
    let now = std::time::SystemTime::now();
    ConversationEvent {
        event_id: id,
        conversation_id: event.conversation_id.clone(),
        channel: event.channel,
        direction: Direction::Outbound as i32,
        participants: vec![Participant {
            role: Role::System as i32,
            display_name: "omni".into(),
            identifiers: Vec::new(),
        }],
        body: Some(Body {
            new_text: text.clone(),
            text,
            html: String::new(),
        }),
        attachments,
        provider: event.provider.clone(),
        tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
        occurred_at: Some(now.into()),
        received_at: Some(now.into()),
        normalized_at: Some(now.into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> ConversationEvent {
        ConversationEvent {
            event_id: "e1".into(),
            conversation_id: "c1".into(),
            provider: Some(omni_proto::v1::ProviderReference {
                provider: "whatsapp".into(),
                account: "default".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn missed(reference: &str) -> Missed {
        Missed {
            file: Attachment {
                name: "box.jpg".into(),
                content: Some(Content::Reference(reference.into())),
                ..Default::default()
            },
            reason: "served as application/x-msdownload".into(),
        }
    }

    #[test]
    fn a_file_gets_one_note_and_one_retry_whatever_how_often_it_is_missed() {
        let (event, file) = (message(), missed("1234"));
        let (note, retry) = (note(&event, &file, "rt"), retry(&event, &file, "rt"));
        assert_eq!(note.event_id, super::note(&event, &file, "rt").event_id, "the same note twice");
        assert_eq!(retry.event_id, super::retry(&event, &file, "rt").event_id, "the same retry twice");
        assert_ne!(retry.event_id, super::retry(&event, &missed("5678"), "rt").event_id, "another file");
        assert_ne!(
            retry.event_id,
            super::retry(&event, &file, "zendesk").event_id,
            "another destination"
        );
        assert_eq!((addressed_to(&note), addressed_to(&retry)), (Some("rt"), Some("rt")));
        assert!(still_missing(&retry, &[]).is_some_and(|r| r.contains("box.jpg")), "no bytes yet");
        assert!(
            note.body
                .as_ref()
                .unwrap()
                .text
                .contains("box.jpg could not be fetched from whatsapp (served as")
        );
        assert!(note.attachments.is_empty() && !is_retry(&note));
        assert!(is_retry(&retry));
        assert_eq!(retry.attachments.len(), 1);
        assert_eq!(retry.provider.as_ref().unwrap().account, "default", "fetched with the same account");
        assert_eq!((retry.conversation_id.as_str(), retry.direction()), ("c1", Direction::Outbound));
    }

    #[test]
    fn a_customers_tags_never_make_a_retry_or_address_a_destination() {
        let mut customers = message();
        customers.direction = Direction::Inbound as i32;
        customers.participants = vec![Participant {
            role: Role::Customer as i32,
            ..Default::default()
        }];
        customers.tags = vec![RETRY_TAG.into(), format!("{FOR_PREFIX}elsewhere")];
        assert!(!is_retry(&customers));
        assert_eq!(addressed_to(&customers), None);
    }
}
