//! The threads that serve TCP: each runs its own single-threaded tokio
//! runtime, and every one of them accepts from every listening socket.
//!
//! Why not one multi-threaded runtime: fairness. Its scheduler keeps at most
//! 256 runnable tasks in a worker's own queue and moves the rest to a shared
//! queue that it visits only once every few dozen polls. With a few hundred
//! busy connections, those in the shared queue wait many rounds while the
//! others are served again and again: measured with `scripts/bench.sh` at 500
//! connections, the slowest 1% of round trips took 20 times longer than with
//! a single-threaded epoll loop in C. A single-threaded runtime runs its
//! ready tasks first in, first out, like that loop, and its echo path needs
//! no synchronization between threads. More cores are used by more such
//! threads: when a connection arrives the kernel wakes the threads waiting
//! on the listener, and whichever is free takes it.
//!
//! The control side (signals, reloads, the service manager, UDP) stays on
//! the main thread's runtime. Shutdown uses the same broadcast and guards as
//! everything else, so it does not care which thread a connection is on.

use std::io;
use std::net::TcpListener;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::runtime::{Handle, Runtime};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::limits::Limits;
use crate::shutdown::{RUNTIME_SHUTDOWN_TIMEOUT, ShutdownController};
use crate::tcp;

/// The TCP worker threads.
pub struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    thread: JoinHandle<()>,
    /// Resolves once the worker has closed its listeners after the stop signal.
    stopped_accepting: oneshot::Receiver<()>,
    /// Dropping it tells the worker to drop the connections still open.
    close: oneshot::Sender<()>,
    /// Resolves once the worker's runtime is gone.
    closed: oneshot::Receiver<()>,
}

impl Workers {
    /// How many workers `[server] workers = 0` means: one per CPU this
    /// process may run on.
    pub fn count_for(configured: usize) -> usize {
        match configured {
            0 => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            n => n,
        }
    }

    /// Starts `count` workers serving `listeners` until `controller` sends
    /// the stop signal, with idle timeouts kept by the runtime behind `timers`.
    pub fn start(
        count: usize,
        listeners: Vec<TcpListener>,
        limits: &Arc<Limits>,
        timers: &Handle,
        controller: &ShutdownController,
    ) -> io::Result<Workers> {
        let mut workers = Vec::with_capacity(count);
        for index in 1..=count {
            // Without a timer or signal driver of its own, a worker sleeps in
            // `epoll_wait` alone; its timers are kept by `timers`.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            let mut serving = JoinSet::new();
            for listener in &listeners {
                // Registering the listener needs the worker's runtime.
                let _entered = runtime.enter();
                let listener = tokio::net::TcpListener::from_std(listener.try_clone()?)?;
                serving.spawn(tcp::serve(
                    listener,
                    Arc::clone(limits),
                    timers.clone(),
                    controller.subscribe(),
                    controller.guard(),
                ));
            }
            let (stopped_tx, stopped_accepting) = oneshot::channel();
            let (close, close_rx) = oneshot::channel();
            let (closed_tx, closed) = oneshot::channel();
            let thread = std::thread::Builder::new()
                .name(format!("echo-worker-{index}"))
                .spawn(move || {
                    work(runtime, serving, stopped_tx, close_rx);
                    let _ = closed_tx.send(());
                })?;
            workers.push(Worker {
                thread,
                stopped_accepting,
                close,
                closed,
            });
        }
        Ok(Workers { workers })
    }

    /// Waits until every worker has closed its listeners, which they do on
    /// the stop signal.
    pub async fn stopped_accepting(&mut self) {
        for worker in &mut self.workers {
            let _ = (&mut worker.stopped_accepting).await;
        }
    }

    /// Drops the connections still open and waits for the workers to end.
    pub async fn close(self) {
        let mut closing = Vec::with_capacity(self.workers.len());
        for worker in self.workers {
            drop(worker.close);
            closing.push((worker.closed, worker.thread));
        }
        for (closed, thread) in closing {
            let _ = closed.await;
            // It has finished its work; joining only collects the thread.
            let _ = thread.join();
        }
    }
}

/// A worker thread's life: serve until the listeners are closed, then keep
/// the open connections going until told to close them.
fn work(
    runtime: Runtime,
    mut serving: JoinSet<()>,
    stopped_accepting: oneshot::Sender<()>,
    close: oneshot::Receiver<()>,
) {
    runtime.block_on(async move {
        // A listener's socket is closed once its task has returned.
        while serving.join_next().await.is_some() {}
        let _ = stopped_accepting.send(());
        let _ = close.await;
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
}
