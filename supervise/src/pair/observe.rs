//! What asking a broker of the pair for its state came to ([`Observed`]), and whether the
//! pair has settled ([`settled`]): one broker active, the other passive, each hearing the
//! other, and each knowing its workers. This is the ZeroMQ view `hearth up` and
//! `hearth bench failover` watch; the HTTP view is [`crate::BrokerSample`].

use hearth_proto::status::BrokerStatus;

use crate::ask::workers_of;
use crate::pair::side::Side;

/// One broker's answer, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
// Two at a time, a few times a second: boxing the status would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Observed {
    /// It answered `hearth.status`.
    Status(BrokerStatus),
    /// Killed on purpose and not restarted yet.
    Killed,
    /// Frozen on purpose (SIGSTOP) and not thawed yet.
    Frozen,
    /// It did not answer in time.
    Silent,
}

impl Observed {
    /// The Binary Star state it reported, or `(killed)`, `(frozen)`, `(no answer)`.
    pub fn state(&self) -> &str {
        match self {
            Observed::Status(status) => status.state.as_str(),
            Observed::Killed => "(killed)",
            Observed::Frozen => "(frozen)",
            Observed::Silent => "(no answer)",
        }
    }

    /// The status record, if it answered.
    pub fn status(&self) -> Option<&BrokerStatus> {
        match self {
            Observed::Status(status) => Some(status),
            _ => None,
        }
    }

    /// Workers of `service` it reported (0 if it did not answer).
    pub fn workers(&self, service: &str) -> u64 {
        self.status().map_or(0, |s| workers_of(s, service))
    }

    /// A short description for messages: the state, whether it hears its peer, its
    /// workers.
    pub fn describe(&self, service: &str) -> String {
        match self.status() {
            Some(s) => format!(
                "{} (peer {}, {} {service} workers)",
                s.state,
                if s.peer_alive { "alive" } else { "silent" },
                self.workers(service)
            ),
            None => self.state().to_owned(),
        }
    }
}

/// Whether the pair has settled: one broker active, the other passive, each hearing the
/// other, and each knowing at least `workers` workers of `service`. `Ok` names the active
/// side; `Err` says what is still missing.
pub fn settled(states: &[Observed; 2], service: &str, workers: u64) -> Result<Side, String> {
    let describe = || {
        Side::BOTH
            .iter()
            .map(|&s| format!("{s} {}", states[s.index()].describe(service)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let active = Side::BOTH
        .into_iter()
        .find(|&s| states[s.index()].state() == "active")
        .ok_or_else(describe)?;
    let passive = &states[active.other().index()];
    let both_hear = Side::BOTH
        .iter()
        .all(|&s| states[s.index()].status().is_some_and(|st| st.peer_alive));
    let staffed = Side::BOTH
        .iter()
        .all(|&s| states[s.index()].workers(service) >= workers);
    if passive.state() == "passive" && both_hear && staffed {
        Ok(active)
    } else {
        Err(describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::status::ServiceStatus;

    fn seen(state: &str, peer_alive: bool, workers: u64) -> Observed {
        Observed::Status(BrokerStatus {
            state: state.parse().expect("a state name"),
            peer_alive,
            services: vec![ServiceStatus {
                name: "echo".into(),
                workers,
                ..ServiceStatus::default()
            }],
            ..BrokerStatus::default()
        })
    }

    #[test]
    fn settled_needs_one_active_one_passive_both_hearing_and_staffed() {
        let ok = [seen("passive", true, 2), seen("active", true, 2)];
        assert_eq!(settled(&ok, "echo", 2), Ok(Side::Backup));
        let cases = [
            [seen("active", true, 2), Observed::Killed],
            [seen("active", true, 2), seen("primary", true, 2)],
            [seen("active", true, 2), seen("passive", false, 2)],
            [seen("active", true, 2), seen("passive", true, 1)],
            [seen("active", true, 2), seen("active", true, 2)],
            [Observed::Silent, Observed::Frozen],
        ];
        for states in cases {
            let err = settled(&states, "echo", 2).unwrap_err();
            assert!(err.starts_with("primary "), "{err}");
        }
        assert_eq!(
            Observed::Killed.describe("echo"),
            "(killed)",
            "no status, just the reason"
        );
        assert_eq!(
            seen("active", false, 3).describe("echo"),
            "active (peer silent, 3 echo workers)"
        );
    }
}
