//! What a scrape returns: every count, read at that moment, in the format
//! the scraper asked for.
//!
//! Why a `Collector` rather than the crate's own counters: the counts live
//! with the threads that keep them (`counters`), and are only read here, so
//! a scrape costs the echo nothing. The `prometheus-client` crate does the
//! writing, in OpenMetrics text for scrapers that ask for it (Prometheus
//! does) and in Prometheus's text format 0.0.4 for everyone else (`curl`,
//! `promtool check metrics`).

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::counters::{AcceptError, CloseReason, Reloads, UdpCounters, UdpDrop, WorkerCounters};
use crate::server::limits::Limits;

/// The prefix of every series the daemon exports.
const PREFIX: &str = "echo_server";

/// Everything a scrape reads.
#[derive(Debug)]
pub(crate) struct Sources {
    pub(crate) workers: Vec<Arc<WorkerCounters>>,
    /// Each UDP socket's counters, by its local address.
    pub(crate) udp: Vec<(String, Arc<UdpCounters>)>,
    pub(crate) reloads: Arc<Reloads>,
    pub(crate) limits: Arc<Limits>,
    /// Seconds since the epoch.
    pub(crate) started_at: u64,
}

/// The text formats a scrape can be answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    OpenMetrics,
    PrometheusText,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics if it names it
    /// with a weight at least that of everything else it names, else the
    /// classic text format (which is also what no header at all gets).
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::PrometheusText;
        };
        let (mut openmetrics, mut others) = (0.0_f64, 0.0_f64);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let weight = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f64>().ok())
                .unwrap_or(1.0);
            if media == "application/openmetrics-text" {
                openmetrics = openmetrics.max(weight);
            } else {
                others = others.max(weight);
            }
        }
        if openmetrics > 0.0 && openmetrics >= others {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The registry a scrape encodes: the daemon's one collector.
pub(crate) fn registry(sources: Sources) -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(sources));
    registry
}

/// The whole exposition, in `format`.
pub(crate) fn encode(registry: &Registry, format: Format) -> String {
    let mut text = String::new();
    let written = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, registry),
        Format::PrometheusText => {
            prometheus_client::encoding::prometheus_text::encode(&mut text, registry)
        }
    };
    // Writing to a String fails only on a bug in the encoder.
    written.expect("encoding metrics into a String");
    text
}

/// One series: its labels and value.
type Series = (Labels, u64);

/// Writes a family of series under one name.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    series: impl IntoIterator<Item = Series>,
) -> fmt::Result {
    let mut series = series.into_iter().peekable();
    if series.peek().is_none() {
        // No sockets of that kind: no family, rather than an empty one.
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
    for (labels, value) in series {
        let sample = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value).encode(sample)?,
            _ => ConstGauge::new(value).encode(sample)?,
        }
    }
    Ok(())
}

/// The labels of one source of counts: a worker, a UDP socket.
type Labels = Vec<(&'static str, String)>;

/// One series per source, its value read by `read`.
fn each<'a, T: 'a>(
    sources: impl Iterator<Item = (Labels, &'a T)>,
    read: impl Fn(&T) -> u64,
) -> Vec<Series> {
    sources
        .map(|(labels, counters)| (labels, read(counters)))
        .collect()
}

/// One series per source and value of the label `key`; `read` gives a
/// source's counts by that label's value.
fn each_by<'a, T: 'a, const N: usize>(
    sources: impl Iterator<Item = (Labels, &'a T)>,
    key: &'static str,
    read: impl Fn(&T) -> [(&'static str, u64); N],
) -> Vec<Series> {
    sources
        .flat_map(|(labels, counters)| {
            read(counters).map(|(value_label, value)| {
                let mut labels = labels.clone();
                labels.push((key, value_label.to_string()));
                (labels, value)
            })
        })
        .collect()
}

impl Sources {
    fn by_worker(&self) -> impl Iterator<Item = (Labels, &WorkerCounters)> {
        self.workers
            .iter()
            .enumerate()
            .map(|(index, counters)| (vec![("worker", (index + 1).to_string())], counters.as_ref()))
    }

    fn by_socket(&self) -> impl Iterator<Item = (Labels, &UdpCounters)> {
        self.udp
            .iter()
            .map(|(listener, counters)| (vec![("listener", listener.clone())], counters.as_ref()))
    }
}

/// One series without labels.
fn single(value: u64) -> [Series; 1] {
    [(Vec::new(), value)]
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        use MetricType::{Counter, Gauge};
        let e = &mut encoder;
        let per_worker = |read: fn(&WorkerCounters) -> u64| each(self.by_worker(), read);
        family(
            e,
            "build_info",
            "The running version (the value is always 1)",
            None,
            Gauge,
            [(vec![("version", env!("CARGO_PKG_VERSION").to_string())], 1)],
        )?;
        family(
            e,
            "start_time",
            "When the daemon started, in seconds since the epoch",
            Some(&Unit::Seconds),
            Gauge,
            single(self.started_at),
        )?;
        family(
            e,
            "config_reloads",
            "Configuration reloads (SIGHUP) by result",
            None,
            Counter,
            [
                (
                    vec![("result", "success".to_string())],
                    self.reloads.succeeded.get(),
                ),
                (
                    vec![("result", "failure".to_string())],
                    self.reloads.failed.get(),
                ),
            ],
        )?;
        family(
            e,
            "config_last_reload_successful",
            "1 if the last reload succeeded (or none was tried), 0 if it failed and the previous configuration runs",
            None,
            Gauge,
            single(u64::from(self.reloads.last_successful())),
        )?;
        family(
            e,
            "config_last_reload_success_timestamp",
            "When the configuration was last loaded successfully, at start or on reload",
            Some(&Unit::Seconds),
            Gauge,
            single(self.reloads.last_success_at()),
        )?;
        family(
            e,
            "tcp_max_connections",
            "The max_connections setting now in effect",
            None,
            Gauge,
            single(self.limits.max_connections() as u64),
        )?;
        family(
            e,
            "tcp_connections_open",
            "TCP connections open now, by worker thread",
            None,
            Gauge,
            per_worker(|c| c.open.get()),
        )?;
        family(
            e,
            "tcp_connections_accepted",
            "TCP connections accepted and served, by worker thread",
            None,
            Counter,
            per_worker(|c| c.accepted.get()),
        )?;
        family(
            e,
            "tcp_connections_refused",
            "TCP connections closed at once because max_connections were open, by worker thread",
            None,
            Counter,
            per_worker(|c| c.refused.get()),
        )?;
        family(
            e,
            "tcp_connections_closed",
            "TCP connections closed, by worker thread and reason: peer (it closed), idle_timeout, proxy_header (no valid PROXY protocol header in time), error, shutdown (still open after shutdown_grace), tls_handshake (the TLS handshake failed, or was not complete within tls_handshake_timeout)",
            None,
            Counter,
            each_by(self.by_worker(), "reason", |c| {
                CloseReason::ALL.map(|reason| (reason.label(), c.closed(reason).get()))
            }),
        )?;
        family(
            e,
            "tcp_accept_errors",
            "Failed accept calls, by worker thread and errno (EMFILE: raise LimitNOFILE or lower max_connections)",
            None,
            Counter,
            each_by(self.by_worker(), "kind", |c| {
                AcceptError::ALL.map(|kind| (kind.label(), c.accept_error(kind).get()))
            }),
        )?;
        family(
            e,
            "tcp_received",
            "Bytes received over TCP, PROXY protocol headers included, by worker thread",
            Some(&Unit::Bytes),
            Counter,
            per_worker(|c| c.bytes_received.get()),
        )?;
        family(
            e,
            "tcp_sent",
            "Bytes echoed over TCP, by worker thread",
            Some(&Unit::Bytes),
            Counter,
            per_worker(|c| c.bytes_sent.get()),
        )?;
        let per_socket = |read: fn(&UdpCounters) -> u64| each(self.by_socket(), read);
        family(
            e,
            "udp_datagrams_answered",
            "UDP datagrams echoed, by listening address",
            None,
            Counter,
            per_socket(|c| c.answered.get()),
        )?;
        family(
            e,
            "udp_datagrams_dropped",
            "UDP datagrams not answered, by listening address and reason: reflecting_port (from the port of an answering service), rate_limit (over udp_rate_limit), send_failed",
            None,
            Counter,
            each_by(self.by_socket(), "reason", |c| {
                UdpDrop::ALL.map(|reason| (reason.label(), c.dropped(reason).get()))
            }),
        )?;
        family(
            e,
            "udp_received",
            "Bytes received over UDP, by listening address",
            Some(&Unit::Bytes),
            Counter,
            per_socket(|c| c.bytes_received.get()),
        )?;
        family(
            e,
            "udp_sent",
            "Bytes echoed over UDP, by listening address",
            Some(&Unit::Bytes),
            Counter,
            per_socket(|c| c.bytes_sent.get()),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked_for() {
        // What Prometheus 2.x sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::PrometheusText);
        assert_eq!(Format::negotiate(Some("*/*")), Format::PrometheusText);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4")),
            Format::PrometheusText
        );
        assert_eq!(
            Format::negotiate(Some("text/plain, application/openmetrics-text;q=0.2")),
            Format::PrometheusText
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0")),
            Format::PrometheusText
        );
    }
}
