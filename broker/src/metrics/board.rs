//! The series that depend on the status board's freshness, computed at each scrape:
//! `hearth_bstar_state` (0 for every state while the board is stale, so that no scrape of a
//! broker just resumed from a freeze shows it active beside the peer that took over),
//! `hearth_status_stale` and `hearth_status_age_seconds`.

use std::collections::HashMap;
use std::time::Instant;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, Metric, MetricFamily, MetricType};
use prometheus::IntGaugeVec;

use crate::board::StatusBoard;

const STALE: (&str, &str) = (
    "hearth_status_stale",
    "1 while the broker's status board is stale (its reactor is late, or it is active but unsure its peer has not taken over): hearth_bstar_state is then 0 for every state",
);
const AGE: (&str, &str) = (
    "hearth_status_age_seconds",
    "Seconds since the broker's reactor last confirmed its status board",
);

/// Exports the Binary Star gauges through the board's freshness.
pub struct BoardCollector {
    bstar: IntGaugeVec,
    board: StatusBoard,
    descs: Vec<Desc>,
}

impl BoardCollector {
    /// A collector of `bstar` (not registered elsewhere) as `board` vouches for it.
    pub fn new(bstar: IntGaugeVec, board: StatusBoard) -> prometheus::Result<BoardCollector> {
        let mut descs: Vec<Desc> = bstar.desc().into_iter().cloned().collect();
        for (name, help) in [STALE, AGE] {
            descs.push(Desc::new(
                name.to_owned(),
                help.to_owned(),
                Vec::new(),
                HashMap::new(),
            )?);
        }
        Ok(BoardCollector {
            bstar,
            board,
            descs,
        })
    }
}

impl Collector for BoardCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let freshness = self.board.freshness(Instant::now());
        let stale = freshness.stale.is_some();
        let mut families = self.bstar.collect();
        if stale {
            for family in &mut families {
                for metric in family.mut_metric() {
                    metric.set_gauge(gauge(0.0));
                }
            }
        }
        families.push(family(STALE, f64::from(u8::from(stale))));
        families.push(family(AGE, freshness.age.as_secs_f64()));
        families
    }
}

fn gauge(value: f64) -> Gauge {
    let mut gauge = Gauge::default();
    gauge.set_value(value);
    gauge
}

fn family((name, help): (&str, &str), value: f64) -> MetricFamily {
    let mut metric = Metric::default();
    metric.set_gauge(gauge(value));
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(MetricType::GAUGE);
    family.set_metric(vec![metric]);
    family
}
