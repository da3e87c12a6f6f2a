//! External tools a test needs (systemd-analyze, promtool, lintian, python3, ...): found, or
//! the test is skipped with a word on how to install them, except in CI, where every check
//! must run and a missing tool fails the test.
//!
//! `tools/test-deps.sh` installs every tool the tests use; CI runs it first.
//!
//! Also what the tests that run those tools share: [`run`] one to its end, [`checked`] or
//! [`assert_clean`] its output, and a [`scratch_dir`] for the files it is given.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

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

/// Runs `command` to its end and returns its output (a failure to start it is a test
/// failure).
pub fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"))
}

/// A tool's output bytes as text (invalid UTF-8 replaced).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The stdout of `output` as text, after asserting that it is a success (the message names
/// `what` and shows the status, stdout and stderr).
pub fn checked(what: &str, output: Output) -> String {
    assert!(output.status.success(), "{}", failure(what, &output));
    text(&output.stdout)
}

/// Asserts that `output` is a success with nothing on stdout or stderr.
pub fn assert_clean(what: &str, output: &Output) {
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "{}",
        failure(what, output)
    );
}

fn failure(what: &str, output: &Output) -> String {
    format!(
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// A fresh, empty directory `<parent>/<name>-<pid>-<nanos>` for one test's files. Tests
/// pass `env!("CARGO_TARGET_TMPDIR")` as `parent` (which only integration tests have): not
/// /tmp, so that a sandbox check can tell writes under /tmp from the rest.
pub fn scratch_dir(parent: &str, name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = Path::new(parent).join(format!("{name}-{}-{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch dir");
    dir
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
