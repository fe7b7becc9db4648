//! Consumer groups on the local broker: a restarted static member gets its partitions back
//! (tansu's group coordinator, patched by `deploy/local/tansu/`; docs/adr/0001), and a router
//! that the group leaves without partitions notices, says so, rejoins, and delivers once it
//! holds them again.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use omni_e2e::{Broker, Pipeline, eventually, nonce, serial};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// The kill pattern of `crash_recovery` and `routing_chaos` (a member killed, its replacement
/// killed soon after), played on the broker alone by an independent client:
/// `tests/python/group_stall.py`. On tansu 0.6.0 as published the last replacement never gets
/// an assignment; it must get all three partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_killed_twice_in_a_row_gets_its_partitions_back() -> anyhow::Result<()> {
    let _serial = serial().await;
    let broker = Broker::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/group_stall.py");
    let bootstrap = broker.bootstrap();
    let output = tokio::task::spawn_blocking(move || Command::new("python3").args([script, &bootstrap, "--wait", "40"]).output())
        .await?
        .context("run python3 tests/python/group_stall.py")?;
    let steps = String::from_utf8_lossy(&output.stdout);
    println!("{steps}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the restarted member got no assignment:\n{steps}\nbroker log (tail):\n{}",
        tail(&broker.log(), 40)
    );
    Ok(())
}

/// Three members of the router's group (plain librdkafka consumers that read nothing and commit
/// nothing) take the three partitions of `omni.conversations.v1`, so the router holds none. Past
/// `rejoin_after_secs` the router must say so at `warn`, count it, report it on `/readyz` and join
/// again; once the other members leave it must hold the partitions, be ready, and deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_left_without_partitions_rejoins_and_delivers_once_it_holds_them() -> anyhow::Result<()> {
    let _serial = serial().await;
    let pipeline = Pipeline::start(&[("OMNI__KAFKA__CONSUMER__REJOIN_AFTER_SECS", "12")]).await?;
    pipeline.router.wait_for_log("partitions assigned", Duration::from_secs(30)).await?;
    let others = OtherMembers::join(&pipeline.broker.bootstrap(), "omni-router", "omni.conversations.v1", 3)?;

    pipeline
        .router
        .wait_for_log("leaving and joining the group again", Duration::from_secs(90))
        .await?;
    let (status, readiness) = pipeline.router.readiness().await?;
    assert_eq!(status, 503, "not ready while it holds no partitions: {readiness}");
    let check = readiness["checks"]["consumer:omni-router"].as_str().unwrap_or_default().to_owned();
    assert!(check.contains("no partitions assigned"), "readiness says why: {readiness}");
    let rejoins = pipeline
        .router
        .metric("omni_kafka_consumer_rejoins_total{group=\"omni-router\"")
        .await?;
    assert!(rejoins >= 1.0, "rejoins counted: {rejoins}");

    // Closing them leaves the group; bounded, so a close that hangs fails the test instead.
    tokio::time::timeout(Duration::from_secs(60), tokio::task::spawn_blocking(move || drop(others)))
        .await
        .context("the other members did not close within 60 s")??;
    eventually("the router ready again", Duration::from_secs(60), || {
        let readiness = pipeline.router.readiness();
        async move { Ok(readiness.await?.0 == 200) }
    })
    .await
    .with_context(|| format!("router log:\n{}", tail(&pipeline.router.log(), 40)))?;
    let partitions = pipeline
        .router
        .metric("omni_kafka_consumer_assigned_partitions{group=\"omni-router\"")
        .await?;
    assert_eq!(partitions, 3.0, "the router holds every partition again");

    let run = nonce();
    let body = serde_json::json!({
        "customer": { "email": format!("rejoin+{run}@example.com") },
        "subject": "Kargo nerede?",
        "text": "Siparişim hâlâ gelmedi.",
        "external_id": format!("rejoin-{run}"),
    });
    let event_id = pipeline.post_ok(&body.to_string()).await?;
    let delivery = pipeline.delivery_of(&event_id, Duration::from_secs(60)).await?;
    assert!(!delivery.ticket_id.is_empty(), "delivered into a ticket: {delivery:?}");
    Ok(())
}

/// Dynamic members of a group reading `topic`, polled on their own thread; they leave the group
/// when dropped.
struct OtherMembers {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OtherMembers {
    fn join(bootstrap: &str, group: &str, topic: &str, count: usize) -> anyhow::Result<Self> {
        let consumers = (0..count)
            .map(|i| {
                // Member ids start with the client id: "0-…" sorts before the router's, so the
                // range assignor gives the three partitions to these.
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", bootstrap)
                    .set("group.id", group)
                    .set("client.id", format!("0-other-{i}"))
                    .set("enable.auto.commit", "false")
                    .set("session.timeout.ms", "10000")
                    .create()?;
                consumer.subscribe(&[topic])?;
                Ok(consumer)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                for consumer in &consumers {
                    // Records are not read on purpose: these members only hold partitions.
                    consumer.poll(Duration::from_millis(50));
                }
            }
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for OtherMembers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A member's work before a revocation (omni-sender flushes its producer there, so that its
/// address writes land before the partition's next owner writes) runs while the member still
/// holds the partitions: a second member joining makes the group take them from the first, and
/// the work sees them still assigned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_before_a_revocation_runs_while_the_member_still_holds_the_partitions() -> anyhow::Result<()> {
    use omni_kafka::consumer::GroupMember;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let _serial = serial().await;
    let broker = Broker::start().await;
    let bootstrap = broker.bootstrap();
    let topic = format!("omni-e2e-revoke-{}", nonce());
    let admin: AdminClient<_> = ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
    let created = admin
        .create_topics([&NewTopic::new(&topic, 3, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await?;
    anyhow::ensure!(created.iter().all(Result::is_ok), "topic not created: {created:?}");
    let settings = omni_runtime::Settings::load_from(None, [("OMNI__KAFKA__BOOTSTRAP_SERVERS".to_owned(), bootstrap.clone())])?;
    let mut problems = omni_runtime::Problems::default();
    let kafka: omni_kafka::KafkaConfig = settings.section("kafka", &mut problems).context("[kafka]")?;
    let readiness = omni_runtime::Readiness::default();
    let member = Arc::new(GroupMember::join(
        &kafka,
        "revoke-first",
        "omni-e2e-revoke",
        "revoke-first",
        &[&topic],
        &readiness,
    )?);
    // What the member held each time the work ran.
    let held_at_revocation = Arc::new(std::sync::Mutex::new(Vec::new()));
    member.before_revoke({
        let (member, held) = (Arc::downgrade(&member), held_at_revocation.clone());
        move || {
            let count = member
                .upgrade()
                .and_then(|m| m.consumer().assignment().ok())
                .map_or(0, |list| list.count());
            held.lock().expect("held lock").push(count);
        }
    });
    let polling = tokio::spawn({
        let member = member.clone();
        async move {
            loop {
                let _ = member.recv().await;
            }
        }
    });
    eventually("the first member holds the partitions", Duration::from_secs(60), || {
        let assigned = member.assignments();
        async move { Ok(assigned >= 1) }
    })
    .await?;
    assert!(held_at_revocation.lock().expect("held lock").is_empty(), "no revocation yet");

    let other = OtherMembers::join(&bootstrap, "omni-e2e-revoke", &topic, 1)?;
    eventually("the work ran before a revocation", Duration::from_secs(90), || {
        let ran = !held_at_revocation.lock().expect("held lock").is_empty();
        async move { Ok(ran) }
    })
    .await
    .with_context(|| {
        let held = member.consumer().assignment().map_or(0, |list| list.count());
        format!(
            "assignments {}, holding {held}; broker log (tail):\n{}",
            member.assignments(),
            tail(&broker.log(), 40)
        )
    })?;
    let held = held_at_revocation.lock().expect("held lock").clone();
    assert!(held[0] > 0, "the work ran while the member still held its partitions: {held:?}");
    polling.abort();
    tokio::task::spawn_blocking(move || drop(other)).await?;
    Ok(())
}
