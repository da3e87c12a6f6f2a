//! Directories a supervisor makes for its children under the system temp dir: a
//! [`ScratchDir`] (brokers' data dirs) and a [`LogDir`] (children's output), each removed
//! when the supervisor is done with it. One that is evidence of a failure is kept instead:
//! a scratch dir made [`ScratchDir::keep_unless_passed`], or any log dir, is removed only
//! once its owner said the run passed, and never while `HEARTH_CHAOS_KEEP_LOGS` is set; a
//! log dir kept after a failure prints the tails of the logs that matter.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::proc::Output;

/// Env variable that keeps the directories of passing runs too (with `RUST_LOG=debug`, to
/// see what the children did).
pub const KEEP_LOGS_ENV: &str = "HEARTH_CHAOS_KEEP_LOGS";

/// Lines of each notable log printed when a log dir is kept after a failure.
const TAIL_LINES: usize = 25;

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A fresh directory of its own under the system temp dir, removed on drop (see the
/// module comment for when it is kept).
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    /// Whether it is evidence: kept unless [`ScratchDir::mark_passed`] was called.
    evidence: bool,
    passed: AtomicBool,
}

impl ScratchDir {
    /// Creates `<temp>/<prefix>-<pid>-<n>-<nanos>`, removed on drop.
    pub fn new(prefix: &str) -> Result<ScratchDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos:09}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed),
        ));
        std::fs::create_dir_all(&path).map_err(|source| Error::Create {
            path: path.clone(),
            source,
        })?;
        Ok(ScratchDir {
            path,
            evidence: false,
            passed: AtomicBool::new(false),
        })
    }

    /// Kept on drop, its path printed, unless [`ScratchDir::mark_passed`] is called first.
    pub fn keep_unless_passed(mut self) -> ScratchDir {
        self.evidence = true;
        self
    }

    /// Says the run passed: the directory is removed on drop (unless
    /// `HEARTH_CHAOS_KEEP_LOGS` is set).
    pub fn mark_passed(&self) {
        self.passed.store(true, Ordering::SeqCst);
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` inside it (not created).
    pub fn of(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Whether drop keeps the directory.
    fn kept(&self) -> bool {
        self.evidence
            && (std::env::var_os(KEEP_LOGS_ENV).is_some()
                || !self.passed.load(Ordering::SeqCst)
                || std::thread::panicking())
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.kept() {
            eprintln!("kept: {}", self.path.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

/// A directory for the output of one run's child processes, one file per child start
/// ([`Output::Dir`]). Kept, with the tails of its notable logs printed, unless the run
/// said it passed.
#[derive(Debug)]
pub struct LogDir {
    dir: ScratchDir,
}

impl LogDir {
    /// A fresh directory under the system temp dir, named after the run (a test's name).
    pub fn new(run: &str) -> Result<LogDir> {
        Ok(LogDir {
            dir: ScratchDir::new(&format!("hearth-chaos-{run}"))?.keep_unless_passed(),
        })
    }

    /// Says the run passed: the logs are removed instead of printed.
    pub fn mark_passed(&self) {
        self.dir.mark_passed();
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where a child's output goes to be kept here.
    pub fn output(&self) -> Output {
        Output::Dir(self.dir.path().to_path_buf())
    }

    /// Prints the directory and the last `lines` lines of the logs that matter most for a
    /// diagnosis: the brokers', and any that mention a panic or an error.
    pub fn print_tails(&self, lines: usize) {
        eprintln!("child process logs in {}", self.path().display());
        let Ok(entries) = std::fs::read_dir(self.path()) else {
            return;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files {
            let Ok(f) = File::open(&file) else { continue };
            let all: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            let notable = name.contains("broker")
                || all
                    .iter()
                    .any(|l| l.contains("panicked") || l.contains("ERROR"));
            if !notable {
                continue;
            }
            eprintln!("---- {name} (last {lines} of {} lines) ----", all.len());
            for line in &all[all.len().saturating_sub(lines)..] {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        let failed = !self.dir.passed.load(Ordering::SeqCst) || std::thread::panicking();
        if failed {
            self.print_tails(TAIL_LINES);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_dir_is_removed_a_passed_evidence_dir_too() {
        let plain = ScratchDir::new("supervise-dirs-test").unwrap();
        let path = plain.path().to_path_buf();
        std::fs::write(plain.of("f"), "x").unwrap();
        drop(plain);
        assert!(!path.exists());
        if std::env::var_os(KEEP_LOGS_ENV).is_none() {
            let logs = LogDir::new("supervise-dirs-test").unwrap();
            let path = logs.path().to_path_buf();
            logs.mark_passed();
            drop(logs);
            assert!(!path.exists());
        }
    }

    #[test]
    fn an_evidence_dir_of_a_failed_run_is_kept() {
        let dir = ScratchDir::new("supervise-dirs-test")
            .unwrap()
            .keep_unless_passed();
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(path.is_dir());
        std::fs::remove_dir_all(path).unwrap();
    }
}
