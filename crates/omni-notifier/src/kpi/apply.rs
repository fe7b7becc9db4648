//! How one record changes a conversation's KPI record (pure: no I/O, so every rule is tested).
//!
//! A customer message starts the wait (`waiting_since`, the oldest unanswered one); a public agent
//! answer ends it: the time between is a reply time, and the first one the first response time.
//! Both topics are keyed by conversation, but they are read side by side, so an answer can be read
//! before the message it answers (a lagging partition): then the message, written before the
//! answer, closes that first response when it comes. A ticket solved in the helpdesk
//! (`omni.tickets.v1`) sets the resolution time (first message to the latest solve); a reopen
//! counts and waits for the next solve.

use jiff::{SignedDuration, Timestamp};
use omni_proto::v1::ticket_status_change::Status as TicketStatus;
use omni_proto::v1::{
    ConversationEvent, ConversationKpi, Direction, OutboundMessage, ReplyTime, TicketStatusChange, outbound_message::Kind,
};

use crate::hours::BusinessHours;

/// Reply times kept per conversation (the oldest go first).
pub const MAX_REPLY_TIMES: usize = 100;
/// Ids of counted answers and status changes kept per conversation.
const MAX_COUNTED_IDS: usize = 200;

/// Whether `id` was counted already; notes it when not.
fn first_time(kpi: &mut ConversationKpi, id: &str) -> bool {
    if id.is_empty() {
        return true;
    }
    if kpi.counted_ids.iter().any(|known| known == id) {
        return false;
    }
    kpi.counted_ids.push(id.to_owned());
    if kpi.counted_ids.len() > MAX_COUNTED_IDS {
        kpi.counted_ids.remove(0);
    }
    true
}

/// What one record added to the numbers, for the metrics.
#[derive(Debug, Default, PartialEq)]
pub struct Counted {
    /// The conversation's first customer message: a new contact.
    pub contact: bool,
    /// A customer message.
    pub customer_message: bool,
    /// A public agent answer.
    pub agent_reply: bool,
    /// The first response time, when this record completed it (calendar, business).
    pub first_response: Option<(SignedDuration, SignedDuration)>,
    /// The reply time this answer ended (calendar, business).
    pub reply: Option<(SignedDuration, SignedDuration)>,
    /// The resolution time this solve set (calendar, business).
    pub resolution: Option<(SignedDuration, SignedDuration)>,
    /// The ticket was opened again after a solve.
    pub reopen: bool,
}

/// A new record for `conversation_id`: nothing handled yet.
pub fn fresh(conversation_id: &str) -> ConversationKpi {
    ConversationKpi {
        conversation_id: conversation_id.to_owned(),
        conversations_offset: -1,
        outbound_offset: -1,
        tickets_offset: -1,
        ..Default::default()
    }
}

/// Whether an event is a customer's message that counts: inbound, not an auto-reply or bounce
/// (those open no ticket and wait for no answer).
pub fn counts_as_customer_message(event: &ConversationEvent) -> bool {
    event.direction() == Direction::Inbound && !event.tags.iter().any(|tag| tag == "auto-reply" || tag == "bounce")
}

/// Applies a customer message at `offset` of the conversation topic. `None` when that offset was
/// handled already (a record read again after a crash) or the event is not a customer message.
pub fn on_message(kpi: &mut ConversationKpi, event: &ConversationEvent, offset: i64, hours: &BusinessHours) -> Option<Counted> {
    if offset <= kpi.conversations_offset {
        return None;
    }
    kpi.conversations_offset = offset;
    if !counts_as_customer_message(event) {
        return None;
    }
    let at = time_of(event.occurred_at.or(event.received_at))?;
    let mut counted = Counted {
        customer_message: true,
        contact: kpi.customer_messages == 0,
        ..Default::default()
    };
    kpi.customer_messages += 1;
    if counted.contact {
        kpi.channel = event.channel;
        kpi.language.clone_from(&event.language);
    } else if kpi.language.is_empty() {
        kpi.language.clone_from(&event.language);
    }
    for tag in &event.tags {
        if let Err(at) = kpi.tags.binary_search(tag) {
            kpi.tags.insert(at, tag.clone());
        }
    }
    let first = time_of(kpi.first_message_at);
    if first.is_none_or(|first| at < first) {
        kpi.first_message_at = Some(stamp(at));
    }
    // A solve read before the conversation's first message: its resolution closes now.
    if let Some(solved) = time_of(kpi.solved_at).filter(|solved| kpi.resolution.is_none() && at <= *solved) {
        let times = (solved.duration_since(at), hours.open_between(at, solved));
        kpi.resolution = Some(duration(times.0));
        kpi.resolution_business = Some(duration(times.1));
        counted.resolution = Some(times);
    }
    let first_reply = time_of(kpi.first_reply_at);
    match first_reply {
        // An answer read before this message, written after it: it answered this message.
        Some(reply) if kpi.first_response.is_none() && at <= reply => {
            let times = (reply.duration_since(at), hours.open_between(at, reply));
            set_first_response(kpi, times);
            counted.first_response = Some(times);
        }
        Some(reply) if at <= time_of(kpi.last_reply_at).unwrap_or(reply) => {}
        _ => {
            let waiting = time_of(kpi.waiting_since);
            if waiting.is_none_or(|waiting| at < waiting) {
                kpi.waiting_since = Some(stamp(at));
            }
        }
    }
    Some(counted)
}

/// Applies an outbound message at `offset` of the outbound topic. `None` when that offset was
/// handled already or it is not an agent's answer (acknowledgements are omni's, not an answer).
pub fn on_outbound(kpi: &mut ConversationKpi, outbound: &OutboundMessage, offset: i64, hours: &BusinessHours) -> Option<Counted> {
    if offset <= kpi.outbound_offset {
        return None;
    }
    kpi.outbound_offset = offset;
    if outbound.kind() != Kind::Reply {
        return None;
    }
    let at = time_of(outbound.written_at.or(outbound.received_at))?;
    if !first_time(kpi, &outbound.outbound_id) {
        return None;
    }
    let mut counted = Counted {
        agent_reply: true,
        ..Default::default()
    };
    kpi.agent_replies += 1;
    if time_of(kpi.first_reply_at).is_none_or(|first| at < first) {
        kpi.first_reply_at = Some(stamp(at));
    }
    if time_of(kpi.last_reply_at).is_none_or(|last| at > last) {
        kpi.last_reply_at = Some(stamp(at));
    }
    let Some(waiting) = time_of(kpi.waiting_since).filter(|waiting| *waiting <= at) else {
        return Some(counted);
    };
    let times = (at.duration_since(waiting), hours.open_between(waiting, at));
    kpi.waiting_since = None;
    if kpi.first_response.is_none() {
        set_first_response(kpi, times);
        counted.first_response = Some(times);
    }
    kpi.replies.push(ReplyTime {
        answered_at: Some(stamp(at)),
        calendar: Some(duration(times.0)),
        business: Some(duration(times.1)),
    });
    if kpi.replies.len() > MAX_REPLY_TIMES {
        kpi.replies.remove(0);
    }
    counted.reply = Some(times);
    Some(counted)
}

/// Applies a ticket's status change at `offset` of the tickets topic. `None` when that offset was
/// handled already, or for a solve of a ticket already solved (a second helpdesk, a repeat).
pub fn on_status(kpi: &mut ConversationKpi, change: &TicketStatusChange, offset: i64, hours: &BusinessHours) -> Option<Counted> {
    if offset <= kpi.tickets_offset {
        return None;
    }
    kpi.tickets_offset = offset;
    let at = time_of(change.changed_at)?;
    if !first_time(kpi, &change.change_id) {
        return None;
    }
    match change.status() {
        TicketStatus::Solved if kpi.solved_at.is_none() => {
            kpi.solved_at = Some(stamp(at));
            // Without the first message yet (read later: `on_message` closes the resolution);
            // counted as nothing, but kept (written) so a restart does not lose the solve.
            let Some(first) = time_of(kpi.first_message_at).filter(|first| *first <= at) else {
                return Some(Counted::default());
            };
            let times = (at.duration_since(first), hours.open_between(first, at));
            kpi.resolution = Some(duration(times.0));
            kpi.resolution_business = Some(duration(times.1));
            Some(Counted {
                resolution: Some(times),
                ..Default::default()
            })
        }
        TicketStatus::Reopened if kpi.solved_at.is_some() => {
            kpi.solved_at = None;
            kpi.reopens += 1;
            Some(Counted {
                reopen: true,
                ..Default::default()
            })
        }
        _ => None,
    }
}

fn set_first_response(kpi: &mut ConversationKpi, (calendar, business): (SignedDuration, SignedDuration)) {
    kpi.first_response = Some(duration(calendar));
    kpi.first_response_business = Some(duration(business));
}

/// A protobuf timestamp as an instant; `None` when unset or out of range.
pub fn time_of(at: Option<prost_types::Timestamp>) -> Option<Timestamp> {
    let at = at?;
    Timestamp::new(at.seconds, at.nanos).ok()
}

fn stamp(at: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.as_second(),
        nanos: at.subsec_nanosecond(),
    }
}

fn duration(span: SignedDuration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: span.as_secs(),
        nanos: span.subsec_nanos(),
    }
}

/// A protobuf duration as a `SignedDuration` (zero when unset).
pub fn span_of(span: Option<prost_types::Duration>) -> SignedDuration {
    span.map_or(SignedDuration::ZERO, |span| SignedDuration::new(span.seconds, span.nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hours::BusinessHoursConfig;

    /// Mon-Fri 09:00-18:00 UTC.
    fn office() -> BusinessHours {
        let days = ["monday", "tuesday", "wednesday", "thursday", "friday"];
        BusinessHours::new(&BusinessHoursConfig {
            timezone: "UTC".to_owned(),
            week: days.iter().map(|day| (day.to_string(), vec!["09:00-18:00".to_owned()])).collect(),
            holidays: Vec::new(),
        })
        .unwrap()
    }

    /// 2026-03-09 (a Monday) at `time` ("HH:MM"), or a later day with "+N HH:MM".
    fn at(time: &str) -> Timestamp {
        let (days, time) = time
            .split_once(' ')
            .map_or((0, time), |(d, t)| (d.trim_start_matches('+').parse().unwrap(), t));
        let text = format!("2026-03-{:02}T{time}:00Z", 9 + days);
        text.parse().unwrap()
    }

    fn message(time: &str, tags: &[&str]) -> ConversationEvent {
        ConversationEvent {
            conversation_id: "c1".into(),
            channel: omni_proto::v1::Channel::Whatsapp as i32,
            direction: Direction::Inbound as i32,
            language: "tr".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            occurred_at: Some(stamp(at(time))),
            ..Default::default()
        }
    }

    fn answer(time: &str, kind: Kind) -> OutboundMessage {
        OutboundMessage {
            conversation_id: "c1".into(),
            kind: kind as i32,
            written_at: Some(stamp(at(time))),
            ..Default::default()
        }
    }

    fn mins(counted: &Option<(SignedDuration, SignedDuration)>) -> Option<(i64, i64)> {
        counted.map(|(calendar, business)| (calendar.as_mins(), business.as_mins()))
    }

    #[test]
    fn first_response_and_reply_times_on_both_clocks() {
        let hours = office();
        let mut kpi = fresh("c1");
        let counted = on_message(&mut kpi, &message("10:00", &["refund"]), 0, &hours).unwrap();
        assert!(counted.contact && counted.customer_message);
        // A second message before the answer does not restart the wait.
        let counted = on_message(&mut kpi, &message("10:20", &["shipping", "refund"]), 1, &hours).unwrap();
        assert!(!counted.contact);
        // An acknowledgement is not an answer.
        assert_eq!(on_outbound(&mut kpi, &answer("10:01", Kind::Acknowledgement), 0, &hours), None);
        let counted = on_outbound(&mut kpi, &answer("10:30", Kind::Reply), 1, &hours).unwrap();
        assert_eq!(mins(&counted.first_response), Some((30, 30)));
        assert_eq!(mins(&counted.reply), Some((30, 30)));
        // Asked at 17:30, answered at 09:15 the next morning: 15h45 vs 45 business minutes.
        on_message(&mut kpi, &message("17:30", &[]), 2, &hours).unwrap();
        let counted = on_outbound(&mut kpi, &answer("+1 09:15", Kind::Reply), 2, &hours).unwrap();
        assert_eq!(counted.first_response, None, "only the first answer is the first response");
        assert_eq!(mins(&counted.reply), Some((945, 45)));
        // An answer with nothing waiting counts as an answer, not a reply time.
        let counted = on_outbound(&mut kpi, &answer("+1 09:20", Kind::Reply), 3, &hours).unwrap();
        assert!(counted.agent_reply && counted.reply.is_none());
        assert_eq!(kpi.customer_messages, 3);
        assert_eq!(kpi.agent_replies, 3);
        assert_eq!(kpi.tags, ["refund", "shipping"]);
        assert_eq!(kpi.language, "tr");
        assert_eq!(kpi.replies.len(), 2);
        assert_eq!(span_of(kpi.first_response).as_mins(), 30);
        assert_eq!(span_of(kpi.first_response_business).as_mins(), 30);
    }

    #[test]
    fn a_record_read_again_counts_nothing() {
        let hours = office();
        let mut kpi = fresh("c1");
        on_message(&mut kpi, &message("10:00", &[]), 7, &hours).unwrap();
        on_outbound(&mut kpi, &answer("10:30", Kind::Reply), 4, &hours).unwrap();
        let before = kpi.clone();
        assert_eq!(on_message(&mut kpi, &message("10:00", &[]), 7, &hours), None);
        assert_eq!(on_message(&mut kpi, &message("09:00", &[]), 6, &hours), None);
        assert_eq!(on_outbound(&mut kpi, &answer("10:30", Kind::Reply), 4, &hours), None);
        assert_eq!(kpi, before);
    }

    #[test]
    fn an_answer_read_before_its_message_still_closes_the_first_response() {
        let hours = office();
        let mut kpi = fresh("c1");
        let counted = on_outbound(&mut kpi, &answer("11:00", Kind::Reply), 0, &hours).unwrap();
        assert_eq!(counted.first_response, None);
        let counted = on_message(&mut kpi, &message("10:15", &[]), 0, &hours).unwrap();
        assert!(counted.contact);
        assert_eq!(mins(&counted.first_response), Some((45, 45)));
        assert_eq!(kpi.waiting_since, None, "answered already");
        // A later message waits for the next answer.
        on_message(&mut kpi, &message("12:00", &[]), 1, &hours).unwrap();
        assert_eq!(time_of(kpi.waiting_since), Some(at("12:00")));
    }

    #[test]
    fn auto_replies_outbound_notes_and_untimed_events_are_not_customer_messages() {
        let hours = office();
        let mut kpi = fresh("c1");
        assert_eq!(on_message(&mut kpi, &message("10:00", &["auto-reply"]), 0, &hours), None);
        let mut note = message("10:00", &[]);
        note.direction = Direction::Outbound as i32;
        assert_eq!(on_message(&mut kpi, &note, 1, &hours), None);
        let mut untimed = message("10:00", &[]);
        untimed.occurred_at = None;
        assert_eq!(on_message(&mut kpi, &untimed, 2, &hours), None);
        assert_eq!(kpi.customer_messages, 0);
        assert_eq!(kpi.conversations_offset, 2);
    }

    fn status(time: &str, status: TicketStatus) -> TicketStatusChange {
        TicketStatusChange {
            conversation_id: "c1".into(),
            status: status as i32,
            changed_at: Some(stamp(at(time))),
            ..Default::default()
        }
    }

    #[test]
    fn copies_written_again_count_nothing_and_a_solve_read_first_waits_for_its_message() {
        let hours = office();
        let mut kpi = fresh("c1");
        let mut solved = status("11:00", TicketStatus::Solved);
        solved.change_id = "ch-1".into();
        let counted = on_status(&mut kpi, &solved, 0, &hours).unwrap();
        assert_eq!(counted, Counted::default(), "no first message yet: kept, nothing counted");
        let counted = on_message(&mut kpi, &message("10:00", &[]), 0, &hours).unwrap();
        assert_eq!(mins(&counted.resolution), Some((60, 60)));
        // The same change again at a later offset (omni-replies wrote it again): nothing.
        assert_eq!(on_status(&mut kpi, &solved, 1, &hours), None);
        let mut reopened = status("12:00", TicketStatus::Reopened);
        reopened.change_id = "ch-2".into();
        assert!(on_status(&mut kpi, &reopened, 2, &hours).unwrap().reopen);
        assert_eq!(on_status(&mut kpi, &reopened, 3, &hours), None);
        assert_eq!(kpi.reopens, 1);
        let mut reply = answer("12:30", Kind::Reply);
        reply.outbound_id = "o-1".into();
        assert!(on_outbound(&mut kpi, &reply, 0, &hours).unwrap().agent_reply);
        assert_eq!(on_outbound(&mut kpi, &reply, 1, &hours), None);
        assert_eq!(kpi.agent_replies, 1);
    }

    #[test]
    fn resolution_runs_from_the_first_message_to_the_latest_solve_and_reopens_count() {
        let hours = office();
        let mut kpi = fresh("c1");
        on_message(&mut kpi, &message("17:00", &[]), 0, &hours).unwrap();
        // Solved the next morning at 10:00: 17 hours, 2 business hours.
        let counted = on_status(&mut kpi, &status("+1 10:00", TicketStatus::Solved), 0, &hours).unwrap();
        assert_eq!(mins(&counted.resolution), Some((17 * 60, 120)));
        // Read again, or solved again without a reopen: nothing.
        assert_eq!(on_status(&mut kpi, &status("+1 10:00", TicketStatus::Solved), 0, &hours), None);
        assert_eq!(on_status(&mut kpi, &status("+1 10:05", TicketStatus::Solved), 1, &hours), None);
        let counted = on_status(&mut kpi, &status("+1 11:00", TicketStatus::Reopened), 2, &hours).unwrap();
        assert!(counted.reopen);
        // A reopen of an open ticket is not one.
        assert_eq!(on_status(&mut kpi, &status("+1 11:01", TicketStatus::Reopened), 3, &hours), None);
        let counted = on_status(&mut kpi, &status("+1 12:00", TicketStatus::Solved), 4, &hours).unwrap();
        assert_eq!(mins(&counted.resolution), Some((19 * 60, 240)));
        assert_eq!(kpi.reopens, 1);
        assert_eq!(span_of(kpi.resolution_business).as_mins(), 240);
    }
}
