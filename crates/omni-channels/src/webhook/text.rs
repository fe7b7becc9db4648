//! Readable text for what is not text (calls, locations, contact cards, media without a caption),
//! so every helpdesk shows something an agent can act on, whatever it does with structured data.
//! English, one line each; the structured data travels beside it in the event.

use omni_proto::v1::call_data::Outcome;
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::{Attachment, CallData, Location, SharedContact};

/// The tag of a call's outcome (`answered-call`, `missed-call`, ...); `None` for an unknown one.
pub fn outcome_tag(outcome: Outcome) -> Option<&'static str> {
    Some(match outcome {
        Outcome::Answered => "answered-call",
        Outcome::Missed => "missed-call",
        Outcome::Voicemail => "voicemail",
        Outcome::Busy => "busy-call",
        Outcome::Failed => "failed-call",
        Outcome::Unspecified => return None,
    })
}

/// The tags of a call event: `call`, and the outcome's tag when it is known.
pub fn call_tags(outcome: Outcome) -> Vec<String> {
    std::iter::once("call").chain(outcome_tag(outcome)).map(str::to_owned).collect()
}

/// "Missed call from +905551112233 to +31201234567 at 2026-11-22 10:15:00 UTC", with duration,
/// agent, recording and transcript where known.
pub fn call(call: &CallData) -> String {
    let what = match call.outcome() {
        Outcome::Answered => "Answered call",
        Outcome::Missed => "Missed call",
        Outcome::Voicemail => "Voicemail",
        Outcome::Busy => "Busy call",
        Outcome::Failed => "Failed call",
        Outcome::Unspecified => "Call",
    };
    let mut text = what.to_owned();
    if !call.from.is_empty() {
        text.push_str(&format!(" from {}", call.from));
    }
    if !call.to.is_empty() {
        text.push_str(&format!(" to {}", call.to));
    }
    if let Some(started) = &call.started_at {
        text.push_str(&format!(" at {}", utc(started.seconds)));
    }
    if let Some(duration) = &call.duration
        && duration.seconds > 0
    {
        text.push_str(&format!(", {} s", duration.seconds));
    }
    if !call.agent.is_empty() {
        text.push_str(&format!(", agent {}", call.agent));
    }
    text.push('.');
    if !call.recording_reference.is_empty() {
        text.push_str(&format!("\nRecording: {}", call.recording_reference));
    }
    if !call.transcript.is_empty() {
        text.push_str(&format!("\nTranscript: {}", call.transcript));
    } else if !call.transcript_reference.is_empty() {
        text.push_str(&format!("\nTranscript: {}", call.transcript_reference));
    }
    text
}

/// "Shared a location: Kadıköy İskele, Rıhtım Cd. (40.9906, 29.0231) https://...".
pub fn location(location: &Location) -> String {
    let mut text = "Shared a location:".to_owned();
    for part in [&location.name, &location.address] {
        if !part.is_empty() {
            text.push(' ');
            text.push_str(part);
            text.push(',');
        }
    }
    if text.ends_with(',') {
        text.pop();
    }
    text.push_str(&format!(" ({}, {})", location.latitude, location.longitude));
    if !location.url.is_empty() {
        text.push(' ');
        text.push_str(&location.url);
    }
    text
}

/// "Shared a contact: Mehmet Demir, +905321234567, mehmet@example.com".
pub fn contact(contact: &SharedContact) -> String {
    let mut parts = vec![contact.display_name.clone()];
    if !contact.organization.is_empty() {
        parts.push(contact.organization.clone());
    }
    parts.extend(
        contact
            .identifiers
            .iter()
            .filter(|id| matches!(id.kind(), Kind::Phone | Kind::Email))
            .map(|id| id.value.clone()),
    );
    parts.retain(|p| !p.is_empty());
    format!("Shared a contact: {}", parts.join(", "))
}

/// "Sent image/jpeg: photo.jpg" for a media message without a caption.
pub fn attachment(attachment: &Attachment) -> String {
    if attachment.name.is_empty() {
        format!("Sent {}", attachment.media_type)
    } else {
        format!("Sent {}: {}", attachment.media_type, attachment.name)
    }
}

/// A Unix time as `2026-11-22 10:15:00 UTC`.
pub fn utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_read_as_a_sentence() {
        let missed = CallData {
            from: "+905551112233".into(),
            to: "+31201234567".into(),
            started_at: Some(prost_types::Timestamp {
                seconds: 1_795_342_500,
                nanos: 0,
            }),
            outcome: Outcome::Missed as i32,
            ..Default::default()
        };
        assert_eq!(
            call(&missed),
            "Missed call from +905551112233 to +31201234567 at 2026-11-22 10:15:00 UTC."
        );
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
