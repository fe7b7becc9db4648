//! Key-ordered concurrency within a partition, after Confluent's Parallel Consumer: many records
//! in flight at once, the records of one key strictly one after the other in partition order,
//! and offsets stored only up to the lowest unfinished record.
//!
//! [`KeyOrdered`] is the bookkeeping only (no tasks, no I/O), so a service keeps its own loop:
//! read a record while [`has_room`](KeyOrdered::has_room), [`admit`](KeyOrdered::admit) it (it
//! starts at once unless a record of its key is being handled, then it waits behind it), and on
//! [`finish`](KeyOrdered::finish) start the next record of that key and store the offset it
//! returns. A crash replays every record from the lowest unfinished one: records above it that
//! had finished are read again, and the stage's own idempotency (the router's `DONE` state)
//! recognises them without calling the helpdesk again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;

use futures::future::{AbortHandle, Abortable, Aborted, BoxFuture};
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};

/// Where a record sits: topic, partition, offset.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// The record's topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
}

impl Position {
    /// The position of a record read from the broker.
    pub fn of<M: rdkafka::Message>(message: &M) -> Self {
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        }
    }
}

/// What [`KeyOrdered::finish`] found.
#[derive(Debug, PartialEq, Eq)]
pub struct Finished<T> {
    /// The next record of the same key, to start now.
    pub next: Option<T>,
    /// Every record of the partition at or below this offset has finished, and this moved since
    /// the last report: store it (the committed offset is the one after it).
    pub handled_up_to: Option<i64>,
}

/// The records a stage holds between reading and finishing them; see the module docs.
#[derive(Debug)]
pub struct KeyOrdered<T> {
    limit: usize,
    in_flight: usize,
    /// Per key with a record being handled: the records read behind it, in order.
    waiting: HashMap<Vec<u8>, VecDeque<(Position, T)>>,
    partitions: HashMap<(String, i32), Progress>,
}

/// One partition's read and finished offsets.
#[derive(Debug)]
struct Progress {
    /// Offsets read and not finished, with how many copies are held (a record can be read again
    /// after a rebalance gave its partition back).
    unfinished: BTreeMap<i64, u32>,
    /// The lowest and highest offsets read.
    lowest: i64,
    highest: i64,
    /// The last offset reported handled.
    reported: Option<i64>,
}

impl<T> KeyOrdered<T> {
    /// At most `limit` records (at least one) held at a time, running or waiting behind their key.
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            in_flight: 0,
            waiting: HashMap::new(),
            partitions: HashMap::new(),
        }
    }

    /// Whether another record may be read.
    pub fn has_room(&self) -> bool {
        self.in_flight < self.limit
    }

    /// Records held, running or waiting.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Takes a record just read. Gives it back when it may start now; keeps it when a record of
    /// the same key is being handled (it comes back from the [`finish`](Self::finish) of the one
    /// before it).
    pub fn admit(&mut self, key: &[u8], position: &Position, item: T) -> Option<T> {
        self.in_flight += 1;
        let progress = self
            .partitions
            .entry((position.topic.clone(), position.partition))
            .or_insert(Progress {
                unfinished: BTreeMap::new(),
                lowest: position.offset,
                highest: position.offset,
                reported: None,
            });
        *progress.unfinished.entry(position.offset).or_default() += 1;
        progress.lowest = progress.lowest.min(position.offset);
        progress.highest = progress.highest.max(position.offset);
        match self.waiting.get_mut(key) {
            Some(queue) => {
                queue.push_back((position.clone(), item));
                None
            }
            None => {
                self.waiting.insert(key.to_vec(), VecDeque::new());
                Some(item)
            }
        }
    }

    /// Marks the running record of `key`, at `position`, finished.
    pub fn finish(&mut self, key: &[u8], position: &Position) -> Finished<T> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let next = match self.waiting.get_mut(key) {
            Some(queue) => {
                let next = queue.pop_front().map(|(_, item)| item);
                if next.is_none() {
                    self.waiting.remove(key);
                }
                next
            }
            None => None,
        };
        let handled_up_to = self
            .partitions
            .get_mut(&(position.topic.clone(), position.partition))
            .and_then(|progress| progress.finish(position.offset));
        Finished { next, handled_up_to }
    }
}

impl<T> KeyOrdered<T> {
    /// Forgets the partitions `held` no longer accepts (revoked in a rebalance: another member
    /// reads them from their committed offset now): their waiting records are dropped and their
    /// offsets never reported again. Their running records must be cancelled by the caller (see
    /// [`InHand::cancel_unless`]) and still [`finish`](Self::finish)ed, which frees their key.
    /// Returns how many waiting records were dropped.
    pub fn revoke(&mut self, held: impl Fn(&str, i32) -> bool) -> usize {
        let mut dropped = 0;
        for queue in self.waiting.values_mut() {
            let before = queue.len();
            queue.retain(|(position, _)| held(&position.topic, position.partition));
            dropped += before - queue.len();
        }
        self.in_flight = self.in_flight.saturating_sub(dropped);
        self.partitions.retain(|(topic, partition), _| held(topic, *partition));
        dropped
    }
}

/// The running records of a [`KeyOrdered`] loop: futures polled together, each of which can be
/// cancelled by partition when a rebalance takes its partition away.
pub struct InHand<'a, O> {
    running: FuturesUnordered<BoxFuture<'a, (u64, Result<O, Aborted>)>>,
    started: HashMap<u64, (Vec<u8>, Position, AbortHandle)>,
    next_id: u64,
}

impl<'a, O: Send + 'a> Default for InHand<'a, O> {
    fn default() -> Self {
        Self {
            running: FuturesUnordered::new(),
            started: HashMap::new(),
            next_id: 0,
        }
    }
}

impl<'a, O: Send + 'a> InHand<'a, O> {
    /// Starts handling the record of `key` at `position`.
    pub fn push(&mut self, key: &[u8], position: Position, handling: impl Future<Output = O> + Send + 'a) {
        let id = self.next_id;
        self.next_id += 1;
        let (abort, registration) = AbortHandle::new_pair();
        self.started.insert(id, (key.to_vec(), position, abort));
        self.running
            .push(Box::pin(Abortable::new(handling, registration).map(move |outcome| (id, outcome))));
    }

    /// Whether nothing runs.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// The next record to end: its key, position and outcome (`None` when it was cancelled).
    /// Pending forever while nothing runs (for a `select!` branch).
    pub async fn next(&mut self) -> (Vec<u8>, Position, Option<O>) {
        loop {
            match self.running.next().await {
                Some((id, outcome)) => {
                    if let Some((key, position, _)) = self.started.remove(&id) {
                        return (key, position, outcome.ok());
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Cancels the running records of the partitions `held` no longer accepts; they end (through
    /// [`next`](Self::next)) without an outcome. Returns how many.
    pub fn cancel_unless(&mut self, held: impl Fn(&str, i32) -> bool) -> usize {
        let mut cancelled = 0;
        for (_, position, abort) in self.started.values() {
            if !held(&position.topic, position.partition) && !abort.is_aborted() {
                abort.abort();
                cancelled += 1;
            }
        }
        cancelled
    }
}

impl Progress {
    fn finish(&mut self, offset: i64) -> Option<i64> {
        if let Some(copies) = self.unfinished.get_mut(&offset) {
            *copies -= 1;
            if *copies == 0 {
                self.unfinished.remove(&offset);
            }
        }
        let handled = match self.unfinished.first_key_value() {
            Some((lowest_unfinished, _)) => lowest_unfinished - 1,
            None => self.highest,
        };
        let moved = handled >= self.lowest && self.reported.is_none_or(|reported| handled > reported);
        moved.then(|| {
            self.reported = Some(handled);
            handled
        })
    }
}

/// The broker timestamps of the records a service holds (admitted to a [`KeyOrdered`] and not
/// yet finished), for a gauge of the oldest one's: the age of the oldest unfinished work is
/// `time() - gauge` in PromQL (a timestamp, not an age, so it is right whenever it is scraped).
#[derive(Debug, Default)]
pub struct Oldest {
    held: BTreeMap<Position, i64>,
}

impl Oldest {
    /// A record was admitted; `timestamp_ms` is its broker timestamp, if it has one.
    pub fn admit(&mut self, position: &Position, timestamp_ms: Option<i64>) {
        if let Some(ms) = timestamp_ms {
            self.held.insert(position.clone(), ms);
        }
    }

    /// The record at `position` was finished, cancelled or dropped.
    pub fn finish(&mut self, position: &Position) {
        self.held.remove(position);
    }

    /// Forgets the records of partitions `held` no longer accepts (see [`KeyOrdered::revoke`]).
    pub fn revoke(&mut self, held: impl Fn(&str, i32) -> bool) {
        self.held.retain(|position, _| held(&position.topic, position.partition));
    }

    /// The oldest held record's timestamp in seconds since the epoch; 0 when none is held.
    pub fn oldest_seconds(&self) -> f64 {
        self.held.values().min().map_or(0.0, |ms| *ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_is_the_lowest_timestamp_held_until_finished_or_revoked() {
        let at = |partition, offset| Position {
            topic: "t".into(),
            partition,
            offset,
        };
        let mut oldest = Oldest::default();
        assert_eq!(oldest.oldest_seconds(), 0.0);
        oldest.admit(&at(0, 5), Some(9_000));
        oldest.admit(&at(1, 2), Some(4_500));
        oldest.admit(&at(0, 6), None);
        assert_eq!(oldest.oldest_seconds(), 4.5);
        oldest.revoke(|_, partition| partition == 0);
        assert_eq!(oldest.oldest_seconds(), 9.0);
        oldest.finish(&at(0, 5));
        assert_eq!(oldest.oldest_seconds(), 0.0);
    }

    fn at(offset: i64) -> Position {
        Position {
            topic: "t".into(),
            partition: 0,
            offset,
        }
    }

    #[test]
    fn records_of_one_key_wait_for_each_other_and_others_start_at_once() {
        let mut held = KeyOrdered::new(10);
        assert_eq!(held.admit(b"a", &at(0), "a0"), Some("a0"));
        assert_eq!(held.admit(b"b", &at(1), "b1"), Some("b1"));
        assert_eq!(held.admit(b"a", &at(2), "a2"), None);
        assert_eq!(held.admit(b"a", &at(3), "a3"), None);
        assert_eq!(held.in_flight(), 4);
        // b finishes first: nothing of b waits, and offset 0 is still unfinished.
        assert_eq!(
            held.finish(b"b", &at(1)),
            Finished {
                next: None,
                handled_up_to: None
            }
        );
        assert_eq!(
            held.finish(b"a", &at(0)),
            Finished {
                next: Some("a2"),
                handled_up_to: Some(1)
            }
        );
        assert_eq!(
            held.finish(b"a", &at(2)),
            Finished {
                next: Some("a3"),
                handled_up_to: Some(2)
            }
        );
        assert_eq!(
            held.finish(b"a", &at(3)),
            Finished {
                next: None,
                handled_up_to: Some(3)
            }
        );
        assert_eq!(held.in_flight(), 0);
        // The key is free again: its next record starts at once.
        assert_eq!(held.admit(b"a", &at(4), "a4"), Some("a4"));
    }

    #[test]
    fn the_stored_offset_stays_below_the_lowest_unfinished_record() {
        let mut held = KeyOrdered::new(10);
        for offset in 100..105 {
            held.admit(format!("k{offset}").as_bytes(), &at(offset), offset);
        }
        // Finishing above an unfinished record reports nothing; the first record read is never
        // reported as handled before it is.
        for offset in [104, 102, 101] {
            assert_eq!(held.finish(format!("k{offset}").as_bytes(), &at(offset)).handled_up_to, None);
        }
        assert_eq!(held.finish(b"k100", &at(100)).handled_up_to, Some(102));
        assert_eq!(held.finish(b"k103", &at(103)).handled_up_to, Some(104));
    }

    #[test]
    fn partitions_are_tracked_apart() {
        let mut held = KeyOrdered::new(10);
        let other = Position { partition: 1, ..at(7) };
        held.admit(b"a", &at(5), ());
        held.admit(b"b", &other, ());
        assert_eq!(held.finish(b"b", &other).handled_up_to, Some(7));
        assert_eq!(held.finish(b"a", &at(5)).handled_up_to, Some(5));
    }

    #[test]
    fn the_limit_counts_running_and_waiting_records() {
        let mut held = KeyOrdered::new(2);
        held.admit(b"a", &at(0), ());
        assert!(held.has_room());
        held.admit(b"a", &at(1), ());
        assert!(!held.has_room());
        held.finish(b"a", &at(0));
        assert!(held.has_room());
    }

    #[test]
    fn a_revoked_partition_loses_its_waiting_records_and_reports_no_offset() {
        let mut held = KeyOrdered::new(10);
        let other = Position { partition: 1, ..at(0) };
        held.admit(b"a", &at(0), "a0");
        held.admit(b"a", &at(1), "a1");
        held.admit(b"b", &other, "b0");
        assert_eq!(held.revoke(|_, partition| partition == 1), 1, "a1 dropped");
        assert_eq!(held.in_flight(), 2);
        // The cancelled a0 ends: nothing of its key waits any more, no offset for partition 0.
        assert_eq!(
            held.finish(b"a", &at(0)),
            Finished {
                next: None,
                handled_up_to: None
            }
        );
        assert_eq!(held.finish(b"b", &other).handled_up_to, Some(0));
        assert_eq!(held.in_flight(), 0);
    }

    #[tokio::test]
    async fn running_records_of_a_revoked_partition_end_without_an_outcome() {
        let mut in_hand = InHand::default();
        in_hand.push(b"a", at(0), std::future::pending::<&str>());
        in_hand.push(b"b", Position { partition: 1, ..at(0) }, async { "done" });
        assert_eq!(in_hand.cancel_unless(|_, partition| partition == 1), 1);
        let mut ended = [in_hand.next().await, in_hand.next().await];
        ended.sort_by_key(|(key, _, _)| key.clone());
        assert_eq!(ended[0], (b"a".to_vec(), at(0), None));
        assert_eq!(ended[1].2, Some("done"));
        assert!(in_hand.is_empty());
    }

    #[test]
    fn a_record_read_twice_is_handled_only_after_both_copies_finished() {
        let mut held = KeyOrdered::new(10);
        held.admit(b"a", &at(0), 1);
        // The partition was revoked and given back: the broker hands out offset 0 again.
        assert_eq!(held.admit(b"a", &at(0), 2), None);
        assert_eq!(
            held.finish(b"a", &at(0)),
            Finished {
                next: Some(2),
                handled_up_to: None
            }
        );
        assert_eq!(held.finish(b"a", &at(0)).handled_up_to, Some(0));
    }
}
