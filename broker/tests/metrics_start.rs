//! `/metrics` of a freshly started `hearth-broker`, before anything happened: the standard
//! `process_*` series, `hearth_build_info`, and every value of every labelled counter an
//! alert may take a `rate()` of, at 0 (the label values come from the enums that produce
//! them, so a value added there is checked here too).

mod common;

use std::time::Duration;

use common::procs::{pair_args, BrokerProc};
use common::*;
use hearth_broker::metrics::{CatchupKind, DisconnectReason, DropReason};
use hearth_broker::state::{BadRequestReason, WriteOutcomeKind};
use hearth_proto::peer::PeerMalformedReason;
use hearth_proto::status::BStarState;
use hearth_proto::MalformedReason;

const T: Duration = Duration::from_secs(15);

/// The exposition of a broker that has just started answering.
fn fresh_metrics(args: &[String]) -> (BrokerProc, String) {
    let broker = BrokerProc::start(args);
    let text = wait_for("/metrics", T, || {
        match try_http_get(broker.metrics, "/metrics") {
            Some((200, body)) => Ok(body),
            other => Err(other),
        }
    });
    (broker, text)
}

/// The value of the sample line `series` (name and labels as exported), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

#[test]
fn a_fresh_broker_exports_every_series_alerts_use() {
    let (_broker, text) = fresh_metrics(&[]);
    let mut missing = Vec::new();
    let mut expect_zero = |series: String| match sample(&text, &series) {
        Some(0.0) => {}
        other => missing.push(format!("{series} = {other:?}")),
    };
    for r in MalformedReason::ALL {
        expect_zero(format!("hearth_malformed_messages_total{{reason=\"{r}\"}}"));
    }
    for r in PeerMalformedReason::ALL {
        expect_zero(format!("hearth_malformed_messages_total{{reason=\"{r}\"}}"));
    }
    for r in DropReason::ALL {
        expect_zero(format!("hearth_dropped_messages_total{{reason=\"{r}\"}}"));
    }
    for r in DisconnectReason::ALL {
        expect_zero(format!("hearth_worker_disconnects_total{{reason=\"{r}\"}}"));
    }
    for r in BadRequestReason::ALL {
        expect_zero(format!("hearth_state_bad_requests_total{{reason=\"{r}\"}}"));
    }
    for o in WriteOutcomeKind::ALL {
        expect_zero(format!("hearth_state_writes_total{{outcome=\"{o}\"}}"));
    }
    for k in CatchupKind::ALL {
        expect_zero(format!("hearth_state_catchups_total{{kind=\"{k}\"}}"));
    }
    for s in BStarState::ALL.iter().filter(|s| **s != BStarState::Active) {
        expect_zero(format!("hearth_bstar_state{{state=\"{s}\"}}"));
    }
    for series in [
        "hearth_failovers_total",
        "hearth_peer_alive",
        "hearth_state_replication_lag",
        "hearth_state_waiting_for_peer",
        "hearth_status_stale",
    ] {
        expect_zero(series.to_owned());
    }
    assert!(
        missing.is_empty(),
        "missing or not 0:\n{}",
        missing.join("\n")
    );

    // The names alert rules are written against, spelled out once more.
    for series in [
        "hearth_dropped_messages_total{reason=\"service_queue_full\"}",
        "hearth_dropped_messages_total{reason=\"queue_full\"}",
        "hearth_malformed_messages_total{reason=\"wrong_header\"}",
    ] {
        assert_eq!(sample(&text, series), Some(0.0), "{series}");
    }
    assert_eq!(
        sample(&text, "hearth_bstar_state{state=\"active\"}"),
        Some(1.0)
    );
    let age = sample(&text, "hearth_status_age_seconds").expect("hearth_status_age_seconds");
    assert!((0.0..5.0).contains(&age), "{age}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(
            &text,
            &format!("hearth_build_info{{role=\"standalone\",version=\"{version}\"}}")
        ),
        Some(1.0),
        "{text}"
    );

    // The standard process series.
    let rss = sample(&text, "process_resident_memory_bytes").expect("RSS");
    assert!(rss > 1e6, "RSS {rss}");
    let open = sample(&text, "process_open_fds").expect("open fds");
    let max = sample(&text, "process_max_fds").expect("max fds");
    assert!(open > 0.0 && max >= open, "{open} of {max} fds");
    let cpu = sample(&text, "process_cpu_seconds_total").expect("CPU seconds");
    assert!((0.0..60.0).contains(&cpu), "{cpu}");
    let virt = sample(&text, "process_virtual_memory_bytes").expect("virtual memory");
    assert!(virt >= rss, "{virt} < {rss}");
    let start = sample(&text, "process_start_time_seconds").expect("start time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    assert!(
        (now - 120.0..=now + 1.0).contains(&start),
        "started at {start}, now {now}"
    );
    assert!(sample(&text, "process_threads").is_some_and(|t| t >= 3.0));
}

#[test]
fn build_info_names_the_role_of_a_pair_member() {
    let (own, other) = (free_port(), free_port());
    let (_broker, text) = fresh_metrics(&pair_args("backup", own, other, 200));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(
            &text,
            &format!("hearth_build_info{{role=\"backup\",version=\"{version}\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    // A backup alone waits as `backup`, every other state at 0.
    for state in BStarState::ALL {
        let want = f64::from(u8::from(*state == BStarState::Backup));
        assert_eq!(
            sample(&text, &format!("hearth_bstar_state{{state=\"{state}\"}}")),
            Some(want),
            "{state}"
        );
    }
}
