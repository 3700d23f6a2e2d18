//! A reply an operator waits for from a thread that does its I/O (a oneshot), taken
//! without blocking: polled with `take` from the operator's synchronous calls, or parked
//! by a future the subtask awaits (`wait`), whichever comes first.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::oneshot;

/// A reply the operator has not taken yet: still on its way, or parked by the future
/// that [`Reply::wait`] handed out.
pub enum Reply<T> {
    None,
    Waiting(oneshot::Receiver<T>),
    Parked(Arc<Mutex<Option<T>>>),
}

/// What [`Reply::take`] found: the reply, nothing yet, or no reply ever (the sender is
/// gone, or nothing was asked).
pub enum Taken<T> {
    Ready(T),
    NotYet,
    Gone,
}

impl<T: Send + 'static> Reply<T> {
    /// A reply that is already there.
    pub fn ready(value: T) -> Self {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(value);
        Reply::Waiting(rx)
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Reply::None)
    }

    pub fn take(&mut self) -> Taken<T> {
        let taken = match self {
            Reply::None => return Taken::Gone,
            Reply::Waiting(rx) => match rx.try_recv() {
                Ok(v) => Taken::Ready(v),
                Err(oneshot::error::TryRecvError::Empty) => return Taken::NotYet,
                Err(oneshot::error::TryRecvError::Closed) => Taken::Gone,
            },
            Reply::Parked(slot) => match slot.lock().expect("reply lock").take() {
                Some(v) => Taken::Ready(v),
                None if Arc::strong_count(slot) > 1 => return Taken::NotYet,
                None => Taken::Gone,
            },
        };
        *self = Reply::None;
        taken
    }

    /// A future that ends when the reply is there (and parks it for [`Reply::take`]).
    pub fn wait(&mut self) -> Option<BoxFuture<'static, ()>> {
        let Reply::Waiting(_) = self else { return None };
        let slot = Arc::new(Mutex::new(None));
        let Reply::Waiting(rx) = std::mem::replace(self, Reply::Parked(slot.clone())) else {
            unreachable!()
        };
        Some(Box::pin(async move {
            if let Ok(v) = rx.await {
                *slot.lock().expect("reply lock") = Some(v);
            }
        }))
    }
}
