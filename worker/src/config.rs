//! What a worker needs to know: its brokers, its service, and its timing.
//!
//! [`WorkerConfig`] is the library's configuration; [`ConfigFile`] is the TOML file the
//! `hearth-worker` binary reads with `--config`, whose keys match the command-line flags in
//! snake_case. Defaults follow the design contract: heartbeat 2500 ms, liveness 3.

use std::time::Duration;

use hearth_proto::mdp::MAX_SERVICE_NAME;
use hearth_proto::{mmi, Limits};
use serde::Deserialize;

use crate::WorkerError;

/// Default interval between heartbeats, both ways (design contract).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(2500);
/// Default number of missed heartbeats after which a broker counts as gone.
pub const DEFAULT_LIVENESS: u32 = 3;
/// Default first reconnect delay.
pub const DEFAULT_RECONNECT_INITIAL: Duration = Duration::from_millis(100);
/// Default longest reconnect delay.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Default broker endpoint of the binary.
pub const DEFAULT_BROKER: &str = "tcp://127.0.0.1:5555";

/// How a worker process connects to its brokers and what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Broker frontends; each unit keeps one DEALER connection to each, so that both brokers
    /// of a Binary Star pair know the worker the moment either becomes active.
    pub brokers: Vec<String>,
    /// The service name sent in READY.
    pub service: String,
    /// Interval between heartbeats, sent even while a request is running.
    pub heartbeat: Duration,
    /// A broker silent for `liveness × heartbeat` is considered gone: reconnect.
    pub liveness: u32,
    /// First reconnect delay, doubled (with jitter) after each attempt that hears nothing.
    pub reconnect_initial: Duration,
    /// Ceiling of the reconnect delay.
    pub reconnect_max: Duration,
    /// Independent worker units in this process: at most this many requests run at once.
    pub concurrency: usize,
    /// Bounds applied to messages from the broker.
    pub limits: Limits,
}

impl WorkerConfig {
    /// A configuration with the default timing, one unit, for `service` on `brokers`.
    pub fn new(
        brokers: impl IntoIterator<Item = impl Into<String>>,
        service: impl Into<String>,
    ) -> Self {
        WorkerConfig {
            brokers: brokers.into_iter().map(Into::into).collect(),
            service: service.into(),
            heartbeat: DEFAULT_HEARTBEAT,
            liveness: DEFAULT_LIVENESS,
            reconnect_initial: DEFAULT_RECONNECT_INITIAL,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            concurrency: 1,
            limits: Limits::default(),
        }
    }

    /// Rejects a configuration that could not work, with a message for the operator.
    pub fn validate(&self) -> Result<(), WorkerError> {
        let bad = |msg: String| Err(WorkerError::Config(msg));
        if self.brokers.is_empty() {
            return bad("at least one broker endpoint is needed".into());
        }
        if let Some(b) = self.brokers.iter().find(|b| b.trim().is_empty()) {
            return bad(format!("empty broker endpoint {b:?}"));
        }
        if self.service.is_empty() || self.service.len() > MAX_SERVICE_NAME {
            return bad(format!(
                "service name must be 1..={MAX_SERVICE_NAME} bytes, got {:?}",
                self.service
            ));
        }
        if mmi::is_reserved(&self.service) {
            return bad(format!(
                "service name {:?} is reserved for the broker (mmi., hearth., state.)",
                self.service
            ));
        }
        if self.heartbeat.is_zero() {
            return bad("heartbeat must be greater than zero".into());
        }
        if self.liveness == 0 {
            return bad("liveness must be at least 1".into());
        }
        if self.reconnect_initial.is_zero() || self.reconnect_max < self.reconnect_initial {
            return bad("need 0 < reconnect_initial <= reconnect_max".into());
        }
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1".into());
        }
        if self.limits.max_frames < 6 || self.limits.max_frame_size == 0 {
            return bad("limits too small for an MDP request".into());
        }
        Ok(())
    }

    /// How long a broker may stay silent before the connection is reset.
    pub(crate) fn expiry(&self) -> Duration {
        self.heartbeat.saturating_mul(self.liveness)
    }
}

/// The TOML file of `hearth-worker --config FILE`: every key optional, named like the flags
/// in snake_case. Flags given on the command line override the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Broker endpoints (`--broker`, repeatable).
    pub brokers: Option<Vec<String>>,
    /// Service name (`--service`).
    pub service: Option<String>,
    /// Serve as an echo worker (`--echo`).
    pub echo: Option<bool>,
    /// Serve by running this shell command per request (`--exec`).
    pub exec: Option<String>,
    /// Exec timeout per request (`--timeout`), humantime like `30s`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Worker units (`--concurrency`).
    pub concurrency: Option<usize>,
    /// Heartbeat interval (`--heartbeat`), humantime like `2500ms`.
    #[serde(default, with = "humantime_serde")]
    pub heartbeat: Option<Duration>,
    /// Missed heartbeats before reconnecting (`--liveness`).
    pub liveness: Option<u32>,
    /// Largest frame accepted from a broker and largest exec output (`--max-frame-size`).
    pub max_frame_size: Option<usize>,
    /// First reconnect delay.
    #[serde(default, with = "humantime_serde")]
    pub reconnect_initial: Option<Duration>,
    /// Longest reconnect delay.
    #[serde(default, with = "humantime_serde")]
    pub reconnect_max: Option<Duration>,
}

impl ConfigFile {
    /// Parses the TOML text of a config file.
    pub fn parse(text: &str) -> Result<ConfigFile, toml::de::Error> {
        toml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_contract() {
        let c = WorkerConfig::new(["tcp://a:5555"], "echo");
        assert_eq!(c.heartbeat, Duration::from_millis(2500));
        assert_eq!(c.liveness, 3);
        assert_eq!(c.concurrency, 1);
        assert_eq!(c.expiry(), Duration::from_millis(7500));
        assert!(c.validate().is_ok());
    }

    type Change = Box<dyn Fn(&mut WorkerConfig)>;

    #[test]
    fn bad_configs_are_refused() {
        let ok = WorkerConfig::new(["tcp://a:5555"], "echo");
        let cases: Vec<Change> = vec![
            Box::new(|c| c.brokers.clear()),
            Box::new(|c| c.service.clear()),
            Box::new(|c| c.service = "x".repeat(256)),
            Box::new(|c| c.service = "mmi.service".into()),
            Box::new(|c| c.service = "state.set".into()),
            Box::new(|c| c.heartbeat = Duration::ZERO),
            Box::new(|c| c.liveness = 0),
            Box::new(|c| c.concurrency = 0),
            Box::new(|c| c.reconnect_max = Duration::from_millis(1)),
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut c = ok.clone();
            change(&mut c);
            assert!(c.validate().is_err(), "case {i} accepted: {c:?}");
        }
    }

    #[test]
    fn config_file_parses_the_ops_example() {
        let text = r#"
            brokers = ["tcp://hearth-a:5555", "tcp://hearth-b:5555"]
            heartbeat = "2500ms"
            liveness = 3
            timeout = "30s"
        "#;
        let file = ConfigFile::parse(text).unwrap();
        assert_eq!(file.brokers.unwrap().len(), 2);
        assert_eq!(file.heartbeat, Some(Duration::from_millis(2500)));
        assert_eq!(file.timeout, Some(Duration::from_secs(30)));
        assert!(ConfigFile::parse("heartbeet = \"1s\"").is_err());
    }
}
