//! `omni kpi`: the support lead's numbers for a period, from the KPI records of
//! `omni.state.kpi.v1` (the latest per conversation).
//!
//! A contact is a conversation whose first customer message falls in the period; its first
//! response, resolution and reopens count with it. Reply times count in the period the answer was written in. Groups:
//! all, per channel, per problem-area tag (a conversation with two tags counts in both), per
//! language. Medians and p90s are nearest-rank over the period's values.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use omni_proto::v1::ConversationKpi;
use omni_router::rules::channel_name;
use serde::Serialize;

use super::apply::{span_of, time_of};

/// The numbers of one group.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Group {
    /// Conversations opened in the period.
    pub contacts: u64,
    /// Of those, how many got an agent's answer.
    pub answered: u64,
    /// First response times of those answered, on the calendar and in business hours.
    pub first_response: Times,
    /// The same in business hours.
    pub first_response_business: Times,
    /// Of the contacts, how many are solved now, and their resolution times (first message to
    /// the latest solve).
    pub solved: u64,
    /// Resolution times on the calendar.
    pub resolution: Times,
    /// The same in business hours.
    pub resolution_business: Times,
    /// How often the contacts' tickets were opened again after a solve.
    pub reopens: u64,
    /// Reply times of answers written in the period.
    pub reply: Times,
    /// The same in business hours.
    pub reply_business: Times,
    #[serde(skip)]
    values: Values,
}

/// Median and 90th percentile of a set of times, in seconds.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Times {
    /// How many times.
    pub count: u64,
    /// The median, in seconds; none without times.
    pub median_secs: Option<i64>,
    /// The 90th percentile, in seconds.
    pub p90_secs: Option<i64>,
}

#[derive(Debug, Default, PartialEq)]
struct Values {
    first_response: Vec<SignedDuration>,
    first_response_business: Vec<SignedDuration>,
    resolution: Vec<SignedDuration>,
    resolution_business: Vec<SignedDuration>,
    reply: Vec<SignedDuration>,
    reply_business: Vec<SignedDuration>,
}

/// The report of one period.
#[derive(Debug, Serialize, PartialEq)]
pub struct Report {
    /// The period's start (RFC 3339), included.
    pub from: String,
    /// The period's end, excluded.
    pub until: String,
    /// Every conversation.
    pub all: Group,
    /// Per channel (`email`, `whatsapp`...).
    pub channels: BTreeMap<String, Group>,
    /// Per problem-area tag.
    pub tags: BTreeMap<String, Group>,
    /// Per language (ISO 639-1; `unknown` when none was detected).
    pub languages: BTreeMap<String, Group>,
}

/// Builds the report of [from, until) from every conversation's latest KPI record.
pub fn build<'a>(records: impl IntoIterator<Item = &'a ConversationKpi>, from: Timestamp, until: Timestamp) -> Report {
    let mut report = Report {
        from: from.to_string(),
        until: until.to_string(),
        all: Group::default(),
        channels: BTreeMap::new(),
        tags: BTreeMap::new(),
        languages: BTreeMap::new(),
    };
    let within = |at: Option<Timestamp>| at.is_some_and(|at| from <= at && at < until);
    for kpi in records {
        let contact = within(time_of(kpi.first_message_at));
        let replies: Vec<_> = kpi.replies.iter().filter(|reply| within(time_of(reply.answered_at))).collect();
        if !contact && replies.is_empty() {
            continue;
        }
        let language = if kpi.language.is_empty() {
            "unknown"
        } else {
            kpi.language.as_str()
        };
        let mut groups = vec![&mut report.all];
        groups.push(report.channels.entry(channel_name(kpi.channel()).to_owned()).or_default());
        groups.push(report.languages.entry(language.to_owned()).or_default());
        for group in groups {
            add(group, kpi, contact, &replies);
        }
        for tag in &kpi.tags {
            add(report.tags.entry(tag.clone()).or_default(), kpi, contact, &replies);
        }
    }
    let groups = std::iter::once(&mut report.all)
        .chain(report.channels.values_mut())
        .chain(report.tags.values_mut())
        .chain(report.languages.values_mut());
    for group in groups {
        group.summarize();
    }
    report
}

fn add(group: &mut Group, kpi: &ConversationKpi, contact: bool, replies: &[&omni_proto::v1::ReplyTime]) {
    if contact {
        group.contacts += 1;
        if kpi.first_response.is_some() {
            group.answered += 1;
            group.values.first_response.push(span_of(kpi.first_response));
            group.values.first_response_business.push(span_of(kpi.first_response_business));
        }
        group.reopens += u64::from(kpi.reopens);
        if kpi.solved_at.is_some() && kpi.resolution.is_some() {
            group.solved += 1;
            group.values.resolution.push(span_of(kpi.resolution));
            group.values.resolution_business.push(span_of(kpi.resolution_business));
        }
    }
    for reply in replies {
        group.values.reply.push(span_of(reply.calendar));
        group.values.reply_business.push(span_of(reply.business));
    }
}

impl Group {
    fn summarize(&mut self) {
        self.first_response = times(&mut self.values.first_response);
        self.first_response_business = times(&mut self.values.first_response_business);
        self.resolution = times(&mut self.values.resolution);
        self.resolution_business = times(&mut self.values.resolution_business);
        self.reply = times(&mut self.values.reply);
        self.reply_business = times(&mut self.values.reply_business);
    }
}

fn times(values: &mut [SignedDuration]) -> Times {
    values.sort();
    Times {
        count: values.len() as u64,
        median_secs: nearest_rank(values, 50),
        p90_secs: nearest_rank(values, 90),
    }
}

/// The nearest-rank percentile of sorted `values`, in whole seconds (rounded).
fn nearest_rank(values: &[SignedDuration], percent: usize) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let rank = (percent * values.len()).div_ceil(100).max(1);
    Some(values[rank - 1].as_secs_f64().round() as i64)
}

impl Report {
    /// The report as a table for a terminal.
    pub fn table(&self) -> String {
        let mut out = format!("omni kpi: {} .. {}\n", self.from, self.until);
        out += &format!(
            "{:<28} {:>8} {:>8} {:>22} {:>22} {:>6} {:>22} {:>22} {:>7} {:>22}\n",
            "group",
            "contacts",
            "answered",
            "first response p50/p90",
            "(business hours)",
            "solved",
            "resolution p50/p90",
            "(business hours)",
            "reopens",
            "reply p50/p90"
        );
        let mut row = |name: String, group: &Group| {
            out += &format!(
                "{:<28} {:>8} {:>8} {:>22} {:>22} {:>6} {:>22} {:>22} {:>7} {:>22}\n",
                name,
                group.contacts,
                group.answered,
                pair(&group.first_response),
                pair(&group.first_response_business),
                group.solved,
                pair(&group.resolution),
                pair(&group.resolution_business),
                group.reopens,
                pair(&group.reply)
            );
        };
        row("all".to_owned(), &self.all);
        for (kind, groups) in [("channel", &self.channels), ("tag", &self.tags), ("language", &self.languages)] {
            for (name, group) in groups {
                row(format!("{kind} {name}"), group);
            }
        }
        out
    }
}

fn pair(times: &Times) -> String {
    match (times.median_secs, times.p90_secs) {
        (Some(median), Some(p90)) => format!("{} / {}", human(median), human(p90)),
        _ => "-".to_owned(),
    }
}

/// Seconds as "45s", "12m05s", "3h20m", "2d04h".
fn human(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::{Channel, ReplyTime};

    use super::*;

    fn stamp(text: &str) -> Option<prost_types::Timestamp> {
        let at: Timestamp = text.parse().unwrap();
        Some(prost_types::Timestamp {
            seconds: at.as_second(),
            nanos: 0,
        })
    }

    fn secs(seconds: i64) -> Option<prost_types::Duration> {
        Some(prost_types::Duration { seconds, nanos: 0 })
    }

    /// A conversation opened at `opened` on `channel`, first answered after `first` seconds
    /// (business: half of it), with one reply time of the same length at `opened` + `first`.
    fn conversation(channel: Channel, tags: &[&str], language: &str, opened: &str, first: Option<i64>) -> ConversationKpi {
        let opened_at: Timestamp = opened.parse().unwrap();
        ConversationKpi {
            conversation_id: format!("{opened}{channel:?}"),
            channel: channel as i32,
            language: language.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            first_message_at: stamp(opened),
            first_response: first.and_then(secs),
            first_response_business: first.and_then(|s| secs(s / 2)),
            replies: first
                .map(|s| ReplyTime {
                    answered_at: stamp(&(opened_at + jiff::SignedDuration::from_secs(s)).to_string()),
                    calendar: secs(s),
                    business: secs(s / 2),
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn groups_medians_and_p90s_of_the_period() {
        let mut solved = conversation(Channel::Email, &["refund"], "tr", "2026-03-09T10:00:00Z", Some(600));
        solved.solved_at = stamp("2026-03-09T12:00:00Z");
        solved.resolution = secs(7200);
        solved.resolution_business = secs(3600);
        solved.reopens = 1;
        let records = [
            solved,
            conversation(Channel::Email, &["refund", "shipping"], "en", "2026-03-09T11:00:00Z", Some(1200)),
            conversation(Channel::Email, &[], "", "2026-03-09T12:00:00Z", None),
            conversation(Channel::Whatsapp, &["shipping"], "tr", "2026-03-09T13:00:00Z", Some(60)),
            // Before the period: not a contact; its answer too is before it.
            conversation(Channel::Whatsapp, &["refund"], "tr", "2026-03-01T13:00:00Z", Some(60)),
        ];
        let report = build(
            &records,
            "2026-03-09T00:00:00Z".parse().unwrap(),
            "2026-03-10T00:00:00Z".parse().unwrap(),
        );
        assert_eq!(report.all.contacts, 4);
        assert_eq!(report.all.answered, 3);
        assert_eq!(report.all.first_response.count, 3);
        assert_eq!(report.all.first_response.median_secs, Some(600));
        assert_eq!(report.all.first_response.p90_secs, Some(1200));
        assert_eq!(report.all.first_response_business.median_secs, Some(300));
        assert_eq!(report.all.reply.count, 3);
        assert_eq!((report.all.solved, report.all.reopens), (1, 1));
        assert_eq!(report.all.resolution.median_secs, Some(7200));
        assert_eq!(report.tags["refund"].resolution_business.p90_secs, Some(3600));
        assert_eq!(report.channels["whatsapp"].solved, 0);
        let email = &report.channels["email"];
        assert_eq!((email.contacts, email.answered), (3, 2));
        assert_eq!(email.first_response.median_secs, Some(600));
        assert_eq!(report.tags["refund"].contacts, 2);
        assert_eq!(report.tags["shipping"].contacts, 2);
        assert_eq!(report.tags["shipping"].first_response.median_secs, Some(60));
        assert_eq!(report.languages["tr"].contacts, 2);
        assert_eq!(report.languages["unknown"].contacts, 1);
        assert_eq!(report.languages["unknown"].first_response.median_secs, None);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["channels"]["whatsapp"]["contacts"], 1);
        let table = report.table();
        assert!(table.contains("channel whatsapp"), "{table}");
        assert!(table.contains("10m00s / 20m00s"), "{table}");
    }

    #[test]
    fn a_reply_counts_in_the_period_it_was_written_in() {
        // Opened on the 8th, answered on the 9th after a day: a reply of the 9th, not a contact.
        let records = [conversation(Channel::Sms, &[], "nl", "2026-03-08T10:00:00Z", Some(86_400))];
        let report = build(
            &records,
            "2026-03-09T00:00:00Z".parse().unwrap(),
            "2026-03-10T00:00:00Z".parse().unwrap(),
        );
        assert_eq!(report.all.contacts, 0);
        assert_eq!(report.all.reply.count, 1);
        assert_eq!(report.all.reply.median_secs, Some(86_400));
        assert_eq!(report.all.first_response.count, 0);
        assert!(report.table().contains("1d00h / 1d00h"));
    }
}
