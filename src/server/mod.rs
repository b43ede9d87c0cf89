//! The daemon, `echo-server`: everything only it needs.
//!
//! Why one directory: a contributor who works on the daemon should find all
//! of it here, and see at a glance that nothing in the client depends on it.
//! Only [`launch`] and the configuration types its command line fills in
//! are public; the rest is `pub(crate)`.
//!
//! How the parts depend on one another (an arrow reads "uses"; there are no
//! cycles):
//!
//! ```text
//! launch ─┬─> config ─> (shared) address, duration
//!         ├─> listeners ─> activation
//!         ├─> workers ─┬─> event_loop ─> mailbox, limits, metrics::counters, proxy_header, shutdown, throttle, tls
//!         │            │                 (tls ─> config, throttle; its session borrows event_loop's Turn)
//!         │            └─> mailbox, udp
//!         ├─> udp ─> limits, metrics::counters, throttle
//!         ├─> metrics ─> limits, throttle (the /metrics endpoint; its `counters` use nothing)
//!         ├─> limits ─> config
//!         ├─> tls (loads and reloads the certificate)
//!         ├─> logging, notify, signals, shutdown, daemon (Unix only)
//!         └─> error (StartupError: every reason not to start, and its exit code)
//! ```
//!
//! `listeners`, `logging` and `error` also use `config`; `activation`,
//! `listeners`, `logging` and `daemon` report through `error`.
//!
//! Inside `config`: `source` uses `defaults` and `diagnostics`,
//! `diagnostics` uses neither, and the schema (`config/mod.rs`) uses all
//! three (`defaults` borrows only the schema's enums back).

// The daemon's Unix-only parts (daemon mode, systemd, SIGHUP) leave some of
// what they share with the rest unused elsewhere; Linux builds still catch
// dead code.
#![cfg_attr(not(unix), allow(dead_code))]

pub(crate) mod activation;
pub mod config;
#[cfg(unix)]
pub(crate) mod daemon;
pub(crate) mod error;
pub(crate) mod event_loop;
mod launch;
pub(crate) mod limits;
pub(crate) mod listeners;
pub(crate) mod logging;
pub(crate) mod mailbox;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod proxy_header;
pub(crate) mod shutdown;
pub(crate) mod signals;
pub(crate) mod throttle;
pub(crate) mod tls;
pub(crate) mod udp;
pub(crate) mod workers;

pub use launch::{Launch, launch};
