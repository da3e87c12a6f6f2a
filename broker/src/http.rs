//! The broker's HTTP side: `/metrics` (Prometheus text), `/healthz`, `/status` (JSON) and
//! `/conflicts` (JSON: the state changes this broker gave up after its pair diverged).
//!
//! It runs on its own thread with a single-threaded tokio runtime and never touches the
//! reactor's sockets: it reads the [`Registry`] and the [`StatusBoard`] the reactor refreshes.
//! While the board is stale (see [`crate::board`]) it says so: `/status` shows the state as
//! `unknown` (with `stale`, `stale_reason` and `last_state`), `/healthz` answers 503, and
//! `/metrics` exports `hearth_bstar_state` 0 for every state and `hearth_status_stale 1`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};
use tracing::warn;

use crate::board::StatusBoard;
use crate::core::ConflictRecord;
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
    /// The state store, for `/conflicts` (none without a data dir).
    store: Option<Arc<Store>>,
}

/// What the HTTP server reads.
pub struct HttpSources {
    /// The metrics.
    pub registry: Registry,
    /// The status board.
    pub board: StatusBoard,
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
    match state.board.freshness(Instant::now()).stale {
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stale: {}\n", why.describe()),
        )
            .into_response(),
        None => (StatusCode::OK, "ok\n").into_response(),
    }
}

async fn status(State(state): State<AppState>) -> Response {
    let Some(view) = state.board.view(Instant::now()) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "status unavailable\n").into_response();
    };
    let mut json = match serde_json::to_value(&view.status) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return (StatusCode::INTERNAL_SERVER_ERROR, "status unavailable\n").into_response(),
    };
    let freshness = view.freshness;
    json.insert("stale".into(), freshness.stale.is_some().into());
    json.insert(
        "board_age_ms".into(),
        (freshness.age.as_millis() as u64).into(),
    );
    if let Some(why) = freshness.stale {
        // A stale board vouches for no Binary Star state: `unknown` is none of the four,
        // so nothing that looks for `active` (or `passive`) finds it.
        json.insert("last_state".into(), view.status.state.as_str().into());
        json.insert("state".into(), "unknown".into());
        json.insert("stale_reason".into(), why.describe().into());
    }
    axum::Json(serde_json::Value::Object(json)).into_response()
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
