//! The bounded queue between an actix stage and the thread that does its compute (the vision
//! thread, the engine thread). It is the stage's one queue: a crossbeam channel the thread
//! drains with blocking receives, and a `Notify` through which the thread tells a sender
//! waiting on a full queue that a slot opened, so the actor awaits space instead of blocking
//! its arbiter. The actor in front keeps a one-message mailbox (a hand-off slot, not a queue).

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::Arc;
use tokio::sync::Notify;

/// Sending half, held by the stage's actor.
pub struct BridgeTx<T> {
    tx: Sender<T>,
    space: Arc<Notify>,
}

/// Receiving half, held by the compute thread.
pub struct BridgeRx<T> {
    rx: Receiver<T>,
    space: Arc<Notify>,
}

/// A bridge holding at most `capacity` messages (at least one).
pub fn bridge<T>(capacity: usize) -> (BridgeTx<T>, BridgeRx<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let space = Arc::new(Notify::new());
    (
        BridgeTx {
            tx,
            space: space.clone(),
        },
        BridgeRx { rx, space },
    )
}

impl<T> Clone for BridgeTx<T> {
    fn clone(&self) -> Self {
        BridgeTx {
            tx: self.tx.clone(),
            space: self.space.clone(),
        }
    }
}

impl<T> BridgeTx<T> {
    /// Queue `v`, waiting (asynchronously) while the queue is full. Gives `v` back when the
    /// receiving thread is gone.
    pub async fn send(&self, mut v: T) -> Result<(), T> {
        loop {
            // Register for the wake-up before trying, so a slot freed between the failed try
            // and the wait is not missed.
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.tx.try_send(v) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(back)) => return Err(back),
                Err(TrySendError::Full(back)) => {
                    v = back;
                    notified.await;
                }
            }
        }
    }
}

impl<T> BridgeRx<T> {
    /// The next message, blocking; `None` once every sender is gone and the queue is empty.
    pub fn recv(&self) -> Option<T> {
        let v = self.rx.recv().ok();
        self.space.notify_waiters();
        v
    }

    /// The next message if one is queued.
    pub fn try_recv(&self) -> Option<T> {
        let v = self.rx.try_recv().ok();
        if v.is_some() {
            self.space.notify_waiters();
        }
        v
    }
}

impl<T> Drop for BridgeRx<T> {
    fn drop(&mut self) {
        // Senders waiting for space learn on their next try that the thread is gone.
        self.space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A full queue makes the sender wait, not fail or block its runtime; each receive lets
    /// exactly the waiting message in, in order; a dropped receiver gives messages back.
    #[test]
    fn full_bridge_waits_for_space_and_keeps_order() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (tx, rx) = bridge::<u32>(2);
        let consumer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut got = Vec::new();
            while let Some(v) = rx.recv() {
                got.push(v);
                std::thread::sleep(Duration::from_millis(2));
            }
            got
        });
        rt.block_on(async {
            for i in 0..20 {
                tx.send(i).await.unwrap();
            }
        });
        drop(tx);
        assert_eq!(consumer.join().unwrap(), (0..20).collect::<Vec<_>>());

        let (tx, rx) = bridge::<u32>(1);
        rt.block_on(async {
            tx.send(1).await.unwrap();
            let waiting = tokio::spawn({
                let tx = tx.clone();
                async move { tx.send(2).await }
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(
                !waiting.is_finished(),
                "a full bridge must make the sender wait"
            );
            drop(rx);
            assert_eq!(waiting.await.unwrap(), Err(2));
        });
    }
}
