//! How the control thread talks to a TCP worker thread: the [`Command`]s it
//! may send, the [`Mailbox`] it sends them through, and the [`Inbox`] the
//! worker's event loop reads them from.
//!
//! Why a module of its own: the commands are the contract between two
//! threads that share nothing else. `workers` (the control side) sends them
//! and `event_loop` (the worker side) obeys them; keeping the message type,
//! the channel and the waker here lets each side depend on this contract
//! rather than on the other. A worker blocks in `epoll_wait`, not on the
//! channel, so every command is followed by a wake-up of the worker's poll,
//! registered under [`WAKE_TOKEN`].

use std::io;
use std::sync::{Arc, mpsc};

use tokio::sync::oneshot;

/// The token of the worker's waker, which says commands are waiting.
pub(crate) const WAKE_TOKEN: mio::Token = mio::Token(usize::MAX);

/// What the control thread tells a worker.
pub(crate) enum Command {
    /// Close the listeners and report it; serve the open connections on.
    StopAccepting(oneshot::Sender<()>),
    /// The limits were reloaded: a changed idle timeout applies at once.
    Reload,
    /// Answer, to show the loop still turns (the watchdog).
    Ping(oneshot::Sender<()>),
    /// Close every connection and end.
    Close,
}

/// Where the control thread leaves commands for a worker.
#[derive(Clone)]
pub(crate) struct Mailbox {
    commands: mpsc::Sender<Command>,
    waker: Arc<mio::Waker>,
}

/// The worker's end: the commands, read after the waker fired.
pub(crate) struct Inbox(mpsc::Receiver<Command>);

/// A mailbox whose commands wake `poll`, and the inbox they arrive in.
pub(crate) fn open(poll: &mio::Poll) -> io::Result<(Mailbox, Inbox)> {
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKE_TOKEN)?);
    let (commands, inbox) = mpsc::channel();
    Ok((Mailbox { commands, waker }, Inbox(inbox)))
}

impl Mailbox {
    pub(crate) fn send(&self, command: Command) {
        // A worker that has ended needs no telling.
        if self.commands.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Resolves once the worker's loop has come round to the mailbox, with
    /// true; false if the worker has ended. The watchdog's proof that the
    /// worker still turns.
    pub(crate) async fn ping(&self) -> bool {
        let (answer, answered) = oneshot::channel();
        self.send(Command::Ping(answer));
        answered.await.is_ok()
    }
}

impl Inbox {
    /// The next command waiting, `Ok(None)` if there is none, or `Err(())`
    /// once the control side has gone away without a word.
    pub(crate) fn next(&self) -> Result<Option<Command>, ()> {
        match self.0.try_recv() {
            Ok(command) => Ok(Some(command)),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(()),
        }
    }
}
