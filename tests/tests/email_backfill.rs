//! A large mailbox: backfilled through connector crashes with every message exactly once in the
//! conversation topic and in Request Tracker; and the backfill/normalization benchmark.
//!
//! The mailbox is filled with `omni mail append` (IMAP APPEND into Dovecot). Its size is
//! `OMNI_TEST_BACKFILL_MESSAGES` (default 10,000), in threads of `OMNI_TEST_BACKFILL_THREAD`
//! messages (default 100), interleaved as real mail arrives; a third of the replies name only the
//! previous message in `In-Reply-To` (no `References`), as Outlook and mobile clients do.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use omni_e2e::{Broker, Mailbox, NORMALIZER_DUPLICATES, NORMALIZER_NORMALIZED, Pipeline, Service, eventually, free_port, nonce, serial};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One generated mailbox: the files to append and what each thread must become.
struct Corpus {
    dir: tempfile::TempDir,
    /// Event ids in mailbox order.
    event_ids: Vec<String>,
    /// Per customer address, the texts of their thread in order.
    threads: Vec<(String, Vec<String>)>,
}

fn corpus(run: &str, messages: usize, per_thread: usize) -> Corpus {
    let dir = tempfile::tempdir().unwrap();
    let thread_count = messages.div_ceil(per_thread);
    let mut threads: Vec<(String, Vec<String>)> = (0..thread_count)
        .map(|t| (format!("klant{t}+{run}@example.nl"), Vec::new()))
        .collect();
    let mut event_ids = Vec::with_capacity(messages);
    // About 1.5 KiB of ordinary text per message, as support mail is.
    let filler = "Ik heb de bestelling op maandag geplaatst en nog geen verzendbevestiging ontvangen. \
                  Kunt u mij laten weten wanneer het pakket wordt verstuurd?\r\n"
        .repeat(10);
    let mut sequence = 0;
    for i in 0..per_thread {
        for (t, (customer, texts)) in threads.iter_mut().enumerate() {
            if sequence == messages {
                break;
            }
            let id = |n: usize| format!("<m{t}-{n}-{run}@mail.example.nl>");
            let thread_headers = match i {
                0 => String::new(),
                i if i % 3 == 0 => format!("In-Reply-To: {}\r\n", id(i - 1)),
                i => format!("In-Reply-To: {}\r\nReferences: {} {}\r\n", id(i - 1), id(0), id(i - 1)),
            };
            let text = format!("bericht {t}-{i}");
            let message = format!(
                "From: Klant {t} <{customer}>\r\nTo: support@shop.example\r\nSubject: Bestelling {t}\r\n\
                 Message-ID: {}\r\n{thread_headers}Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\r\n{filler}",
                id(i)
            );
            let message = message.into_bytes();
            event_ids.push(omni_channels::email::ids("support", &message).event_id);
            // RT keeps the whole text; the first line is what identifies it.
            texts.push(text);
            std::fs::write(dir.path().join(format!("{sequence:07}.eml")), &message).unwrap();
            sequence += 1;
        }
    }
    Corpus { dir, event_ids, threads }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_mailbox_is_ingested_exactly_once_through_connector_kills() -> anyhow::Result<()> {
    let _serial = serial().await;
    let run = nonce();
    let messages = env_or("OMNI_TEST_BACKFILL_MESSAGES", 10_000);
    let per_thread = env_or("OMNI_TEST_BACKFILL_THREAD", 100);
    let corpus = corpus(&run, messages, per_thread);
    let mailbox = Mailbox::create();
    mailbox.append_dir(corpus.dir.path())?;
    // A hundred batches: enough checkpoints to kill the connector between.
    let batch = (messages / 100).clamp(2, 200).to_string();
    let mut pipeline = Pipeline::start_with_mailbox(mailbox, &[("OMNI__EMAIL__FETCH_BATCH", batch.as_str())]).await?;

    // SIGKILL the connector while it backfills: each time right after it moved its checkpoint,
    // a few milliseconds into the next batch, so a batch may be in the broker without its
    // checkpoint. It restarts from the checkpoint each time.
    let started = Instant::now();
    let mut kills = 0;
    let mut checkpoint = 0.0;
    for pause_ms in [0_u64, 15, 5, 30, 10] {
        let moved = eventually("the connector to move its checkpoint", Duration::from_secs(60), || async {
            Ok(pipeline.email.metric(CHECKPOINT).await.unwrap_or(0.0) > checkpoint)
        })
        .await;
        if moved.is_err() {
            break; // it finished before this kill
        }
        checkpoint = pipeline.email.metric(CHECKPOINT).await.unwrap_or(checkpoint);
        if checkpoint >= messages as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        pipeline.email.sigkill();
        kills += 1;
        pipeline.email.restart_with(&[]).await?;
    }
    assert!(kills >= 3, "only {kills} kills landed during the backfill");
    let expected: HashSet<&String> = corpus.event_ids.iter().collect();
    // Request Tracker takes about 0.4 s per correspondence on two cores; this is a cap, not a target.
    let timeout = Duration::from_secs(120 + messages as u64);
    // Polled every few seconds: reading the whole deliveries topic is work for the broker too.
    let mut last_report = Instant::now();
    loop {
        let delivered: HashSet<String> = pipeline.deliveries()?.into_iter().map(|d| d.event_id).collect();
        if expected.iter().all(|id| delivered.contains(*id)) {
            break;
        }
        if started.elapsed() > timeout {
            anyhow::bail!(
                "{} of {messages} messages reached the helpdesk in {timeout:?}\nemail log tail:\n{}",
                delivered.len(),
                tail(&pipeline.email.log())
            );
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            // From the services' metrics: reading whole topics would load the broker.
            eprintln!(
                "{:>5.0} s: checkpoint uid {}, normalized {} (skipped as already written {}), delivered {} of {messages}",
                started.elapsed().as_secs_f64(),
                pipeline.email.metric(CHECKPOINT).await.unwrap_or(0.0),
                pipeline.normalizer.metric(NORMALIZER_NORMALIZED).await.unwrap_or(0.0),
                pipeline.normalizer.metric(NORMALIZER_DUPLICATES).await.unwrap_or(0.0),
                delivered.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    eprintln!(
        "{messages} messages through {kills} connector kills reached RT in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let mut copies: HashMap<String, usize> = HashMap::new();
    for event in pipeline.conversation_events()? {
        *copies.entry(event.event_id).or_default() += 1;
    }
    for id in &corpus.event_ids {
        assert_eq!(copies.get(id), Some(&1), "{id} in the conversation topic");
    }
    let duplicates_skipped = pipeline.normalizer.metric(NORMALIZER_DUPLICATES).await?;
    eprintln!("the normalizer skipped {duplicates_skipped} records the connector stored twice");

    for (customer, texts) in &corpus.threads {
        let tickets = pipeline.rt.tickets_of_requestor(customer).await?;
        assert_eq!(tickets.len(), 1, "{customer}: {tickets:?}");
        let found: Vec<String> = pipeline
            .rt
            .texts(&tickets[0])
            .await?
            .iter()
            .map(|text| text.lines().next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(&found, texts, "{customer}: every message once, in order");
    }
    Ok(())
}

const CHECKPOINT: &str = "omni_email_checkpoint_uid";

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Figures, not a test: `make bench-email` runs it. Backfill rate (IMAP to acknowledged raw
/// records) and normalization rate (raw records to conversation events) on the local broker,
/// with the connector and the normalizer alone (no helpdesk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench-email"]
async fn backfill_and_normalization_benchmark() -> anyhow::Result<()> {
    let _serial = serial().await;
    let run = nonce();
    let messages = env_or("OMNI_BENCH_MESSAGES", 10_000);
    let corpus = corpus(&run, messages, env_or("OMNI_TEST_BACKFILL_THREAD", 100));
    let bytes: u64 = std::fs::read_dir(corpus.dir.path())?
        .map(|e| e.map(|e| e.metadata().map(|m| m.len()).unwrap_or(0)))
        .sum::<Result<u64, _>>()?;
    let mailbox = Mailbox::create();
    let appended = Instant::now();
    mailbox.append_dir(corpus.dir.path())?;
    let append_secs = appended.elapsed().as_secs_f64();

    let broker = Broker::start().await;
    let env: Vec<(String, String)> = vec![
        ("OMNI__KAFKA__BOOTSTRAP_SERVERS".into(), broker.bootstrap()),
        ("OMNI__EMAIL__MAILBOXES__SUPPORT__PORT".into(), mailbox.port.to_string()),
        ("OMNI__EMAIL__MAILBOXES__SUPPORT__FOLDER".into(), mailbox.folder.clone()),
        ("OMNI__EMAIL__FETCH_BATCH".into(), "500".into()),
    ];
    // The normalizer first, so the backfill is not measured with a consumer group forming.
    let normalizer_port = free_port();
    let mut env_normalizer = env.clone();
    env_normalizer.push(("OMNI__NORMALIZER__ADMIN_LISTEN".into(), format!("127.0.0.1:{normalizer_port}")));
    let mut normalizer = Service::spawn("normalizer", normalizer_port, &env_normalizer);
    normalizer.wait_ready().await?;
    let email_port = free_port();
    let mut env_email = env.clone();
    env_email.push(("OMNI__EMAIL__ADMIN_LISTEN".into(), format!("127.0.0.1:{email_port}")));
    let started = Instant::now();
    let email = Service::spawn("email", email_port, &env_email);
    let (mut backfilled, mut normalized) = (None, None);
    let deadline = Duration::from_secs(600);
    while backfilled.is_none() || normalized.is_none() {
        anyhow::ensure!(started.elapsed() < deadline, "not done in {deadline:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
        let stored = email.metric(CHECKPOINT).await.unwrap_or(0.0);
        if backfilled.is_none() && stored >= messages as f64 {
            backfilled = Some(started.elapsed());
        }
        let done = normalizer.metric("omni_normalizer_records_total").await.unwrap_or(0.0);
        if normalized.is_none() && done >= messages as f64 {
            normalized = Some(started.elapsed());
        }
    }
    let (backfilled, normalized) = (backfilled.unwrap().as_secs_f64(), normalized.unwrap().as_secs_f64());
    let mib = bytes as f64 / (1024.0 * 1024.0);
    println!("email backfill benchmark: {messages} messages, {mib:.1} MiB, tansu broker, one replica each, 2 cores");
    println!(
        "  IMAP APPEND into Dovecot (setup)      {append_secs:>7.1} s  {:>8.0} messages/s",
        messages as f64 / append_secs
    );
    println!(
        "  backfill, IMAP to acknowledged raw    {backfilled:>7.1} s  {:>8.0} messages/s",
        messages as f64 / backfilled
    );
    println!(
        "  through normalization (end to end)    {normalized:>7.1} s  {:>8.0} messages/s",
        messages as f64 / normalized
    );
    println!("  (normalization alone, without Kafka: cargo bench -p omni-channels --bench normalize_email)");
    Ok(())
}
