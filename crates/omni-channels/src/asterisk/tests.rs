//! Fixtures in `src/asterisk/fixtures/` follow the line format of `build_csv_record` in Asterisk's
//! `cdr/cdr_csv.c` (https://github.com/asterisk/asterisk/blob/master/cdr/cdr_csv.c): text columns
//! quoted with inner quotes doubled, `duration`/`billsec`/`sequence` bare integers, an unset time
//! (answer of an unanswered call) an empty unquoted column, `uniqueid`/`userfield` with
//! `loguniqueid`/`loguserfield` and `peeraccount`/`linkedid`/`sequence` with `newcdrcolumns` (the
//! `[csv]` options of `configs/samples/cdr.conf.sample`). `Master.csv` has uniqueid and userfield,
//! times in UTC (`usegmtime = yes`); `Master-defaults.csv` has the 16 default columns in local
//! time (+03:00); `Master-newcdrcolumns.csv` has all 21 columns: one ring-group call logged as
//! two records with one uniqueid.

use std::collections::HashMap;

use omni_proto::v1::call_data::Outcome;
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::{Channel, ConversationEvent, Direction, RawRecord};

use super::*;

const MASTER: &str = include_str!("fixtures/Master.csv");
const DEFAULTS: &str = include_str!("fixtures/Master-defaults.csv");
const NEW_COLUMNS: &str = include_str!("fixtures/Master-newcdrcolumns.csv");

/// The lines of a fixture, each with its newline, as the connector stores them.
fn lines(file: &str) -> Vec<String> {
    file.split_inclusive('\n').map(str::to_owned).collect()
}

fn master_settings() -> CdrSettings {
    CdrSettings {
        columns: Some(columns(true, true, false)),
        ..CdrSettings::default()
    }
}

fn raw_with(account: &str, line: &str, settings: &CdrSettings) -> RawRecord {
    RawRecord {
        event_id: line_ids(account, line.as_bytes(), settings).event_id,
        channel: Channel::Voice as i32,
        provider: PROVIDER.into(),
        account: account.into(),
        content_type: CONTENT_TYPE.into(),
        payload: line.as_bytes().to_vec(),
        received_at: Some(crate::webhook::unix_seconds(1_795_400_000)),
        attributes: settings.attributes().into_iter().collect(),
        ..Default::default()
    }
}

fn normalize(raw: &RawRecord) -> Result<Option<ConversationEvent>, NormalizeError> {
    Asterisk.normalize(raw, &crate::NoKnownEvents)
}

/// The event of line `index` of `Master.csv`.
fn master_event(index: usize) -> ConversationEvent {
    let line = &lines(MASTER)[index];
    normalize(&raw_with("pbx", line, &master_settings()))
        .unwrap()
        .expect("a customer call")
}

fn call(event: &ConversationEvent) -> &CallData {
    event.call.as_ref().unwrap()
}

fn text(event: &ConversationEvent) -> &str {
    &event.body.as_ref().unwrap().text
}

#[test]
fn lines_parse_in_cdr_csv_column_order() {
    let cdr = parse_line(lines(MASTER)[0].as_bytes(), Some(&columns(true, true, false))).unwrap();
    assert_eq!(cdr.src, "905551112233");
    assert_eq!(cdr.dst, "31201234567");
    assert_eq!(cdr.dcontext, "from-trunk");
    assert_eq!(
        cdr.clid, "\"Ayşe Yılmaz\" <905551112233>",
        "doubled quotes are undone, the name kept exactly"
    );
    assert_eq!(cdr.channel, "PJSIP/trunk-00000012");
    assert_eq!(cdr.dstchannel, "PJSIP/alice-00000013");
    assert_eq!((cdr.lastapp.as_str(), cdr.lastdata.as_str()), ("Dial", "PJSIP/alice,30,tT"));
    assert_eq!(
        (cdr.start.as_str(), cdr.answer.as_str(), cdr.end.as_str()),
        ("2026-11-22 10:15:00", "2026-11-22 10:15:07", "2026-11-22 10:18:27")
    );
    assert_eq!((cdr.duration, cdr.billsec), (207, 200));
    assert_eq!((cdr.disposition.as_str(), cdr.amaflags.as_str()), ("ANSWERED", "DOCUMENTATION"));
    assert_eq!((cdr.uniqueid.as_str(), cdr.userfield.as_str()), ("1795342500.18", ""));
    assert_eq!(cdr.message_id().as_deref(), Some("1795342500.18/PJSIP/alice-00000013"));

    let unanswered = parse_line(lines(MASTER)[1].as_bytes(), None).unwrap();
    assert_eq!(unanswered.answer, "", "an unset time is an empty unquoted column");
    assert_eq!(unanswered.disposition, "NO ANSWER");
    assert_eq!(
        unanswered.uniqueid, "1795345200.20",
        "18 fields without attributes: uniqueid and userfield"
    );
}

#[test]
fn each_disposition_becomes_its_outcome_and_tag() {
    let expected = [
        (
            0,
            Outcome::Answered,
            "answered-call",
            "Answered call from +905551112233 to +31201234567 at 2026-11-22 10:15:00 UTC, 200 s, agent alice.",
        ),
        (
            1,
            Outcome::Missed,
            "missed-call",
            "Missed call from +905551112233 to +31201234567 at 2026-11-22 11:00:00 UTC.",
        ),
        (
            2,
            Outcome::Voicemail,
            "voicemail",
            "Voicemail from +31612345678 to +31201234567 at 2026-11-22 12:00:00 UTC, 25 s.\nRecording: 1001@default",
        ),
        (
            3,
            Outcome::Busy,
            "busy-call",
            "Busy call from +966501234567 to +31201234567 at 2026-11-22 13:00:00 UTC.",
        ),
        (
            4,
            Outcome::Failed,
            "failed-call",
            "Failed call from +31104567890 to +31201234567 at 2026-11-22 14:00:00 UTC.",
        ),
        (
            5,
            Outcome::Failed,
            "failed-call",
            "Failed call from +31104567891 to +31201234567 at 2026-11-22 15:00:00 UTC.",
        ),
    ];
    for (index, outcome, tag, sentence) in expected {
        let event = master_event(index);
        assert_eq!(call(&event).outcome(), outcome, "line {index}");
        assert_eq!(event.tags, ["call", tag], "line {index}");
        assert_eq!(text(&event), sentence, "line {index}");
        assert_eq!(event.body.as_ref().unwrap().new_text, sentence);
        assert_eq!(event.direction(), Direction::Inbound, "line {index}");
        assert_eq!(event.channel(), Channel::Voice);
    }
}

#[test]
fn an_answered_inbound_call_has_every_field() {
    let event = master_event(0);
    let raw = raw_with("pbx", &lines(MASTER)[0], &master_settings());
    assert_eq!(event.event_id, raw.event_id);
    assert_eq!(
        event.event_id,
        ids::event_id("voice", "pbx", Some("1795342500.18/PJSIP/alice-00000013"), b"ignored")
    );
    let call = call(&event);
    assert_eq!((call.from.as_str(), call.to.as_str()), ("+905551112233", "+31201234567"));
    assert_eq!(call.started_at.unwrap().seconds, 1_795_342_500);
    assert_eq!(call.duration.unwrap().seconds, 200, "talk time: billsec");
    assert_eq!(call.agent, "alice");
    assert_eq!(call.call_id, "1795342500.18");
    assert_eq!(call.recording_reference, "");
    assert_eq!(event.occurred_at.unwrap().seconds, 1_795_342_500);
    assert_eq!(event.received_at, raw.received_at);
    assert_eq!(event.normalized_at, None);
    let customer = &event.participants[0];
    assert_eq!(customer.role(), Role::Customer);
    assert_eq!(customer.display_name, "Ayşe Yılmaz");
    assert_eq!(customer.identifiers.len(), 1);
    assert_eq!(
        (customer.identifiers[0].kind(), customer.identifiers[0].value.as_str()),
        (Kind::Phone, "+905551112233")
    );
    let provider = event.provider.as_ref().unwrap();
    assert_eq!(provider.provider, "asterisk");
    assert_eq!(provider.account, "pbx");
    assert_eq!(provider.message_id, "1795342500.18/PJSIP/alice-00000013");
    assert_eq!(provider.reply_to, "+905551112233");
    assert_eq!(event.subject, "");
    assert_eq!(event.participants.len(), 1);
    assert_eq!(master_event(3).participants[0].display_name, "محمد العلي");
}

#[test]
fn a_missed_call_names_no_agent_and_a_voicemail_points_at_the_mailbox() {
    let missed = master_event(1);
    assert_eq!(call(&missed).agent, "", "the phone that rang did not take the call");
    assert_eq!(call(&missed).duration.unwrap().seconds, 0);
    let voicemail = master_event(2);
    assert_eq!(call(&voicemail).recording_reference, "1001@default");
    assert_eq!(
        call(&voicemail).outcome(),
        Outcome::Voicemail,
        "VoiceMail answers the channel: ANSWERED in the CDR"
    );
    assert_eq!(voicemail.participants[0].display_name, "Jan de Vries");
}

#[test]
fn one_customer_is_one_conversation_and_another_is_another() {
    let answered = master_event(0);
    let missed = master_event(1);
    assert_eq!(answered.conversation_id, missed.conversation_id, "two calls of Ayşe to one number");
    assert_ne!(answered.event_id, missed.event_id);
    assert_ne!(answered.conversation_id, master_event(3).conversation_id, "another caller");
    assert_eq!(
        answered.conversation_id,
        ids::conversation_id(&["voice", "pbx", "+31201234567", "+905551112233"])
    );
    // The same line in another account's file is another conversation.
    let other = normalize(&raw_with("other-pbx", &lines(MASTER)[0], &master_settings()))
        .unwrap()
        .unwrap();
    assert_ne!(other.conversation_id, answered.conversation_id);
    // The connector's key is over the conversation's fields.
    let key = line_ids("pbx", lines(MASTER)[1].as_bytes(), &master_settings()).partition_key;
    assert_eq!(key, ids::partition_key(&["voice", "pbx", "+31201234567", "+905551112233"]));
    assert_eq!(key, line_ids("pbx", lines(MASTER)[0].as_bytes(), &master_settings()).partition_key);
}

#[test]
fn ids_are_stable_when_a_line_is_read_again() {
    let first = raw_with("pbx", &lines(MASTER)[0], &master_settings());
    let again = raw_with("pbx", &lines(MASTER)[0], &master_settings());
    assert_eq!(first.event_id, again.event_id);
    assert_eq!(normalize(&first).unwrap(), normalize(&again).unwrap());
    // Without uniqueid the id is over the exact bytes.
    let settings = CdrSettings {
        columns: Some(columns(false, false, false)),
        timezone: Timezone::parse("+03:00").unwrap(),
        ..CdrSettings::default()
    };
    let line = &lines(DEFAULTS)[0];
    let ids = line_ids("pbx", line.as_bytes(), &settings);
    assert_eq!(ids.event_id, ids::event_id("voice", "pbx", None, line.as_bytes()));
    assert_eq!(ids.provider_message_id, "");
}

#[test]
fn an_outbound_call_has_the_customer_as_callee_and_a_call_between_extensions_none() {
    let event = master_event(6);
    assert_eq!(event.direction(), Direction::Outbound);
    let call = call(&event);
    assert_eq!((call.from.as_str(), call.to.as_str()), ("1001", "+31612345678"), "00 read as +");
    assert_eq!(call.agent, "alice", "the agent who placed the call");
    assert_eq!(call.outcome(), Outcome::Answered);
    let customer = &event.participants[0];
    assert_eq!(customer.display_name, "", "clid is the agent's on an outbound call");
    assert_eq!(customer.identifiers[0].value, "+31612345678");
    assert_eq!(event.provider.as_ref().unwrap().reply_to, "+31612345678");
    // Customer +31612345678 calling in (the voicemail line) and called back: one conversation
    // once the business number is configured for the file.
    let settings = CdrSettings {
        business_number: Some("+31201234567".into()),
        ..master_settings()
    };
    let outbound = normalize(&raw_with("pbx", &lines(MASTER)[6], &settings)).unwrap().unwrap();
    let inbound = normalize(&raw_with("pbx", &lines(MASTER)[2], &settings)).unwrap().unwrap();
    assert_eq!(outbound.conversation_id, inbound.conversation_id);
    assert_eq!(call_of(&outbound).from, "+31201234567");

    let internal = raw_with("pbx", &lines(MASTER)[7], &master_settings());
    assert_eq!(normalize(&internal), Ok(None), "1001 calling 1002");
}

fn call_of(event: &ConversationEvent) -> &CallData {
    event.call.as_ref().unwrap()
}

#[test]
fn an_anonymous_caller_gets_a_conversation_of_the_call() {
    let event = master_event(8);
    assert!(event.participants[0].identifiers.is_empty(), "{:?}", event.participants[0]);
    assert_eq!(event.participants[0].display_name, "Anonymous");
    assert_eq!(call(&event).from, "anonymous");
    assert_eq!(
        event.conversation_id,
        ids::conversation_id(&["voice", "pbx", "+31201234567", "call", &event.event_id])
    );
    assert_eq!(call(&event).outcome(), Outcome::Missed);
}

#[test]
fn inbound_is_decided_by_context_or_trunk_channel() {
    // A FreePBX-style call that ended in a queue context: outbound by context alone...
    let line = lines(MASTER)[0].replace("\"from-trunk\"", "\"ext-queues\"");
    let by_context = normalize(&raw_with("pbx", &line, &master_settings())).unwrap().unwrap();
    assert_eq!(by_context.direction(), Direction::Outbound);
    // ...inbound once its trunk is named.
    let settings = CdrSettings {
        trunk_prefixes: vec!["PJSIP/trunk-".into()],
        ..master_settings()
    };
    let by_trunk = normalize(&raw_with("pbx", &line, &settings)).unwrap().unwrap();
    assert_eq!(by_trunk.direction(), Direction::Inbound);
    assert_eq!(by_trunk.conversation_id, master_event(0).conversation_id);
    // Configured contexts replace the defaults.
    let settings = CdrSettings {
        inbound_contexts: vec!["ext-queues".into()],
        ..master_settings()
    };
    assert_eq!(
        normalize(&raw_with("pbx", &line, &settings)).unwrap().unwrap().direction(),
        Direction::Inbound
    );
}

#[test]
fn local_times_use_the_configured_offset_and_default_to_utc() {
    let line = &lines(DEFAULTS)[0];
    let istanbul = CdrSettings {
        columns: Some(columns(false, false, false)),
        timezone: Timezone::parse("+03:00").unwrap(),
        ..CdrSettings::default()
    };
    let raw = raw_with("pbx", line, &istanbul);
    assert_eq!(raw.attributes[TIMEZONE_ATTRIBUTE], "+03:00");
    let event = normalize(&raw).unwrap().unwrap();
    assert_eq!(
        call(&event).started_at.unwrap().seconds,
        1_795_342_500,
        "13:15 in Istanbul is 10:15 UTC"
    );
    assert_eq!(call(&event).agent, "1002");
    assert_eq!(call(&event).call_id, "", "no uniqueid column");
    // A record without attributes: 16 columns inferred, UTC.
    let mut bare = raw.clone();
    bare.attributes.clear();
    let event = normalize(&bare).unwrap().unwrap();
    assert_eq!(call(&event).started_at.unwrap().seconds, 1_795_342_500 + 3 * 3600);
}

#[test]
fn one_call_logged_twice_with_one_uniqueid_is_two_events() {
    let settings = CdrSettings {
        columns: Some(columns(true, true, true)),
        ..CdrSettings::default()
    };
    let records: Vec<RawRecord> = lines(NEW_COLUMNS).iter().map(|l| raw_with("pbx", l, &settings)).collect();
    assert_ne!(records[0].event_id, records[1].event_id);
    let (bob, alice) = (normalize(&records[0]).unwrap().unwrap(), normalize(&records[1]).unwrap().unwrap());
    assert_eq!(bob.provider.as_ref().unwrap().message_id, "1795342500.48/52");
    assert_eq!(alice.provider.as_ref().unwrap().message_id, "1795342500.48/53");
    assert_eq!(alice.provider.as_ref().unwrap().thread_id, "1795342500.48", "linkedid");
    assert_eq!((call(&bob).outcome(), call(&alice).outcome()), (Outcome::Missed, Outcome::Answered));
    assert_eq!(call(&alice).agent, "alice");
    assert_eq!(bob.conversation_id, alice.conversation_id);
    // Inferred from 21 fields too.
    let mut bare = records[1].clone();
    bare.attributes.clear();
    assert_eq!(normalize(&bare).unwrap().unwrap().provider.unwrap().message_id, "1795342500.48/53");
}

fn malformed_reason(raw: &RawRecord) -> String {
    match normalize(raw) {
        Err(NormalizeError::Malformed { provider, reason }) => {
            assert_eq!(provider, "asterisk");
            reason
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn a_line_that_is_not_a_cdr_is_malformed() {
    let settings = master_settings();
    for junk in [
        "\u{feff}\x00\x01 garbage without commas\n",
        "\n",
        "accountcode,src,dst,dcontext,clid,channel,dstchannel,lastapp,lastdata,start,answer,end,duration,billsec,disposition,amaflags,uniqueid,userfield\n",
        "\"unterminated,\"quote\n",
    ] {
        let reason = malformed_reason(&raw_with("pbx", junk, &settings));
        assert!(reason.starts_with("not a cdr_csv line"), "{junk:?}: {reason}");
    }
    // The right fields in the wrong number for the file's columns.
    let sixteen = &lines(DEFAULTS)[0];
    assert_eq!(
        malformed_reason(&raw_with("pbx", sixteen, &settings)),
        "not a cdr_csv line: 16 fields where the file has 18 columns"
    );
    // A bad time or duration.
    let bad_time = lines(MASTER)[0].replace("2026-11-22 10:15:00", "22/11/2026 10:15");
    assert!(malformed_reason(&raw_with("pbx", &bad_time, &settings)).contains("`start`"));
    let bad_billsec = lines(MASTER)[0].replace(",200,", ",\"x\",");
    assert!(malformed_reason(&raw_with("pbx", &bad_billsec, &settings)).contains("`billsec`"));
    // A cut-off line written at a rotation.
    let mut cut = raw_with("pbx", &lines(MASTER)[0][..60], &settings);
    cut.attributes.insert(INCOMPLETE_ATTRIBUTE.into(), "true".into());
    assert!(malformed_reason(&cut).contains("never finished"));
    // Attributes the connector would never write.
    let mut bad_zone = raw_with("pbx", &lines(MASTER)[0], &settings);
    bad_zone.attributes.insert(TIMEZONE_ATTRIBUTE.into(), "Europe/Istanbul".into());
    assert!(malformed_reason(&bad_zone).contains("cdr_timezone"));
    // The ids of a line that cannot be read: over its bytes, keyed by the account.
    let ids = line_ids("pbx", b"garbage\n", &settings);
    assert_eq!(ids.event_id, ids::event_id("voice", "pbx", None, b"garbage\n"));
    assert_eq!(ids.partition_key, ids::partition_key(&["voice", "pbx"]));
    assert_eq!(ids.conversation_id, None);
}

#[test]
fn a_latin1_caller_name_is_read() {
    let line = lines(MASTER)[0].replace("Ayşe Yılmaz", "Jos\u{e9} Garc\u{ed}a");
    let latin1: Vec<u8> = line.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect();
    let mut raw = raw_with("pbx", &line, &master_settings());
    raw.payload = latin1;
    assert_eq!(normalize(&raw).unwrap().unwrap().participants[0].display_name, "José García");
}

#[test]
fn settings_travel_in_attributes() {
    let settings = CdrSettings {
        columns: Some(columns(true, false, true)),
        timezone: Timezone::parse("-05:00").unwrap(),
        inbound_contexts: vec!["from-pstn".into(), "did".into()],
        trunk_prefixes: vec!["PJSIP/provider-".into()],
        business_number: Some("+31201234567".into()),
    };
    let attributes: HashMap<String, String> = settings.attributes().into_iter().collect();
    assert_eq!(attributes[COLUMNS_ATTRIBUTE].split(',').count(), 20);
    assert_eq!(CdrSettings::from_attributes(&attributes), Ok(settings));
    assert_eq!(CdrSettings::from_attributes(&HashMap::new()), Ok(CdrSettings::default()));
    let bad = HashMap::from([(COLUMNS_ATTRIBUTE.to_owned(), "src,dst".to_owned())]);
    assert_eq!(CdrSettings::from_attributes(&bad), Err("CDR column `dcontext` is missing".into()));
    assert!(check_columns(&["src".into(), "src".into()]).unwrap_err().contains("twice"));
    assert!(check_columns(&["colour".into()]).unwrap_err().contains("unknown"));
}

#[test]
fn timezones_times_caller_ids_channels_and_numbers() {
    for (text, offset, shown) in [
        ("UTC", 0, "UTC"),
        ("gmt", 0, "UTC"),
        ("+03:00", 10_800, "+03:00"),
        ("-0530", -19_800, "-05:30"),
        ("+01", 3600, "+01:00"),
    ] {
        let zone = Timezone::parse(text).unwrap();
        assert_eq!((zone.offset_seconds(), zone.to_string().as_str()), (offset, shown), "{text}");
    }
    for bad in ["", "Europe/Amsterdam", "+3", "+15:00", "+03:60", "+::", "03:00", "+0:300"] {
        assert!(Timezone::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_time("1970-01-01 00:00:00", Timezone::UTC), Ok(0));
    assert_eq!(parse_time("2000-02-29 00:00:00", Timezone::UTC), Ok(951_782_400));
    assert_eq!(
        parse_time("2026-11-22 13:15:00", Timezone::parse("+03:00").unwrap()),
        Ok(1_795_342_500)
    );
    for bad in [
        "2026-02-29 00:00:00",
        "2026-11-22T10:15:00",
        "2026-13-01 00:00:00",
        "2026-11-22 24:00:00",
        "2026-11-22",
    ] {
        assert!(parse_time(bad, Timezone::UTC).is_err(), "{bad}");
    }
    assert_eq!(
        split_clid("\"Ayşe Yılmaz\" <905551112233>"),
        ("Ayşe Yılmaz".into(), "905551112233".into())
    );
    assert_eq!(split_clid("<905551112233>"), (String::new(), "905551112233".into()));
    assert_eq!(split_clid("\"\" <905551112233>"), (String::new(), "905551112233".into()));
    assert_eq!(split_clid("905551112233"), (String::new(), "905551112233".into()));
    assert_eq!(split_clid("Jan"), ("Jan".into(), String::new()));
    assert_eq!(channel_peer("PJSIP/alice-0000001f"), "alice");
    assert_eq!(channel_peer("SIP/1002-00000002"), "1002");
    assert_eq!(channel_peer("PJSIP/sales-team-0000001f"), "sales-team");
    assert_eq!(channel_peer("Local/1002@from-internal-00000003;1"), "1002@from-internal");
    assert_eq!(channel_peer("DAHDI/1-1"), "1");
    assert_eq!(channel_peer(""), "");
    assert_eq!(phone("905551112233"), "+905551112233");
    assert_eq!(phone("0031612345678"), "+31612345678");
    assert_eq!(phone("+31 20 123 4567"), "+31201234567");
    assert_eq!(phone("0201234567"), "0201234567", "a national number stays as written");
    assert_eq!(phone("1001"), "1001");
}

#[test]
fn passes_the_conformance_kit() {
    fn records(name: &str, body: &[u8]) -> Vec<RawRecord> {
        let settings = match name {
            "Master.csv" => master_settings(),
            "Master-defaults.csv" => CdrSettings {
                columns: Some(columns(false, false, false)),
                timezone: Timezone::parse("+03:00").unwrap(),
                ..CdrSettings::default()
            },
            "Master-newcdrcolumns.csv" => CdrSettings {
                columns: Some(columns(true, true, true)),
                ..CdrSettings::default()
            },
            other => panic!("{other}: which cdr.conf wrote it?"),
        };
        lines(std::str::from_utf8(body).unwrap())
            .iter()
            .map(|line| raw_with("pbx", line, &settings))
            .collect()
    }
    crate::kit::NormalizeConformance::new(&Asterisk, records).run();
}
