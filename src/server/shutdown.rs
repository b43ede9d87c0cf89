//! Telling every task that the daemon is stopping, and knowing when they are
//! all gone.
//!
//! The pattern is mini-redis's: a broadcast channel carries the stop signal to
//! every task that serves (UDP, and the task that forwards it to each TCP
//! worker), and everything that serves (a UDP task, a TCP connection) holds a
//! clone of an mpsc sender that it drops when it ends; the receiver sees the
//! channel close once the last one is gone. Nothing needs a registry of
//! tasks, and a task cannot be forgotten.

use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

/// How long a runtime may take to drop the tasks left after the grace period.
pub(crate) const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// Listens for the stop signal. Each task gets its own.
#[derive(Debug)]
pub(crate) struct Shutdown {
    stopping: bool,
    notify: broadcast::Receiver<()>,
}

impl Shutdown {
    pub(crate) fn new(notify: broadcast::Receiver<()>) -> Shutdown {
        Shutdown {
            stopping: false,
            notify,
        }
    }

    /// Waits for the stop signal; returns at once if it was already seen.
    pub(crate) async fn recv(&mut self) {
        if self.stopping {
            return;
        }
        // Closed or lagged both mean the sender is stopping us.
        let _ = self.notify.recv().await;
        self.stopping = true;
    }
}

/// The coordinator's side: sends the stop signal and waits for tasks to end.
pub(crate) struct ShutdownController {
    notify: broadcast::Sender<()>,
    done_tx: mpsc::Sender<()>,
    done_rx: mpsc::Receiver<()>,
}

/// Held by a task for as long as it runs.
#[derive(Clone)]
pub(crate) struct TaskGuard {
    _done: mpsc::Sender<()>,
}

impl Default for ShutdownController {
    fn default() -> Self {
        let (notify, _) = broadcast::channel(1);
        let (done_tx, done_rx) = mpsc::channel(1);
        ShutdownController {
            notify,
            done_tx,
            done_rx,
        }
    }
}

impl ShutdownController {
    pub(crate) fn subscribe(&self) -> Shutdown {
        Shutdown::new(self.notify.subscribe())
    }

    pub(crate) fn guard(&self) -> TaskGuard {
        TaskGuard {
            _done: self.done_tx.clone(),
        }
    }

    /// Sends the stop signal to every subscriber.
    pub(crate) fn notify(&self) {
        let _ = self.notify.send(());
    }

    /// Waits up to `grace` for every guarded task to end. Returns false if
    /// some were still running when time ran out.
    pub(crate) async fn wait(self, grace: Duration) -> bool {
        let ShutdownController {
            done_tx,
            mut done_rx,
            ..
        } = self;
        drop(done_tx);
        tokio::time::timeout(grace, done_rx.recv()).await.is_ok()
    }
}
