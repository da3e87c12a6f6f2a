//! Where the hearth binaries a supervisor starts are.
//!
//! Two searches over one list of directories, each ending in a message that says how to
//! build what is missing:
//! * [`sibling_binary`], for the `hearth` binary: `$HEARTH_BIN_DIR`, or the directory of the
//!   running executable (an installed `hearth` must never pick up a stray build elsewhere);
//! * [`built_binary`], for tests, which run what `cargo build --workspace --bins` made and
//!   never build it themselves: `$HEARTH_BIN_DIR` (then nowhere else), the running
//!   executable's directory, the parent of a test executable's `deps/`,
//!   `$CARGO_TARGET_DIR/<profile>` and the workspace's `target/<profile>`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Env variable naming a directory that holds the binaries, overriding the search.
pub const BIN_DIR_ENV: &str = "HEARTH_BIN_DIR";

/// The binary `name` (`hearth-broker`, `hearth-worker`) beside the running executable, or
/// in `$HEARTH_BIN_DIR`.
pub fn sibling_binary(name: &str) -> Result<PathBuf> {
    let dirs = match std::env::var_os(BIN_DIR_ENV) {
        Some(dir) => vec![PathBuf::from(dir)],
        None => exe_dir().into_iter().collect(),
    };
    find(
        name,
        &dirs,
        "build them first: cargo build --release --workspace --bins \
         (or point HEARTH_BIN_DIR at their directory)",
    )
}

/// The built binary `name`, for a test (see the module comment for where it looks).
pub fn built_binary(name: &str) -> Result<PathBuf> {
    let release = profile().as_deref() == Some("release");
    let hint = format!(
        "build the binaries before the tests: `cargo build --workspace --bins{}`, or point \
         {BIN_DIR_ENV} at a directory that holds them",
        if release { " --release" } else { "" },
    );
    find(name, &test_dirs(), &hint)
}

/// The two binaries a cluster runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programs {
    /// `hearth-broker`.
    pub broker: PathBuf,
    /// `hearth-worker`.
    pub worker: PathBuf,
}

impl Programs {
    /// Both beside the running `hearth` ([`sibling_binary`]).
    pub fn siblings() -> Result<Programs> {
        Ok(Programs {
            broker: sibling_binary("hearth-broker")?,
            worker: sibling_binary("hearth-worker")?,
        })
    }

    /// Both as built for the tests ([`built_binary`]).
    pub fn built() -> Result<Programs> {
        Ok(Programs {
            broker: built_binary("hearth-broker")?,
            worker: built_binary("hearth-worker")?,
        })
    }
}

fn find(name: &str, dirs: &[PathBuf], hint: &str) -> Result<PathBuf> {
    if let Some(path) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        return Ok(path);
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(Error::BinaryNotFound {
        name: name.to_owned(),
        searched: searched.join(", "),
        hint: hint.to_owned(),
    })
}

/// The directories a test looks in, in order.
fn test_dirs() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        // An explicit override is the only place looked at: finding a different build
        // elsewhere would test something other than what was asked for.
        return vec![PathBuf::from(dir)];
    }
    let mut dirs: Vec<PathBuf> = exe_dir().into_iter().collect();
    dirs.extend(deps_parent());
    let profile = profile().unwrap_or_else(|| "debug".into());
    let root = workspace_root();
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.push(root.join(target).join(&profile));
    }
    dirs.push(root.join("target").join(&profile));
    dirs.dedup();
    dirs
}

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()?
        .parent()
        .map(Path::to_path_buf)
}

/// `target/<profile>` as seen from a test executable (`target/<profile>/deps/x`).
fn deps_parent() -> Option<PathBuf> {
    let dir = exe_dir()?;
    if dir.file_name()? != "deps" {
        return None;
    }
    dir.parent().map(Path::to_path_buf)
}

/// The profile directory name the tests were built into (`debug`, `release`, ...).
fn profile() -> Option<String> {
    deps_parent()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_where_it_looked_and_how_to_build_it() {
        let err = built_binary("no-such-hearth-binary")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("no-such-hearth-binary not found"), "{err}");
        assert!(err.contains("cargo build --workspace --bins"), "{err}");
    }

    #[test]
    fn the_test_search_ends_in_the_workspace_target_dir() {
        if std::env::var_os(BIN_DIR_ENV).is_none() {
            let dirs = test_dirs();
            let last = dirs.last().unwrap();
            assert!(
                last.starts_with(workspace_root().join("target")),
                "{dirs:?}"
            );
        }
    }
}
