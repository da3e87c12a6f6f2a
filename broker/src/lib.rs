//! hearth's broker: a Majordomo (MDP/0.1, ZeroMQ RFC 7) broker for the home.
//!
//! The pieces, from the wire inwards:
//! * [`reactor`]: the one thread that owns the sockets and polls them;
//! * [`dispatch`]: the broker's rules as a pure state machine (no sockets, no clock);
//! * [`metrics`] and [`http`]: Prometheus metrics, `/healthz` and `/status`, read from the
//!   [`board`] the reactor publishes;
//! * [`config`]: defaults, TOML file and flags.
//!
//! [`spawn`] starts a broker on background threads and returns a [`BrokerHandle`]; the
//! `hearth-broker` binary is a thin shell around it, and tests start brokers the same way.

pub mod board;
pub mod bstar;
pub mod config;
pub mod core;
pub mod dispatch;
pub mod effect;
pub mod http;
pub mod metrics;
pub mod pair;
pub mod peer_link;
pub mod reactor;
pub mod state;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Instant;

use hearth_proto::status::BrokerStatus;
use hearth_proto::Limits;
use prometheus::Registry;

use board::StatusBoard;
use bstar::PairRole;
pub use config::{BrokerArgs, BrokerConfig, Role};
use core::{Core, CoreParts, Identification, PairSide};
use dispatch::{DispatchConfig, Dispatcher};
use http::HttpServer;
use metrics::Metrics;
use pair::Pair;
use peer_link::PeerLink;
use reactor::Reactor;

/// Why a broker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A ZeroMQ call failed (a bind to a busy port, a bad endpoint).
    #[error("{context}: {source}")]
    Zmq { context: String, source: zmq::Error },
    /// The metrics HTTP server could not start.
    #[error("metrics server on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A metric could not be registered.
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A thread could not be started or ended by panicking.
    #[error("broker thread: {0}")]
    Thread(String),
    /// The state model's data dir cannot be used (locked, corrupt, of an unknown format).
    #[error(transparent)]
    State(#[from] state::open::OpenError),
    /// The state model's writer failed: nothing later is durable, so the broker stops.
    #[error("state store: {0}")]
    Store(String),
}

fn zmq_err(context: impl Into<String>) -> impl FnOnce(zmq::Error) -> BrokerError {
    let context = context.into();
    move |source| BrokerError::Zmq { context, source }
}

/// The frontend's `ZMQ_MAXMSGSIZE`: the most bytes libzmq takes in for one frame before it
/// drops the connection. Twice `max_frame_size` (a frame between the two is counted as
/// `frame_too_large` and dropped), at least 16 MiB.
pub fn frontend_hard_cap(max_frame_size: usize) -> i64 {
    max_frame_size
        .saturating_mul(2)
        .max(16 << 20)
        .min(i64::MAX as usize) as i64
}

/// A running broker. Stop it with [`BrokerHandle::shutdown`]; dropping it stops it too.
pub struct BrokerHandle {
    frontend: String,
    control: Mutex<zmq::Socket>,
    reactor: Option<JoinHandle<Result<(), BrokerError>>>,
    http: Option<HttpServer>,
    registry: Registry,
    board: StatusBoard,
}

/// Gives every broker in a process its own control endpoint.
static NEXT_BROKER: AtomicUsize = AtomicUsize::new(0);

/// Starts a broker: binds its sockets (errors such as a busy port come back here), then
/// runs the reactor and, if configured, the HTTP server on their own threads.
pub fn spawn(config: BrokerConfig) -> Result<BrokerHandle, BrokerError> {
    config.validate()?;
    let started = Instant::now();
    let context = zmq::Context::new();
    let frontend = context
        .socket(zmq::ROUTER)
        .map_err(zmq_err("frontend socket"))?;
    frontend
        .set_router_mandatory(true)
        .map_err(zmq_err("ZMQ_ROUTER_MANDATORY"))?;
    frontend.set_linger(500).map_err(zmq_err("ZMQ_LINGER"))?;
    // Cap what libzmq buffers for one frame well above the limit the decoder counts, so an
    // oversized frame is usually counted and dropped, and an absurd one cannot eat memory
    // (libzmq drops the connection instead). Twice the frame limit, at least 16 MiB: with
    // the default 8 MiB frame limit, the same 16 MiB as before that default was raised.
    let hard_cap = frontend_hard_cap(config.max_frame_size);
    frontend
        .set_maxmsgsize(hard_cap)
        .map_err(zmq_err("ZMQ_MAXMSGSIZE"))?;
    frontend
        .bind(&config.frontend)
        .map_err(zmq_err(format!("bind frontend {}", config.frontend)))?;
    let bound = frontend
        .get_last_endpoint()
        .map_err(zmq_err("frontend endpoint"))?
        .unwrap_or_else(|raw| String::from_utf8_lossy(&raw).into_owned());

    let control_endpoint = format!(
        "inproc://hearth-broker-control-{}",
        NEXT_BROKER.fetch_add(1, Ordering::Relaxed)
    );
    let control = context
        .socket(zmq::PAIR)
        .map_err(zmq_err("control socket"))?;
    control
        .bind(&control_endpoint)
        .map_err(zmq_err("bind control"))?;
    let control_sender = context
        .socket(zmq::PAIR)
        .map_err(zmq_err("control socket"))?;
    control_sender
        .connect(&control_endpoint)
        .map_err(zmq_err("connect control"))?;

    let registry = Registry::new();
    let metrics = Metrics::new(&registry, config.role)?;
    let broker_id = NEXT_BROKER.fetch_add(1, Ordering::Relaxed);
    // The state model first: a long load must not look like a stall to the pair driver,
    // which starts its clock only afterwards.
    let feed = match &config.publish {
        Some(endpoint) => Some(open_feed(&context, endpoint)?),
        None => None,
    };
    let opened = state::open::open(
        config.data_dir.as_deref(),
        config.state.clone(),
        feed.is_some(),
        started,
    )?;
    let (pair, link) = match config.role {
        Role::Standalone => (None, None),
        Role::Primary | Role::Backup => {
            let (mut side, link) = open_pair_side(&context, &config, broker_id, Instant::now())?;
            side.restore_term(opened.term);
            (Some(side), Some(link))
        }
    };
    let opened_store = opened.store.clone();
    let (writer, flushed) = match &opened.store {
        Some(store) => {
            let (writer, flushed) = reactor::start_writer(&context, store.clone(), broker_id)?;
            (Some(writer), Some(flushed))
        }
        None => (None, None),
    };
    let board = metrics.board().clone();
    let dispatch_config = DispatchConfig {
        heartbeat: config.heartbeat,
        liveness: config.liveness,
        request_expiry: config.request_expiry,
        max_waiting_per_service: config.max_waiting_per_service,
        max_waiting: config.max_waiting,
        ..DispatchConfig::default()
    };
    let dispatcher = Dispatcher::new(dispatch_config, metrics.clone(), started);
    let id = Identification {
        role: config.role,
        frontend: bound.clone(),
        publish: feed.as_ref().map(|(_, bound)| bound.clone()),
        started,
    };
    let core = Core::new(CoreParts {
        dispatcher,
        pair,
        metrics: metrics.clone(),
        id,
        state: opened.state,
        peer_heartbeat: config.peer_heartbeat,
        force_active: config.force_active,
    });
    // A frozen active's peer takes over no sooner than two peer heartbeats after the
    // active's last one, which the reactor, due at least once a heartbeat, sent no sooner
    // than one heartbeat before its deadline: stale well before that.
    let stale_after = match config.role {
        Role::Standalone => board::STALE_AFTER,
        Role::Primary | Role::Backup => board::STALE_AFTER.min(config.peer_heartbeat / 2),
    };
    board.set_stale_after(stale_after);
    board.publish(core.status(started));
    let now = Instant::now();
    board.confirm(now, now, core.sure_until(now));

    let http = match config.metrics {
        Some(addr) => {
            let server = HttpServer::start(
                addr,
                http::HttpSources {
                    registry: registry.clone(),
                    board: board.clone(),
                    store: opened_store.clone(),
                },
            )
            .map_err(|source| BrokerError::Http { addr, source })?;
            Some(server)
        }
        None => None,
    };

    let reactor = Reactor {
        frontend,
        control,
        core,
        limits: Limits {
            max_frames: config.max_frames,
            max_frame_size: config.max_frame_size,
        },
        metrics,
        board: board.clone(),
        started,
        link,
        feed: feed.map(|(socket, _)| socket),
        writer,
        flushed,
    };
    let thread = std::thread::Builder::new()
        .name("hearth-reactor".into())
        .spawn(move || {
            let result = reactor.run();
            // The context is dropped here, after the sockets: pending DISCONNECTs get their linger.
            drop(context);
            result
        })
        .map_err(|e| BrokerError::Thread(e.to_string()))?;
    tracing::info!(frontend = %bound, metrics = ?http.as_ref().map(HttpServer::addr), role = %config.role, "broker started");
    Ok(BrokerHandle {
        frontend: bound,
        control: Mutex::new(control_sender),
        reactor: Some(thread),
        http,
        registry,
        board,
    })
}

/// Binds the change feed's PUB socket; returns it with the endpoint as bound.
fn open_feed(context: &zmq::Context, endpoint: &str) -> Result<(zmq::Socket, String), BrokerError> {
    let socket = context.socket(zmq::PUB).map_err(zmq_err("feed socket"))?;
    socket.set_linger(0).map_err(zmq_err("ZMQ_LINGER"))?;
    // A slow subscriber loses messages beyond this (and resyncs on the gap); the broker
    // never waits for one.
    socket.set_sndhwm(100_000).map_err(zmq_err("ZMQ_SNDHWM"))?;
    socket
        .bind(endpoint)
        .map_err(zmq_err(format!("bind change feed {endpoint}")))?;
    let bound = socket
        .get_last_endpoint()
        .map_err(zmq_err("feed endpoint"))?
        .unwrap_or_else(|raw| String::from_utf8_lossy(&raw).into_owned());
    Ok((socket, bound))
}

/// Opens the peer link and starts the pair driver for a primary or backup.
fn open_pair_side(
    context: &zmq::Context,
    config: &BrokerConfig,
    id: usize,
    now: Instant,
) -> Result<(PairSide, PeerLink), BrokerError> {
    let (Some(bind), Some(connect)) = (&config.peer_bind, &config.peer_connect) else {
        return Err(config::ConfigError::Invalid(
            "primary and backup need peer_bind and peer_connect".into(),
        )
        .into());
    };
    let link = PeerLink::open(context, bind, connect, id, config.peer_heartbeat)?;
    let role = if config.role == Role::Primary {
        PairRole::Primary
    } else {
        PairRole::Backup
    };
    // A random start-up number: beat numbers of this run never match an earlier run's.
    let epoch = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    };
    let pair = Pair::new(role, config.peer_heartbeat, now, epoch);
    Ok((PairSide::new(pair, role, epoch, connect), link))
}

impl BrokerHandle {
    /// The frontend endpoint as bound (a `tcp://host:*` wildcard resolved to its port).
    pub fn frontend(&self) -> &str {
        &self.frontend
    }

    /// The HTTP address actually bound, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpServer::addr)
    }

    /// The broker's metrics registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The status as last published by the reactor (at once on a change of Binary Star
    /// state, within ~100 ms of any other change), whatever its freshness.
    pub fn status(&self) -> BrokerStatus {
        self.board.status()
    }

    /// The status board, with its freshness (see [`board`]).
    pub fn board(&self) -> &StatusBoard {
        &self.board
    }

    /// Whether the reactor thread is still running.
    pub fn is_running(&self) -> bool {
        self.reactor.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops taking requests, sends DISCONNECT to every worker, and waits for the threads.
    pub fn shutdown(mut self) -> Result<(), BrokerError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), BrokerError> {
        if let Ok(control) = self.control.lock() {
            // The reactor may already be gone (it failed); then there is nobody to tell.
            let _ = control.send(&b"STOP"[..], zmq::DONTWAIT);
        }
        let result = match self.reactor.take() {
            Some(thread) => match thread.join() {
                Ok(result) => result,
                Err(_) => Err(BrokerError::Thread("reactor panicked".into())),
            },
            None => Ok(()),
        };
        if let Some(http) = self.http.take() {
            http.stop();
        }
        result
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
