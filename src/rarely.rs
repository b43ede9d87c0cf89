//! Waiting for a busy future and a rare one together, such as an echo and
//! its idle timer, without paying for the rare one on every wake-up.
//!
//! `tokio::select!` polls every branch each time the task wakes. When one
//! branch wakes the task for every message and the other (a timer, a reload)
//! almost never does, those polls of the rare branch are pure overhead: in
//! the server's echo they cost 2% of its CPU per round trip. Here the rare
//! future is polled with a waker of its own that raises a flag, and it is
//! polled again only once the flag is up. The rare future is typically a
//! timer: `sleep_on` keeps it off the busy runtime altogether, and a
//! `Stamp` tells it, without a lock, when the busy side last made progress.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::time::Sleep;

/// A sleep until `deadline` kept by the timers of `runtime` rather than
/// those of the runtime it is polled on, so that the latter need not arm a
/// kernel timer every time it waits (see `tcp::idle`).
pub fn sleep_on(runtime: &Handle, deadline: tokio::time::Instant) -> Sleep {
    // A sleep belongs to the runtime it is created in.
    let _entered = runtime.enter();
    tokio::time::sleep_until(deadline)
}

/// A moment that the busy future records and the rare one reads, such as
/// when a connection last moved bytes, without a lock: nanoseconds from a
/// base instant in an atomic. Recording it costs a clock read and a store,
/// which is what lets a timer stay lazy instead of being re-armed per
/// message.
pub struct Stamp {
    base: Instant,
    /// Nanoseconds from `base`.
    nanos: AtomicU64,
}

impl Stamp {
    /// A stamp that records now.
    pub fn now() -> Stamp {
        Stamp {
            base: Instant::now(),
            nanos: AtomicU64::new(0),
        }
    }

    pub fn set_now(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(nanos, Ordering::Relaxed);
    }

    pub fn get(&self) -> Instant {
        self.base + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

/// Which future finished first.
#[derive(Debug, PartialEq, Eq)]
pub enum First<B, R> {
    Busy(B),
    Rare(R),
}

/// Runs both futures until one finishes; `busy` is polled first, on every
/// wake-up, `rare` only when it woke the task (and on the first poll).
///
/// The caller pins both: taken by value, they would be stored twice in
/// the future this returns (as arguments and as pinned locals), and for
/// connections held open by the thousand, size is memory. The task's waker
/// is assumed not to change between polls, as with tokio's tasks.
pub async fn select<B: Future, R: Future>(
    mut busy: Pin<&mut B>,
    mut rare: Pin<&mut R>,
) -> First<B::Output, R::Output> {
    let flag = Arc::new(WakeFlag::default());
    let rare_waker = Waker::from(Arc::clone(&flag));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = busy.as_mut().poll(cx) {
            return Poll::Ready(First::Busy(output));
        }
        if flag.take(cx.waker())
            && let Poll::Ready(output) = rare.as_mut().poll(&mut Context::from_waker(&rare_waker))
        {
            return Poll::Ready(First::Rare(output));
        }
        Poll::Pending
    })
    .await
}

/// Whether the rare future has woken the task since it was last polled.
struct WakeFlag {
    /// Starts raised, so the rare future is polled (and arms itself) once.
    raised: AtomicBool,
    /// The task to wake in turn.
    task: Mutex<Option<Waker>>,
}

impl Default for WakeFlag {
    fn default() -> WakeFlag {
        WakeFlag {
            raised: AtomicBool::new(true),
            task: Mutex::new(None),
        }
    }
}

impl WakeFlag {
    /// Lowers the flag; true if it was raised. Then `task` is the task that
    /// the next wake-up wakes.
    fn take(&self, task: &Waker) -> bool {
        // A plain load first: on the busy path the flag is down, and that
        // should cost no more than a read.
        if !self.raised.load(Ordering::Acquire) || !self.raised.swap(false, Ordering::AcqRel) {
            return false;
        }
        let mut registered = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if !registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(task))
        {
            *registered = Some(task.clone());
        }
        true
    }
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.raised.store(true, Ordering::Release);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;

    #[tokio::test]
    async fn the_busy_future_wins_when_it_finishes_first() {
        let busy = async {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            "done"
        };
        let rare = tokio::time::sleep(Duration::from_secs(3600));
        assert_eq!(select(pin!(busy), pin!(rare)).await, First::Busy("done"));
    }

    #[tokio::test]
    async fn the_rare_future_is_noticed_while_the_busy_one_keeps_waking() {
        // Busy: wakes itself over and over and never finishes.
        let busy = async {
            loop {
                tokio::task::yield_now().await;
            }
        };
        let rare = tokio::time::sleep(Duration::from_millis(20));
        assert_eq!(
            select(pin!(busy), pin!(rare)).await,
            First::<(), ()>::Rare(())
        );
    }

    #[tokio::test]
    async fn the_rare_future_wakes_an_idle_task() {
        let busy = std::future::pending::<()>();
        let (send, receive) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            send.send(7).unwrap();
        });
        assert_eq!(select(pin!(busy), pin!(receive)).await, First::Rare(Ok(7)));
    }
}
