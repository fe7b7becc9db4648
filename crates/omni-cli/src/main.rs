//! `omni`: the operator's command line.
//!
//! - `omni tail <topic>`: prints records as JSON lines, values decoded with the omni schema;
//! - `omni config check`: validates the configuration every service would load, listing every
//!   problem at once (exit 64 when there is one).

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
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration (embedded defaults, OMNI_CONFIG file, OMNI__ variables).
    Check,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check(),
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
    // Every service reads [kafka]; report its problems once.
    let mut service_problems = Problems::default();
    let _ = omni_normalizer::NormalizerServiceConfig::from_settings(&settings, &mut service_problems);
    let _ = omni_router::RouterServiceConfig::from_settings(&settings, &mut service_problems);
    let _ = omni_email::EmailServiceConfig::from_settings(&settings, &mut service_problems);
    for (key, problem) in service_problems.items() {
        if !key.starts_with("kafka") {
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

fn tail(topic: &str, follow: bool, from_end: bool, max: Option<u64>, message_type: Option<String>) -> anyhow::Result<()> {
    let message_type = message_type
        .or_else(|| topics::message_type_of(topic).map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("`{topic}` is not an omni topic; name the value type with --message-type"))?;
    let settings = Settings::load()?;
    let mut problems = Problems::default();
    let kafka: Option<KafkaConfig> = settings.section("kafka", &mut problems);
    let kafka = kafka.ok_or_else(|| anyhow::anyhow!("invalid configuration:\n{problems}"))?;
    let consumer: BaseConsumer = kafka
        .client_config("omni-cli")
        .set("group.id", "omni-cli-tail")
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
