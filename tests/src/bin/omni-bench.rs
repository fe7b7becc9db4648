//! `make bench`: runs the whole pipeline under a mixed load and writes a report (Markdown and
//! JSON); see `omni_e2e::bench`. Needs the broker, Request Tracker and Dovecot test instances
//! that `make bench` starts.

use std::path::PathBuf;

use clap::Parser;
use clap::builder::PossibleValuesParser;
use omni_e2e::bench::{self, BenchOptions};
use omni_kafka::config::Compression;

/// Benchmark the whole pipeline and write a report.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Messages in the burst phase.
    #[arg(long, default_value_t = 3000)]
    messages: usize,
    /// Concurrent senders in the burst phase.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Messages per second in the steady and slow-helpdesk phases.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Length of the steady phase, seconds.
    #[arg(long, default_value_t = 30)]
    steady_secs: u64,
    /// Percentage of messages continuing an earlier conversation.
    #[arg(long, default_value_t = 40)]
    follow_ups: u32,
    /// The slow helpdesk's delay per request, ms.
    #[arg(long, default_value_t = 500)]
    slow_ms: u64,
    /// How long the helpdesk is slow, seconds.
    #[arg(long, default_value_t = 30)]
    slow_secs: u64,
    /// Webhooks posted while the broker is down.
    #[arg(long, default_value_t = 200)]
    burst_webhooks: usize,
    /// Seed of the load (the same seed sends the same messages).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// `[kafka.producer] compression` for the services and the baseline copy (none, lz4, snappy,
    /// gzip); the embedded default is none.
    #[arg(long, default_value = "none", value_parser = PossibleValuesParser::new(Compression::ALL.map(Compression::as_str)))]
    compression: String,
    /// `[kafka.producer] linger_ms` for the services and the baseline copy (the embedded
    /// default is 5).
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// Router sweep: the helpdesk stub's delays per request, ms.
    #[arg(long, value_delimiter = ',', default_value = "0,100,300")]
    sweep_delays_ms: Vec<u64>,
    /// Router sweep: the `[router] max_in_flight` bounds to run at.
    #[arg(long, value_delimiter = ',', default_value = "1,32,128,256")]
    sweep_in_flight: Vec<usize>,
    /// Router sweep: events per run (a tenth at bound 1).
    #[arg(long, default_value_t = 1000)]
    sweep_events: usize,
    /// Router sweep: conversations per run (a tenth at bound 1).
    #[arg(long, default_value_t = 250)]
    sweep_conversations: usize,
    /// Agents' answers sent back to the bench's customers (0: none).
    #[arg(long, default_value_t = 300)]
    replies: usize,
    /// Only the router sweep (on a fresh stack, no baseline copy, no report file): a quick
    /// look at a change to the router. Exits 1 when an event was not delivered exactly once
    /// or a conversation out of order.
    #[arg(long)]
    router_only: bool,
    /// Where to write report.md and report.json.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = BenchOptions {
        messages: args.messages,
        concurrency: args.concurrency,
        rate: args.rate,
        steady_secs: args.steady_secs,
        follow_up_percent: args.follow_ups,
        slow_ms: args.slow_ms,
        slow_secs: args.slow_secs,
        burst_webhooks: args.burst_webhooks,
        seed: args.seed,
        compression: args.compression,
        linger_ms: args.linger_ms,
        sweep_delays_ms: args.sweep_delays_ms,
        sweep_in_flight: args.sweep_in_flight,
        sweep_events: args.sweep_events,
        sweep_conversations: args.sweep_conversations,
        replies: args.replies,
    };
    if args.router_only {
        let (runs, problems) = bench::router_only(&options).await?;
        for run in &runs {
            println!("{}", run.line());
        }
        for problem in &problems {
            eprintln!("{problem}");
        }
        std::process::exit(i32::from(!problems.is_empty()));
    }
    let report = bench::run(options).await?;
    std::fs::create_dir_all(&args.out)?;
    let markdown = report.markdown();
    std::fs::write(args.out.join("report.md"), &markdown)?;
    std::fs::write(args.out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    println!("{markdown}");
    println!("written to {}/report.md and report.json", args.out.display());
    if !report.problems().is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
