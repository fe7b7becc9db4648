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

/// Where a record sits: topic, partition, offset.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
    waiting: HashMap<Vec<u8>, VecDeque<T>>,
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
                queue.push_back(item);
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
                let next = queue.pop_front();
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

#[cfg(test)]
mod tests {
    use super::*;

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
