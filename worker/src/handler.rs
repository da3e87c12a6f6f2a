//! What a worker does with a request: the [`Handler`] trait, the echo handler, and the
//! `{error: ...}` reply shape.
//!
//! A handler gets the request body (one or more opaque frames) and returns the reply body.
//! It runs on its unit's executor thread, so it may block; the unit keeps heartbeating
//! meanwhile. A handler that panics does not take the unit down: the panic is caught and the
//! client gets the error reply `{"error": "handler panicked"}` (one Bencode frame), the same
//! shape hearth uses for state-model errors.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::Frame;

/// Turns a request body into a reply body. Shared by every unit of a worker, hence
/// `Send + Sync`.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. An empty result is sent as one empty frame, because RFC 7
    /// requires at least one body frame.
    fn handle(&self, body: Vec<Frame>) -> Vec<Frame>;

    /// Whether the handler is quick and never blocks (microseconds, no I/O), so the unit
    /// may run it on its own thread instead of handing it to its executor thread. That
    /// saves two thread switches per request and the executor thread itself; heartbeats
    /// wait while it runs, so say yes only for handlers that cannot take long.
    fn is_inline(&self) -> bool {
        false
    }
}

impl<F> Handler for F
where
    F: Fn(Vec<Frame>) -> Vec<Frame> + Send + Sync + 'static,
{
    fn handle(&self, body: Vec<Frame>) -> Vec<Frame> {
        self(body)
    }
}

/// The echo service: replies with the request body unchanged. The smallest useful worker,
/// and what `hearth-worker --echo` serves. It runs inline on the unit's thread.
pub fn echo() -> impl Handler {
    Echo
}

struct Echo;

impl Handler for Echo {
    fn handle(&self, body: Vec<Frame>) -> Vec<Frame> {
        body
    }

    fn is_inline(&self) -> bool {
        true
    }
}

/// The one-frame error reply `{"error": text}` in Bencode, as hearth answers every failure
/// that is not the broker's business (exec failures, handler panics, state-model errors).
pub fn error_reply(text: &str) -> Frame {
    let mut dict = BTreeMap::new();
    dict.insert("error", text);
    // Serialising a map of strings cannot fail; keep a hand-written form just in case.
    bendy::serde::to_bytes(&dict)
        .unwrap_or_else(|_| format!("d5:error{}:{}e", text.len(), text).into_bytes())
}

/// The text of the error reply sent when a handler panics.
pub const PANIC_ERROR: &str = "handler panicked";

/// Runs `handler` so that neither a panic nor an empty reply can break the protocol.
pub(crate) fn run_guarded(handler: &dyn Handler, body: Vec<Frame>) -> Vec<Frame> {
    match catch_unwind(AssertUnwindSafe(|| handler.handle(body))) {
        Ok(reply) if reply.is_empty() => vec![Vec::new()],
        Ok(reply) => reply,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "handler panicked; replying with an error");
            vec![error_reply(PANIC_ERROR)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_is_a_bencode_dict() {
        assert_eq!(error_reply("boom"), b"d5:error4:boome");
    }

    #[test]
    fn echo_returns_the_body() {
        let body = vec![b"a".to_vec(), Vec::new(), b"c".to_vec()];
        assert_eq!(echo().handle(body.clone()), body);
    }

    #[test]
    fn panics_and_empty_replies_are_contained() {
        let panicking = |_: Vec<Frame>| -> Vec<Frame> { panic!("bad handler") };
        assert_eq!(
            run_guarded(&panicking, vec![b"x".to_vec()]),
            vec![b"d5:error16:handler panickede".to_vec()]
        );
        let empty = |_: Vec<Frame>| Vec::new();
        assert_eq!(run_guarded(&empty, vec![b"x".to_vec()]), vec![Vec::new()]);
    }
}
