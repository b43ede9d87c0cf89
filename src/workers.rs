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
//! threads: each watches every listener in its own epoll set, the kernel
//! wakes the idle ones when a connection arrives, and the first to call
//! `accept` takes it (the others find nothing and wait again). A busy
//! worker comes late to that race, so new connections go to the idle ones.
//!
//! The control side (signals, reloads, the service manager, UDP) stays on
//! the main thread's runtime. Shutdown uses the same broadcast and guards as
//! everything else, so it does not care which thread a connection is on.
//! Each worker sets itself up on its own thread: a runtime must not be
//! dropped inside another one, which is where a failed start-up would
//! otherwise drop it.

use std::io;
use std::net::TcpListener;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::limits::Limits;
use crate::shutdown::{RUNTIME_SHUTDOWN_TIMEOUT, Shutdown, ShutdownController, TaskGuard};
use crate::tcp;

/// The TCP worker threads.
pub struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    thread: JoinHandle<()>,
    /// The worker's runtime, to check that it still runs tasks.
    runtime: Handle,
    /// Resolves once the worker has closed its listeners after the stop signal.
    stopped_accepting: oneshot::Receiver<()>,
    /// Dropping it tells the worker to drop the connections still open.
    close: oneshot::Sender<()>,
    /// Resolves once the worker's runtime is gone.
    closed: oneshot::Receiver<()>,
}

/// What a worker thread needs to serve.
struct Assignment {
    listeners: Vec<TcpListener>,
    limits: Arc<Limits>,
    timers: Handle,
    /// One stop signal per listener.
    shutdowns: Vec<Shutdown>,
    guard: TaskGuard,
}

/// How a worker thread reports back to the one that started it.
struct Reports {
    started: oneshot::Sender<io::Result<Handle>>,
    stopped_accepting: oneshot::Sender<()>,
    close: oneshot::Receiver<()>,
    closed: oneshot::Sender<()>,
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
    /// the stop signal, with idle timeouts kept by the runtime behind
    /// `timers`. Returns once every worker serves, or with the first error.
    pub async fn start(
        count: usize,
        listeners: Vec<TcpListener>,
        limits: &Arc<Limits>,
        timers: &Handle,
        controller: &ShutdownController,
    ) -> io::Result<Workers> {
        let mut workers = Vec::with_capacity(count);
        for index in 1..=count {
            let assignment = Assignment {
                listeners: listeners
                    .iter()
                    .map(TcpListener::try_clone)
                    .collect::<io::Result<_>>()?,
                limits: Arc::clone(limits),
                timers: timers.clone(),
                shutdowns: listeners.iter().map(|_| controller.subscribe()).collect(),
                guard: controller.guard(),
            };
            let (started, started_rx) = oneshot::channel();
            let (stopped_accepting, stopped_accepting_rx) = oneshot::channel();
            let (close_tx, close) = oneshot::channel();
            let (closed, closed_rx) = oneshot::channel();
            let reports = Reports {
                started,
                stopped_accepting,
                close,
                closed,
            };
            let thread = std::thread::Builder::new()
                .name(format!("echo-worker-{index}"))
                .spawn(move || work(assignment, reports))?;
            let runtime = started_rx.await.unwrap_or_else(|_| {
                Err(io::Error::other("a worker thread ended while starting"))
            })?;
            workers.push(Worker {
                thread,
                runtime,
                stopped_accepting: stopped_accepting_rx,
                close: close_tx,
                closed: closed_rx,
            });
        }
        Ok(Workers { workers })
    }

    /// The workers' runtimes, to check that they still run tasks.
    pub fn runtimes(&self) -> Vec<Handle> {
        self.workers
            .iter()
            .map(|worker| worker.runtime.clone())
            .collect()
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

/// A worker thread's life: set up, serve until the listeners are closed,
/// then keep the open connections going until told to close them.
fn work(assignment: Assignment, reports: Reports) {
    // Without a timer or signal driver of its own, a worker sleeps in
    // `epoll_wait` alone; its timers are kept by `assignment.timers`.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = reports.started.send(Err(e));
            return;
        }
    };
    runtime.block_on(async move {
        let Assignment {
            listeners,
            limits,
            timers,
            shutdowns,
            guard,
        } = assignment;
        let mut serving = JoinSet::new();
        for (listener, shutdown) in listeners.into_iter().zip(shutdowns) {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    let _ = reports.started.send(Err(e));
                    return;
                }
            };
            serving.spawn(tcp::serve(
                listener,
                Arc::clone(&limits),
                timers.clone(),
                shutdown,
                guard.clone(),
            ));
        }
        drop(guard);
        let _ = reports.started.send(Ok(Handle::current()));
        // A listener's socket is closed once its task has returned.
        while serving.join_next().await.is_some() {}
        let _ = reports.stopped_accepting.send(());
        let _ = reports.close.await;
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    let _ = reports.closed.send(());
}
