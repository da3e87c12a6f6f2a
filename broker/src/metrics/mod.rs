//! The broker's Prometheus metrics, registered in a [`Registry`] that is passed in, so that
//! several brokers in one test process never trip over process-global statics.
//!
//! Per-service series are resolved once into a [`ServiceMetrics`] and kept with the service,
//! so the hot path bumps atomics and never looks up a label. Every other labelled counter
//! takes its label from an enum ([`labels`], and the decode errors' kinds in
//! `hearth_proto`) and starts with every value at 0, so that alerts can take a `rate()`
//! from the first scrape.
//!
//! Beside the broker's own series: the standard `process_*` series ([`process`]),
//! `hearth_build_info`, and, computed at each scrape from the [`StatusBoard`],
//! `hearth_status_stale` and `hearth_status_age_seconds`; while the board is stale,
//! `hearth_bstar_state` is 0 for every state (see `board.rs`).

mod board;
pub mod labels;
pub mod process;

use hearth_proto::peer::{PeerDecodeError, PeerMalformedReason};
use hearth_proto::status::{BStarState, Role};
use hearth_proto::{DecodeError, MalformedReason};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

pub use labels::{CatchupKind, DisconnectReason, DropReason};

use crate::board::{StatusBoard, STALE_AFTER};
use crate::state::{BadRequestReason, WriteOutcomeKind};

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
    /// Messages dropped because they were malformed or oversized, by `DecodeError::reason`
    /// (counted through [`Metrics::malformed`] and [`Metrics::peer_malformed`]; readable
    /// in the crate for tests).
    pub(crate) malformed: IntCounterVec,
    /// Messages the broker could not deliver or chose to drop, by reason.
    dropped: IntCounterVec,
    /// DISCONNECTs sent to workers, by reason.
    disconnects: IntCounterVec,
    /// 1 for the broker's current Binary Star state, 0 for the others (exported through
    /// the board's collector, which zeroes it while the board is stale).
    bstar_state: IntGaugeVec,
    /// What the reactor publishes for the HTTP side.
    board: StatusBoard,
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
    state_bad_requests: IntCounterVec,
    /// Writes answered, by outcome (applied, repeat, unchanged).
    state_writes: IntCounterVec,
    /// Catch-ups of a follower, by how (`tail`: from the change log; `snapshot`), counted
    /// by the broker that sent them.
    state_catchups: IntCounterVec,
    /// Snapshots installed from the peer.
    pub state_snapshots_installed: IntCounter,
    /// Changes given up after a divergence and kept in the conflict record.
    pub state_conflicts: IntCounter,
    /// 1 while the broker may not serve because its state model may be behind its peer's.
    pub state_waiting: IntGauge,
}

/// One service's series, resolved once. The latency histogram (19 lines of exposition)
/// appears with the service's first worker (or reply), so that names nobody serves cost a
/// few lines each while they are kept.
#[derive(Clone)]
pub struct ServiceMetrics {
    pub requests: IntCounter,
    pub replies: IntCounter,
    duration: LazyHistogram,
    pub workers: IntGauge,
    pub queue_depth: IntGauge,
    pub requeued: IntCounter,
    pub expired: IntCounter,
}

/// One service's series of a histogram vector, resolved at its first observation.
#[derive(Clone)]
struct LazyHistogram {
    vec: HistogramVec,
    service: String,
    resolved: std::sync::OnceLock<Histogram>,
}

impl ServiceMetrics {
    /// Observes one request's time from arrival to reply, in seconds.
    pub fn observe_duration(&self, seconds: f64) {
        self.duration().observe(seconds);
    }

    /// Exports the latency histogram now, at 0 until the first reply (a service that has a
    /// worker shows it from then on).
    pub fn show_duration(&self) {
        self.duration();
    }

    fn duration(&self) -> &Histogram {
        let d = &self.duration;
        d.resolved
            .get_or_init(|| d.vec.with_label_values(&[d.service.as_str()]))
    }
}

/// Latency buckets from 100 µs to 30 s: home services range from an echo to a slow script.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

impl Metrics {
    /// Creates the metrics of a broker in `role` and registers them in `registry`, with the
    /// `process_*` series and `hearth_build_info`.
    pub fn new(registry: &Registry, role: Role) -> prometheus::Result<Metrics> {
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
        let bstar_state = IntGaugeVec::new(
            Opts::new(
                "hearth_bstar_state",
                "1 for the broker's current Binary Star state (0 for every state while the status board is stale)",
            ),
            &["state"],
        )?;
        let board = StatusBoard::new(Default::default(), STALE_AFTER);
        registry.register(Box::new(board::BoardCollector::new(
            bstar_state.clone(),
            board.clone(),
        )?))?;
        registry.register(Box::new(process::ProcessCollector::for_self()?))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "hearth_build_info",
                "1, labelled with the broker's version and configured role",
            ),
            &["version", "role"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), role.as_str()])
            .set(1);
        registry.register(Box::new(build_info))?;
        let s = &["service"];
        let metrics = Metrics {
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
            bstar_state,
            board,
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
        };
        metrics.start_at_zero();
        Ok(metrics)
    }

    /// Creates every value of every labelled counter (and of `hearth_bstar_state`) at 0.
    fn start_at_zero(&self) {
        fn each<T: Copy>(vec: &IntCounterVec, all: &[T], label: impl Fn(T) -> &'static str) {
            for value in all {
                vec.with_label_values(&[label(*value)]);
            }
        }
        each(
            &self.malformed,
            MalformedReason::ALL,
            MalformedReason::as_str,
        );
        each(
            &self.malformed,
            PeerMalformedReason::ALL,
            PeerMalformedReason::as_str,
        );
        each(&self.dropped, DropReason::ALL, DropReason::as_str);
        each(
            &self.disconnects,
            DisconnectReason::ALL,
            DisconnectReason::as_str,
        );
        each(
            &self.state_bad_requests,
            BadRequestReason::ALL,
            BadRequestReason::as_str,
        );
        each(
            &self.state_writes,
            WriteOutcomeKind::ALL,
            WriteOutcomeKind::as_str,
        );
        each(&self.state_catchups, CatchupKind::ALL, CatchupKind::as_str);
        for state in BStarState::ALL {
            self.bstar_state.with_label_values(&[state.as_str()]);
        }
    }

    /// The status board the reactor publishes and the HTTP side reads (its freshness also
    /// decides what `hearth_bstar_state` exports).
    pub fn board(&self) -> &StatusBoard {
        &self.board
    }

    /// Counts a malformed frontend message.
    pub fn malformed(&self, error: &DecodeError) {
        self.malformed
            .with_label_values(&[error.kind().as_str()])
            .inc();
    }

    /// Counts a malformed peer-link message.
    pub fn peer_malformed(&self, error: &PeerDecodeError) {
        self.malformed
            .with_label_values(&[error.kind().as_str()])
            .inc();
    }

    /// Counts `n` messages dropped for `reason`.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.dropped.with_label_values(&[reason.as_str()]).inc_by(n);
        }
    }

    /// Counts a DISCONNECT sent to a worker.
    pub fn disconnect(&self, reason: DisconnectReason) {
        self.disconnects.with_label_values(&[reason.as_str()]).inc();
    }

    /// Counts a refused state request.
    pub fn state_bad_request(&self, reason: BadRequestReason) {
        self.state_bad_requests
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Counts an answered state write.
    pub fn state_write(&self, outcome: WriteOutcomeKind) {
        self.state_writes
            .with_label_values(&[outcome.as_str()])
            .inc();
    }

    /// Counts a catch-up sent to the follower.
    pub fn state_catchup(&self, kind: CatchupKind) {
        self.state_catchups
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    /// Resolves the series of one service.
    pub fn service(&self, service: &str) -> ServiceMetrics {
        let l = &[service];
        ServiceMetrics {
            requests: self.requests.with_label_values(l),
            replies: self.replies.with_label_values(l),
            duration: LazyHistogram {
                vec: self.duration.clone(),
                service: service.to_owned(),
                resolved: std::sync::OnceLock::new(),
            },
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
