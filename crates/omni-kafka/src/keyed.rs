//! Key-ordered concurrency within a partition, after Confluent's Parallel Consumer: many records
//! in flight at once, the records of one key strictly one after the other in partition order,
//! and offsets stored only up to the lowest unfinished record.
//!
//! [`KeyOrdered`] is the bookkeeping only (no tasks, no I/O), so a service keeps its own loop:
//! read a record while [`has_room`](KeyOrdered::has_room), [`admit`](KeyOrdered::admit) it (it
//! starts at once unless a record of its key is being handled, then it waits behind it, or
//! `limit` records run already, then it waits its turn), and on [`finish`](KeyOrdered::finish)
//! start the record it gives back (the next that may run, in the order read) and store the offset
//! it returns. Records waiting behind their key do not take running slots: up to
//! [`HELD_PER_RUNNING`] times `limit` records are held, so a partition where each key has several
//! records still keeps `limit` keys running; [`weighing`](KeyOrdered::weighing) bounds the bytes
//! of the waiting ones as well. A crash replays every record from the lowest unfinished one:
//! records above it that had finished are read again, and the stage's own idempotency (the
//! router's `DONE` state) recognises them without calling the helpdesk again.

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
    /// The record to start now: the next of the same key, or another key's that waited for a
    /// slot (the first read of those free to run).
    pub next: Option<T>,
    /// Every record of the partition at or below this offset has finished, and this moved since
    /// the last report: store it (the committed offset is the one after it).
    pub handled_up_to: Option<i64>,
}

/// How many records a [`KeyOrdered`] holds (running or waiting) per running slot.
pub const HELD_PER_RUNNING: usize = 4;

/// The bytes of records a service's [`KeyOrdered`] keeps waiting (read ahead of the running
/// ones) before it stops reading: 32 MiB, so a backlog of large events (an email with an inline
/// file is up to about 1 MiB) does not hold four times the running bound in memory.
pub const MAX_WAITING_BYTES: usize = 32 << 20;

/// A record's weight for [`KeyOrdered::weighing`]: its key and payload bytes.
pub fn message_bytes(message: &rdkafka::message::OwnedMessage) -> usize {
    use rdkafka::Message as _;
    message.payload().map_or(0, <[u8]>::len) + message.key().map_or(0, <[u8]>::len)
}

/// The records a stage holds between reading and finishing them; see the module docs.
#[derive(Debug)]
pub struct KeyOrdered<T> {
    /// Most records running at once.
    limit: usize,
    running: usize,
    /// Records held, running or waiting.
    held: usize,
    /// Records admitted so far: the order they were read in.
    read: u64,
    /// Per key with a record running or ready: the records read behind it, in order.
    waiting: HashMap<Vec<u8>, VecDeque<Behind<T>>>,
    /// Records free to run (no record of their key runs), waiting for a slot, by read order.
    ready: BTreeMap<u64, (Vec<u8>, Behind<T>)>,
    partitions: HashMap<(String, i32), Progress>,
    /// How a record's bytes are counted, and the most bytes of waiting records before reading
    /// stops (see [`weighing`](Self::weighing)).
    weigh: Option<fn(&T) -> usize>,
    max_waiting_bytes: usize,
    /// Bytes of the records waiting (not running).
    waiting_bytes: usize,
}

/// A record held and not running: its read order, position and item.
#[derive(Debug)]
struct Behind<T> {
    read: u64,
    position: Position,
    /// Its bytes, as counted in `waiting_bytes`.
    weight: usize,
    item: T,
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
    /// At most `limit` records (at least one) running at a time, and [`HELD_PER_RUNNING`] times
    /// as many held, running or waiting.
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            running: 0,
            held: 0,
            read: 0,
            waiting: HashMap::new(),
            ready: BTreeMap::new(),
            partitions: HashMap::new(),
            weigh: None,
            max_waiting_bytes: usize::MAX,
            waiting_bytes: 0,
        }
    }

    /// Stops reading while the records waiting (read, not running) weigh `max_bytes` or more by
    /// `weigh`: the records read ahead of the running ones are bounded in memory, not only in
    /// number. Running records are bounded by `limit` alone.
    pub fn weighing(mut self, max_bytes: usize, weigh: fn(&T) -> usize) -> Self {
        self.weigh = Some(weigh);
        self.max_waiting_bytes = max_bytes;
        self
    }

    /// Whether another record may be read.
    pub fn has_room(&self) -> bool {
        self.held < self.limit * HELD_PER_RUNNING && self.waiting_bytes < self.max_waiting_bytes
    }

    /// Bytes of the records waiting (0 unless [`weighing`](Self::weighing)).
    pub fn waiting_bytes(&self) -> usize {
        self.waiting_bytes
    }

    /// Records held, running or waiting.
    pub fn in_flight(&self) -> usize {
        self.held
    }

    /// Records running.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Takes a record just read. Gives it back when it may start now; keeps it when a record of
    /// the same key is held before it or `limit` records run (it comes back from a later
    /// [`finish`](Self::finish)).
    pub fn admit(&mut self, key: &[u8], position: &Position, item: T) -> Option<T> {
        self.held += 1;
        self.read += 1;
        let behind = Behind {
            read: self.read,
            position: position.clone(),
            weight: 0,
            item,
        };
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
        let runs = !self.waiting.contains_key(key) && self.running < self.limit;
        if runs {
            self.waiting.insert(key.to_vec(), VecDeque::new());
            self.running += 1;
            return Some(behind.item);
        }
        let behind = self.weighed(behind);
        match self.waiting.get_mut(key) {
            Some(queue) => queue.push_back(behind),
            None => {
                self.waiting.insert(key.to_vec(), VecDeque::new());
                self.ready.insert(behind.read, (key.to_vec(), behind));
            }
        }
        None
    }

    /// A record about to wait, its bytes counted.
    fn weighed(&mut self, mut behind: Behind<T>) -> Behind<T> {
        behind.weight = self.weigh.map_or(0, |weigh| weigh(&behind.item));
        self.waiting_bytes += behind.weight;
        behind
    }

    /// A record that waited leaves (it runs, or is dropped): its bytes are no longer counted.
    fn unweigh(&mut self, behind: &Behind<T>) {
        self.waiting_bytes = self.waiting_bytes.saturating_sub(behind.weight);
    }

    /// Marks the running record of `key`, at `position`, finished. The record it gives back
    /// (`next`) is the first read of those free to run now: the next of the same key, or another
    /// key's that waited for a slot.
    pub fn finish(&mut self, key: &[u8], position: &Position) -> Finished<T> {
        let next = self.release(key);
        let handled_up_to = self
            .partitions
            .get_mut(&(position.topic.clone(), position.partition))
            .and_then(|progress| progress.finish(position.offset));
        Finished { next, handled_up_to }
    }

    /// Marks the running record of `key` cancelled (see [`revoke`](Self::revoke)): its key and
    /// slot are free, and it reports no offset. Its partition's progress is left alone: revoke
    /// dropped it, and what stands there now (the partition came back) counts the copies read
    /// since, one of which may be this record's, still to be handled.
    pub fn cancelled(&mut self, key: &[u8]) -> Finished<T> {
        Finished {
            next: self.release(key),
            handled_up_to: None,
        }
    }

    /// Marks the running record of `key`, at `position`, ended: [`finish`](Self::finish) when it
    /// was `handled`, else [`cancelled`](Self::cancelled) (a rebalance cancelled it). What a
    /// service's loop calls for each record its [`InHand`] gives back.
    pub fn end(&mut self, key: &[u8], position: &Position, handled: bool) -> Finished<T> {
        if handled { self.finish(key, position) } else { self.cancelled(key) }
    }

    /// The running record of `key` is gone: its slot and key are free; returns what starts now.
    fn release(&mut self, key: &[u8]) -> Option<T> {
        self.held = self.held.saturating_sub(1);
        self.running = self.running.saturating_sub(1);
        self.free(key);
        self.start_ready()
    }

    /// The record of `key` that ran (or was dropped) is gone: the next behind it, if any, is
    /// ready to run; else the key is free.
    fn free(&mut self, key: &[u8]) {
        match self.waiting.get_mut(key).map(VecDeque::pop_front) {
            Some(Some(next)) => {
                self.ready.insert(next.read, (key.to_vec(), next));
            }
            Some(None) => {
                self.waiting.remove(key);
            }
            None => {}
        }
    }

    /// Takes the first record read of those ready, when a slot is free.
    fn start_ready(&mut self) -> Option<T> {
        if self.running >= self.limit {
            return None;
        }
        let (_, (_, behind)) = self.ready.pop_first()?;
        self.unweigh(&behind);
        self.running += 1;
        Some(behind.item)
    }
}

impl<T> KeyOrdered<T> {
    /// Forgets the partitions `held` no longer accepts (revoked in a rebalance: another member
    /// reads them from their committed offset now): their waiting records are dropped and their
    /// offsets never reported again. Their running records must be cancelled by the caller (see
    /// [`InHand::cancel_unless`]) and, once ended, given to [`cancelled`](Self::cancelled), which
    /// frees their key. Returns how many waiting records were dropped.
    pub fn revoke(&mut self, held: impl Fn(&str, i32) -> bool) -> usize {
        let mut dropped = 0;
        let mut dropped_bytes = 0;
        for queue in self.waiting.values_mut() {
            queue.retain(|behind| {
                let keep = held(&behind.position.topic, behind.position.partition);
                if !keep {
                    dropped += 1;
                    dropped_bytes += behind.weight;
                }
                keep
            });
        }
        self.waiting_bytes = self.waiting_bytes.saturating_sub(dropped_bytes);
        let revoked: Vec<u64> = self
            .ready
            .iter()
            .filter(|(_, (_, behind))| !held(&behind.position.topic, behind.position.partition))
            .map(|(read, _)| *read)
            .collect();
        for read in revoked {
            if let Some((key, behind)) = self.ready.remove(&read) {
                dropped += 1;
                self.unweigh(&behind);
                self.free(&key);
            }
        }
        self.held = self.held.saturating_sub(dropped);
        self.partitions.retain(|(topic, partition), _| held(topic, *partition));
        dropped
    }

    /// Records that may run now after a [`revoke`](Self::revoke) freed their key and a slot is
    /// free. A safeguard: records wait for a slot only while every slot runs, and a revoke ends
    /// no running record, so it finds none today.
    pub fn take_ready(&mut self) -> Vec<T> {
        std::iter::from_fn(|| self.start_ready()).collect()
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

    /// A position in partition 1, beside [`at`]'s partition 0.
    fn other(offset: i64) -> Position {
        Position {
            partition: 1,
            ..at(offset)
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
        held.admit(b"a", &at(5), ());
        held.admit(b"b", &other(7), ());
        assert_eq!(held.finish(b"b", &other(7)).handled_up_to, Some(7));
        assert_eq!(held.finish(b"a", &at(5)).handled_up_to, Some(5));
    }

    #[test]
    fn records_waiting_behind_their_key_do_not_take_running_slots() {
        let mut held = KeyOrdered::new(2);
        // a's follow-ups wait behind a0; b still runs beside it; c waits for a slot.
        assert_eq!(held.admit(b"a", &at(0), "a0"), Some("a0"));
        assert_eq!(held.admit(b"a", &at(1), "a1"), None);
        assert_eq!(held.admit(b"a", &at(2), "a2"), None);
        assert_eq!(held.admit(b"b", &at(3), "b3"), Some("b3"));
        assert_eq!(held.admit(b"c", &at(4), "c4"), None);
        assert_eq!((held.running(), held.in_flight()), (2, 5));
        // A slot goes to the first record read of those free to run: a1 before c4.
        assert_eq!(held.finish(b"a", &at(0)).next, Some("a1"));
        assert_eq!(held.finish(b"b", &at(3)).next, Some("c4"));
        // c's key is taken while c4 waits for its slot or runs: c5 goes behind it.
        assert_eq!(held.admit(b"c", &at(5), "c5"), None);
        assert_eq!(held.finish(b"c", &at(4)).next, Some("c5"));
        assert_eq!(held.finish(b"a", &at(1)).next, Some("a2"));
        assert_eq!(held.finish(b"c", &at(5)).handled_up_to, None, "a2 runs still");
        assert_eq!(
            held.finish(b"a", &at(2)),
            Finished {
                next: None,
                handled_up_to: Some(5)
            }
        );
        assert_eq!((held.running(), held.in_flight()), (0, 0));
    }

    #[test]
    fn a_free_slot_goes_to_the_first_record_read_whatever_its_key() {
        let mut held = KeyOrdered::new(1);
        assert_eq!(held.admit(b"a", &at(0), "a0"), Some("a0"));
        assert_eq!(held.admit(b"b", &at(1), "b1"), None);
        assert_eq!(held.admit(b"a", &at(2), "a2"), None);
        assert_eq!(held.finish(b"a", &at(0)).next, Some("b1"), "read before a2");
        assert_eq!(held.finish(b"b", &at(1)).next, Some("a2"));
    }

    #[test]
    fn a_revoked_partitions_records_waiting_for_a_slot_are_dropped_and_free_their_key() {
        let mut held = KeyOrdered::new(1);
        assert_eq!(held.admit(b"a", &at(0), "a0"), Some("a0"));
        assert_eq!(held.admit(b"b", &other(0), "b0"), None);
        assert_eq!(held.admit(b"b", &other(1), "b1"), None);
        assert_eq!(held.revoke(|_, partition| partition == 0), 2);
        assert!(held.take_ready().is_empty(), "a0 still runs");
        assert_eq!(
            held.finish(b"a", &at(0)),
            Finished {
                next: None,
                handled_up_to: Some(0)
            }
        );
        // b's key is free again when its partition comes back.
        assert_eq!(held.admit(b"b", &other(0), "b0"), Some("b0"));
        assert_eq!((held.running(), held.in_flight()), (1, 1));
    }

    #[test]
    fn a_revoked_ready_record_hands_its_key_to_the_next_of_a_partition_still_held() {
        let mut held = KeyOrdered::new(1).weighing(100, |item: &&str| item.len());
        assert_eq!(held.admit(b"a", &at(0), "a0"), Some("a0"));
        // b's first record (partition 1) waits for the slot, its second (partition 0) behind it.
        assert_eq!(held.admit(b"b", &other(0), "b-p1"), None);
        assert_eq!(held.admit(b"b", &at(1), "b-p0"), None);
        assert_eq!(held.waiting_bytes(), 8);
        assert_eq!(held.revoke(|_, partition| partition == 0), 1);
        assert_eq!(held.waiting_bytes(), 4, "only the dropped record's bytes leave");
        assert!(held.take_ready().is_empty(), "a0 holds the only slot");
        assert_eq!(held.finish(b"a", &at(0)).next, Some("b-p0"));
        assert_eq!(held.finish(b"b", &at(1)).handled_up_to, Some(1));
        assert_eq!((held.running(), held.in_flight(), held.waiting_bytes()), (0, 0, 0));
    }

    #[test]
    fn the_held_records_are_bounded_by_a_multiple_of_the_running_ones() {
        let mut held = KeyOrdered::new(2);
        for offset in 0..(2 * HELD_PER_RUNNING as i64) {
            assert!(held.has_room(), "{offset} held");
            held.admit(b"a", &at(offset), ());
        }
        assert!(!held.has_room());
        assert_eq!(held.running(), 1);
        held.finish(b"a", &at(0));
        assert!(held.has_room());
    }

    #[test]
    fn a_revoked_partition_loses_its_waiting_records_and_reports_no_offset() {
        let mut held = KeyOrdered::new(10);
        held.admit(b"a", &at(0), "a0");
        held.admit(b"a", &at(1), "a1");
        held.admit(b"b", &other(0), "b0");
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
        assert_eq!(held.finish(b"b", &other(0)).handled_up_to, Some(0));
        assert_eq!(held.in_flight(), 0);
    }

    #[tokio::test]
    async fn running_records_of_a_revoked_partition_end_without_an_outcome() {
        let mut in_hand = InHand::default();
        in_hand.push(b"a", at(0), std::future::pending::<&str>());
        in_hand.push(b"b", other(0), async { "done" });
        assert_eq!(in_hand.cancel_unless(|_, partition| partition == 1), 1);
        let mut ended = [in_hand.next().await, in_hand.next().await];
        ended.sort_by_key(|(key, _, _)| key.clone());
        assert_eq!(ended[0], (b"a".to_vec(), at(0), None));
        assert_eq!(ended[1].2, Some("done"));
        assert!(in_hand.is_empty());
    }

    #[test]
    fn reading_stops_while_the_waiting_records_weigh_the_bound_and_goes_on_as_they_start() {
        let mut held = KeyOrdered::new(1).weighing(10, |item: &&str| item.len());
        assert_eq!(held.admit(b"a", &at(0), "running"), Some("running"));
        // Waiting records count, the running one does not.
        assert_eq!(held.waiting_bytes(), 0);
        assert_eq!(held.admit(b"a", &at(1), "six..."), None);
        assert!(held.has_room());
        assert_eq!(held.admit(b"b", &at(2), "five."), None);
        assert_eq!(held.waiting_bytes(), 11);
        assert!(!held.has_room());
        // The running record ends: the next of its key starts, and its bytes leave the count.
        assert_eq!(held.finish(b"a", &at(0)).next, Some("six..."));
        assert_eq!(held.waiting_bytes(), 5);
        assert!(held.has_room());
        // A revoke drops the waiting record and its bytes.
        assert_eq!(held.revoke(|_, _| false), 1);
        assert_eq!(held.waiting_bytes(), 0);
    }

    #[test]
    fn a_cancelled_record_reports_nothing_for_its_partition_read_again() {
        let mut held = KeyOrdered::new(10);
        assert_eq!(held.admit(b"a", &at(7), "first copy"), Some("first copy"));
        // A rebalance takes the partition away, its call is cancelled, and the partition comes
        // back before the cancelled call ends: offset 7 is read again and waits behind its key.
        held.revoke(|_, _| false);
        assert_eq!(held.admit(b"a", &at(7), "second copy"), None);
        let ended = held.cancelled(b"a");
        assert_eq!(ended.next, Some("second copy"));
        assert_eq!(ended.handled_up_to, None, "the second copy runs still");
        assert_eq!(held.finish(b"a", &at(7)).handled_up_to, Some(7));
        assert_eq!(held.in_flight(), 0);
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
