//! Ctrl-C and SIGTERM for a supervisor: turned into a flag its loops read, so that it stops
//! its children in order (workers first, then brokers) instead of dying at once and leaving
//! the kernel to signal them.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGINT or SIGTERM once [`install_stop_signals`] ran.
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into the flag [`stop_requested`] reads.
pub fn install_stop_signals() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether SIGINT or SIGTERM arrived since [`install_stop_signals`].
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}
