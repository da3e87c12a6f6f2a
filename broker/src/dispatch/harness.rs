//! The test harness of the dispatcher's unit tests (`tests`, `waiting_tests`): a
//! [`Dispatcher`] on a fake clock with its own metrics registry, fed messages at given
//! milliseconds, its metrics read back by name and label.
//!
//! After every message and tick it checks that the count of requests waiting for services
//! with no worker, kept as they come and go, equals the count afresh.

use std::time::{Duration, Instant};

use hearth_proto::status::Role;
use hearth_proto::{ClientMessage, Inbound, WorkerMessage};
use prometheus::Registry;

use super::{DispatchConfig, Dispatcher, Effect, Metrics};

pub(super) struct Harness {
    pub(super) d: Dispatcher,
    pub(super) t0: Instant,
    pub(super) registry: Registry,
}

impl Harness {
    /// A standalone dispatcher with `config`, its clock at 0 ms.
    pub(super) fn with(config: DispatchConfig) -> Harness {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry, Role::Standalone).expect("metrics");
        let t0 = Instant::now();
        Harness {
            d: Dispatcher::new(config, metrics, t0),
            t0,
            registry,
        }
    }

    /// The fake clock at `ms`.
    pub(super) fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// `client` asks `service` with `body` at `ms`.
    pub(super) fn request(
        &mut self,
        ms: u64,
        client: &str,
        service: &str,
        body: &str,
    ) -> Vec<Effect> {
        let msg = ClientMessage::new(service, body.as_bytes().to_vec());
        self.handle(ms, client, Inbound::Client(msg))
    }

    /// Worker `id` sends `msg` at `ms`.
    pub(super) fn worker(&mut self, ms: u64, id: &str, msg: WorkerMessage) -> Vec<Effect> {
        self.handle(ms, id, Inbound::Worker(msg))
    }

    /// The deadlines due at `ms`.
    pub(super) fn tick(&mut self, ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        self.d.tick(self.at(ms), &mut out);
        self.check_count();
        out
    }

    fn handle(&mut self, ms: u64, from: &str, msg: Inbound) -> Vec<Effect> {
        let mut out = Vec::new();
        self.d
            .handle(self.at(ms), from.as_bytes().to_vec(), msg, &mut out);
        self.check_count();
        out
    }

    /// Asserts that the count of requests waiting for services with no worker, kept as
    /// they come and go, equals the count afresh.
    pub(super) fn check_count(&self) {
        let (kept, counted) = self.d.unserved_recount();
        assert_eq!(
            kept, counted,
            "requests waiting for services with no worker"
        );
    }

    /// The value of `name{label="value"}`, or None if the series does not exist.
    pub(super) fn series(&self, name: &str, label: &str, value: &str) -> Option<f64> {
        let family = self
            .registry
            .gather()
            .into_iter()
            .find(|f| f.name() == name)?;
        let metric = family.get_metric().iter().find(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == label && l.value() == value)
        })?;
        Some(match family.get_field_type() {
            prometheus::proto::MetricType::COUNTER => metric.get_counter().get_value(),
            _ => metric.get_gauge().get_value(),
        })
    }

    /// The value of `name{label="value"}`, 0 if the series does not exist.
    pub(super) fn sample(&self, name: &str, label: &str, value: &str) -> f64 {
        self.series(name, label, value).unwrap_or(0.0)
    }
}
