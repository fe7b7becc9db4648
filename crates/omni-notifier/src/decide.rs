//! Whether a new ticket is acknowledged, and the acknowledgement itself: a pure function of the
//! delivery, the customer's previous acknowledgement and the clock, so every rule is tested here
//! without a broker.
//!
//! Loop-safe as RFC 3834 asks: nothing is sent for a message tagged `auto-reply` or `bounce`
//! (the email adapter reads `Auto-Submitted`, `X-Autoreply`, `Precedence`, delivery reports),
//! for list mail (`mailing-list`: `List-Id`, `Precedence: list`), to a robot's address
//! (`noreply`, `mailer-daemon`, ...) or one of the team's own, and a customer gets at most one
//! acknowledgement per window. The mail itself carries `Auto-Submitted: auto-replied` and
//! In-Reply-To the customer's message (omni-channels' email/send.rs).

use std::collections::HashMap;
use std::time::SystemTime;

use jiff::Timestamp;
use omni_proto::v1::contact_identifier::Kind as IdentifierKind;
use omni_proto::v1::delivery::Outcome;
use omni_proto::v1::outbound_message::Kind;
use omni_proto::v1::{AcknowledgementRecord, Body, Delivery, OutboundMessage};
use omni_router::helpdesk::replies::outbound_id;
use omni_router::rules::channel_name;

use crate::config::NotifierConfig;
use crate::hours::BusinessHours;
use crate::render;

/// Why a new ticket got no acknowledgement; each is counted by [`Suppressed::reason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suppressed {
    /// The channel is not in `[notifier.channels]`.
    ChannelOff,
    /// The account is not in the channel's `accounts`.
    AccountOff,
    /// An auto-reply or a bounce.
    Automated,
    /// Mail that came through a mailing list.
    MailingList,
    /// No customer to write to.
    NoCustomer,
    /// A robot's address (`noreply`, `mailer-daemon`, ...).
    RobotAddress,
    /// One of the team's own addresses or domains.
    OwnAddress,
    /// The customer was acknowledged within the window.
    Window,
    /// The ticket was opened longer ago than `max_age_secs`.
    Stale,
}

impl Suppressed {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::ChannelOff => "channel_off",
            Self::AccountOff => "account_off",
            Self::Automated => "automated",
            Self::MailingList => "mailing_list",
            Self::NoCustomer => "no_customer",
            Self::RobotAddress => "robot_address",
            Self::OwnAddress => "own_address",
            Self::Window => "window",
            Self::Stale => "stale",
        }
    }
}

/// An acknowledgement to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Acknowledgement {
    /// The state key of the customer (`customer/<channel>/<identifier>`).
    pub customer_key: String,
    /// The record for `omni.outbound.v1`.
    pub outbound: OutboundMessage,
    /// The template language picked.
    pub language: String,
}

/// Whether a delivery says its event opened a ticket: `CREATED`, or a `DUPLICATE` of the event
/// that did (a router that stopped before recording `CREATED`).
pub fn opened_a_ticket(delivery: &Delivery) -> bool {
    delivery.outcome() == Outcome::Created || (delivery.outcome() == Outcome::Duplicate && delivery.opened_ticket)
}

/// Decides about one delivery whose event opened a ticket ([`opened_a_ticket`]);
/// `acknowledged` holds each customer's latest acknowledgement by customer key.
pub fn decide(
    config: &NotifierConfig,
    hours: &BusinessHours,
    delivery: &Delivery,
    acknowledged: &HashMap<String, AcknowledgementRecord>,
    now: Timestamp,
) -> Result<Acknowledgement, Suppressed> {
    debug_assert!(opened_a_ticket(delivery));
    let channel = channel_name(delivery.channel());
    let target = config.channels.get(channel).ok_or(Suppressed::ChannelOff)?;
    if !target.accounts.is_empty() && !target.accounts.contains(&delivery.account) {
        return Err(Suppressed::AccountOff);
    }
    check_loops(config, delivery)?;
    let delivered_at = delivery
        .delivered_at
        .and_then(|at| Timestamp::new(at.seconds, at.nanos).ok())
        .unwrap_or(now);
    if now.duration_since(delivered_at).as_secs() > i64::try_from(config.max_age_secs).unwrap_or(i64::MAX) {
        return Err(Suppressed::Stale);
    }
    let customer_key = customer_key(channel, delivery).ok_or(Suppressed::NoCustomer)?;
    let id = outbound_id(&delivery.destination, &format!("ack/{}", delivery.ticket_id));
    if let Some(last) = acknowledged.get(&customer_key)
        && last.outbound_id != id
        && let Some(at) = last.acknowledged_at.and_then(|at| Timestamp::new(at.seconds, at.nanos).ok())
        && now.duration_since(at).as_secs() < i64::try_from(config.window_secs).unwrap_or(i64::MAX)
    {
        return Err(Suppressed::Window);
    }
    let language = render::template_language(&config.templates, &delivery.language, &config.default_language);
    let template = &config.templates[language];
    let expected = hours.after(now, target.first_response_minutes);
    let expected = jiff::fmt::strtime::format(template.time_format.as_bytes(), &expected).unwrap_or_else(|_| expected.to_string());
    let links = render::article_links(&config.articles, &delivery.tags, language, &config.default_language);
    let text = render::render(template, &delivery.ticket_id, &expected, &links);
    Ok(Acknowledgement {
        customer_key,
        outbound: outbound(delivery, id, text),
        language: language.to_owned(),
    })
}

/// The loop rules: automated mail, list mail, robots and the team itself get nothing.
fn check_loops(config: &NotifierConfig, delivery: &Delivery) -> Result<(), Suppressed> {
    let tagged = |tag: &str| delivery.tags.iter().any(|t| t == tag);
    if tagged("auto-reply") || tagged("bounce") {
        return Err(Suppressed::Automated);
    }
    if tagged("mailing-list") {
        return Err(Suppressed::MailingList);
    }
    let customer = delivery.customer.as_ref().ok_or(Suppressed::NoCustomer)?;
    // The address the sender writes to: an email's Reply-To (else From), which is what a robot
    // or the team itself would receive; the customer's own addresses only when there is none.
    let emails: Vec<String> = if delivery.reply_to.contains('@') {
        vec![delivery.reply_to.to_lowercase()]
    } else {
        customer
            .identifiers
            .iter()
            .filter(|i| i.kind == IdentifierKind::Email as i32)
            .map(|i| i.value.to_lowercase())
            .collect()
    };
    for email in emails {
        let (local, domain) = email.rsplit_once('@').unwrap_or((&email, ""));
        let local = robot_local_part(local);
        if config
            .robot_local_parts
            .iter()
            .any(|robot| local.starts_with(&robot_local_part(robot)))
        {
            return Err(Suppressed::RobotAddress);
        }
        let own_address = config.own_addresses.iter().any(|own| own.eq_ignore_ascii_case(&email));
        let own_domain = config.own_domains.iter().any(|own| own.eq_ignore_ascii_case(domain));
        if own_address || own_domain {
            return Err(Suppressed::OwnAddress);
        }
    }
    Ok(())
}

/// A local part as compared: lowercase, without `-`, `_` and `.` (`No-Reply` is `noreply`).
pub(crate) fn robot_local_part(local: &str) -> String {
    local.to_lowercase().chars().filter(|c| !matches!(c, '-' | '_' | '.')).collect()
}

/// `customer/<channel>/<first identifier, lowercase>`; `None` without one.
fn customer_key(channel: &str, delivery: &Delivery) -> Option<String> {
    let identifier = delivery.customer.as_ref()?.identifiers.iter().find(|i| !i.value.is_empty())?;
    Some(format!("customer/{channel}/{}", identifier.value.to_lowercase()))
}

fn outbound(delivery: &Delivery, outbound_id: String, text: String) -> OutboundMessage {
    OutboundMessage {
        outbound_id,
        conversation_id: delivery.conversation_id.clone(),
        kind: Kind::Acknowledgement as i32,
        destination: delivery.destination.clone(),
        ticket_id: delivery.ticket_id.clone(),
        ticket_url: delivery.ticket_url.clone(),
        comment_id: String::new(),
        agent: None,
        body: Some(Body {
            text,
            ..Default::default()
        }),
        attachments: Vec::new(),
        // Empty: the sender answers under the conversation's own subject, `Re:` and the ticket
        // reference added, so the customer's client threads it.
        subject: String::new(),
        ticket_reference: delivery.ticket_reference.clone(),
        written_at: Some(SystemTime::now().into()),
        received_at: Some(SystemTime::now().into()),
    }
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::{Channel, ContactIdentifier, Participant};
    use omni_runtime::{Problems, Settings};

    use super::*;

    fn config() -> NotifierConfig {
        let settings = Settings::load_from(None, std::iter::empty()).unwrap();
        let mut problems = Problems::default();
        let config: NotifierConfig = settings.section("notifier", &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems}");
        config
    }

    fn hours(config: &NotifierConfig) -> BusinessHours {
        BusinessHours::new(&config.business_hours).unwrap()
    }

    /// Wednesday 2 December 2026, 10:00 in Istanbul (the shipped business hours' zone).
    fn wednesday_morning() -> Timestamp {
        "2026-12-02T07:00:00Z".parse().unwrap()
    }

    fn created(email: &str, language: &str, tags: &[&str]) -> Delivery {
        Delivery {
            event_id: "e1".into(),
            conversation_id: "c1".into(),
            destination: "rt".into(),
            outcome: Outcome::Created as i32,
            ticket_id: "42".into(),
            delivered_at: Some(prost_types::Timestamp {
                seconds: wednesday_morning().as_second() - 5,
                nanos: 0,
            }),
            channel: Channel::Email as i32,
            customer: Some(Participant {
                identifiers: vec![ContactIdentifier {
                    kind: IdentifierKind::Email as i32,
                    value: email.into(),
                    platform: String::new(),
                }],
                ..Default::default()
            }),
            language: language.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            ticket_reference: "[omni-local #42]".into(),
            account: "support".into(),
            ..Default::default()
        }
    }

    fn decide_now(
        config: &NotifierConfig,
        delivery: &Delivery,
        acknowledged: &HashMap<String, AcknowledgementRecord>,
    ) -> Result<Acknowledgement, Suppressed> {
        decide(config, &hours(config), delivery, acknowledged, wednesday_morning())
    }

    #[test]
    fn a_turkish_return_gets_the_turkish_template_its_ticket_time_and_link() {
        let config = config();
        let ack = decide_now(&config, &created("Ayse@Example.com", "tr", &["returns"]), &HashMap::new()).unwrap();
        assert_eq!(ack.language, "tr");
        assert_eq!(ack.customer_key, "customer/email/ayse@example.com");
        let outbound = &ack.outbound;
        assert_eq!(outbound.kind(), Kind::Acknowledgement);
        assert_eq!(
            (outbound.conversation_id.as_str(), outbound.ticket_reference.as_str()),
            ("c1", "[omni-local #42]")
        );
        assert_eq!(outbound.outbound_id, outbound_id("rt", "ack/42"));
        let text = &outbound.body.as_ref().unwrap().text;
        // 480 business minutes from Wednesday 10:00 with 09:00-18:00 days: Wednesday 18:00.
        assert!(text.contains("Talep numaranız #42"), "{text}");
        assert!(text.contains("En geç 02.12.2026 18:00"), "{text}");
        assert!(text.ends_with("\n- https://shop.example/tr/yardim/iade"), "{text}");
    }

    #[test]
    fn an_unknown_language_gets_the_default_template_and_no_area_no_link() {
        let config = config();
        let ack = decide_now(&config, &created("jan@example.nl", "", &[]), &HashMap::new()).unwrap();
        assert_eq!(ack.language, "en");
        assert!(!ack.outbound.body.unwrap().text.contains("https://"));
    }

    #[test]
    fn automated_list_robot_and_own_mail_get_nothing() {
        let config = config();
        let none = HashMap::new();
        let cases = [
            (created("a@example.com", "en", &["auto-reply"]), Suppressed::Automated),
            (created("a@example.com", "en", &["bounce"]), Suppressed::Automated),
            (created("a@example.com", "en", &["mailing-list"]), Suppressed::MailingList),
            (created("No-Reply@shop.example", "en", &[]), Suppressed::RobotAddress),
            (created("MAILER-DAEMON@mx.example", "en", &[]), Suppressed::RobotAddress),
            (created("support@omni.local", "en", &[]), Suppressed::OwnAddress),
            (created("agent@omni.local", "en", &[]), Suppressed::OwnAddress),
        ];
        for (delivery, expected) in cases {
            assert_eq!(decide_now(&config, &delivery, &none).err(), Some(expected), "{delivery:?}");
        }
        let mut nobody = created("a@example.com", "en", &[]);
        nobody.customer = None;
        assert_eq!(decide_now(&config, &nobody, &none).err(), Some(Suppressed::NoCustomer));
    }

    #[test]
    fn the_address_the_answer_goes_to_is_the_one_checked() {
        let mut config = config();
        // A contact form: From a robot, Reply-To the customer.
        let mut form = created("no-reply@forms.example", "en", &[]);
        form.reply_to = "jan@example.nl".into();
        assert!(decide_now(&config, &form, &HashMap::new()).is_ok());
        // A person whose Reply-To is a robot's or the team's own address.
        let mut person = created("jan@example.nl", "en", &[]);
        person.reply_to = "Mailer-Daemon@mx.example".into();
        assert_eq!(decide_now(&config, &person, &HashMap::new()).err(), Some(Suppressed::RobotAddress));
        person.reply_to = "Support@omni.local".into();
        assert_eq!(decide_now(&config, &person, &HashMap::new()).err(), Some(Suppressed::OwnAddress));
        // Robots' local parts as people write them match as configured.
        config.robot_local_parts = vec!["Do-Not-Reply".into()];
        let robot = created("do_not_reply@shop.example", "en", &[]);
        assert_eq!(decide_now(&config, &robot, &HashMap::new()).err(), Some(Suppressed::RobotAddress));
    }

    #[test]
    fn a_duplicate_of_the_event_that_opened_the_ticket_counts_as_new() {
        let mut delivery = created("a@example.com", "en", &[]);
        assert!(opened_a_ticket(&delivery));
        delivery.outcome = Outcome::Duplicate as i32;
        assert!(!opened_a_ticket(&delivery), "a follow-up delivered twice");
        delivery.opened_ticket = true;
        assert!(opened_a_ticket(&delivery), "the router stopped before recording CREATED");
        delivery.outcome = Outcome::Appended as i32;
        assert!(!opened_a_ticket(&delivery));
    }

    #[test]
    fn unlisted_channels_and_accounts_and_old_tickets_get_nothing() {
        let mut config = config();
        let mut sms = created("a@example.com", "en", &[]);
        sms.channel = Channel::Sms as i32;
        assert_eq!(decide_now(&config, &sms, &HashMap::new()).err(), Some(Suppressed::ChannelOff));
        config.channels.get_mut("email").unwrap().accounts = vec!["sales".into()];
        let delivery = created("a@example.com", "en", &[]);
        assert_eq!(decide_now(&config, &delivery, &HashMap::new()).err(), Some(Suppressed::AccountOff));
        config.channels.get_mut("email").unwrap().accounts.clear();
        let mut old = delivery;
        old.delivered_at.as_mut().unwrap().seconds -= 2 * 3600;
        assert_eq!(decide_now(&config, &old, &HashMap::new()).err(), Some(Suppressed::Stale));
    }

    #[test]
    fn one_acknowledgement_per_customer_per_window_but_the_same_one_again_after_a_crash() {
        let config = config();
        let first = decide_now(&config, &created("a@example.com", "en", &[]), &HashMap::new()).unwrap();
        let record = AcknowledgementRecord {
            outbound_id: first.outbound.outbound_id.clone(),
            ticket_id: "42".into(),
            acknowledged_at: Some(prost_types::Timestamp {
                seconds: wednesday_morning().as_second() - 60,
                nanos: 0,
            }),
        };
        let acknowledged = HashMap::from([(first.customer_key.clone(), record)]);
        // The same ticket handled again (a crash before the offset was stored): the same record.
        let again = decide_now(&config, &created("a@example.com", "en", &[]), &acknowledged).unwrap();
        assert_eq!(again.outbound.outbound_id, first.outbound.outbound_id);
        // A second ticket of the same customer a minute later: none.
        let mut second = created("A@example.com", "en", &[]);
        second.ticket_id = "43".into();
        assert_eq!(decide_now(&config, &second, &acknowledged).err(), Some(Suppressed::Window));
        // Another customer: acknowledged.
        let mut other = second.clone();
        other.customer.as_mut().unwrap().identifiers[0].value = "b@example.com".into();
        assert!(decide_now(&config, &other, &acknowledged).is_ok());
    }
}
