//! The standard `process_*` series every Prometheus exporter is expected to have: resident
//! and virtual memory, CPU time, open and maximum file descriptors, threads, start time.
//!
//! Read from `/proc/self` at each scrape. The `prometheus` crate's own `process` feature
//! does the same through the `procfs` crate (and its dependencies), and reports CPU time in
//! whole seconds (an integer counter), which makes `rate(process_cpu_seconds_total[1m])`
//! of an idle broker jump between 0 and 1/60; the few lines here need no dependency and
//! give the CPU time to the clock tick. Where `/proc` cannot be read (not Linux), a series
//! is left out rather than reported wrong.

use std::collections::HashMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, Metric, MetricFamily, MetricType};

/// The collector of this process's `process_*` series.
pub struct ProcessCollector {
    descs: Vec<Desc>,
}

/// Names, help texts and types, in the order they are exported.
const SERIES: &[(&str, &str, MetricType)] = &[
    (
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        MetricType::COUNTER,
    ),
    (
        "process_open_fds",
        "Number of open file descriptors.",
        MetricType::GAUGE,
    ),
    (
        "process_max_fds",
        "Maximum number of open file descriptors.",
        MetricType::GAUGE,
    ),
    (
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        MetricType::GAUGE,
    ),
    (
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        MetricType::GAUGE,
    ),
    (
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        MetricType::GAUGE,
    ),
    (
        "process_threads",
        "Number of OS threads in the process.",
        MetricType::GAUGE,
    ),
];

impl ProcessCollector {
    /// A collector for the calling process.
    pub fn for_self() -> prometheus::Result<ProcessCollector> {
        let descs = SERIES
            .iter()
            .map(|(name, help, _)| {
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    Vec::new(),
                    HashMap::new(),
                )
            })
            .collect::<prometheus::Result<Vec<_>>>()?;
        Ok(ProcessCollector { descs })
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let sample = Sample::read();
        let values = [
            sample.cpu_seconds,
            sample.open_fds,
            sample.max_fds,
            sample.virtual_bytes,
            sample.resident_bytes,
            sample.start_time,
            sample.threads,
        ];
        SERIES
            .iter()
            .zip(values)
            .filter_map(|((name, help, kind), value)| Some(family(name, help, *kind, value?)))
            .collect()
    }
}

/// One family of one unlabelled sample.
fn family(name: &str, help: &str, kind: MetricType, value: f64) -> MetricFamily {
    let mut metric = Metric::default();
    if kind == MetricType::COUNTER {
        let mut counter = Counter::default();
        counter.set_value(value);
        metric.set_counter(counter);
    } else {
        let mut gauge = Gauge::default();
        gauge.set_value(value);
        metric.set_gauge(gauge);
    }
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    family.set_metric(vec![metric]);
    family
}

/// What `/proc/self` says now; a value that cannot be read is None.
#[derive(Debug, Default)]
struct Sample {
    cpu_seconds: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
    virtual_bytes: Option<f64>,
    resident_bytes: Option<f64>,
    start_time: Option<f64>,
    threads: Option<f64>,
}

impl Sample {
    fn read() -> Sample {
        let mut sample = Sample {
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|dir| dir.count() as f64),
            max_fds: max_fds(),
            ..Sample::default()
        };
        let Some(stat) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|text| Stat::parse(&text))
        else {
            return sample;
        };
        let ticks = sysconf(libc::_SC_CLK_TCK);
        let page = sysconf(libc::_SC_PAGESIZE);
        sample.cpu_seconds = ticks.map(|t| (stat.utime + stat.stime) as f64 / t);
        sample.virtual_bytes = Some(stat.vsize as f64);
        sample.resident_bytes = page.map(|p| stat.rss_pages as f64 * p);
        sample.threads = Some(stat.threads as f64);
        sample.start_time = ticks
            .zip(boot_time())
            .map(|(t, boot)| boot + stat.start_ticks as f64 / t);
        sample
    }
}

/// The fields of `/proc/self/stat` used here (proc(5)).
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    threads: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

impl Stat {
    /// Reads the line; the command name, in parentheses, may itself hold spaces and
    /// parentheses, so the fields are counted from the last `)`.
    fn parse(text: &str) -> Option<Stat> {
        let (_, rest) = text.rsplit_once(')')?;
        // Field 3 (state) is the first after the name; proc(5) numbers fields from 1.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            utime: field(14)?,
            stime: field(15)?,
            threads: field(20)?,
            start_ticks: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

fn sysconf(name: libc::c_int) -> Option<f64> {
    // SAFETY: sysconf(3) reads a system constant; it has no memory effects.
    let value = unsafe { libc::sysconf(name) };
    (value > 0).then_some(value as f64)
}

fn max_fds() -> Option<f64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes into the struct given, which lives across the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0).then_some(limit.rlim_cur as f64)
}

/// The system's boot time in Unix seconds (`btime` of `/proc/stat`).
fn boot_time() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_from_after_the_command_name() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 300 0 0 0 17 5 0 0 20 0 6 0 1234 9000000 512 18446744073709551615 1 1 0 0 0 0 0 4096 17670 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            Stat::parse(line),
            Some(Stat {
                utime: 17,
                stime: 5,
                threads: 6,
                start_ticks: 1234,
                vsize: 9_000_000,
                rss_pages: 512,
            })
        );
        assert_eq!(Stat::parse("4242 (cut"), None);
        assert_eq!(Stat::parse("4242 (x) S 1 2"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_every_series() {
        let collector = ProcessCollector::for_self().expect("descs");
        let families = collector.collect();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        let expected: Vec<&str> = SERIES.iter().map(|(name, _, _)| *name).collect();
        assert_eq!(names, expected);
        let rss = families
            .iter()
            .find(|f| f.name() == "process_resident_memory_bytes")
            .map(|f| f.get_metric()[0].get_gauge().get_value());
        assert!(rss.is_some_and(|rss| rss > 0.0), "{rss:?}");
    }
}
