//! The broker's HTTP side: `/metrics` (Prometheus text), `/healthz`, `/status` (JSON) and
//! `/conflicts` (JSON: the state changes this broker gave up after its pair diverged).
//!
//! It runs on its own thread with a single-threaded tokio runtime and never touches the
//! reactor's sockets: it reads the [`Registry`] and the [`StatusBoard`] the reactor refreshes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};
use tracing::warn;

use crate::core::ConflictRecord;
use crate::reactor::StatusBoard;
use crate::state::store::Store;

/// A running HTTP server; stopped by [`HttpServer::stop`] or on drop.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone)]
struct AppState {
    registry: Registry,
    board: StatusBoard,
    started: Instant,
    /// The reactor is considered stalled when it has not gone round its loop for this long.
    stall_after: Duration,
    /// The state store, for `/conflicts` (none without a data dir).
    store: Option<Arc<Store>>,
}

/// What the HTTP server reads.
pub struct HttpSources {
    /// The metrics.
    pub registry: Registry,
    /// The status board.
    pub board: StatusBoard,
    /// When the broker started.
    pub started: Instant,
    /// When the reactor counts as stalled.
    pub stall_after: Duration,
    /// The state store, if there is a data dir.
    pub store: Option<Arc<Store>>,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free port) and serves on a new thread.
    pub fn start(addr: SocketAddr, sources: HttpSources) -> std::io::Result<HttpServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let state = AppState {
            registry: sources.registry,
            board: sources.board,
            started: sources.started,
            stall_after: sources.stall_after,
            store: sources.store,
        };
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/status", get(status))
            .route("/conflicts", get(conflicts))
            .with_state(state);
        let thread = std::thread::Builder::new()
            .name("hearth-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            warn!(error = %e, "metrics listener unusable");
                            return;
                        }
                    };
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    });
                    if let Err(e) = serve.await {
                        warn!(error = %e, "metrics server failed");
                    }
                });
            })?;
        Ok(HttpServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut buf) {
        Ok(()) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    let last = Duration::from_millis(state.board.last_loop_ms.load(Ordering::Relaxed));
    let since = state.started.elapsed().saturating_sub(last);
    if since > state.stall_after {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("reactor stalled for {since:?}\n"),
        )
            .into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn status(State(state): State<AppState>) -> Response {
    let status = match state.board.status.lock() {
        Ok(s) => s.clone(),
        Err(_) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "status unavailable\n").into_response()
        }
    };
    axum::Json(status).into_response()
}

/// One conflict record as `/conflicts` shows it.
#[derive(serde::Serialize)]
struct ConflictView {
    at_ms: u64,
    common: u64,
    seq: u64,
    term: u64,
    key: String,
    cause: hearth_proto::state::Cause,
    /// The value's Bencode as text where it is UTF-8, else in hex.
    value: Option<String>,
    value_only: bool,
}

async fn conflicts(State(state): State<AppState>) -> Response {
    let Some(store) = state.store.clone() else {
        return axum::Json(Vec::<ConflictView>::new()).into_response();
    };
    let records = match tokio::task::spawn_blocking(move || store.conflicts()).await {
        Ok(Ok(records)) => records,
        Ok(Err(e)) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let views: Vec<ConflictView> = records
        .iter()
        .filter_map(|bytes| ConflictRecord::decode(bytes).ok())
        .map(|r| ConflictView {
            at_ms: r.at_ms,
            common: r.common,
            seq: r.change.seq,
            term: r.change.term,
            key: r.change.key,
            cause: r.change.cause,
            value: r.change.value.map(|v| match String::from_utf8(v) {
                Ok(text) => text,
                Err(e) => e.into_bytes().iter().map(|b| format!("{b:02x}")).collect(),
            }),
            value_only: r.value_only,
        })
        .collect();
    axum::Json(views).into_response()
}
