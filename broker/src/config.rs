//! The broker's configuration: defaults, a TOML file (`--config`), and command-line flags,
//! in rising order of precedence.
//!
//! The defaults run a standalone broker on the loopback interface, so `hearth-broker` with
//! no arguments at all is a working broker for a first try.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::state::StateLimits;

/// Which broker this is: standalone, or the primary or backup of a pair (the wire type of
/// `hearth_proto`, so configuration, heartbeats and status speak of one enum).
pub use hearth_proto::status::Role;

/// Everything a broker needs to run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// `standalone`, `primary` or `backup`.
    pub role: Role,
    /// The ROUTER endpoint clients and workers connect to (`tcp://*:5555` for all interfaces).
    pub frontend: String,
    /// Address of the HTTP server for `/metrics`, `/healthz` and `/status`; none if absent.
    pub metrics: Option<SocketAddr>,
    /// Interval between heartbeats to each worker.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Heartbeat intervals a worker may stay silent before it is dropped.
    pub liveness: u32,
    /// How long a request may wait once its service has no worker.
    #[serde(with = "humantime_serde")]
    pub request_expiry: Duration,
    /// Largest frame accepted, in bytes; larger messages are dropped and counted. Must be
    /// more than `[state] max_request_bytes`, so that a state request at that limit is
    /// admitted and one somewhat over it still reaches the state service for its `{error}`.
    pub max_frame_size: usize,
    /// Most frames in one message.
    pub max_frames: usize,
    /// Most requests one service may hold waiting for a worker; more are dropped
    /// (`hearth_dropped_messages_total{reason="service_queue_full"}`). `max_queue` is the
    /// older name of this key.
    #[serde(alias = "max_queue")]
    pub max_waiting_per_service: usize,
    /// Most requests waiting in all for services that have no worker (names nobody serves,
    /// services whose workers are gone); more are dropped
    /// (`hearth_dropped_messages_total{reason="queue_full"}`).
    pub max_waiting: usize,
    /// Endpoint this broker binds for its Binary Star peer (primary/backup only).
    pub peer_bind: Option<String>,
    /// The peer's endpoint to connect to (primary/backup only).
    pub peer_connect: Option<String>,
    /// Interval between heartbeats to the peer.
    #[serde(with = "humantime_serde")]
    pub peer_heartbeat: Duration,
    /// PUB endpoint of the state model's change feed.
    pub publish: Option<String>,
    /// Directory of the state model's snapshot.
    pub data_dir: Option<PathBuf>,
    /// Become active even if the state model may be behind the peer's (the restart rule
    /// would make this broker wait for its peer). Risky: see the README.
    pub force_active: bool,
    /// Limits of the state model (`[state]` in the TOML file).
    pub state: StateLimits,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            role: Role::Standalone,
            frontend: "tcp://127.0.0.1:5555".into(),
            metrics: None,
            heartbeat: Duration::from_millis(2500),
            liveness: 3,
            request_expiry: Duration::from_secs(30),
            max_frame_size: hearth_proto::DEFAULT_MAX_FRAME_SIZE,
            max_frames: 64,
            max_waiting_per_service: 1000,
            max_waiting: 1000,
            peer_bind: None,
            peer_connect: None,
            peer_heartbeat: Duration::from_millis(1000),
            publish: None,
            data_dir: None,
            force_active: false,
            state: StateLimits::default(),
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML for a broker.
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    /// A value is out of range or values contradict each other.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// `hearth-broker`'s command line. Every flag overrides the same key of `--config`.
#[derive(Debug, Parser, Default)]
#[command(
    name = "hearth-broker",
    version,
    about = "hearth's Majordomo (MDP/0.1) broker"
)]
pub struct BrokerArgs {
    /// TOML file with the same keys as the flags (snake_case).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// standalone (default), primary or backup.
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub role: Option<Role>,
    /// ROUTER endpoint for clients and workers [default: tcp://127.0.0.1:5555].
    #[arg(long, value_name = "ENDPOINT")]
    pub frontend: Option<String>,
    /// HTTP address for /metrics, /healthz and /status, e.g. 127.0.0.1:9555.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Heartbeat interval to workers [default: 2500ms].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub heartbeat: Option<Duration>,
    /// Missed heartbeats before a worker is dropped [default: 3].
    #[arg(long, value_name = "N")]
    pub liveness: Option<u32>,
    /// How long a request waits once its service has no worker [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub request_expiry: Option<Duration>,
    /// Largest frame accepted, in bytes; must exceed [state] max_request_bytes (4194304 by
    /// default) [default: 8388608].
    #[arg(long, value_name = "BYTES")]
    pub max_frame_size: Option<usize>,
    /// Most frames in one message [default: 64].
    #[arg(long, value_name = "N")]
    pub max_frames: Option<usize>,
    /// Most requests one service holds waiting for a worker; more are dropped and counted
    /// [default: 1000].
    #[arg(long, value_name = "N", alias = "max-queue")]
    pub max_waiting_per_service: Option<usize>,
    /// Most requests waiting in all for services with no worker; more are dropped and
    /// counted [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_waiting: Option<usize>,
    /// Endpoint to bind for the Binary Star peer.
    #[arg(long, value_name = "ENDPOINT")]
    pub peer_bind: Option<String>,
    /// The Binary Star peer's endpoint.
    #[arg(long, value_name = "ENDPOINT")]
    pub peer_connect: Option<String>,
    /// Heartbeat interval to the peer [default: 1000ms].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub peer_heartbeat: Option<Duration>,
    /// PUB endpoint for the state model's change feed.
    #[arg(long, value_name = "ENDPOINT")]
    pub publish: Option<String>,
    /// Directory for the state model's snapshot (without it, the state model lives in
    /// memory only and is lost when the broker stops).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Become active even if the state model may be behind the peer's. Only when the peer
    /// is known to be lost for good: acknowledged writes only the peer held are then gone.
    #[arg(long)]
    pub force_active: bool,
}

fn parse_role(name: &str) -> Result<Role, hearth_proto::status::UnknownName> {
    name.parse()
}

impl BrokerConfig {
    /// Reads a TOML configuration file; missing keys keep their defaults.
    pub fn from_file(path: &Path) -> Result<BrokerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        BrokerConfig::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<BrokerConfig, toml::de::Error> {
        toml::from_str(text)
    }

    /// Defaults, then `--config`, then flags; validated.
    pub fn from_args(args: BrokerArgs) -> Result<BrokerConfig, ConfigError> {
        let mut config = match &args.config {
            Some(path) => BrokerConfig::from_file(path)?,
            None => BrokerConfig::default(),
        };
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(v) = args.$field { config.$field = v; } )* };
        }
        macro_rules! take_opt {
            ($($field:ident),*) => { $( if args.$field.is_some() { config.$field = args.$field; } )* };
        }
        take!(
            role,
            frontend,
            heartbeat,
            liveness,
            request_expiry,
            max_frame_size,
            max_frames,
            max_waiting_per_service,
            max_waiting,
            peer_heartbeat
        );
        take_opt!(metrics, peer_bind, peer_connect, publish, data_dir);
        config.force_active |= args.force_active;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |s: &str| Err(ConfigError::Invalid(s.to_owned()));
        if self.frontend.trim().is_empty() {
            return invalid("frontend must be a ZeroMQ endpoint such as tcp://*:5555");
        }
        if self.heartbeat < Duration::from_millis(10) || self.heartbeat > Duration::from_secs(3600)
        {
            return invalid("heartbeat must be between 10ms and 1h");
        }
        if self.liveness == 0 || self.liveness > 100 {
            return invalid("liveness must be between 1 and 100");
        }
        if self.request_expiry.is_zero() {
            return invalid("request_expiry must be more than zero");
        }
        if self.max_frame_size == 0 || self.max_frames < 4 {
            return invalid("max_frame_size must be at least 1 and max_frames at least 4");
        }
        if self.max_waiting_per_service == 0 || self.max_waiting == 0 {
            return invalid("max_waiting_per_service and max_waiting must be at least 1");
        }
        match (self.role, &self.peer_bind, &self.peer_connect) {
            (Role::Standalone, None, None) => {}
            (Role::Standalone, _, _) => {
                return invalid(
                    "peer_bind and peer_connect apply only to --role primary or backup",
                );
            }
            (_, Some(bind), Some(connect))
                if !bind.trim().is_empty() && !connect.trim().is_empty() => {}
            _ => {
                return invalid(
                    "--role primary and backup need both --peer-bind and --peer-connect",
                )
            }
        }
        if let Err(e) = self.state.validate() {
            return Err(ConfigError::Invalid(format!("[state] {}", e.0)));
        }
        if self.max_frame_size <= self.state.max_request_bytes {
            // DESIGN.md: the frontend's frame limit admits a state request at its limit, and
            // a request over it is answered with an `{error}`; a frame limit at or below the
            // request limit would drop such requests unanswered instead.
            return Err(ConfigError::Invalid(format!(
                "max_frame_size ({}) must be more than [state] max_request_bytes ({}), or the \
                 frontend drops unanswered the state requests the state model would take or \
                 answer with an {{error}}; raise max_frame_size (default {}) or lower [state] \
                 max_request_bytes",
                self.max_frame_size,
                self.state.max_request_bytes,
                hearth_proto::DEFAULT_MAX_FRAME_SIZE
            )));
        }
        if self.peer_heartbeat < Duration::from_millis(10)
            || self.peer_heartbeat > Duration::from_secs(60)
        {
            return invalid("peer_heartbeat must be between 10ms and 60s");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        BrokerConfig::default().validate().unwrap();
    }

    #[test]
    fn toml_keys_and_humantime_durations() {
        let config = BrokerConfig::from_toml(
            "frontend = \"tcp://*:6000\"\nheartbeat = \"500ms\"\nliveness = 5\nrequest_expiry = \"2m\"\nmetrics = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        assert_eq!(config.frontend, "tcp://*:6000");
        assert_eq!(config.heartbeat, Duration::from_millis(500));
        assert_eq!(config.liveness, 5);
        assert_eq!(config.request_expiry, Duration::from_secs(120));
        assert_eq!(config.metrics, Some("127.0.0.1:9000".parse().unwrap()));
    }

    #[test]
    fn waiting_caps_from_file_and_flags() {
        let config =
            BrokerConfig::from_toml("max_waiting_per_service = 10\nmax_waiting = 20\n").unwrap();
        assert_eq!(
            (config.max_waiting_per_service, config.max_waiting),
            (10, 20)
        );
        // The older key still reads.
        let config = BrokerConfig::from_toml("max_queue = 7\n").unwrap();
        assert_eq!(config.max_waiting_per_service, 7);
        let args = BrokerArgs::try_parse_from([
            "hearth-broker",
            "--max-waiting-per-service",
            "3",
            "--max-waiting",
            "4",
        ])
        .unwrap();
        let config = BrokerConfig::from_args(args).unwrap();
        assert_eq!((config.max_waiting_per_service, config.max_waiting), (3, 4));
        let zero = BrokerArgs::try_parse_from(["hearth-broker", "--max-waiting", "0"]).unwrap();
        assert!(BrokerConfig::from_args(zero).is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(BrokerConfig::from_toml("frontnd = \"tcp://*:1\"").is_err());
    }

    #[test]
    fn flags_override_file() {
        let dir = std::env::temp_dir().join(format!("hearth-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.toml");
        std::fs::write(&path, "frontend = \"tcp://*:6000\"\nliveness = 5\n").unwrap();
        let args = BrokerArgs {
            config: Some(path),
            liveness: Some(7),
            ..Default::default()
        };
        let config = BrokerConfig::from_args(args).unwrap();
        assert_eq!(config.frontend, "tcp://*:6000");
        assert_eq!(config.liveness, 7);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_values_are_rejected() {
        let bad = [
            BrokerConfig {
                liveness: 0,
                ..Default::default()
            },
            BrokerConfig {
                heartbeat: Duration::from_millis(1),
                ..Default::default()
            },
            BrokerConfig {
                max_frames: 2,
                ..Default::default()
            },
            BrokerConfig {
                frontend: " ".into(),
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn the_frame_limit_must_exceed_the_state_request_limit() {
        let defaults = BrokerConfig::default();
        assert_eq!(defaults.max_frame_size, 8 << 20);
        assert!(defaults.max_frame_size > defaults.state.max_request_bytes);
        // An older configuration's 1 MiB, and a frame limit equal to the request limit, are
        // refused with a message that names both keys and the way out.
        for size in [1 << 20, 4 << 20] {
            let text = format!("max_frame_size = {size}\n");
            let err = BrokerConfig::from_toml(&text)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("max_frame_size ({size})")), "{err}");
            assert!(err.contains("max_request_bytes (4194304)"), "{err}");
            assert!(err.contains("default 8388608"), "{err}");
        }
        // The same from the command line.
        let args =
            BrokerArgs::try_parse_from(["hearth-broker", "--max-frame-size", "4194304"]).unwrap();
        assert!(BrokerConfig::from_args(args).is_err());
        // One byte over the request limit is enough; so is lowering the request limit.
        BrokerConfig::from_toml("max_frame_size = 4194305\n")
            .unwrap()
            .validate()
            .unwrap();
        BrokerConfig::from_toml("max_frame_size = 1048576\n[state]\nmax_request_bytes = 524288\n")
            .unwrap()
            .validate()
            .unwrap();
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = BrokerConfig::from_file(Path::new("/nonexistent/hearth.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/hearth.toml"));
    }
}
