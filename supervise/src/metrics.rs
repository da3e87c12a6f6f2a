//! Reading the Prometheus text a broker serves at `/metrics`, and the few series of it that
//! say where a broker of a pair stands ([`BrokerSample`]): what a supervisor reads when it
//! must not wait long on a broker that may be frozen (see [`crate::http`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::Result;
use crate::http;

/// One sample line of the exposition: `name{label="value",...} 12`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// The metric's name.
    pub name: String,
    /// The labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// Every sample line of `text` (comments and lines that do not parse are skipped).
pub fn parse(text: &str) -> Vec<MetricSample> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<MetricSample> {
    let (series, value) = line.trim().rsplit_once(' ')?;
    let value = value.parse::<f64>().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(MetricSample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"` into pairs, honouring the exposition format's escapes.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end?;
        labels.push((key.trim_start_matches(',').to_owned(), value));
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

/// The sum of every sample of `name` (all label sets); 0 if there is none.
pub fn sum(samples: &[MetricSample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// The value of the sample of `name` whose label `label` is `value`, if there is one.
pub fn labelled(samples: &[MetricSample], name: &str, label: &str, value: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && s.labels.iter().any(|(k, v)| k == label && v == value))
        .map(|s| s.value)
}

/// Where one broker of a pair stands, read from its `/metrics` in one GET.
///
/// The series are read by the broker's HTTP thread while its reactor runs on, so one sample
/// is not a transaction: around a state change its state and its counters may disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerSample {
    /// The Binary Star state whose `hearth_bstar_state{state}` is 1.
    pub state: Option<String>,
    /// `hearth_peer_alive`.
    pub peer_alive: bool,
    /// `hearth_replies_total`, summed over services: replies sent to clients.
    pub replies: u64,
    /// `hearth_failovers_total`.
    pub failovers: u64,
    /// `hearth_split_brain_total`.
    pub split_brain: u64,
    /// `hearth_stalls_total`.
    pub stalls: u64,
    /// `hearth_workers{service}`: registered workers per service.
    pub workers: Vec<(String, u64)>,
}

impl BrokerSample {
    /// Reads the sample out of a `/metrics` exposition.
    pub fn from_text(text: &str) -> BrokerSample {
        let samples = parse(text);
        let state = ["primary", "backup", "active", "passive"]
            .into_iter()
            .find(|s| labelled(&samples, "hearth_bstar_state", "state", s) == Some(1.0))
            .map(str::to_owned);
        BrokerSample {
            state,
            peer_alive: sum(&samples, "hearth_peer_alive") == 1.0,
            replies: sum(&samples, "hearth_replies_total") as u64,
            failovers: sum(&samples, "hearth_failovers_total") as u64,
            split_brain: sum(&samples, "hearth_split_brain_total") as u64,
            stalls: sum(&samples, "hearth_stalls_total") as u64,
            workers: samples
                .iter()
                .filter(|s| s.name == "hearth_workers")
                .filter_map(|s| {
                    let (_, service) = s.labels.iter().find(|(k, _)| k == "service")?;
                    Some((service.clone(), s.value as u64))
                })
                .collect(),
        }
    }

    /// The workers registered for `service` (0 if the broker has no such series).
    pub fn workers_of(&self, service: &str) -> u64 {
        self.workers
            .iter()
            .find(|(s, _)| s == service)
            .map_or(0, |(_, n)| *n)
    }

    /// GETs `/metrics` at `addr` (waiting at most `timeout` to connect and as long again
    /// for the answer) and reads the sample.
    pub fn fetch(addr: SocketAddr, timeout: Duration) -> Result<BrokerSample> {
        let text = http::get_ok(addr, "/metrics", timeout)?;
        Ok(BrokerSample::from_text(&text))
    }

    /// Whether the state is `state`.
    pub fn is(&self, state: &str) -> bool {
        self.state.as_deref() == Some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP hearth_bstar_state 1 for the broker's current Binary Star state
# TYPE hearth_bstar_state gauge
hearth_bstar_state{state="active"} 1
hearth_bstar_state{state="backup"} 0
hearth_bstar_state{state="passive"} 0
hearth_bstar_state{state="primary"} 0
hearth_failovers_total 2
hearth_peer_alive 1
hearth_replies_total{service="echo"} 40
hearth_replies_total{service="odd,\"name\""} 2
hearth_split_brain_total 1
hearth_stalls_total 3
hearth_workers{service="echo"} 4
"#;

    #[test]
    fn reads_a_pair_broker() {
        let s = BrokerSample::from_text(TEXT);
        assert_eq!(s.state.as_deref(), Some("active"));
        assert!(s.peer_alive);
        assert_eq!(
            (s.replies, s.failovers, s.split_brain, s.stalls),
            (42, 2, 1, 3)
        );
        assert_eq!((s.workers_of("echo"), s.workers_of("slow")), (4, 0));
    }

    #[test]
    fn labels_with_escapes() {
        let samples = parse(TEXT);
        assert_eq!(
            labelled(&samples, "hearth_replies_total", "service", "odd,\"name\""),
            Some(2.0)
        );
        assert_eq!(sum(&samples, "nothing"), 0.0);
        assert_eq!(parse("garbage"), vec![]);
    }
}
