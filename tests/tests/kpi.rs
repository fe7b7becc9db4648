//! The support KPIs end to end on real servers: customers write by email, Telegram and the HTTP
//! API; agents answer in Request Tracker and solve a ticket, which is reopened and solved again;
//! omni-replies takes the answers and the status changes, and omni-notifier's KPI pipeline counts
//! contacts per channel, tag and language, times each first response and the resolution, and
//! counts the reopen.
//! `omni kpi --json` and the Prometheus metrics agree with the times the test measured, also
//! after the KPI pipeline is SIGKILLed and started again in a new consumer group, so that it reads
//! every record again: those count nothing.

use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use omni_e2e::{Pipeline, eventually, nonce, serial};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(90);

/// A plain Turkish mail from `customer` written at `at`.
fn refund_mail(customer: &str, id: &str, at: Timestamp) -> Vec<u8> {
    let date = jiff::fmt::rfc2822::to_string(&at.to_zoned_datetime(jiff::tz::TimeZone::UTC)).unwrap();
    format!(
        "From: Ayşe Yılmaz <{customer}>\r\nTo: Support <support@omni.local>\r\nSubject: İade talebi\r\nMessage-ID: <{id}>\r\nDate: {date}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nMerhaba, iade istiyorum. Para iadesi ne zaman yapılır?\r\n"
    )
    .into_bytes()
}

/// What the test knows of one customer's first response: when the customer wrote, and the
/// moments just before and after the agent's answer was posted.
struct Answered {
    asked: Timestamp,
    before: Timestamp,
    after: Timestamp,
}

impl Answered {
    /// Whether `seconds` (RT keeps whole seconds) fits what the test measured.
    fn fits(&self, seconds: i64) -> bool {
        let low = self.before.as_second() - self.asked.as_second() - 1;
        let high = self.after.as_second() - self.asked.as_second() + 1;
        (low..=high).contains(&seconds)
    }
}

/// Answers `ticket` in RT as an agent and notes when.
async fn answer(pipeline: &Pipeline, ticket: &str, asked: Timestamp, text: &str) -> anyhow::Result<Answered> {
    timed(asked, || pipeline.rt.answer(ticket, text)).await
}

/// Runs an agent's action in RT and notes when.
async fn timed<F: std::future::Future<Output = anyhow::Result<()>>>(
    asked: Timestamp,
    action: impl FnOnce() -> F,
) -> anyhow::Result<Answered> {
    let before = Timestamp::now();
    action().await?;
    Ok(Answered {
        asked,
        before,
        after: Timestamp::now(),
    })
}

/// The only ticket of `requestor`, once there is one.
async fn ticket_of(pipeline: &Pipeline, requestor: &str) -> anyhow::Result<String> {
    eventually(&format!("the ticket of {requestor}"), TIMEOUT, || async {
        Ok(pipeline.rt.tickets_of_requestor(requestor).await?.len() == 1)
    })
    .await?;
    Ok(pipeline.rt.tickets_of_requestor(requestor).await?.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_and_first_responses_are_counted_once_through_a_kill_and_a_replay() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let _replies = pipeline
        .spawn_beside("replies", &[("OMNI__REPLIES__POLL_INTERVAL_MS", "500")])
        .await?;
    let mut notifier = pipeline.spawn_beside("notifier", &[]).await?;
    let run = nonce();
    let now = Timestamp::from_second(Timestamp::now().as_second())?;

    // Email, written ten minutes ago: a refund (tags refunds, returns).
    let email_at = now - jiff::SignedDuration::from_mins(10);
    let customer = format!("ayse-{run}@example.com");
    pipeline
        .mailbox
        .deliver(&refund_mail(&customer, &format!("kpi-{run}@mail.example.com"), email_at));
    // Telegram, five minutes ago.
    let telegram_at = now - jiff::SignedDuration::from_mins(5);
    let chat: u64 = 7_000_000_000 + (std::process::id() as u64 * 7919 + now.as_second() as u64) % 1_000_000_000;
    let update = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/omni-channels/src/telegram/fixtures/message-tr.json"
    ))?
    .replace("1111111", &chat.to_string())
    .replace("1441645532", &telegram_at.as_second().to_string());
    let (status, body) = pipeline.post_webhook("telegram", "application/json", &update).await?;
    assert_eq!(status, 200, "{body}");
    // The HTTP API, now (its time is when the gateway took it): where is my parcel (tracking).
    let api_customer = format!("mehmet-{run}@example.com");
    let api_at = Timestamp::now();
    let message = serde_json::json!({"customer": {"name": "Mehmet Kaya", "email": api_customer},
        "text": "Kargom nerede? Sipariş 2201 hâlâ kargoya verilmedi.", "external_id": format!("kpi-{run}")});
    let (status, body) = pipeline.post(omni_e2e::DEV_TOKEN, &message.to_string()).await?;
    assert_eq!(status, 202, "{body}");

    let email_ticket = ticket_of(&pipeline, &customer).await?;
    let telegram_ticket = ticket_of(&pipeline, &format!("{chat}@telegram.invalid")).await?;
    let api_ticket = ticket_of(&pipeline, &api_customer).await?;
    let email = answer(&pipeline, &email_ticket, email_at, "Merhaba Ayşe, iadeniz bugün yapıldı.").await?;
    let telegram = answer(&pipeline, &telegram_ticket, telegram_at, "Merhaba, siparişiniz yarın geliyor.").await?;
    const ANSWERS: &str = "omni_kpi_agent_replies_total{channel=";
    eventually("two answers counted", TIMEOUT, || async {
        let text = notifier.metrics_text().await?;
        Ok(text.lines().filter(|line| line.starts_with(ANSWERS)).count() == 2)
    })
    .await
    .with_context(|| format!("omni-notifier log:\n{}", notifier.log()))?;
    // Killed, and started again in a consumer group of its own: it reads both topics from the
    // beginning, and every record it counted before counts nothing now.
    notifier
        .restart_with(&[("OMNI__NOTIFIER__KPI__GROUP_ID", "omni-kpi-again")])
        .await?;
    const BEFORE: &str = "omni_kpi_records_total{outcome=\"handled_before\"";
    eventually("the records read again", TIMEOUT, || async {
        // The three messages and the two answers.
        Ok(notifier.metric(BEFORE).await.unwrap_or(0.0) >= 5.0)
    })
    .await
    .with_context(|| format!("omni-notifier log:\n{}", notifier.log()))?;
    let api = answer(&pipeline, &api_ticket, api_at, "Merhaba Mehmet, kargonuz bugün çıktı.").await?;
    eventually("the third answer counted", TIMEOUT, || async {
        Ok(notifier.metric("omni_kpi_agent_replies_total{channel=\"api\"").await.unwrap_or(0.0) == 1.0)
    })
    .await
    .with_context(|| format!("omni-notifier log:\n{}", notifier.log()))?;

    // The email ticket: solved, reopened, solved again (the resolution runs to the last solve).
    pipeline.rt.set_status(&email_ticket, "resolved").await?;
    pipeline.rt.set_status(&email_ticket, "open").await?;
    let solved = timed(email_at, || pipeline.rt.set_status(&email_ticket, "resolved")).await?;
    eventually("the solve counted", TIMEOUT, || async {
        let series = "omni_kpi_resolution_seconds_count{channel=\"email\",clock=\"calendar\"";
        Ok(notifier.metric(series).await.unwrap_or(0.0) == 2.0)
    })
    .await
    .with_context(|| format!("omni-notifier log:\n{}", notifier.log()))?;
    assert_eq!(notifier.metric("omni_kpi_reopens_total{channel=\"email\"").await?, 1.0);

    let table = pipeline.omni(&["kpi", "--since", "1h"])?;
    eprintln!("{table}");
    assert!(table.contains("channel telegram") && table.contains("tag tracking"), "{table}");
    let report: Value = serde_json::from_str(&pipeline.omni(&["kpi", "--since", "1h", "--json"])?)?;
    let all = &report["all"];
    assert_eq!(
        (all["contacts"].as_u64(), all["answered"].as_u64()),
        (Some(3), Some(3)),
        "{report:#}"
    );
    assert_eq!(all["reply"]["count"], 3, "an answer read again counted twice: {report:#}");
    for (channel, measured) in [("email", &email), ("telegram", &telegram), ("api", &api)] {
        let group = &report["channels"][channel];
        assert_eq!(group["contacts"], 1, "{channel}: {report:#}");
        let first = group["first_response"]["median_secs"].as_i64().context("a first response")?;
        assert!(
            measured.fits(first),
            "{channel}: first response {first} s, measured {}..{} s after {}",
            measured.before,
            measured.after,
            measured.asked
        );
        let business = group["first_response_business"]["median_secs"].as_i64().context("business")?;
        assert!((0..=first).contains(&business), "{channel}: {business} business seconds of {first}");
    }
    let email_group = &report["channels"]["email"];
    assert_eq!(
        (email_group["solved"].as_u64(), email_group["reopens"].as_u64()),
        (Some(1), Some(1)),
        "{report:#}"
    );
    let resolution = email_group["resolution"]["median_secs"].as_i64().context("a resolution")?;
    assert!(
        solved.fits(resolution),
        "resolution {resolution} s, measured {}..{} s after {}",
        solved.before,
        solved.after,
        solved.asked
    );
    assert_eq!(report["channels"]["telegram"]["solved"], 0, "{report:#}");
    assert_eq!(report["tags"]["refunds"]["contacts"], 1, "{report:#}");
    assert_eq!(report["tags"]["tracking"]["contacts"], 1, "{report:#}");
    assert_eq!(report["languages"]["tr"]["contacts"], 3, "{report:#}");

    // The restarted pipeline's metrics: the records it read again counted nothing; the third
    // answer's first response is in its histogram.
    let text = notifier.metrics_text().await?;
    assert!(
        !text.contains("omni_kpi_contacts_total{channel=\"email\""),
        "counted again:\n{text}"
    );
    assert_eq!(
        notifier
            .metric("omni_kpi_agent_replies_total{channel=\"email\"")
            .await
            .unwrap_or(0.0),
        0.0
    );
    let series = "omni_kpi_first_response_seconds_count{channel=\"api\",clock=\"calendar\"";
    assert_eq!(notifier.metric(series).await?, 1.0, "{text}");
    let sum = notifier
        .metric("omni_kpi_first_response_seconds_sum{channel=\"api\",clock=\"calendar\"")
        .await?;
    assert!(api.fits(sum.round() as i64), "histogram sum {sum} s");
    Ok(())
}

/// A conversation quiet for longer than `[notifier.kpi] state_retention_secs` (3 s here) leaves
/// `omni.state.kpi.v1`: its record is tombstoned (`omni_kpi_state_expired_total`), and
/// `omni kpi` no longer counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_quiet_past_the_retention_leaves_the_kpi_state() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[]).await?;
    let notifier = pipeline
        .spawn_beside("notifier", &[("OMNI__NOTIFIER__KPI__STATE_RETENTION_SECS", "3")])
        .await?;
    let run = nonce();
    let message = serde_json::json!({"customer": {"email": format!("sanne-{run}@example.nl")},
        "text": "Waar blijft mijn pakket?", "external_id": format!("kpi-retention-{run}")});
    let (status, body) = pipeline.post(omni_e2e::DEV_TOKEN, &message.to_string()).await?;
    assert_eq!(status, 202, "{body}");
    let bootstrap = pipeline.broker.bootstrap();
    // Per key of the state topic, the sizes of its records in order (0: a tombstone).
    let records = || -> std::collections::HashMap<Vec<u8>, Vec<usize>> {
        let mut keys = std::collections::HashMap::<Vec<u8>, Vec<usize>>::new();
        for record in omni_e2e::read_topic(&bootstrap, omni_kafka::topics::STATE_KPI).unwrap_or_default() {
            keys.entry(record.key.clone()).or_default().push(record.value.len());
        }
        keys
    };
    eventually("the contact recorded, then tombstoned", TIMEOUT, || {
        let done = records()
            .values()
            .any(|sizes| sizes.first().is_some_and(|len| *len > 0) && sizes.last() == Some(&0));
        async move { Ok(done) }
    })
    .await
    .map_err(|error| error.context(format!("records: {:?}\nomni-notifier log:\n{}", records(), notifier.log())))?;
    assert!(notifier.metric("omni_kpi_state_expired_total").await? >= 1.0);
    let report: Value = serde_json::from_str(&pipeline.omni(&["kpi", "--since", "1h", "--json"])?)?;
    assert_eq!(report["all"]["contacts"], 0, "{report:#}");
    Ok(())
}
