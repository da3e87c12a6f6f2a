//! What one load run measured: counts, throughput and latency percentiles, and the CPU
//! figures beside them.

use std::time::Duration;

use serde::Serialize;

/// The result of one load run, as printed and as the one JSON line of `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// Replies received (and verified) within the measured window.
    pub requests: u64,
    /// `requests` per second of the measured window.
    pub throughput: f64,
    /// Median latency, ms, 2 decimals.
    pub p50_ms: f64,
    /// 99th percentile latency, ms, 2 decimals.
    pub p99_ms: f64,
    /// Slowest reply, ms, 2 decimals.
    pub max_ms: f64,
    /// Requests never answered, even after the drain.
    pub lost: u64,
    /// Replies that were not the exact body of an outstanding request (corrupt, unknown,
    /// duplicate or malformed).
    pub mismatched: u64,
}

impl LoadReport {
    /// Builds the report from per-request latencies in microseconds (any order) measured
    /// over `window`.
    pub fn new(mut latencies_us: Vec<u32>, window: Duration, lost: u64, mismatched: u64) -> Self {
        latencies_us.sort_unstable();
        let requests = latencies_us.len() as u64;
        let seconds = window.as_secs_f64();
        LoadReport {
            requests,
            throughput: if seconds > 0.0 {
                round2(requests as f64 / seconds)
            } else {
                0.0
            },
            p50_ms: us_to_ms(percentile(&latencies_us, 50.0)),
            p99_ms: us_to_ms(percentile(&latencies_us, 99.0)),
            max_ms: us_to_ms(latencies_us.last().copied().unwrap_or(0)),
            lost,
            mismatched,
        }
    }

    /// Whether every request was answered correctly.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.mismatched == 0
    }

    /// Latencies as `p50 … p99 … max …` for human output.
    pub fn latency_line(&self) -> String {
        format!(
            "p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            self.p50_ms, self.p99_ms, self.max_ms
        )
    }
}

/// The nearest-rank percentile `p` (0 < p <= 100) of sorted samples; 0 when there are none.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn us_to_ms(us: u32) -> f64 {
    round2(f64::from(us) / 1000.0)
}

/// Rounds to 2 decimals, as the report prints.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// CPU microseconds per request, 2 decimals; none without a reading or a request.
pub fn cpu_per_request(cpu: Option<Duration>, requests: u64) -> Option<f64> {
    let cpu = cpu?;
    (requests > 0).then(|| round2(cpu.as_micros() as f64 / requests as f64))
}

/// CPU time spent over `window`, in cores (1.0: one core busy all the window), 2 decimals;
/// none without a reading or a window.
pub fn cores(cpu: Option<Duration>, window: Duration) -> Option<f64> {
    let cpu = cpu?;
    (!window.is_zero()).then(|| round2(cpu.as_secs_f64() / window.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), 50);
        assert_eq!(percentile(&samples, 99.0), 99);
        assert_eq!(percentile(&samples, 100.0), 100);
        assert_eq!(percentile(&[7], 50.0), 7);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[1, 2], 50.0), 1);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn report_sorts_and_converts() {
        let r = LoadReport::new(vec![3000, 1000, 2000, 10_556], Duration::from_secs(2), 1, 0);
        assert_eq!(r.requests, 4);
        assert_eq!(r.throughput, 2.0);
        assert_eq!(r.p50_ms, 2.0);
        assert_eq!(r.p99_ms, 10.56);
        assert_eq!(r.max_ms, 10.56);
        assert!(!r.clean());
        let empty = LoadReport::new(Vec::new(), Duration::from_secs(1), 0, 0);
        assert_eq!((empty.requests, empty.p50_ms, empty.max_ms), (0, 0.0, 0.0));
        assert!(empty.clean());
    }

    #[test]
    fn cpu_per_request_and_cores() {
        let cpu = Some(Duration::from_millis(150));
        assert_eq!(cpu_per_request(cpu, 1000), Some(150.0));
        assert_eq!(cpu_per_request(cpu, 0), None);
        assert_eq!(cpu_per_request(None, 10), None);
        assert_eq!(cores(cpu, Duration::from_millis(100)), Some(1.5));
        assert_eq!(cores(cpu, Duration::ZERO), None);
        assert_eq!(cores(None, Duration::from_secs(1)), None);
    }
}
