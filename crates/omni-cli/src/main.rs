//! `omni`: the operator's command line.
//!
//! - `omni tail <topic>`: prints records as JSON lines, values decoded with the omni schema;
//! - `omni config check`: validates the configuration every service would load, listing every
//!   problem at once (exit 64 when there is one);
//! - `omni mail append FILE|DIR...`: files messages into a configured mailbox with IMAP APPEND,
//!   as a mail client would (for trying the email channel, and for loading test mailboxes);
//! - `omni kpi [--since 7d] [--until T] [--json]`: the support KPIs of a period.

mod kpi;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use omni_kafka::{KafkaConfig, headers::headers_map, topics};
use omni_runtime::service::{EXIT_BAD_CONFIG, ServiceConfig};
use omni_runtime::{Problems, Settings};
use rdkafka::consumer::BaseConsumer;
use rdkafka::{Message, Offset};

#[derive(Parser)]
#[command(name = "omni", version, about = "omni: omnichannel message pipeline tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a topic's records as JSON lines, values decoded as the topic's omni.v1 message.
    Tail {
        /// The topic, for example omni.conversations.v1 (see README, "Topics").
        topic: String,
        /// Keep waiting for new records instead of stopping at the end.
        #[arg(long, short)]
        follow: bool,
        /// Start at the end of the topic rather than the beginning (implies --follow).
        #[arg(long)]
        from_end: bool,
        /// Stop after this many records.
        #[arg(long)]
        max: Option<u64>,
        /// Message type to decode values as, when the topic is not an omni topic.
        #[arg(long)]
        message_type: Option<String>,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Explain which routing rule ([[router.rules]]) an event matches and where it would go.
    Route {
        /// Print every rule up to the match with why it matched or not.
        #[arg(long, required = true)]
        explain: bool,
        /// A ConversationEvent as JSON: a line of `omni tail omni.conversations.v1` (its `value`
        /// is used) or the event object itself. `-` reads standard input.
        event: std::path::PathBuf,
    },
    /// What the normalizer finds in a text with the configured [normalizer.understanding]:
    /// language (with confidence), problem-area tags and order numbers. For trying a lexicon.
    Understand {
        /// The text; `-` reads standard input.
        text: String,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Dead-letter commands.
    Deadletter {
        #[command(subcommand)]
        command: DeadletterCommand,
    },
    /// The support KPIs of a period: contacts, first response and reply times (median, p90, on
    /// the calendar and in business hours) per channel, problem-area tag and language, from
    /// omni.state.kpi.v1.
    Kpi {
        /// Start of the period: an RFC 3339 time, or a span before now (7d, 24h, 90m).
        #[arg(long, default_value = "7d")]
        since: String,
        /// End of the period (excluded), same forms; default: now.
        #[arg(long)]
        until: Option<String>,
        /// Print JSON (each group with its `contacts`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Mailbox commands.
    Mail {
        #[command(subcommand)]
        command: MailCommand,
    },
}

#[derive(Subcommand)]
enum MailCommand {
    /// Append RFC 5322 messages (one per file; a directory means every file in it, by name) to a
    /// mailbox of [email.mailboxes], over IMAP with its security and login.
    Append {
        /// The mailbox's name in [email.mailboxes].
        #[arg(long, default_value = "support")]
        mailbox: String,
        /// The folder to append to (default: the mailbox's configured folder).
        #[arg(long)]
        folder: Option<String>,
        /// Message files or directories of message files.
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum DeadletterCommand {
    /// Write dead-lettered records back to the topic they came from, exactly as they were (key,
    /// value, headers, plus `omni_replayed_from`), so the stage that gave up reads them again
    /// after a fix. Replaying is safe to repeat: the normalizer skips known events and the router
    /// skips events it already delivered.
    Replay {
        /// Only records this stage gave up on: `normalizer`, `router`, or `router-media` (the
        /// customers' files a provider did not serve: replayed, each is fetched again and
        /// attached to its ticket once).
        #[arg(long)]
        stage: Option<String>,
        /// Only this fault: `input`, `external` or `internal`.
        #[arg(long)]
        fault: Option<String>,
        /// Only these event ids.
        #[arg(long = "event-id")]
        event_ids: Vec<String>,
        /// Only records whose reason contains this text.
        #[arg(long)]
        reason: Option<String>,
        /// List what would be replayed, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration (embedded defaults, OMNI_CONFIG file, OMNI__ variables).
    Check,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Mail {
            command: MailCommand::Append { mailbox, folder, paths },
        } => match mail_append(&mailbox, folder, &paths) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("omni mail append: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check(),
        Command::Deadletter {
            command:
                DeadletterCommand::Replay {
                    stage,
                    fault,
                    event_ids,
                    reason,
                    dry_run,
                },
        } => {
            let filter = ReplayFilter {
                stage,
                fault,
                event_ids,
                reason,
            };
            match deadletter_replay(&filter, dry_run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("omni deadletter replay: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Understand { text, json } => match understand(&text, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("omni understand: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Route { explain: _, event } => match route_explain(&event) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("omni route: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Kpi { since, until, json } => match kpi::run(&since, until.as_deref(), json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("omni kpi: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Tail {
            topic,
            follow,
            from_end,
            max,
            message_type,
        } => match tail(&topic, follow || from_end, from_end, max, message_type) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("omni tail: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Which dead letters `omni deadletter replay` takes.
struct ReplayFilter {
    stage: Option<String>,
    fault: Option<String>,
    event_ids: Vec<String>,
    reason: Option<String>,
}

impl ReplayFilter {
    fn matches(&self, letter: &omni_proto::v1::DeadLetter) -> bool {
        let fault = letter.fault().as_str_name().trim_start_matches("FAULT_").to_ascii_lowercase();
        self.stage.as_ref().is_none_or(|s| *s == letter.stage)
            && self.fault.as_ref().is_none_or(|f| f.eq_ignore_ascii_case(&fault))
            && (self.event_ids.is_empty() || self.event_ids.contains(&letter.event_id))
            && self.reason.as_ref().is_none_or(|r| letter.reason.contains(r.as_str()))
    }
}

/// `omni deadletter replay`.
fn deadletter_replay(filter: &ReplayFilter, dry_run: bool) -> anyhow::Result<()> {
    use prost::Message as _;
    use rdkafka::message::{Header, OwnedHeaders};
    let settings = Settings::load()?;
    let mut problems = Problems::default();
    let kafka: Option<KafkaConfig> = settings.section("kafka", &mut problems);
    let kafka = kafka.ok_or_else(|| anyhow::anyhow!("invalid configuration:\n{problems}"))?;
    let consumer: BaseConsumer = kafka
        .consumer_config("omni-cli", "omni-cli-replay")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let mut ends = omni_kafka::reader::assign_whole_topic(&consumer, topics::DEADLETTER, Offset::Beginning, timeout)?;
    let mut chosen = Vec::new();
    let mut last_record = Instant::now();
    while !ends.caught_up() {
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            if last_record.elapsed() > timeout {
                anyhow::bail!("no records for {timeout:?} before reaching the end of {}", topics::DEADLETTER);
            }
            continue;
        };
        let message = result?;
        last_record = Instant::now();
        ends.read(message.partition(), message.offset());
        let Some(letter) = message.payload().and_then(|bytes| omni_proto::v1::DeadLetter::decode(bytes).ok()) else {
            continue;
        };
        if filter.matches(&letter) {
            chosen.push((
                format!("{}/{}/{}", topics::DEADLETTER, message.partition(), message.offset()),
                letter,
            ));
        }
    }
    println!("{} dead letters match", chosen.len());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let producer = omni_kafka::Producer::new(&kafka, "omni-cli-replay")?;
    let mut replayed = 0;
    for (from, letter) in &chosen {
        if letter.source_topic.starts_with("http:") {
            // A refused HTTP call (a helpdesk's reply call omni could not read): no topic to put
            // it back on; the letter keeps its body and headers for whoever fixes the sender.
            println!(
                "skip {from}: it came from an HTTP call ({}), not a topic: {}",
                letter.source_topic, letter.reason
            );
            continue;
        }
        println!(
            "{} {from} -> {} (stage {}, event {}): {}",
            if dry_run { "would replay" } else { "replay" },
            letter.source_topic,
            letter.stage,
            if letter.event_id.is_empty() { "?" } else { &letter.event_id },
            letter.reason
        );
        if dry_run {
            continue;
        }
        let mut headers = OwnedHeaders::new();
        for (key, value) in &letter.original_headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        headers = headers.insert(Header {
            key: "omni_replayed_from",
            value: Some(from.as_bytes()),
        });
        runtime
            .block_on(producer.send(&letter.source_topic, &letter.original_key, &letter.original_value, headers))
            .map_err(|error| anyhow::anyhow!("replaying {from} to {}: {error}", letter.source_topic))?;
        replayed += 1;
    }
    if !dry_run {
        println!("{replayed} records replayed");
    }
    Ok(())
}

/// `omni understand TEXT`.
fn understand(text: &str, json: bool) -> anyhow::Result<()> {
    let text = if text == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        text.to_owned()
    };
    let settings = Settings::load()?;
    let mut problems = Problems::default();
    let config: Option<omni_understand::UnderstandingConfig> = settings.section("normalizer.understanding", &mut problems);
    let Some(config) = config.filter(|_| problems.is_empty()) else {
        anyhow::bail!("invalid configuration:\n{problems}");
    };
    let understanding = omni_understand::Understanding::new(&config).map_err(anyhow::Error::msg)?;
    let found = understanding.understand(&text);
    if json {
        let value = serde_json::json!({
            "language": found.language.as_ref().map(|(language, _)| language),
            "confidence": found.language.as_ref().map(|(_, confidence)| confidence),
            "tags": found.tags,
            "order_numbers": found.order_numbers,
        });
        println!("{value}");
        return Ok(());
    }
    match &found.language {
        Some((language, confidence)) => println!("language      {language} (confidence {confidence:.2})"),
        None => println!(
            "language      unknown (below min_confidence {} or too short)",
            config.min_confidence
        ),
    }
    println!(
        "tags          {}",
        if found.tags.is_empty() {
            "none".to_owned()
        } else {
            found.tags.join(", ")
        }
    );
    println!(
        "order numbers {}",
        if found.order_numbers.is_empty() {
            "none".to_owned()
        } else {
            found.order_numbers.join(", ")
        }
    );
    Ok(())
}

/// `omni route --explain FILE`.
fn route_explain(path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use prost::Message as _;
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    let json: serde_json::Value = serde_json::from_str(text.trim()).context("not JSON")?;
    let event_json = json.get("value").filter(|v| v.is_object()).unwrap_or(&json);
    let bytes = omni_proto::encode_from_json("omni.v1.ConversationEvent", event_json).context("not an omni.v1.ConversationEvent")?;
    let event = omni_proto::v1::ConversationEvent::decode(bytes.as_slice())?;
    let settings = Settings::load()?;
    let mut problems = Problems::default();
    let Some(config) = omni_router::RouterServiceConfig::from_settings(&settings, &mut problems) else {
        anyhow::bail!("invalid router configuration:\n{problems}");
    };
    let rules = config.service.rules();
    println!(
        "event: channel {}, language {}, tags [{}]",
        omni_router::rules::channel_name(event.channel()),
        if event.language.is_empty() { "unknown" } else { &event.language },
        event.tags.join(", ")
    );
    for line in rules.explain(&event) {
        println!("{} {}: {}", if line.matched { "match" } else { "no   " }, line.rule, line.reason);
    }
    let route = rules.route(&event);
    println!(
        "=> rule {}: destinations {}",
        route.rule.as_deref().unwrap_or("(none: default destination)"),
        route.destinations.join(", ")
    );
    let routing = &route.routing;
    if let Some(group) = &routing.group {
        println!("   group {group}");
    }
    if let Some(priority) = routing.priority {
        println!("   priority {priority:?}");
    }
    if !routing.tags.is_empty() {
        println!("   tags {}", routing.tags.join(", "));
    }
    for (field, value) in &routing.custom_fields {
        println!("   custom field {field} = {value}");
    }
    Ok(())
}

fn config_check() -> ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let mut problems = Problems::default();
    let _: Option<omni_runtime::telemetry::TelemetryConfig> = settings.section("telemetry", &mut problems);
    let _ = omni_gateway::GatewayServiceConfig::from_settings(&settings, &mut problems);
    // Sections several services read ([kafka], [objects], [sender] ...) are reported once.
    let mut service_problems = Problems::default();
    let _ = omni_normalizer::NormalizerServiceConfig::from_settings(&settings, &mut service_problems);
    let _ = omni_router::RouterServiceConfig::from_settings(&settings, &mut service_problems);
    let _ = omni_email::EmailServiceConfig::from_settings(&settings, &mut service_problems);
    let _ = omni_calllog::CallLogServiceConfig::from_settings(&settings, &mut service_problems);
    let _ = omni_replies::RepliesServiceConfig::from_settings(&settings, &mut service_problems);
    let _ = omni_sender::SenderServiceConfig::from_settings(&settings, &mut service_problems);
    let _ = omni_notifier::NotifierServiceConfig::from_settings(&settings, &mut service_problems);
    for (key, problem) in service_problems.items() {
        if !problems.items().iter().any(|(k, p)| k == key && p == problem) {
            problems.push(key.clone(), problem.clone());
        }
    }
    let file = settings.file.as_deref().unwrap_or("(none: embedded defaults and OMNI__ variables)");
    if problems.is_empty() {
        println!("configuration ok (file: {file})");
        ExitCode::SUCCESS
    } else {
        eprintln!("invalid configuration (file: {file}):\n{problems}");
        ExitCode::from(EXIT_BAD_CONFIG)
    }
}

fn mail_append(name: &str, folder: Option<String>, paths: &[std::path::PathBuf]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let settings = Settings::load()?;
    let mut problems = Problems::default();
    let email: Option<omni_email::EmailConfig> = settings.section("email", &mut problems);
    let email = email.ok_or_else(|| anyhow::anyhow!("invalid configuration:\n{problems}"))?;
    let mailbox = email.mailboxes.get(name).with_context(|| {
        format!(
            "no mailbox `{name}` in [email.mailboxes] (configured: {:?})",
            email.mailboxes.keys()
        )
    })?;
    let folder = folder.unwrap_or_else(|| mailbox.folder.clone());
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            entries.retain(|p| p.is_file());
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    let total = files.len();
    let messages = files.into_iter().map(|file| {
        std::fs::read(&file).unwrap_or_else(|error| {
            eprintln!("omni mail append: cannot read {}: {error}", file.display());
            std::process::exit(1)
        })
    });
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let appended = runtime.block_on(omni_email::append_messages(mailbox, &folder, messages, |done| {
        if done % 1000 == 0 && done < total {
            eprintln!("appended {done} of {total}");
        }
    }))?;
    println!(
        "appended {appended} messages to {folder} of mailbox {name} ({}:{}) in {:.1} s",
        mailbox.host,
        mailbox.port,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn tail(topic: &str, follow: bool, from_end: bool, max: Option<u64>, message_type: Option<String>) -> anyhow::Result<()> {
    let message_type = message_type
        .or_else(|| topics::message_type_of(topic).map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("`{topic}` is not an omni topic; name the value type with --message-type"))?;
    let settings = Settings::load()?;
    let mut problems = Problems::default();
    let kafka: Option<KafkaConfig> = settings.section("kafka", &mut problems);
    let kafka = kafka.ok_or_else(|| anyhow::anyhow!("invalid configuration:\n{problems}"))?;
    let consumer: BaseConsumer = kafka
        .consumer_config("omni-cli", "omni-cli-tail")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let start = if from_end { Offset::End } else { Offset::Beginning };
    let mut ends = omni_kafka::reader::assign_whole_topic(&consumer, topic, start, timeout)?;
    if ends.partitions() == 0 {
        anyhow::bail!("topic `{topic}` does not exist on {}", kafka.bootstrap_servers);
    }
    let mut printed = 0_u64;
    let mut last_record = Instant::now();
    loop {
        if max.is_some_and(|max| printed >= max) || (!follow && ends.caught_up()) {
            return Ok(());
        }
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            if !follow && last_record.elapsed() > timeout {
                anyhow::bail!("no records for {timeout:?} before reaching the end of `{topic}`");
            }
            continue;
        };
        let message = result?;
        last_record = Instant::now();
        ends.read(message.partition(), message.offset());
        let value = match message.payload() {
            None => serde_json::Value::Null,
            Some(bytes) => omni_proto::decode_to_json(&message_type, bytes)
                .unwrap_or_else(|error| serde_json::json!({ "undecodable": error.to_string(), "hex": hex::encode(bytes) })),
        };
        let line = serde_json::json!({
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "key": message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            "headers": message.headers().map(headers_map).unwrap_or_default(),
            "value": value,
        });
        println!("{line}");
        printed += 1;
    }
}
