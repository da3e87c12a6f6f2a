//! The exec handler: stdout on success, `{error}` replies on failure, timeouts that kill
//! the whole process group quickly.

use std::time::{Duration, Instant};

use hearth_supervise::{procfs, wait_until};
use hearth_worker::{ExecHandler, Handler};

fn error_of(reply: &[Vec<u8>]) -> String {
    assert_eq!(reply.len(), 1, "one frame expected: {reply:?}");
    let map: std::collections::BTreeMap<String, String> = bendy::serde::from_bytes(&reply[0])
        .unwrap_or_else(|e| panic!("not a bencode dict: {e}: {reply:?}"));
    assert_eq!(map.len(), 1, "only an error key expected: {map:?}");
    map["error"].clone()
}

#[test]
fn success_replies_with_stdout() {
    let exec = ExecHandler::new("tr a-z A-Z", Duration::from_secs(5), 1 << 20);
    let reply = exec.handle(vec![b"hello ".to_vec(), b"hearth".to_vec()]);
    assert_eq!(reply, vec![b"HELLO HEARTH".to_vec()]);
}

#[test]
fn large_input_and_output_do_not_deadlock() {
    // More than a pipe buffer each way, written and read concurrently.
    let exec = ExecHandler::new("cat", Duration::from_secs(5), 1 << 20);
    let big = vec![b'x'; 512 * 1024];
    assert_eq!(exec.handle(vec![big.clone()]), vec![big]);
}

#[test]
fn non_zero_exit_replies_with_an_error_dict() {
    let exec = ExecHandler::new(
        "echo 'no such light' >&2; exit 3",
        Duration::from_secs(5),
        1024,
    );
    let reply = exec.handle(vec![b"x".to_vec()]);
    assert_eq!(
        error_of(&reply),
        "exec: exited with status 3: no such light"
    );
}

#[test]
fn stderr_in_the_error_is_capped() {
    let exec = ExecHandler::new(
        "head -c 5000 /dev/zero | tr '\\0' e >&2; exit 1",
        Duration::from_secs(5),
        1024,
    );
    let error = error_of(&exec.handle(vec![b"x".to_vec()]));
    assert_eq!(
        error,
        format!("exec: exited with status 1: {}", "e".repeat(200))
    );
}

#[test]
fn timeout_kills_the_whole_group_quickly() {
    let pidfile =
        std::env::temp_dir().join(format!("hearth-worker-exec-{}.pid", std::process::id()));
    let _ = std::fs::remove_file(&pidfile);
    let command = format!("sleep 5 & echo $! > {}; wait", pidfile.display());
    let exec = ExecHandler::new(command, Duration::from_millis(300), 1024);
    let started = Instant::now();
    let reply = exec.handle(vec![b"x".to_vec()]);
    let took = started.elapsed();
    assert_eq!(error_of(&reply), "exec: timed out after 300ms");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = std::fs::remove_file(&pidfile);
    // The grandchild `sleep` is dead: gone, or a zombie waiting for init to reap it.
    let what = format!("sleep {pid} to die");
    wait_until(&what, Duration::from_secs(2), || match procfs::state(pid) {
        None | Some('Z' | 'X') => Ok(()),
        Some(alive) => Err(alive),
    })
    .unwrap();
}

#[test]
fn unstartable_shell_is_an_error_reply() {
    // A command that cannot even be parsed by sh is a non-zero exit, with sh's complaint.
    let exec = ExecHandler::new("if then fi (", Duration::from_secs(5), 1024);
    let error = error_of(&exec.handle(vec![b"x".to_vec()]));
    assert!(error.starts_with("exec: exited with status 2"), "{error}");
}
