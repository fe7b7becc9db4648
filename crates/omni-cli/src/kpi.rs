//! `omni kpi`: the support KPIs of a period, read from `omni.state.kpi.v1` (see
//! `omni_notifier::kpi::report`), as a table or as JSON.

use std::time::Duration;

use anyhow::Context as _;
use jiff::{Span, Timestamp, ZonedDateTime, tz::TimeZone};
use omni_kafka::{KafkaConfig, topics};
use omni_proto::v1::ConversationKpi;
use omni_runtime::{Problems, Settings};
use prost::Message as _;

/// How long reading the state topic to its end may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Prints the report of [since, until).
pub fn run(since: &str, until: Option<&str>, json: bool) -> anyhow::Result<()> {
    // Whole seconds: the period prints as people write it.
    let now = Timestamp::from_second(Timestamp::now().as_second())?.to_zoned_datetime(TimeZone::UTC);
    let from = moment(since, &now).with_context(|| format!("--since {since}"))?;
    let until = match until {
        Some(text) => moment(text, &now).with_context(|| format!("--until {text}"))?,
        None => now.timestamp(),
    };
    anyhow::ensure!(from < until, "the period is empty: {from} is not before {until}");
    let settings = Settings::load()?;
    let mut problems = Problems::default();
    let kafka: Option<KafkaConfig> = settings.section("kafka", &mut problems);
    let kafka = kafka.ok_or_else(|| anyhow::anyhow!("invalid configuration:\n{problems}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let records = runtime.block_on(omni_kafka::state::read_all(&kafka, "omni-cli-kpi", topics::STATE_KPI, READ_TIMEOUT))?;
    let mut conversations = Vec::with_capacity(records.len());
    let mut unreadable = 0;
    for value in records.into_values() {
        match ConversationKpi::decode(value.as_slice()) {
            Ok(kpi) => conversations.push(kpi),
            Err(_) => unreadable += 1,
        }
    }
    if unreadable > 0 {
        eprintln!("omni kpi: {unreadable} unreadable records of {} skipped", topics::STATE_KPI);
    }
    let report = omni_notifier::kpi::report::build(&conversations, from, until);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// An RFC 3339 instant ("2026-12-01T00:00:00Z"), or a span before now ("7d", "24h", "90m").
fn moment(text: &str, now: &ZonedDateTime) -> anyhow::Result<Timestamp> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let span: Span = text
        .parse()
        .map_err(|_| anyhow::anyhow!("neither an RFC 3339 time nor a span like 7d, 24h or 90m"))?;
    Ok(now.checked_sub(span.abs())?.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_instants_or_spans_before_now() {
        let now: ZonedDateTime = "2026-12-05T12:00:00Z[UTC]".parse().unwrap();
        let at = |text| moment(text, &now).unwrap().to_string();
        assert_eq!(at("7d"), "2026-11-28T12:00:00Z");
        assert_eq!(at("90m"), "2026-12-05T10:30:00Z");
        assert_eq!(at("2026-12-01T00:00:00+03:00"), "2026-11-30T21:00:00Z");
        assert!(moment("last week", &now).is_err());
    }
}
