//! MindIE's `maxLinkNum`: that many requests are processed at once, twice as many more wait
//! for a slot, and the (3·maxLinkNum + 1)-th concurrent request is refused with 503 at once.
//! A slot is held until the response (stream included) has been fully sent or dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::errors::ApiError;
use super::metrics::LinkStats;

pub struct LinkLimiter {
    slots: Arc<Semaphore>,
    limit: usize,
    /// Requests holding or waiting for a slot.
    inside: Arc<AtomicUsize>,
    max_inside: usize,
}

/// A held slot (or a place in the queue while waiting for one).
pub struct LinkPermit {
    _slot: Option<OwnedSemaphorePermit>,
    inside: Arc<AtomicUsize>,
}

impl Drop for LinkPermit {
    fn drop(&mut self) {
        self.inside.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LinkLimiter {
    pub fn new(max_link_num: usize) -> Self {
        let limit = max_link_num.max(1);
        LinkLimiter {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            inside: Arc::new(AtomicUsize::new(0)),
            max_inside: 3 * limit,
        }
    }

    /// Take a slot, waiting in the queue if all are busy; 503 when the queue is full too.
    pub async fn acquire(&self) -> Result<LinkPermit, ApiError> {
        let prev = self.inside.fetch_add(1, Ordering::AcqRel);
        // Constructed first so that every exit path below gives the place back.
        let mut permit = LinkPermit {
            _slot: None,
            inside: self.inside.clone(),
        };
        if prev >= self.max_inside {
            return Err(ApiError::unavailable(format!(
                "too many requests: {} being processed and {} waiting (maxLinkNum = {})",
                self.limit,
                2 * self.limit,
                self.limit
            )));
        }
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::unavailable("the server is stopping"))?;
        permit._slot = Some(slot);
        Ok(permit)
    }

    /// Refuse waiting and future requests (shutdown).
    pub fn close(&self) {
        self.slots.close();
    }

    pub fn stats(&self) -> LinkStats {
        let inside = self.inside.load(Ordering::Acquire);
        let active = self.limit - self.slots.available_permits().min(self.limit);
        LinkStats {
            active,
            queued: inside.saturating_sub(active),
            limit: self.limit,
        }
    }

    /// Every slot is taken.
    pub fn busy(&self) -> bool {
        self.slots.available_permits() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_then_reject() {
        let l = LinkLimiter::new(1);
        let a = l.acquire().await.unwrap();
        // Two more may wait; their futures are pending.
        let mut w1 = Box::pin(l.acquire());
        let mut w2 = Box::pin(l.acquire());
        assert!(futures::poll!(w1.as_mut()).is_pending());
        assert!(futures::poll!(w2.as_mut()).is_pending());
        let err = match l.acquire().await {
            Err(e) => e,
            Ok(_) => panic!("4th request admitted"),
        };
        assert_eq!(err.status.as_u16(), 503);
        assert_eq!(l.stats().queued, 2);
        drop(a);
        let b = w1.await.unwrap();
        assert_eq!(l.stats().active, 1);
        drop(b);
        drop(w2);
        assert_eq!(l.stats().queued, 0);
    }
}
