//! Where the built hearth binaries are.
//!
//! The tests run the binaries `cargo build --workspace --bins` made, never building them
//! themselves: a test executable lives in `target/<profile>/deps/`, the binaries one level
//! up in `target/<profile>/`. Looked at in order:
//! 1. `HEARTH_BIN_DIR`, if set (binaries from elsewhere, e.g. an installed release);
//! 2. the parent of the test executable's `deps/` directory;
//! 3. `$CARGO_TARGET_DIR/<profile>`, if set;
//! 4. the workspace's `target/<profile>`.

use std::path::{Path, PathBuf};

/// Env variable naming a directory that holds the binaries, overriding the search.
pub const BIN_DIR_ENV: &str = "HEARTH_BIN_DIR";

/// The path of the built binary `name` (e.g. `hearth-broker`). Panics with a message that
/// says how to build it when it cannot be found.
pub fn bin_path(name: &str) -> PathBuf {
    let candidates = candidate_dirs();
    for dir in &candidates {
        let path = dir.join(name);
        if path.is_file() {
            return path;
        }
    }
    let release = profile().as_deref() == Some("release");
    let searched: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    panic!(
        "binary `{name}` not found (looked in: {}). Build the binaries before the chaos tests: \
         `cargo build --workspace --bins{}`, or point {BIN_DIR_ENV} at a directory that holds them.",
        searched.join(", "),
        if release { " --release" } else { "" },
    );
}

/// The directories searched, in order; only the first one that exists is kept per source.
fn candidate_dirs() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        // An explicit override is the only place looked at: finding a different build
        // elsewhere would test something other than what was asked for.
        return vec![PathBuf::from(dir)];
    }
    let mut dirs = Vec::new();
    if let Some(dir) = exe_profile_dir() {
        dirs.push(dir);
    }
    let profile = profile().unwrap_or_else(|| "debug".into());
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        let target = PathBuf::from(target);
        let target = if target.is_relative() {
            workspace_root().join(target)
        } else {
            target
        };
        dirs.push(target.join(&profile));
    }
    dirs.push(workspace_root().join("target").join(&profile));
    dirs.dedup();
    dirs
}

/// `target/<profile>` as seen from the running test executable (`target/<profile>/deps/x`).
fn exe_profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    if deps.file_name()? != "deps" {
        return None;
    }
    deps.parent().map(Path::to_path_buf)
}

/// The profile directory name the tests were built into (`debug`, `release`, ...).
fn profile() -> Option<String> {
    exe_profile_dir()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
