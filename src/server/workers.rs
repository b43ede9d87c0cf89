//! The threads that serve the echo: the TCP workers, each running its own
//! event loop (`event_loop`) and every one of them accepting from every
//! listening socket, and a thread per UDP socket (`udp`).
//!
//! Why threads with loops of their own rather than tokio's multi-threaded
//! runtime: fairness, and cost. Its scheduler keeps at most 256 runnable
//! tasks in a worker's own queue and moves the rest to a shared queue that
//! it visits only once every few dozen polls. With a few hundred busy
//! connections, those in the shared queue wait many rounds while the others
//! are served again and again: measured with `scripts/bench.sh` at 500
//! connections, the slowest 1% of round trips took 20 times longer than with
//! a single-threaded epoll loop in C. A worker's loop serves its ready
//! connections in the order the kernel reports them, like that C loop, and
//! needs no synchronization between threads on the echo path. More cores
//! are used by more such threads: each watches every listener in its own
//! epoll set, the kernel wakes the idle ones when a connection arrives, and
//! the first to call `accept` takes it (the others find nothing and wait
//! again). A busy worker comes late to that race, so new connections go to
//! the idle ones.
//!
//! The control side (signals, reloads, the service manager) stays on
//! the main thread's runtime and reaches a worker through its mailbox: a
//! channel of commands and a waker that interrupts the worker's wait. The
//! stop signal and reloads are forwarded by a small task per worker, so
//! shutdown uses the same broadcast and guards as everything else. A UDP
//! thread has no mailbox: it has nothing to be told but to stop, which a
//! flag it looks at between its bounded waits says, and a reload reaches it
//! through the `Limits` it reads for every batch.

use std::io;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::server::event_loop::EventLoop;
use crate::server::limits::Limits;
use crate::server::listeners::TcpEndpoint;
use crate::server::mailbox::{self, Command, Mailbox};
use crate::server::metrics::counters::WorkerCounters;
use crate::server::shutdown::{Shutdown, ShutdownController};
use crate::server::tls::Tls;
use crate::server::udp::{UdpEndpoint, UdpService, UdpThread, UdpWatch};

/// The worker threads, and the UDP sockets' threads.
pub(crate) struct Workers {
    threads: Vec<WorkerThread>,
    udp: Vec<UdpThread>,
}

/// One worker thread, as the control thread holds it.
struct WorkerThread {
    thread: JoinHandle<()>,
    mailbox: Mailbox,
    /// What it counts, for the metrics.
    counters: Arc<WorkerCounters>,
    /// Resolves once the worker has closed its listeners after the stop signal.
    stopped_accepting: oneshot::Receiver<()>,
}

impl Workers {
    /// How many workers `[server] workers = 0` means: one per CPU this
    /// process may run on.
    pub(crate) fn count_for(configured: usize) -> usize {
        match configured {
            0 => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            n => n,
        }
    }

    /// Starts `count` workers serving `listeners`, and a thread for each of
    /// `udp`, until `controller` sends the stop signal. Must be called on the
    /// control runtime, which carries the stop signal and reloads to the
    /// workers. Every event loop and UDP socket is made ready before any
    /// thread starts, so that one that fails leaves none serving behind the
    /// error; only starting a thread itself can still fail after another
    /// has started.
    pub(crate) fn start(
        count: usize,
        listeners: Vec<TcpEndpoint>,
        udp: Vec<UdpEndpoint>,
        limits: &Arc<Limits>,
        tls: Option<&Arc<Tls>>,
        controller: &ShutdownController,
    ) -> io::Result<Workers> {
        let mut ready = Vec::with_capacity(count);
        for _ in 0..count {
            let poll = mio::Poll::new()?;
            let (mailbox, inbox) = mailbox::open(&poll)?;
            let counters = Arc::new(WorkerCounters::default());
            let event_loop = EventLoop::new(
                poll,
                listeners
                    .iter()
                    .map(TcpEndpoint::try_clone)
                    .collect::<io::Result<_>>()?,
                Arc::clone(limits),
                controller.guard(),
                inbox,
                Arc::clone(&counters),
                tls.cloned(),
            )?;
            ready.push((event_loop, mailbox, counters));
        }
        let udp = udp
            .into_iter()
            .map(|endpoint| UdpService::new(endpoint, Arc::clone(limits)))
            .collect::<io::Result<Vec<_>>>()?;
        let mut threads = Vec::with_capacity(count);
        for (index, (event_loop, mailbox, counters)) in (1..).zip(ready) {
            let thread = std::thread::Builder::new()
                .name(format!("echo-worker-{index}"))
                .spawn(move || event_loop.run())?;
            let (stopped, stopped_accepting) = oneshot::channel();
            tokio::spawn(forward(
                controller.subscribe(),
                limits.watch_reloads(),
                mailbox.clone(),
                stopped,
            ));
            threads.push(WorkerThread {
                thread,
                mailbox,
                counters,
                stopped_accepting,
            });
        }
        let udp = (1..)
            .zip(udp)
            .map(|(index, service)| UdpThread::start(service, format!("echo-udp-{index}")))
            .collect::<io::Result<_>>()?;
        Ok(Workers { threads, udp })
    }

    /// The workers' mailboxes, to check that they still turn.
    pub(crate) fn mailboxes(&self) -> Vec<Mailbox> {
        self.threads
            .iter()
            .map(|worker| worker.mailbox.clone())
            .collect()
    }

    /// The UDP threads, to check that they still run.
    pub(crate) fn udp_watches(&self) -> Vec<UdpWatch> {
        self.udp.iter().map(UdpThread::watch).collect()
    }

    /// Each worker's counters, in the order of their thread names.
    pub(crate) fn counters(&self) -> Vec<Arc<WorkerCounters>> {
        self.threads
            .iter()
            .map(|worker| Arc::clone(&worker.counters))
            .collect()
    }

    /// Waits until every worker has closed its listeners, which they do on
    /// the stop signal, and stops the UDP threads, which closes their
    /// sockets.
    pub(crate) async fn stopped_accepting(&mut self) {
        for udp in &self.udp {
            udp.stop();
        }
        for worker in &mut self.threads {
            let _ = (&mut worker.stopped_accepting).await;
        }
        let udp = std::mem::take(&mut self.udp);
        let _ = tokio::task::spawn_blocking(move || {
            for thread in udp {
                thread.join();
            }
        })
        .await;
    }

    /// Closes the connections still open and waits for the workers to end.
    pub(crate) async fn close(self) {
        for worker in &self.threads {
            worker.mailbox.send(Command::Close);
        }
        // Closing drops sockets, which does not block: a short wait. The
        // mailboxes stay until the threads are gone: closing a waker's
        // descriptor takes it out of the worker's epoll set, wake-up and all.
        let _ = tokio::task::spawn_blocking(move || {
            for worker in self.threads {
                let _ = worker.thread.join();
            }
        })
        .await;
    }
}

/// Carries the stop signal and reloads to a worker, until it stops
/// accepting (`stopped` then resolves).
async fn forward(
    mut shutdown: Shutdown,
    mut reloads: tokio::sync::watch::Receiver<()>,
    mailbox: Mailbox,
    stopped: oneshot::Sender<()>,
) {
    let mut watching = true;
    loop {
        tokio::select! {
            () = shutdown.recv() => break,
            changed = reloads.changed(), if watching => match changed {
                Ok(()) => mailbox.send(Command::Reload),
                Err(_) => watching = false,
            },
        }
    }
    mailbox.send(Command::StopAccepting(stopped));
}
