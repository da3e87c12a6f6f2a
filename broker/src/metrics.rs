//! The broker's Prometheus metrics, registered in a [`Registry`] that is passed in, so that
//! several brokers in one test process never trip over process-global statics.
//!
//! Per-service series are resolved once into a [`ServiceMetrics`] and kept with the service,
//! so the hot path bumps atomics and never looks up a label.

use hearth_proto::status::BStarState;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Every metric the broker exports (names fixed by DESIGN.md).
#[derive(Clone)]
pub struct Metrics {
    requests: IntCounterVec,
    replies: IntCounterVec,
    duration: HistogramVec,
    workers: IntGaugeVec,
    queue_depth: IntGaugeVec,
    requeued: IntCounterVec,
    expired: IntCounterVec,
    /// Messages dropped because they were malformed or oversized, by `DecodeError::reason`.
    pub malformed: IntCounterVec,
    /// Messages the broker could not deliver or chose to drop, by reason.
    pub dropped: IntCounterVec,
    /// DISCONNECTs sent to workers, by reason.
    pub disconnects: IntCounterVec,
    /// 1 for the broker's current Binary Star state, 0 for the others.
    pub bstar_state: IntGaugeVec,
    /// Times this broker went from passive to active.
    pub failovers: IntCounter,
    /// Times this broker stepped down after finding a newer active peer (split brain).
    pub split_brain: IntCounter,
    /// Times this broker found it had not been running for a while (SIGSTOP, VM pause).
    pub stalls: IntCounter,
    /// 1 while the peer is heard from within its expiry.
    pub peer_alive: IntGauge,
    /// The state model's sequence number.
    pub state_seq: IntGauge,
    /// Keys in the state model.
    pub state_keys: IntGauge,
    /// Bytes of keys and values in the state model.
    pub state_bytes: IntGauge,
    /// Seqs between this broker's state model and its peer's (the passive's lag behind the
    /// active, as either sees it).
    pub state_lag: IntGauge,
    /// Time from a round's writes being handed to the writer to their fsync.
    pub state_flush: Histogram,
    /// Flushes (fsyncs) of the state store: rounds queued behind a running flush share
    /// the next one.
    pub state_fsyncs: IntCounter,
    /// State requests refused, by reason.
    pub state_bad_requests: IntCounterVec,
    /// Writes answered, by outcome (applied, repeat, unchanged).
    pub state_writes: IntCounterVec,
    /// Catch-ups of a follower, by how (`tail`: from the change log; `snapshot`), counted
    /// by the broker that sent them.
    pub state_catchups: IntCounterVec,
    /// Snapshots installed from the peer.
    pub state_snapshots_installed: IntCounter,
    /// Changes given up after a divergence and kept in the conflict record.
    pub state_conflicts: IntCounter,
    /// 1 while the broker may not serve because its state model may be behind its peer's.
    pub state_waiting: IntGauge,
}

/// One service's series, resolved once.
#[derive(Clone)]
pub struct ServiceMetrics {
    pub requests: IntCounter,
    pub replies: IntCounter,
    pub duration: Histogram,
    pub workers: IntGauge,
    pub queue_depth: IntGauge,
    pub requeued: IntCounter,
    pub expired: IntCounter,
}

/// Latency buckets from 100 µs to 30 s: home services range from an echo to a slow script.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        fn counter(
            r: &Registry,
            name: &str,
            help: &str,
            labels: &[&str],
        ) -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }
        fn gauge(
            r: &Registry,
            name: &str,
            help: &str,
            labels: &[&str],
        ) -> prometheus::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        }
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "hearth_request_duration_seconds",
                "Time from a client request's arrival to its reply leaving the broker",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["service"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        let failovers = IntCounter::new(
            "hearth_failovers_total",
            "Times this broker became active after being passive",
        )?;
        registry.register(Box::new(failovers.clone()))?;
        let split_brain = IntCounter::new(
            "hearth_split_brain_total",
            "Times this broker stepped down after finding a newer active peer",
        )?;
        registry.register(Box::new(split_brain.clone()))?;
        let stalls = IntCounter::new(
            "hearth_stalls_total",
            "Times this broker found it had not been running for a while (stopped or starved)",
        )?;
        registry.register(Box::new(stalls.clone()))?;
        let peer_alive = IntGauge::new(
            "hearth_peer_alive",
            "1 while the Binary Star peer is heard from",
        )?;
        registry.register(Box::new(peer_alive.clone()))?;
        let state_seq = IntGauge::new("hearth_state_seq", "Sequence number of the state model")?;
        registry.register(Box::new(state_seq.clone()))?;
        let state_keys = IntGauge::new("hearth_state_keys", "Keys in the state model")?;
        registry.register(Box::new(state_keys.clone()))?;
        let state_bytes = IntGauge::new(
            "hearth_state_bytes",
            "Bytes of keys and values in the state model",
        )?;
        registry.register(Box::new(state_bytes.clone()))?;
        let state_lag = IntGauge::new(
            "hearth_state_replication_lag",
            "Changes the passive's state model is behind the active's",
        )?;
        registry.register(Box::new(state_lag.clone()))?;
        let state_flush = Histogram::with_opts(
            HistogramOpts::new(
                "hearth_state_flush_duration_seconds",
                "Time from a poll round's state changes reaching the writer to their fsync",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(state_flush.clone()))?;
        let state_fsyncs = IntCounter::new(
            "hearth_state_fsyncs_total",
            "Flushes (fsyncs) of the state store; rounds queued behind one share the next",
        )?;
        registry.register(Box::new(state_fsyncs.clone()))?;
        let state_snapshots_installed = IntCounter::new(
            "hearth_state_snapshots_installed_total",
            "Snapshots of the state model installed from the peer",
        )?;
        registry.register(Box::new(state_snapshots_installed.clone()))?;
        let state_conflicts = IntCounter::new(
            "hearth_state_conflicts_total",
            "State changes given up after the pair diverged, kept in the conflict record",
        )?;
        registry.register(Box::new(state_conflicts.clone()))?;
        let state_waiting = IntGauge::new(
            "hearth_state_waiting_for_peer",
            "1 while the broker may not serve because its state model may be behind its peer's",
        )?;
        registry.register(Box::new(state_waiting.clone()))?;
        let s = &["service"];
        Ok(Metrics {
            requests: counter(
                registry,
                "hearth_requests_total",
                "Client requests received",
                s,
            )?,
            replies: counter(
                registry,
                "hearth_replies_total",
                "Replies sent to clients",
                s,
            )?,
            duration,
            workers: gauge(registry, "hearth_workers", "Registered workers", s)?,
            queue_depth: gauge(
                registry,
                "hearth_queue_depth",
                "Requests waiting for a worker",
                s,
            )?,
            requeued: counter(
                registry,
                "hearth_requeued_total",
                "Requests dispatched again after their worker was lost",
                s,
            )?,
            expired: counter(
                registry,
                "hearth_expired_requests_total",
                "Requests dropped after waiting too long with no worker",
                s,
            )?,
            malformed: counter(
                registry,
                "hearth_malformed_messages_total",
                "Malformed or oversized messages dropped",
                &["reason"],
            )?,
            dropped: counter(
                registry,
                "hearth_dropped_messages_total",
                "Messages the broker could not deliver or refused",
                &["reason"],
            )?,
            disconnects: counter(
                registry,
                "hearth_worker_disconnects_total",
                "DISCONNECTs sent to workers",
                &["reason"],
            )?,
            bstar_state: gauge(
                registry,
                "hearth_bstar_state",
                "1 for the broker's current Binary Star state",
                &["state"],
            )?,
            failovers,
            split_brain,
            stalls,
            peer_alive,
            state_seq,
            state_keys,
            state_bytes,
            state_lag,
            state_flush,
            state_fsyncs,
            state_bad_requests: counter(
                registry,
                "hearth_state_bad_requests_total",
                "State requests refused with an error, by reason",
                &["reason"],
            )?,
            state_writes: counter(
                registry,
                "hearth_state_writes_total",
                "State writes answered, by outcome",
                &["outcome"],
            )?,
            state_catchups: counter(
                registry,
                "hearth_state_catchups_total",
                "Catch-ups sent to the peer's state model, by kind (tail or snapshot)",
                &["kind"],
            )?,
            state_snapshots_installed,
            state_conflicts,
            state_waiting,
        })
    }

    /// Resolves the series of one service.
    pub fn service(&self, service: &str) -> ServiceMetrics {
        let l = &[service];
        ServiceMetrics {
            requests: self.requests.with_label_values(l),
            replies: self.replies.with_label_values(l),
            duration: self.duration.with_label_values(l),
            workers: self.workers.with_label_values(l),
            queue_depth: self.queue_depth.with_label_values(l),
            requeued: self.requeued.with_label_values(l),
            expired: self.expired.with_label_values(l),
        }
    }

    /// Forgets the series of a service that is gone, so that names clients invent cannot grow
    /// the exposition without bound.
    pub fn forget_service(&self, service: &str) {
        let l = &[service];
        let _ = self.requests.remove_label_values(l);
        let _ = self.replies.remove_label_values(l);
        let _ = self.duration.remove_label_values(l);
        let _ = self.workers.remove_label_values(l);
        let _ = self.queue_depth.remove_label_values(l);
        let _ = self.requeued.remove_label_values(l);
        let _ = self.expired.remove_label_values(l);
    }

    /// Sets `hearth_bstar_state{state}` to 1 for `current` and 0 for the other states.
    pub fn set_bstar_state(&self, current: BStarState) {
        for state in BStarState::ALL {
            self.bstar_state
                .with_label_values(&[state.as_str()])
                .set(i64::from(*state == current));
        }
    }
}
