//! The way back under `make chaos`: agents answer conversations of the load while omni-replies
//! and omni-sender are SIGKILLed with the rest. Each answer is announced by a signed Zendesk
//! `comment_added` webhook, called again until omni-replies takes it (as Zendesk retries), so an
//! answer may be announced twice with one comment id. At the end each answer is counted where the
//! customer would see it: the chat, SMS and call answers in omni-sandbox's requests, the email
//! answers in the customers' mailbox (by Message-ID), and the answers the sender gave up on in
//! its outbox. Chat channels are at-most-once after a crash (README, "Answers"): an answer cut by
//! a kill between the outbox's PENDING and SENT is not sent again but noted ("may not have
//! reached"); email is at-least-once, with the same Message-ID.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use omni_proto::v1::Channel;
use omni_proto::v1::outbox_entry::Status;
use serde::Serialize;

use crate::bench_replies::{ReturnPath, answerable, outbox_ends};
use crate::stack::Stack;

/// What became of the answers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AnswersReport {
    /// Answers the agents gave (each taken by omni-replies at last).
    pub announced: usize,
    /// Of which per channel.
    pub by_channel: BTreeMap<String, usize>,
    /// Webhook calls omni-replies did not take (killed, broker down) and that were made again.
    pub announcements_retried: u64,
    /// Answers that reached the customer once.
    pub delivered_once: usize,
    /// Email answers whose mail arrived again with the same Message-ID (at-least-once, as
    /// documented; the customer's client shows one).
    pub email_copies: usize,
    /// Answers the sender gave up on after a crash during the provider call ("may not have
    /// reached the customer": at-most-once, as documented), by number, and not delivered.
    pub not_sent_noted: Vec<usize>,
    /// Answers that reached the customer twice as different messages, by number.
    pub duplicated: Vec<usize>,
    /// Answers neither delivered nor given up on with a note, by number.
    pub lost: Vec<usize>,
}

impl AnswersReport {
    /// Nothing lost, nothing sent twice beyond what the README documents.
    pub fn passed(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty()
    }
}

/// One answer an agent gave.
struct Answer {
    n: usize,
    conversation: String,
    channel: Channel,
    ticket: u64,
}

/// The agents: one answer every `every` on a conversation not answered yet.
pub struct Agents {
    run: String,
    every: Duration,
    count: usize,
    next_due: Instant,
    waiting: Vec<Answer>,
    taken: Vec<Answer>,
    retried: u64,
}

impl Agents {
    /// `count` answers spread over `over`.
    pub fn new(count: usize, over: Duration) -> Self {
        let every = over / (count as u32 + 1);
        Self {
            run: crate::nonce(),
            every,
            count,
            next_due: Instant::now() + every,
            waiting: Vec::new(),
            taken: Vec::new(),
            retried: 0,
        }
    }

    fn text(&self, n: usize) -> String {
        format!("Chaos answer {}-{n}.", self.run)
    }

    fn comment_id(&self, n: usize) -> String {
        format!("chaos-{}-{n}", self.run)
    }

    /// Answers when due and announces again what omni-replies did not take, until `deadline`.
    pub async fn work_until(&mut self, stack: &Stack, path: &ReturnPath, deadline: Instant) -> anyhow::Result<()> {
        while Instant::now() < deadline {
            if Instant::now() >= self.next_due && self.taken.len() + self.waiting.len() < self.count {
                self.next_due += self.every;
                self.answer_one(stack)?;
            }
            self.announce(path).await;
            let wake = self.next_due.min(deadline).min(Instant::now() + Duration::from_secs(1));
            tokio::time::sleep_until(wake.into()).await;
        }
        Ok(())
    }

    /// An answer on the oldest conversation not answered yet, if there is one.
    fn answer_one(&mut self, stack: &Stack) -> anyhow::Result<()> {
        let answered: HashSet<&str> = self.taken.iter().chain(&self.waiting).map(|a| a.conversation.as_str()).collect();
        let next = answerable(stack)?
            .into_iter()
            .find(|(conversation, _, _)| !answered.contains(conversation.as_str()));
        if let Some((conversation, channel, ticket)) = next {
            let n = self.taken.len() + self.waiting.len();
            self.waiting.push(Answer {
                n,
                conversation,
                channel,
                ticket,
            });
        }
        Ok(())
    }

    /// Announces every waiting answer once; keeps those not taken.
    async fn announce(&mut self, path: &ReturnPath) {
        let mut still = Vec::new();
        for answer in std::mem::take(&mut self.waiting) {
            let status = path
                .announce(
                    answer.ticket,
                    &answer.conversation,
                    &self.comment_id(answer.n),
                    &self.text(answer.n),
                )
                .await;
            match status {
                Ok(200..=299) => self.taken.push(answer),
                _ => {
                    self.retried += 1;
                    still.push(answer);
                }
            }
        }
        self.waiting = still;
    }

    /// Announces what is left, waits (up to `settle`) until every answer reached the customer or
    /// was given up on, and counts.
    pub async fn finish(&mut self, stack: &Stack, path: &ReturnPath, settle: Duration) -> anyhow::Result<AnswersReport> {
        let deadline = Instant::now() + settle;
        while !self.waiting.is_empty() && Instant::now() < deadline {
            self.announce(path).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut report = self.count(stack, path).await?;
        let mut last = (report.delivered_once, report.email_copies, report.not_sent_noted.len());
        let mut quiet_since = Instant::now();
        // Until every answer is accounted for, then 10 s without change (a late copy is seen too).
        while Instant::now() < deadline && (!report.lost.is_empty() || quiet_since.elapsed() < Duration::from_secs(10)) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            report = self.count(stack, path).await?;
            let now = (report.delivered_once, report.email_copies, report.not_sent_noted.len());
            if now != last {
                (last, quiet_since) = (now, Instant::now());
            }
        }
        println!(
            "chaos: {} answers, {} delivered once, {} noted as maybe not sent, {} lost",
            report.announced,
            report.delivered_once,
            report.not_sent_noted.len(),
            report.lost.len()
        );
        Ok(report)
    }

    /// Where each answer is now.
    async fn count(&self, stack: &Stack, path: &ReturnPath) -> anyhow::Result<AnswersReport> {
        let marker = format!("Chaos answer {}-", self.run);
        let numbers = |text: &str| -> Vec<usize> {
            text.match_indices(&marker)
                .filter_map(|(at, _)| {
                    let digits: String = text[at + marker.len()..].chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().ok()
                })
                .collect()
        };
        // Chat, SMS and calls: one sandbox request per message sent.
        let mut sends: HashMap<usize, usize> = HashMap::new();
        for request in path.provider_requests().await? {
            for n in numbers(&request["body"].to_string()) {
                *sends.entry(n).or_default() += 1;
            }
        }
        // Email: distinct Message-IDs are distinct mails; the same one again is a copy.
        let mut mails: HashMap<usize, Vec<String>> = HashMap::new();
        for mail in stack.pipeline.mailbox.fetch("customers", &["body", &marker])? {
            let parsed = mail_parser::MessageParser::default().parse(mail.as_bytes());
            let id = parsed.as_ref().and_then(|m| m.message_id()).unwrap_or_default().to_owned();
            for n in numbers(&mail) {
                mails.entry(n).or_default().push(id.clone());
            }
        }
        let ends = outbox_ends(stack, &format!("chaos-{}-", self.run))?;
        let mut report = AnswersReport {
            announced: self.taken.len(),
            announcements_retried: self.retried,
            ..AnswersReport::default()
        };
        for answer in &self.taken {
            let name = omni_proto::channels::channel_info(answer.channel).map_or("?", |i| i.name);
            *report.by_channel.entry(name.to_owned()).or_default() += 1;
            let ids = mails.get(&answer.n).cloned().unwrap_or_default();
            let distinct: HashSet<&String> = ids.iter().collect();
            report.email_copies += ids.len() - distinct.len();
            let delivered = sends.get(&answer.n).copied().unwrap_or_default() + distinct.len();
            let noted = ends
                .get(&self.comment_id(answer.n))
                .is_some_and(|(entry, _, _)| entry.status() == Status::Failed && entry.reason.contains("may not have reached"));
            match delivered {
                1 => report.delivered_once += 1,
                0 if noted => report.not_sent_noted.push(answer.n),
                0 => report.lost.push(answer.n),
                _ => report.duplicated.push(answer.n),
            }
        }
        Ok(report)
    }
}
