//! The broker's HTTP side: `/metrics` (Prometheus text), `/healthz` and `/status` (JSON).
//!
//! It runs on its own thread with a single-threaded tokio runtime and never touches the
//! reactor's sockets: it reads the [`Registry`] and the [`StatusBoard`] the reactor refreshes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};
use tracing::warn;

use crate::reactor::StatusBoard;

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
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free port) and serves on a new thread.
    pub fn start(
        addr: SocketAddr,
        registry: Registry,
        board: StatusBoard,
        started: Instant,
        stall_after: Duration,
    ) -> std::io::Result<HttpServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let state = AppState {
            registry,
            board,
            started,
            stall_after,
        };
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/status", get(status))
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
