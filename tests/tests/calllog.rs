//! Asterisk call log end to end: a `Master.csv` appended to the way `cdr_csv` does (one quoted CSV
//! line per call, in its column order) -> omni-calllog -> tansu -> normalizer -> router -> Request
//! Tracker, through a line written in two parts, a SIGKILL of the connector and a rotation.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use omni_channels::asterisk::{self, CdrSettings};
use omni_e2e::{Pipeline, Service, eventually, free_port, serial};
use omni_proto::v1::call_data::Outcome;
use omni_proto::v1::{ConversationEvent, Direction};
use prost::Message as _;

const TIMEOUT: Duration = Duration::from_secs(90);

/// One call, written as `cdr_csv` writes it with `loguniqueid` and `loguserfield` on.
struct Call {
    src: String,
    dst: String,
    dcontext: &'static str,
    clid: String,
    channel: String,
    dstchannel: String,
    lastapp: &'static str,
    lastdata: String,
    start: i64,
    billsec: u64,
    disposition: &'static str,
    uniqueid: String,
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

fn time(seconds: i64) -> String {
    omni_channels::webhook::text::utc(seconds).trim_end_matches(" UTC").to_owned()
}

impl Call {
    fn line(&self) -> String {
        let answered = self.disposition == "ANSWERED";
        let ring = 7;
        let answer = if answered { quote(&time(self.start + ring)) } else { String::new() };
        let end = self.start + ring + self.billsec as i64;
        [
            quote(""),
            quote(&self.src),
            quote(&self.dst),
            quote(self.dcontext),
            quote(&self.clid),
            quote(&self.channel),
            quote(&self.dstchannel),
            quote(self.lastapp),
            quote(&self.lastdata),
            quote(&time(self.start)),
            answer,
            quote(&time(end)),
            (end - self.start).to_string(),
            self.billsec.to_string(),
            quote(self.disposition),
            quote("DOCUMENTATION"),
            quote(&self.uniqueid),
            quote(""),
        ]
        .join(",")
            + "\n"
    }
}

struct Calls {
    run: u64,
    started: i64,
    count: u32,
}

const BUSINESS: &str = "31201234567";

impl Calls {
    /// A customer number unique to this run (Dutch mobile: +31 61 and 7 digits).
    fn customer(&self, index: u64) -> String {
        format!("3161{:07}", (self.run + index) % 10_000_000)
    }

    fn next(&mut self) -> (i64, String) {
        self.count += 1;
        let start = self.started + i64::from(self.count) * 60;
        (start, format!("{}.{}", self.started, self.count))
    }

    fn inbound(&mut self, customer: u64, name: &str, disposition: &'static str, billsec: u64) -> Call {
        let (start, uniqueid) = self.next();
        let number = self.customer(customer);
        Call {
            clid: format!("\"{name}\" <{number}>"),
            src: number,
            dst: BUSINESS.into(),
            dcontext: "from-trunk",
            channel: format!("PJSIP/trunk-{:08x}", self.count * 2),
            dstchannel: format!("PJSIP/alice-{:08x}", self.count * 2 + 1),
            lastapp: "Dial",
            lastdata: "PJSIP/alice,30,tT".into(),
            start,
            billsec,
            disposition,
            uniqueid,
        }
    }

    fn voicemail(&mut self, customer: u64, name: &str) -> Call {
        Call {
            dstchannel: String::new(),
            lastapp: "VoiceMail",
            lastdata: "1001@default,u".into(),
            ..self.inbound(customer, name, "ANSWERED", 25)
        }
    }

    fn outbound(&mut self, customer: u64) -> Call {
        let (start, uniqueid) = self.next();
        Call {
            src: "1001".into(),
            dst: format!("00{}", self.customer(customer)),
            dcontext: "from-internal",
            clid: "\"Alice Support\" <1001>".into(),
            channel: format!("PJSIP/alice-{:08x}", self.count * 2),
            dstchannel: format!("PJSIP/trunk-{:08x}", self.count * 2 + 1),
            lastapp: "Dial",
            lastdata: "PJSIP/trunk,60".into(),
            start,
            billsec: 95,
            disposition: "ANSWERED",
            uniqueid,
        }
    }
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.flush().unwrap();
}

/// The connector's checkpoint key of the file (`connector_id` of the default config).
fn omni_calllog_key() -> String {
    "file/calllog-local/pbx".to_owned()
}

fn settings() -> CdrSettings {
    CdrSettings {
        columns: Some(asterisk::columns(true, true, false)),
        ..CdrSettings::default()
    }
}

fn ids(line: &str) -> asterisk::LineIds {
    asterisk::line_ids("pbx", line.as_bytes(), &settings())
}

/// The one event normalized from `line`; fails when it is there twice.
fn event_of<'a>(events: &'a [ConversationEvent], line: &str) -> &'a ConversationEvent {
    let id = ids(line).event_id;
    let found: Vec<&ConversationEvent> = events.iter().filter(|e| e.event_id == id).collect();
    assert_eq!(
        found.len(),
        1,
        "the call {line:?} is {} times in the conversation topic",
        found.len()
    );
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_appended_to_master_csv_reach_the_helpdesk_once_through_a_connector_kill_and_a_rotation() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
    let mut calls = Calls {
        run: u64::from(now.subsec_nanos()) ^ now.as_secs(),
        started: now.as_secs() as i64 - 86_400,
        count: 0,
    };
    let dir = tempfile::tempdir()?;
    let master = dir.path().join("Master.csv");

    // Two calls logged before the connector starts.
    let answered = calls.inbound(1, "Ayşe Yılmaz", "ANSWERED", 200).line();
    let missed = calls.inbound(2, "محمد العلي", "NO ANSWER", 0).line();
    append(&master, &answered);
    append(&master, &missed);

    let admin = free_port();
    let mut env = pipeline.env.clone();
    env.extend([
        ("OMNI__CALLLOG__ADMIN_LISTEN".to_owned(), format!("127.0.0.1:{admin}")),
        ("OMNI__CALLLOG__FILES__PBX__PATH".to_owned(), master.display().to_string()),
        ("OMNI__CALLLOG__POLL_INTERVAL_MS".to_owned(), "100".to_owned()),
    ]);
    let mut connector = Service::spawn("calllog", admin, &env);
    connector.wait_ready().await?;

    // While it runs: a voicemail, and the first part of a line (Asterisk mid-write).
    let voicemail = calls.voicemail(3, "Jan de Vries").line();
    append(&master, &voicemail);
    let busy = calls.inbound(1, "Ayşe Yılmaz", "BUSY", 0).line();
    let (head, tail) = busy.split_at(busy.find("\"Dial\"").expect("a Dial call"));
    append(&master, head);
    eventually("three calls stored", TIMEOUT, || async {
        Ok(connector.metric("omni_calllog_records_stored_total").await? >= 3.0)
    })
    .await
    .map_err(|error| anyhow::anyhow!("{error:#}\ncalllog log:\n{}", connector.log()))?;
    assert_eq!(
        connector.metric("omni_calllog_records_stored_total").await?,
        3.0,
        "the unfinished line waits for its newline"
    );

    // The line is finished together with a burst of calls, and the connector is SIGKILLed while
    // some of them are in flight; more calls arrive while it is down.
    let burst: Vec<String> = (0..20)
        .map(|i| calls.inbound(10 + i, "Piet Jansen", "ANSWERED", 30 + i).line())
        .collect();
    append(&master, &format!("{tail}{}", burst.concat()));
    tokio::time::sleep(Duration::from_millis(150)).await;
    connector.sigkill();
    // The worst moment for the kill is after the broker took lines and before the checkpoint
    // moved past them: an empty checkpoint stands in for it, so the restarted connector reads the
    // whole file again and the normalizer must recognise every line it already has.
    let duplicates_before = pipeline.normalizer.metric(omni_e2e::NORMALIZER_DUPLICATES).await?;
    omni_e2e::produce(
        &pipeline.broker.bootstrap(),
        "omni.state.calllog.v1",
        omni_calllog_key().as_bytes(),
        &omni_proto::v1::CallLogCheckpoint::default().encode_to_vec(),
    )
    .await?;
    let callback = calls.outbound(2).line();
    let failed = calls.inbound(4, "Emma Clarke", "FAILED", 0).line();
    append(&master, &callback);
    append(&master, &failed);
    connector.restart_with(&[]).await?;
    eventually("the lines read again recognised as duplicates", TIMEOUT, || async {
        Ok(pipeline.normalizer.metric(omni_e2e::NORMALIZER_DUPLICATES).await? >= duplicates_before + 3.0)
    })
    .await?;

    // A line that is no CDR, then a rotation: the old file's last call, then a new file.
    let junk = "this is not a call detail record\n".to_owned();
    let last_in_old = calls.inbound(5, "Fatma Kaya", "NO ANSWER", 0).line();
    append(&master, &junk);
    append(&master, &last_in_old);
    std::fs::rename(&master, dir.path().join("Master.csv.1"))?;
    let first_in_new = calls.voicemail(6, "Zeynep Demir").line();
    append(&master, &first_in_new);

    let mut every = vec![
        answered.clone(),
        missed.clone(),
        voicemail.clone(),
        busy.clone(),
        callback.clone(),
        failed.clone(),
        last_in_old.clone(),
        first_in_new.clone(),
    ];
    every.extend(burst.iter().cloned());
    let wanted: Vec<String> = every.iter().map(|line| ids(line).event_id).collect();
    eventually("every call in the conversation topic", TIMEOUT, || {
        let events = pipeline.conversation_events();
        let wanted = &wanted;
        async move {
            let events = events?;
            Ok(wanted.iter().all(|id| events.iter().any(|e| &e.event_id == id)))
        }
    })
    .await
    .map_err(|error| {
        anyhow::anyhow!(
            "{error:#}\ncalllog log:\n{}\nnormalizer log:\n{}",
            connector.log(),
            pipeline.normalizer.log()
        )
    })?;
    let events = pipeline.conversation_events()?;
    for line in &every {
        event_of(&events, line);
    }
    // And nothing else: a line stored twice under another id would show up here.
    let voice = events
        .iter()
        .filter(|e| e.provider.as_ref().is_some_and(|p| p.provider == "asterisk"))
        .count();
    assert_eq!(voice, every.len(), "one voice event per logged call, no more");

    // The calls read right.
    let customer = |index: u64| format!("+{}", calls.customer(index));
    let business = format!("+{BUSINESS}");
    let call = |line: &str| event_of(&events, line).call.clone().unwrap();
    let first = event_of(&events, &answered);
    assert_eq!(first.direction(), Direction::Inbound);
    assert_eq!(first.participants[0].display_name, "Ayşe Yılmaz");
    assert_eq!(first.tags, ["call", "answered-call"]);
    let first_call = call(&answered);
    assert_eq!(
        (first_call.from.as_str(), first_call.to.as_str()),
        (customer(1).as_str(), business.as_str())
    );
    assert_eq!(first_call.outcome(), Outcome::Answered);
    assert_eq!(first_call.duration.unwrap().seconds, 200);
    assert_eq!(first_call.agent, "alice");
    assert_eq!(first_call.call_id, format!("{}.1", calls.started));
    assert_eq!(first_call.started_at.unwrap().seconds, calls.started + 60);
    assert_eq!(call(&missed).outcome(), Outcome::Missed);
    assert_eq!(event_of(&events, &missed).participants[0].display_name, "محمد العلي");
    assert_eq!(call(&voicemail).outcome(), Outcome::Voicemail);
    assert_eq!(call(&voicemail).recording_reference, "1001@default");
    assert_eq!(call(&busy).outcome(), Outcome::Busy);
    assert_eq!(
        event_of(&events, &busy).conversation_id,
        first.conversation_id,
        "two calls of one customer: one conversation"
    );
    assert_eq!(call(&failed).outcome(), Outcome::Failed);
    let back = event_of(&events, &callback);
    assert_eq!(back.direction(), Direction::Outbound);
    assert_eq!(
        (call(&callback).from.as_str(), call(&callback).to.as_str()),
        ("1001", customer(2).as_str())
    );
    assert_eq!(call(&last_in_old).outcome(), Outcome::Missed);
    assert_eq!(call(&first_in_new).outcome(), Outcome::Voicemail);

    // The line that is no call was stored all the same and dead-lettered with its bytes.
    let junk_id = ids(&junk).event_id;
    eventually("the junk line dead-lettered", TIMEOUT, || {
        let letters = pipeline.topic("omni.deadletter.v1");
        let junk_id = junk_id.clone();
        async move {
            Ok(letters?
                .iter()
                .filter_map(|r| omni_proto::v1::DeadLetter::decode(r.value.as_slice()).ok())
                .any(|l| l.event_id == junk_id))
        }
    })
    .await?;
    let letter = pipeline
        .topic("omni.deadletter.v1")?
        .iter()
        .filter_map(|r| omni_proto::v1::DeadLetter::decode(r.value.as_slice()).ok())
        .find(|l| l.event_id == junk_id)
        .unwrap();
    assert!(letter.reason.starts_with("malformed asterisk payload"), "{}", letter.reason);
    let raw = omni_proto::v1::RawRecord::decode(letter.original_value.as_slice())?;
    assert_eq!(raw.payload, junk.as_bytes());

    // A missed call and a voicemail each opened a ticket in Request Tracker.
    for line in [&missed, &voicemail, &first_in_new] {
        let event = event_of(&events, line);
        let delivery = pipeline.delivery_of(&event.event_id, TIMEOUT).await?;
        assert_eq!(delivery.outcome(), omni_proto::v1::delivery::Outcome::Created, "{delivery:?}");
        assert_eq!(
            pipeline.rt.tickets_of_conversation(&event.conversation_id).await?,
            [delivery.ticket_id.as_str()]
        );
    }
    Ok(())
}
