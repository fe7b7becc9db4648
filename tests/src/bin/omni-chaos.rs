//! `make chaos`: the whole pipeline under a steady mixed load while services are SIGKILLed, the
//! broker restarts and the helpdesk fails; exits non-zero on any lost or duplicated message. See
//! `omni_e2e::chaos`. Needs the Request Tracker and Dovecot test instances `make chaos` starts.

use std::path::PathBuf;

use clap::Parser;
use omni_e2e::chaos::{self, ChaosOptions};

/// Chaos run of the whole pipeline.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// How long the load runs, seconds (the faults are spread over it).
    #[arg(long, default_value_t = 300)]
    load_secs: u64,
    /// Messages per second.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Percentage of messages continuing an earlier conversation.
    #[arg(long, default_value_t = 40)]
    follow_ups: u32,
    /// SIGKILLs, over the five services in turn.
    #[arg(long, default_value_t = 25)]
    kills: u32,
    /// Broker restarts.
    #[arg(long, default_value_t = 2)]
    broker_restarts: u32,
    /// Seconds the helpdesk fails (500s, then 503s).
    #[arg(long, default_value_t = 30)]
    helpdesk_outage_secs: u64,
    /// Seed of the load and of the kill timing.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Longest wait for everything to arrive after the load, seconds.
    #[arg(long, default_value_t = 900)]
    settle_secs: u64,
    /// Agents' answers spread over the load (through omni-replies and omni-sender, both killed
    /// in turn with the rest).
    #[arg(long, default_value_t = 100)]
    answers: u32,
    /// Where to write chaos.md and chaos.json.
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let report = chaos::run(ChaosOptions {
        load_secs: args.load_secs,
        rate: args.rate,
        follow_up_percent: args.follow_ups,
        kills: args.kills,
        broker_restarts: args.broker_restarts,
        helpdesk_outage_secs: args.helpdesk_outage_secs,
        seed: args.seed,
        settle_secs: args.settle_secs,
        answers: args.answers,
    })
    .await?;
    std::fs::create_dir_all(&args.out)?;
    let markdown = report.markdown();
    std::fs::write(args.out.join("chaos.md"), &markdown)?;
    std::fs::write(args.out.join("chaos.json"), serde_json::to_string_pretty(&report)?)?;
    println!("{markdown}");
    if !report.passed() {
        std::process::exit(1);
    }
    Ok(())
}
