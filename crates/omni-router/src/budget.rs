//! `[router] max_file_bytes_in_flight`: how many bytes of customers' files one destination's
//! pipeline holds at once (each destination its own, so a helpdesk that is down, its events in
//! hand holding their files, does not hold up another destination's).
//!
//! `max_in_flight` bounds how many conversations wait on a helpdesk at once; this bounds the
//! memory their files take, so the first can be high (a slow hosted helpdesk needs many events in
//! flight) without a burst of photos multiplying the memory. An event reserves the bytes its
//! files may take before they are read from the store or fetched, and gives them back once it is
//! delivered; an event whose files do not fit waits for others to finish, a text-only event never
//! waits. One event larger than the whole budget reserves all of it and goes alone.

use omni_proto::v1::ConversationEvent;
use omni_proto::v1::attachment::Content;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits count KiB, so a budget of up to 4 TiB fits the semaphore's `u32` requests.
const KIB: u64 = 1024;

/// One destination pipeline's budget.
#[derive(Clone, Debug)]
pub(crate) struct FileBudget {
    permits: Arc<Semaphore>,
    total_kib: u32,
    /// The metrics' `destination` label.
    destination: String,
}

/// Bytes reserved by one event; given back when dropped.
#[derive(Debug)]
pub(crate) struct Reserved {
    _permit: OwnedSemaphorePermit,
    kib: u32,
    in_flight: metrics::Gauge,
}

impl FileBudget {
    /// A budget of `max_bytes` (at least 1 KiB) for `destination`'s pipeline.
    pub(crate) fn new(max_bytes: u64, destination: &str) -> Self {
        let total_kib = u32::try_from(max_bytes.div_ceil(KIB)).unwrap_or(u32::MAX).max(1);
        Self {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            destination: destination.to_owned(),
        }
    }

    /// Reserves `bytes`, at most the whole budget; waits while other events hold too much of it.
    /// `None` for nothing to reserve.
    pub(crate) async fn reserve(&self, bytes: u64) -> Option<Reserved> {
        if bytes == 0 {
            return None;
        }
        let kib = u32::try_from(bytes.div_ceil(KIB)).unwrap_or(u32::MAX).min(self.total_kib);
        let permit = match self.permits.clone().try_acquire_many_owned(kib) {
            Ok(permit) => permit,
            Err(_) => {
                metrics::counter!("omni_router_file_budget_waits_total", "destination" => self.destination.clone()).increment(1);
                self.permits
                    .clone()
                    .acquire_many_owned(kib)
                    .await
                    .expect("the budget's semaphore is never closed")
            }
        };
        let in_flight = metrics::gauge!("omni_router_file_bytes_in_flight", "destination" => self.destination.clone());
        in_flight.increment(f64::from(kib) * KIB as f64);
        Some(Reserved {
            _permit: permit,
            kib,
            in_flight,
        })
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.in_flight.decrement(f64::from(self.kib) * KIB as f64);
    }
}

/// The most bytes `event`'s files may take while it is delivered: the bytes it carries (already
/// in memory with the record: counted so the copies an upload makes are), and those it
/// references (their announced size, `max_file_bytes` when none is announced), the referenced
/// ones at most what the router takes into one event: `max_stored` in all, which one file of
/// unknown size may pass by up to `max_file_bytes`.
pub(crate) fn expected_bytes(event: &ConversationEvent, max_file_bytes: u64, max_stored: u64) -> u64 {
    let (mut carried, mut referenced) = (0u64, 0u64);
    for file in &event.attachments {
        match &file.content {
            Some(Content::Data(bytes)) => carried += bytes.len() as u64,
            _ if file.size_bytes > 0 => referenced += file.size_bytes,
            _ => referenced += max_file_bytes,
        }
    }
    let most_taken = if max_stored == 0 { 0 } else { max_stored + max_file_bytes };
    carried + referenced.min(most_taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use omni_proto::v1::Attachment;
    use std::time::Duration;

    fn file(content: Option<Content>, size_bytes: u64) -> Attachment {
        Attachment {
            content,
            size_bytes,
            ..Attachment::default()
        }
    }

    #[test]
    fn expected_bytes_count_carried_and_referenced_files() {
        let event = |attachments| ConversationEvent {
            attachments,
            ..ConversationEvent::default()
        };
        assert_eq!(expected_bytes(&event(vec![]), 1000, 5000), 0, "text only");
        let carried = file(Some(Content::Data(vec![0; 300])), 300);
        let sized = file(Some(Content::Reference("media-1".into())), 700);
        let unannounced = file(Some(Content::Reference("media-2".into())), 0);
        assert_eq!(expected_bytes(&event(vec![carried.clone(), sized.clone()]), 1000, 5000), 1000);
        assert_eq!(
            expected_bytes(&event(vec![unannounced.clone()]), 1000, 5000),
            1000,
            "unknown size: the largest allowed"
        );
        assert_eq!(
            expected_bytes(
                &event(vec![carried.clone(), sized.clone(), unannounced.clone(), unannounced]),
                1000,
                1500
            ),
            300 + 1500 + 1000,
            "referenced files capped at what one event takes, one of unknown size past it"
        );
        let stored_large = file(Some(Content::Reference("sha".into())), 5000);
        assert_eq!(
            expected_bytes(&event(vec![stored_large]), 1000, 25_000),
            5000,
            "a stored file's own size"
        );
        assert_eq!(
            expected_bytes(&event(vec![carried, sized]), 1000, 0),
            300,
            "no store: nothing referenced is read"
        );
    }

    #[tokio::test]
    async fn an_event_whose_files_do_not_fit_waits_for_another_to_finish() {
        let budget = FileBudget::new(100 * KIB, "rt");
        let first = budget.reserve(60 * KIB).await.expect("reserved");
        let text_only = budget.reserve(0).await;
        assert!(text_only.is_none(), "nothing to reserve, no wait");
        let second = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(60 * KIB).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "60 KiB more do not fit beside the first 60");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("goes once the first is done")
            .unwrap();
        assert_eq!(second.map(|reserved| reserved.kib), Some(60));
    }

    #[tokio::test]
    async fn an_event_larger_than_the_budget_goes_alone() {
        let budget = FileBudget::new(100 * KIB, "rt");
        let large = tokio::time::timeout(Duration::from_secs(5), budget.reserve(10_000 * KIB))
            .await
            .expect("not stuck waiting for more than there is")
            .expect("reserved");
        assert_eq!(large.kib, 100, "the whole budget");
        assert!(budget.permits.try_acquire_many(1).is_err(), "nothing left beside it");
    }
}
