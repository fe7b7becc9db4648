//! Routing rules: `[[router.rules]]`, evaluated in order, first match wins; no match goes to
//! `default_destination` with nothing set.
//!
//! A rule matches when every condition it gives holds (a list matches when any of its values
//! does; an absent or empty condition always holds):
//!
//! | condition | matches |
//! |---|---|
//! | `channels` | the event's channel, by its name in the proto enum (`email`, `api`, `web_chat`, `whatsapp`, `sms`, `voice`, ...; `omni_proto::channels`) |
//! | `providers` | the adapter (`imap`, `whatsapp`, `twilio-sms`, `asterisk`, ...) |
//! | `accounts` | the provider account the message came in on (mailbox, business number name) |
//! | `languages` | the event's language tag, or its primary subtag (`tr` matches `tr-TR`) |
//! | `tags` | any of the event's tags |
//! | `customers` | any customer identifier exactly (email case-insensitively, E.164 phone, platform id) |
//! | `customer_domains` | the domain of a customer email address (`example.com` also matches `shop.example.com`) |
//! | `keywords` | text the subject or body contains, case-insensitively (substring: `iade` also matches `iadesi`) |
//! | `business_hours` | `"inside"` or `"outside"` the `[router.business_hours]` hours (see [`RouterHours`]), at the event's `occurred_at` |
//!
//! The action: `destinations` (one or several of `[router.destinations]`: several while a team
//! moves between helpdesks), and what the new ticket gets: `group`, `priority`, `add_tags`,
//! `custom_fields`.

use std::collections::BTreeMap;

use omni_proto::channels;
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::{Channel, ConversationEvent, participant::Role};
use omni_runtime::hours::{BusinessHours, BusinessHoursConfig};
use omni_runtime::{Problems, Validate};
use serde::Deserialize;

use crate::helpdesk::{Priority, Routing};

/// One `[[router.rules]]` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Shown by `omni route --explain` and in logs.
    pub name: String,
    /// Channel names (see the module docs).
    #[serde(default)]
    pub channels: Vec<String>,
    /// Provider names.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Provider accounts.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Language tags.
    #[serde(default)]
    pub languages: Vec<String>,
    /// Event tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Customer identifiers.
    #[serde(default)]
    pub customers: Vec<String>,
    /// Customer email domains.
    #[serde(default)]
    pub customer_domains: Vec<String>,
    /// Words or phrases in subject or text.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// `inside` or `outside` business hours.
    #[serde(default)]
    pub business_hours: Option<HoursCondition>,
    /// Where matching events go; empty: the default destination.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// Group, queue, team or mailbox of new tickets.
    #[serde(default)]
    pub group: Option<String>,
    /// Priority of new tickets.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Tags new tickets get (beside the channel and event tags).
    #[serde(default)]
    pub add_tags: Vec<String>,
    /// Custom fields of new tickets, by the helpdesk's field name or id.
    #[serde(default)]
    pub custom_fields: BTreeMap<String, String>,
}

/// `business_hours = "inside" | "outside"`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HoursCondition {
    /// During the business hours window.
    Inside,
    /// Outside it.
    Outside,
}

/// `[router.business_hours]`: the hours `business_hours` conditions refer to, in the shape of
/// `[notifier.business_hours]` (`timezone`, `week`, `holidays`; see [`omni_runtime::hours`]).
/// The router's earlier shape, one window at a fixed offset (`utc_offset`, `days`, `start`,
/// `end`), is still read, as the same week.
#[derive(Clone, Debug)]
pub struct RouterHours(pub BusinessHoursConfig);

/// The router's earlier `[router.business_hours]`: one window on `days` at a fixed offset; an
/// `end` before `start` runs overnight and belongs to the day it starts on.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixedWindow {
    utc_offset: String,
    days: Vec<String>,
    start: String,
    end: String,
}

/// `mon` .. `sun` as [`BusinessHoursConfig::week`] names them.
const DAYS: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

impl FixedWindow {
    /// The same hours as a week: an overnight window is split at midnight, its morning part on
    /// the next day. Refused, naming the key, if a time or a day is not one.
    fn into_week(self) -> Result<BusinessHoursConfig, String> {
        let time = |value: &str| value.trim().parse::<jiff::civil::Time>().ok();
        for (key, value) in [("start", &self.start), ("end", &self.end)] {
            if time(value).is_none() && !(key == "end" && value.trim() == "24:00") {
                return Err(format!("business_hours.{key}: `{value}` is not HH:MM, for example 09:00"));
            }
        }
        if let Some(day) = self
            .days
            .iter()
            .find(|day| !DAYS.iter().any(|(short, _)| day.trim().eq_ignore_ascii_case(short)))
        {
            return Err(format!(
                "business_hours.days: `{day}` is not one of mon, tue, wed, thu, fri, sat, sun"
            ));
        }
        Ok(self.week())
    }

    fn week(self) -> BusinessHoursConfig {
        let timezone = match self.utc_offset.trim() {
            "Z" | "z" => "UTC".to_owned(),
            offset if offset.eq_ignore_ascii_case("utc") => "UTC".to_owned(),
            offset => offset.to_owned(),
        };
        let time = |value: &str| value.trim().parse::<jiff::civil::Time>().ok();
        let overnight = matches!((time(&self.start), time(&self.end)), (Some(start), Some(end)) if end < start);
        let mut week: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for day in &self.days {
            let day = day.trim().to_ascii_lowercase();
            let Some(index) = DAYS.iter().position(|(short, _)| *short == day) else {
                continue;
            };
            let (today, tomorrow) = (DAYS[index].1.to_owned(), DAYS[(index + 1) % 7].1.to_owned());
            if overnight {
                week.entry(today).or_default().push(format!("{}-24:00", self.start));
                if time(&self.end) != Some(jiff::civil::Time::midnight()) {
                    week.entry(tomorrow).or_default().push(format!("00:00-{}", self.end));
                }
            } else {
                week.entry(today).or_default().push(format!("{}-{}", self.start, self.end));
            }
        }
        BusinessHoursConfig {
            timezone,
            week,
            holidays: Vec::new(),
        }
    }
}

impl<'de> Deserialize<'de> for RouterHours {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let table = serde_json::Value::deserialize(deserializer)?;
        let config = if table.get("utc_offset").is_some() {
            let window = serde_json::from_value::<FixedWindow>(table).map_err(D::Error::custom)?;
            window.into_week().map_err(D::Error::custom)?
        } else {
            serde_json::from_value::<BusinessHoursConfig>(table).map_err(D::Error::custom)?
        };
        Ok(Self(config))
    }
}

/// Lowercase for matching: Unicode lowercase without the combining dot above that Turkish
/// `İ` lowercases to (so `İade` contains `iade`).
fn fold(text: &str) -> String {
    text.to_lowercase().replace('\u{307}', "")
}

/// Where an event goes and what its new tickets get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The matching rule; `None` for the default route.
    pub rule: Option<String>,
    /// Destination names, in order.
    pub destinations: Vec<String>,
    /// What new tickets get.
    pub routing: Routing,
}

/// The rules of one router, ready to evaluate.
#[derive(Clone, Debug)]
pub struct Rules {
    rules: Vec<RuleConfig>,
    default_destination: String,
    /// `[router.business_hours]` as configured (for validation) and compiled (`None` when invalid).
    hours: Option<(BusinessHoursConfig, Option<BusinessHours>)>,
}

/// One line of `omni route --explain`: a rule and why it matched or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The rule's name.
    pub rule: String,
    /// Whether every condition held.
    pub matched: bool,
    /// The first condition that failed, or "every condition holds".
    pub reason: String,
}

impl Rules {
    /// Rules from config.
    pub fn new(rules: Vec<RuleConfig>, default_destination: String, hours: Option<BusinessHoursConfig>) -> Self {
        Self {
            rules,
            default_destination,
            hours: hours.map(|config| {
                let compiled = BusinessHours::new(&config).ok();
                (config, compiled)
            }),
        }
    }

    /// Checks names, destinations and conditions; `destinations` are the configured ones.
    pub fn validate(&self, prefix: &str, destinations: &[&str], problems: &mut Problems) {
        if let Some((hours, _)) = &self.hours {
            hours.validate(&format!("{prefix}.business_hours"), problems);
        }
        for (index, rule) in self.rules.iter().enumerate() {
            let at = format!("{prefix}.rules[{index}]");
            problems.check(!rule.name.trim().is_empty(), format!("{at}.name"), "every rule needs a name");
            problems.check(
                rule.keywords.iter().all(|k| !k.trim().is_empty()),
                format!("{at}.keywords"),
                "a blank keyword would match every event",
            );
            for destination in &rule.destinations {
                problems.check(
                    destinations.contains(&destination.as_str()),
                    format!("{at}.destinations"),
                    format!("`{destination}` is not one of [router.destinations]"),
                );
            }
            for channel in &rule.channels {
                problems.check(
                    channels::channel_named(channel).is_some(),
                    format!("{at}.channels"),
                    format!("`{channel}` is not a channel ({})", channel_names().join(", ")),
                );
            }
            problems.check(
                rule.business_hours.is_none() || self.hours.is_some(),
                format!("{at}.business_hours"),
                "needs a [router.business_hours] window",
            );
        }
    }

    /// Where `event` goes: the first matching rule, else the default destination.
    pub fn route(&self, event: &ConversationEvent) -> Route {
        for rule in &self.rules {
            if self.mismatch(rule, event).is_none() {
                return Route {
                    rule: Some(rule.name.clone()),
                    destinations: if rule.destinations.is_empty() {
                        vec![self.default_destination.clone()]
                    } else {
                        rule.destinations.clone()
                    },
                    routing: Routing {
                        group: rule.group.clone(),
                        priority: rule.priority,
                        tags: rule.add_tags.iter().map(|t| t.to_lowercase()).collect(),
                        custom_fields: rule.custom_fields.clone(),
                    },
                };
            }
        }
        Route {
            rule: None,
            destinations: vec![self.default_destination.clone()],
            routing: Routing::default(),
        }
    }

    /// Every rule in order with why it matched or not, up to and including the first match.
    pub fn explain(&self, event: &ConversationEvent) -> Vec<Explanation> {
        let mut lines = Vec::new();
        for rule in &self.rules {
            let mismatch = self.mismatch(rule, event);
            let matched = mismatch.is_none();
            lines.push(Explanation {
                rule: rule.name.clone(),
                matched,
                reason: mismatch.unwrap_or_else(|| "every condition holds".to_owned()),
            });
            if matched {
                break;
            }
        }
        lines
    }

    /// The first condition of `rule` that `event` fails, described; `None` when all hold.
    fn mismatch(&self, rule: &RuleConfig, event: &ConversationEvent) -> Option<String> {
        let provider = event.provider.clone().unwrap_or_default();
        let channel = channel_name(event.channel());
        if !rule.channels.is_empty() && !rule.channels.iter().any(|c| c.eq_ignore_ascii_case(channel)) {
            return Some(format!("channel `{channel}` is not in {:?}", rule.channels));
        }
        if !rule.providers.is_empty() && !rule.providers.contains(&provider.provider) {
            return Some(format!("provider `{}` is not in {:?}", provider.provider, rule.providers));
        }
        if !rule.accounts.is_empty() && !rule.accounts.contains(&provider.account) {
            return Some(format!("account `{}` is not in {:?}", provider.account, rule.accounts));
        }
        if !rule.languages.is_empty() {
            let language = event.language.to_lowercase();
            let primary = language.split('-').next().unwrap_or_default();
            if !rule
                .languages
                .iter()
                .any(|l| l.eq_ignore_ascii_case(&language) || l.eq_ignore_ascii_case(primary))
            {
                return Some(format!("language `{}` is not in {:?}", event.language, rule.languages));
            }
        }
        if !rule.tags.is_empty() && !rule.tags.iter().any(|t| event.tags.iter().any(|e| e.eq_ignore_ascii_case(t))) {
            return Some(format!("no tag of {:?} among the event's {:?}", rule.tags, event.tags));
        }
        let identifiers: Vec<(Kind, &str)> = event
            .participants
            .iter()
            .filter(|p| p.role() == Role::Customer)
            .flat_map(|p| p.identifiers.iter().map(|i| (i.kind(), i.value.as_str())))
            .collect();
        if !rule.customers.is_empty()
            && !rule
                .customers
                .iter()
                .any(|c| identifiers.iter().any(|(_, value)| value.eq_ignore_ascii_case(c)))
        {
            return Some("no customer identifier is in `customers`".to_owned());
        }
        if !rule.customer_domains.is_empty() {
            let domains: Vec<String> = identifiers
                .iter()
                .filter(|(kind, _)| *kind == Kind::Email)
                .filter_map(|(_, value)| value.rsplit_once('@').map(|(_, d)| d.to_lowercase()))
                .collect();
            let hit = rule.customer_domains.iter().any(|wanted| {
                let wanted = wanted.trim_start_matches('@').to_lowercase();
                domains.iter().any(|d| *d == wanted || d.ends_with(&format!(".{wanted}")))
            });
            if !hit {
                return Some(format!("customer email domains {domains:?} are not in {:?}", rule.customer_domains));
            }
        }
        if !rule.keywords.is_empty() {
            let text = format!(
                "{}\n{}",
                event.subject,
                event.body.as_ref().map(|b| b.text.as_str()).unwrap_or_default()
            )
            .to_lowercase();
            let text = fold(&text);
            if !rule.keywords.iter().any(|k| text.contains(&fold(k))) {
                return Some(format!("none of the keywords {:?} is in the subject or text", rule.keywords));
            }
        }
        if let Some(wanted) = rule.business_hours {
            let at = event.occurred_at.or(event.received_at).map(|t| t.seconds).unwrap_or_default();
            let at = jiff::Timestamp::from_second(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            let inside = self
                .hours
                .as_ref()
                .and_then(|(_, compiled)| compiled.as_ref())
                .is_some_and(|h| h.is_open(at));
            let holds = (wanted == HoursCondition::Inside) == inside;
            if !holds {
                return Some(format!("the event is {} business hours", if inside { "inside" } else { "outside" }));
            }
        }
        None
    }
}

fn channel_names() -> Vec<&'static str> {
    channels::channels().iter().map(|info| info.name).collect()
}

/// The config name of a channel (`web_chat`, `sms`, ...; see `omni_proto::channels`).
pub fn channel_name(channel: Channel) -> &'static str {
    channels::channel_info(channel).map_or("unspecified", |info| info.name)
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::{Body, ContactIdentifier, Participant, ProviderReference};

    use super::*;

    fn event(channel: Channel, email: &str, subject: &str, text: &str, language: &str, at: i64) -> ConversationEvent {
        ConversationEvent {
            event_id: "e".into(),
            conversation_id: "c".into(),
            channel: channel as i32,
            participants: vec![Participant {
                role: Role::Customer as i32,
                display_name: String::new(),
                identifiers: vec![ContactIdentifier {
                    kind: Kind::Email as i32,
                    value: email.into(),
                    platform: String::new(),
                }],
            }],
            subject: subject.into(),
            body: Some(Body {
                text: text.into(),
                ..Default::default()
            }),
            language: language.into(),
            occurred_at: Some(prost_types::Timestamp { seconds: at, nanos: 0 }),
            provider: Some(ProviderReference {
                provider: "imap".into(),
                account: "support".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn hours() -> BusinessHoursConfig {
        window("09:00", "18:00")
    }

    /// Weekdays from `start` to `end` at +03:00, in the router's earlier shape.
    fn window(start: &str, end: &str) -> BusinessHoursConfig {
        let days = ["mon", "tue", "wed", "thu", "fri"];
        let table = serde_json::json!({ "utc_offset": "+03:00", "days": days, "start": start, "end": end });
        serde_json::from_value::<RouterHours>(table).unwrap().0
    }

    /// Whether `hours` are open at the Unix time `at`.
    fn open(hours: &BusinessHoursConfig, at: i64) -> bool {
        BusinessHours::new(hours)
            .unwrap()
            .is_open(jiff::Timestamp::from_second(at).unwrap())
    }

    // 2026-11-23 is a Monday. 07:00 UTC = 10:00 at +03:00; 16:00 UTC = 19:00.
    const MONDAY_10_LOCAL: i64 = 1_795_392_000 + 7 * 3600;
    const MONDAY_19_LOCAL: i64 = 1_795_392_000 + 16 * 3600;

    fn rules() -> Rules {
        Rules::new(
            vec![
                RuleConfig {
                    name: "refunds-tr".into(),
                    languages: vec!["tr".into()],
                    keywords: vec!["iade".into()],
                    destinations: vec!["zendesk".into(), "rt".into()],
                    group: Some("Returns".into()),
                    priority: Some(Priority::High),
                    add_tags: vec!["Refund".into()],
                    ..Default::default()
                },
                RuleConfig {
                    name: "vip".into(),
                    customer_domains: vec!["bigcorp.com".into()],
                    destinations: vec!["zendesk".into()],
                    priority: Some(Priority::Urgent),
                    ..Default::default()
                },
                RuleConfig {
                    name: "after-hours-whatsapp".into(),
                    channels: vec!["whatsapp".into()],
                    business_hours: Some(HoursCondition::Outside),
                    custom_fields: [("shift".to_owned(), "night".to_owned())].into(),
                    ..Default::default()
                },
            ],
            "rt".into(),
            Some(hours()),
        )
    }

    #[test]
    fn first_matching_rule_wins_and_sets_the_ticket_fields() {
        let refund = event(
            Channel::Email,
            "ayse@bigcorp.com",
            "Sipariş 1042",
            "İade etmek istiyorum",
            "tr-TR",
            0,
        );
        let route = rules().route(&refund);
        assert_eq!(route.rule.as_deref(), Some("refunds-tr"));
        assert_eq!(route.destinations, ["zendesk", "rt"]);
        assert_eq!(route.routing.group.as_deref(), Some("Returns"));
        assert_eq!(route.routing.priority, Some(Priority::High));
        assert_eq!(route.routing.tags, ["refund"]);
        // Same customer, no refund keyword: the VIP rule.
        let vip = event(
            Channel::Email,
            "Jan@Shop.BigCorp.com",
            "Levering",
            "Waar blijft mijn pakket?",
            "nl",
            0,
        );
        assert_eq!(rules().route(&vip).rule.as_deref(), Some("vip"));
        assert_eq!(rules().route(&vip).routing.priority, Some(Priority::Urgent));
    }

    #[test]
    fn business_hours_and_the_default_route() {
        let night = event(Channel::Whatsapp, "x@example.com", "", "Merhaba", "", MONDAY_19_LOCAL);
        let route = rules().route(&night);
        assert_eq!(route.rule.as_deref(), Some("after-hours-whatsapp"));
        assert_eq!(route.destinations, ["rt"], "no destinations: the default");
        assert_eq!(route.routing.custom_fields.get("shift").map(String::as_str), Some("night"));
        let day = event(Channel::Whatsapp, "x@example.com", "", "Merhaba", "", MONDAY_10_LOCAL);
        let route = rules().route(&day);
        assert_eq!(
            route,
            Route {
                rule: None,
                destinations: vec!["rt".into()],
                routing: Routing::default()
            }
        );
        // Saturday 10:00 local is outside too.
        assert!(!open(&hours(), MONDAY_10_LOCAL + 5 * 86_400));
        assert!(open(&hours(), MONDAY_10_LOCAL + 4 * 86_400), "Friday");
        // Overnight: Friday 22:00 to Saturday 06:00 belongs to Friday.
        let night = window("22:00", "06:00");
        let friday_23 = MONDAY_10_LOCAL + 4 * 86_400 + 13 * 3600;
        assert!(open(&night, friday_23));
        assert!(open(&night, friday_23 + 6 * 3600), "Saturday 05:00, Friday's night");
        assert!(
            !open(&night, friday_23 + 30 * 3600),
            "Sunday 05:00 follows Saturday, not a working day"
        );
        assert!(!open(&night, MONDAY_10_LOCAL));
    }

    #[test]
    fn business_hours_take_the_notifiers_shape_with_a_time_zone() {
        let table = serde_json::json!({
            "timezone": "Europe/Amsterdam",
            "week": { "monday": ["09:00-18:00"] },
            "holidays": ["2026-12-28"],
        });
        let amsterdam = serde_json::from_value::<RouterHours>(table).unwrap().0;
        // Mondays 07:30 UTC: 09:30 in summer (CEST), 08:30 in winter (CET).
        let summer = jiff::Timestamp::from_second(1_783_323_000).unwrap(); // 2026-07-06
        let winter = jiff::Timestamp::from_second(1_799_047_800).unwrap(); // 2027-01-04
        let hours = BusinessHours::new(&amsterdam).unwrap();
        assert!(hours.is_open(summer), "09:30 CEST");
        assert!(!hours.is_open(winter), "08:30 CET");
        assert!(!hours.is_open(winter + jiff::SignedDuration::from_hours(-7 * 24 + 2)), "a holiday");
        // A rule reads them through the same path.
        let rules = Rules::new(vec![], "rt".into(), Some(amsterdam));
        let mut problems = Problems::default();
        rules.validate("router", &["rt"], &mut problems);
        assert!(problems.items().is_empty(), "{problems:?}");
    }

    #[test]
    fn the_earlier_window_shape_names_its_own_keys_when_wrong() {
        let window = |days: &[&str], start: &str, end: &str| {
            let table = serde_json::json!({ "utc_offset": "+03:00", "days": days, "start": start, "end": end });
            serde_json::from_value::<RouterHours>(table).map(|hours| hours.0)
        };
        let error = window(&["mon", "funday"], "09:00", "18:00").unwrap_err().to_string();
        assert!(error.contains("business_hours.days: `funday`"), "{error}");
        let error = window(&["mon"], "9am", "18:00").unwrap_err().to_string();
        assert!(error.contains("business_hours.start: `9am`"), "{error}");
        let until_midnight = window(&["sat"], "10:00", "24:00").unwrap();
        assert_eq!(until_midnight.week["saturday"], ["10:00-24:00"]);
        // An end of 00:00 after a later start ran to midnight, and still does.
        let evening = window(&["fri"], "22:00", "00:00").unwrap();
        assert_eq!(evening.week["friday"], ["22:00-24:00"]);
        assert!(!evening.week.contains_key("saturday"), "{:?}", evening.week);
        let mut problems = Problems::default();
        Rules::new(vec![], "rt".into(), Some(hours())).validate("router", &["rt"], &mut problems);
        assert!(problems.items().is_empty(), "{problems:?}");
        let mistyped = serde_json::json!({ "utc_offset": "+03:00", "days": ["mon"], "start": "09:00", "ende": "18:00" });
        let error = serde_json::from_value::<RouterHours>(mistyped).unwrap_err().to_string();
        assert!(error.contains("ende"), "{error}");
    }

    #[test]
    fn explain_says_why_each_rule_failed_up_to_the_match() {
        let day = event(Channel::Whatsapp, "x@example.com", "", "Merhaba", "nl", MONDAY_10_LOCAL);
        let lines = rules().explain(&day);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| !l.matched));
        assert_eq!(lines[0].reason, "language `nl` is not in [\"tr\"]");
        assert!(
            lines[1].reason.starts_with("customer email domains [\"example.com\"]"),
            "{}",
            lines[1].reason
        );
        assert_eq!(lines[2].reason, "the event is inside business hours");
    }

    #[test]
    fn config_problems_are_named() {
        let mut bad = rules();
        bad.rules[0].destinations.push("freshdesk".into());
        bad.rules[1].channels.push("fax".into());
        let mut hours = hours();
        hours.week.insert("monday".into(), vec!["9am-18:00".into()]);
        let bad = Rules::new(bad.rules, bad.default_destination, Some(hours));
        let mut problems = Problems::default();
        bad.validate("router", &["rt", "zendesk"], &mut problems);
        let keys: Vec<&str> = problems.items().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "router.business_hours.week.monday",
                "router.rules[0].destinations",
                "router.rules[1].channels"
            ]
        );
    }
}
