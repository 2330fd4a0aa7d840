//! [`Stats`] as a `prometheus_client` collector: every figure it counts, encoded at each scrape
//! from one [`Snapshot`] (feature `prometheus`). `docs/deploy.md` lists the metrics.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use ws_proto::{OpCode, TALLIED_OPCODES};

use crate::stats::{CLOSE_LABELS, HistogramSnapshot, Snapshot, Stats, WaySnapshot};

impl Stats {
    /// A collector for a [`Registry`]: at each scrape it encodes a fresh
    /// [`snapshot`](Self::snapshot).
    pub fn collector(self: Arc<Self>) -> Box<dyn Collector> {
        Box::new(StatsCollector(self))
    }

    /// The whole exposition in OpenMetrics text (`application/openmetrics-text;
    /// version=1.0.0`): these metrics alone, ending with `# EOF`.
    pub fn encode_openmetrics(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Arc::clone(self).collector());
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

#[derive(Debug)]
struct StatsCollector(Arc<Stats>);

type Out<'a> = DescriptorEncoder<'a>;

fn counter(out: &mut Out<'_>, name: &str, help: &str, unit: Option<&Unit>, v: u64) -> fmt::Result {
    let mut metric = out.encode_descriptor(name, help, unit, MetricType::Counter)?;
    metric.encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

fn gauge(out: &mut Out<'_>, name: &str, help: &str, unit: Option<&Unit>, v: u64) -> fmt::Result {
    let mut metric = out.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    metric.encode_gauge(&v)
}

/// A counter with one label, a sample per `(value, count)`.
fn labelled<'v>(
    out: &mut Out<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    label: &str,
    samples: impl IntoIterator<Item = (&'v str, u64)>,
) -> fmt::Result {
    let mut metric = out.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (value, count) in samples {
        let labels = [(label, value)];
        let mut family = metric.encode_family(&labels)?;
        family.encode_counter::<NoLabelSet, u64, u64>(&count, None)?;
    }
    Ok(())
}

fn histogram(out: &mut Out<'_>, name: &str, help: &str, h: &HistogramSnapshot) -> fmt::Result {
    let mut metric =
        out.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    encode_buckets(&mut metric, h)
}

/// The snapshot's buckets are cumulative with an infinite last bound; the encoder takes
/// counts per bucket and `f64::MAX` for `+Inf`.
fn encode_buckets(metric: &mut MetricEncoder<'_>, h: &HistogramSnapshot) -> fmt::Result {
    let mut below = 0;
    let buckets: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|&(bound, cumulative)| {
            let n = cumulative - below;
            below = cumulative;
            (if bound.is_finite() { bound } else { f64::MAX }, n)
        })
        .collect();
    metric.encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None::<&_>)
}

fn opcode_label(opcode: OpCode) -> &'static str {
    match opcode {
        OpCode::Text => "text",
        OpCode::Binary => "binary",
        OpCode::Ping => "ping",
        OpCode::Pong => "pong",
        OpCode::Close => "close",
        OpCode::Continuation => "continuation",
    }
}

fn by_opcode(values: &[u64; 5]) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    TALLIED_OPCODES.into_iter().map(opcode_label).zip(values.iter().copied())
}

fn ratio(way: &WaySnapshot) -> f64 {
    if way.compressed == 0 { 0.0 } else { way.uncompressed as f64 / way.compressed as f64 }
}

impl Collector for StatsCollector {
    fn encode(&self, mut out: DescriptorEncoder<'_>) -> fmt::Result {
        let s: Snapshot = self.0.snapshot();
        let out = &mut out;
        let bytes = Some(&Unit::Bytes);
        counter(out, "ws_connections_accepted", "TCP connections accepted.", None, s.accepted)?;
        gauge(out, "ws_connections_open", "WebSocket sessions open.", None, s.open)?;
        counter(out, "ws_sessions_opened", "WebSocket sessions opened.", None, s.opened)?;
        {
            let help = "Connections that did not become a WebSocket, by reason and HTTP status \
                        answered (none: no answer).";
            let mut metric =
                out.encode_descriptor("ws_handshakes_refused", help, None, MetricType::Counter)?;
            for (why, status, count) in &s.refused {
                let status = status.map_or_else(|| "none".to_owned(), |s| s.to_string());
                let labels = [("reason", why.label()), ("status", status.as_str())];
                let mut family = metric.encode_family(&labels)?;
                family.encode_counter::<NoLabelSet, u64, u64>(count, None)?;
            }
        }
        {
            let help = "Plain HTTP requests answered, by status.";
            let statuses: Vec<(String, u64)> =
                s.http.iter().map(|(status, n)| (status.to_string(), *n)).collect();
            let samples = statuses.iter().map(|(status, n)| (status.as_str(), *n));
            labelled(out, "ws_http_requests", help, None, "status", samples)?;
        }
        let help = "From accepting the TCP connection to the 101 response written (TLS included).";
        histogram(out, "ws_handshake_duration", help, &s.handshake_seconds)?;
        let help = "Keepalive ping to its pong.";
        histogram(out, "ws_ping_rtt", help, &s.ping_rtt_seconds)?;
        for (way, name, who) in [(&s.received, "received", "peers sent"), (&s.sent, "sent", "sent")]
        {
            let help = format!(
                "Data messages (text, binary) and control frames (ping, pong, close) {who}."
            );
            let metric = format!("ws_messages_{name}");
            labelled(out, &metric, &help, None, "opcode", by_opcode(&way.messages))?;
            let help = format!("Frame payload bytes {who}, on the wire, by opcode.");
            let metric = format!("ws_payload_{name}");
            labelled(out, &metric, &help, bytes, "opcode", by_opcode(&way.bytes))?;
            let help = format!("Close frames {who}, by code (1000-1015, or other).");
            let metric = format!("ws_close_codes_{name}");
            let codes = CLOSE_LABELS.into_iter().zip(way.closes.iter().copied());
            labelled(out, &metric, &help, None, "code", codes)?;
        }
        let help = "Payload bytes of compressed messages on the wire, by direction.";
        let ways = [("received", &s.received), ("sent", &s.sent)];
        let samples = ways.iter().map(|(d, w)| (*d, w.compressed));
        labelled(out, "ws_compressed_payload", help, bytes, "direction", samples)?;
        let help = "What those compressed messages were uncompressed, by direction.";
        let samples = ways.iter().map(|(d, w)| (*d, w.uncompressed));
        labelled(out, "ws_uncompressed_payload", help, bytes, "direction", samples)?;
        {
            let help = "Uncompressed over compressed bytes since the start, by direction (0 \
                        before any compressed message).";
            let mut metric =
                out.encode_descriptor("ws_compression_ratio", help, None, MetricType::Gauge)?;
            for (direction, way) in ways {
                let labels = [("direction", direction)];
                metric.encode_family(&labels)?.encode_gauge(&ratio(way))?;
            }
        }
        let help = "Bytes all connections hold against the memory budget.";
        gauge(out, "ws_memory_held", help, bytes, s.memory_held)?;
        let help = "The memory budget (Options::max_memory).";
        gauge(out, "ws_memory_budget", help, bytes, s.memory_limit)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_encoded_once_with_its_type() {
        let stats = Arc::new(Stats::new());
        stats.accepted();
        stats.refused(crate::Refusal::BadRequest, Some(400));
        stats.http(200);
        let text = stats.encode_openmetrics();
        for line in [
            "# TYPE ws_connections_accepted counter",
            "ws_connections_accepted_total 1",
            "ws_handshakes_refused_total{reason=\"bad_request\",status=\"400\"} 1",
            "ws_http_requests_total{status=\"200\"} 1",
            "# TYPE ws_handshake_duration_seconds histogram",
            "ws_handshake_duration_seconds_bucket{le=\"+Inf\"} 0",
            "ws_messages_received_total{opcode=\"text\"} 0",
            "ws_payload_sent_bytes_total{opcode=\"close\"} 0",
            "ws_close_codes_sent_total{code=\"other\"} 0",
            "ws_compression_ratio{direction=\"sent\"} 0.0",
            "# UNIT ws_memory_held_bytes bytes",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
