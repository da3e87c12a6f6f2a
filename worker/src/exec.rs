//! The exec handler: answers each request by running a shell command.
//!
//! For every request, `sh -c COMMAND` runs with the body frames, concatenated, on its
//! standard input (written from a separate thread, then closed, so a command that writes
//! before it reads cannot deadlock). The reply is one frame: the command's standard output,
//! cut at `max_output` bytes (the cut is logged).
//!
//! On failure the reply is one frame holding the Bencode dict `{"error": "<text>"}`, the
//! shape hearth uses for every error reply:
//!
//! * `exec: exited with status 3: <first 200 bytes of stderr>`
//! * `exec: killed by signal 9: <first 200 bytes of stderr>`
//! * `exec: timed out after 30s`
//! * `exec: cannot start sh: <reason>`
//!
//! The command runs in its own process group; on timeout the whole group gets SIGKILL and
//! the child is reaped, so a request never hangs a unit beyond its timeout and leaves no
//! process behind.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::handler::error_reply;
use crate::{Frame, Handler};

/// Default time a command may run per request.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of stderr quoted in an error reply.
const STDERR_QUOTED: usize = 200;
/// How long to wait for the pipes after a killed command.
const AFTER_KILL: Duration = Duration::from_millis(500);

/// A [`Handler`] that runs `sh -c command` per request (see the module docs for the reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecHandler {
    command: String,
    timeout: Duration,
    max_output: usize,
}

impl ExecHandler {
    /// Runs `command` with at most `timeout` per request and at most `max_output` bytes of
    /// reply (use the frame size limit, so the broker never refuses the reply).
    pub fn new(command: impl Into<String>, timeout: Duration, max_output: usize) -> ExecHandler {
        ExecHandler {
            command: command.into(),
            timeout,
            max_output,
        }
    }

    /// Runs the command once: standard output, or the error text of the reply.
    pub fn run(&self, input: &[Frame]) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + self.timeout;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("exec: cannot start sh: {e}"))?;
        let group = i32::try_from(child.id()).unwrap_or(0);
        if let Some(mut stdin) = child.stdin.take() {
            let input = input.concat();
            // A command that exits without reading makes this fail with EPIPE: not an error.
            spawn_detached(move || {
                let _ = stdin.write_all(&input);
            });
        }
        let stdout = child.stdout.take().map(|s| read_capped(s, self.max_output));
        let stderr = child.stderr.take().map(|s| read_capped(s, STDERR_QUOTED));
        let (wait_tx, wait_rx) = mpsc::channel();
        spawn_detached(move || {
            let _ = wait_tx.send(child.wait());
        });

        let remaining = deadline.saturating_duration_since(Instant::now());
        let status = match wait_rx.recv_timeout(remaining) {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                kill_group(group);
                return Err(format!("exec: cannot wait for sh: {e}"));
            }
            Err(_) => {
                kill_group(group);
                // SIGKILL cannot be ignored: the waiter reaps the child promptly.
                let _ = wait_rx.recv_timeout(AFTER_KILL);
                return Err(self.timed_out());
            }
        };
        // A background process may still hold stdout open: bounded by the same deadline.
        let remaining = deadline.saturating_duration_since(Instant::now());
        let (output, cut) = match stdout.map(|rx| rx.recv_timeout(remaining)) {
            Some(Ok(read)) => read,
            Some(Err(_)) => {
                kill_group(group);
                return Err(self.timed_out());
            }
            None => (Vec::new(), 0),
        };
        let errors = stderr
            .and_then(|rx| rx.recv_timeout(AFTER_KILL).ok())
            .map(|(bytes, _)| bytes)
            .unwrap_or_default();
        if !status.success() {
            let what = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                (None, None) => format!("failed: {status}"),
            };
            let stderr = String::from_utf8_lossy(&errors);
            let stderr = stderr.trim();
            return Err(if stderr.is_empty() {
                format!("exec: {what}")
            } else {
                format!("exec: {what}: {stderr}")
            });
        }
        if cut > 0 {
            tracing::warn!(command = %self.command, limit = self.max_output, cut,
                "exec output larger than the frame limit; excess cut");
        }
        Ok(output)
    }

    fn timed_out(&self) -> String {
        format!(
            "exec: timed out after {}",
            humantime::format_duration(self.timeout)
        )
    }
}

impl Handler for ExecHandler {
    fn handle(&self, body: Vec<Frame>) -> Vec<Frame> {
        match self.run(&body) {
            Ok(output) => vec![output],
            Err(error) => {
                tracing::warn!(command = %self.command, %error, "exec request failed");
                vec![error_reply(&error)]
            }
        }
    }
}

/// Runs `f` on a thread nobody joins; failure to start one is logged (the pipes it would
/// have served then close, which the command sees as EOF / EPIPE).
fn spawn_detached(f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name("hearth-exec-io".into())
        .spawn(f)
    {
        tracing::error!(error = %e, "cannot start an exec I/O thread");
    }
}

/// Reads a pipe to its end on its own thread, keeping the first `cap` bytes and counting
/// the rest (still read, so the command never blocks on a full pipe).
fn read_capped(mut pipe: impl Read + Send + 'static, cap: usize) -> mpsc::Receiver<(Vec<u8>, u64)> {
    let (tx, rx) = mpsc::channel();
    spawn_detached(move || {
        let mut kept = Vec::new();
        let mut cut = 0u64;
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let room = cap.saturating_sub(kept.len()).min(n);
                    kept.extend_from_slice(&buf[..room]);
                    cut += (n - room) as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send((kept, cut));
    });
    rx
}

/// SIGKILLs every process of the command's process group.
fn kill_group(group: i32) {
    if group > 0 {
        // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names a group.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_is_capped() {
        let exec = ExecHandler::new("head -c 10000 /dev/zero", Duration::from_secs(5), 100);
        assert_eq!(exec.run(&[]).unwrap().len(), 100);
    }

    #[test]
    fn frames_are_concatenated_on_stdin() {
        let exec = ExecHandler::new("cat", Duration::from_secs(5), 1000);
        let body = vec![b"ab".to_vec(), b"".to_vec(), b"cd".to_vec()];
        assert_eq!(exec.run(&body).unwrap(), b"abcd");
    }

    #[test]
    fn killed_by_signal_is_reported() {
        let exec = ExecHandler::new("kill -TERM $$", Duration::from_secs(5), 1000);
        assert_eq!(exec.run(&[]).unwrap_err(), "exec: killed by signal 15");
    }
}
