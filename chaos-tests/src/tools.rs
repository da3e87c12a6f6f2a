//! External tools a test needs (systemd-analyze, promtool, lintian, python3, ...): found, or
//! the test is skipped with a word on how to install them, except in CI, where every check
//! must run and a missing tool fails the test.
//!
//! `tools/test-deps.sh` installs every tool the tests use; CI runs it first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Env variable whose presence (any value) means "this is CI": a missing tool is a failure.
pub const CI_ENV: &str = "CI";

/// The path of `tool` if it is an executable on `PATH`. If it is not: panics in CI (env
/// `CI` set), since CI must run every check; otherwise prints
/// `SKIPPED: <tool> not installed; tools/test-deps.sh installs it` and returns None, and the
/// caller returns early.
pub fn require(tool: &str) -> Option<PathBuf> {
    match find_on_path(tool) {
        Some(path) => Some(path),
        None => {
            missing(tool);
            None
        }
    }
}

/// Whether `what` (a library or module rather than a program, e.g. pyzmq) is usable: runs
/// `program args...` (found on `PATH`) and takes exit status 0 as yes. When it is not,
/// behaves as [`require`] does for a missing tool: panics in CI, prints `SKIPPED: ...` and
/// returns false elsewhere.
pub fn require_probe(what: &str, program: &str, args: &[&str]) -> bool {
    let works = find_on_path(program).is_some_and(|path| {
        Command::new(path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !works {
        missing(what);
    }
    works
}

/// Panics in CI, prints the skip line elsewhere.
fn missing(what: &str) {
    if std::env::var_os(CI_ENV).is_some() {
        panic!(
            "{what} is not installed, and CI ({CI_ENV} is set) must run every check: \
             run tools/test-deps.sh first"
        );
    }
    eprintln!("SKIPPED: {what} not installed; tools/test-deps.sh installs it");
}

/// The first executable file named `tool` in the directories of `PATH` (or `tool` itself,
/// if it is a path to an executable file).
pub fn find_on_path(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        let path = Path::new(tool);
        return is_executable(path).then(|| path.to_path_buf());
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|dir| dir.join(tool))
        .find(|path| is_executable(path))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_not_a_made_up_tool() {
        assert!(find_on_path("sh").is_some());
        assert!(find_on_path("hearth-no-such-tool-exists").is_none());
        assert!(find_on_path("/bin/sh").is_some());
        assert!(find_on_path("/nonexistent/sh").is_none());
    }
}
