//! Where the built hearth binaries are: `hearth_supervise::built_binary` (see it for the
//! search order), with a test's manners: a binary that is not there fails the test at once,
//! saying how to build it. The tests never build the binaries themselves.

use std::path::PathBuf;

/// Env variable naming a directory that holds the binaries, overriding the search.
pub use hearth_supervise::BIN_DIR_ENV;

/// The path of the built binary `name` (e.g. `hearth-broker`). Panics with a message that
/// says how to build it when it cannot be found.
pub fn bin_path(name: &str) -> PathBuf {
    hearth_supervise::built_binary(name).unwrap_or_else(|e| panic!("{e}"))
}
