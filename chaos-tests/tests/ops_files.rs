//! The operator's files in `ops/`, each checked by its real tool:
//!
//! * the systemd units: `systemd-analyze verify` clean, `systemd-analyze security` below
//!   2.0, the settings an operator relies on present, and the sandbox checked against what
//!   the binaries really do: a pair, a worker and its `--exec` command run under `strace`,
//!   and every system call, socket family, memory mapping and write must be one the units'
//!   hardening permits;
//! * the example configs: a pair (`primary.toml`, `backup.toml`) and a worker
//!   (`worker.toml`) started with `--config`, only the addresses overridden, settle, serve a
//!   call, and exit 0 on SIGTERM;
//! * Prometheus: `promtool check config`, `check rules`, `test rules`, and every alert has a
//!   case that fires and one that stays quiet;
//! * Grafana: the dashboard parses, takes its datasource from a variable, has the panels
//!   promised, and every PromQL expression in it passes `promtool check rules`.
//!
//! A missing tool skips its check with a `SKIPPED:` line (fails in CI); see
//! [`hearth_chaos_tests::tools`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use hearth_chaos_tests::cluster::http_get_within;
use hearth_chaos_tests::metrics::BrokerSample;
use hearth_chaos_tests::ops::{dashboard_queries, fill_grafana_vars, ops_dir};
use hearth_chaos_tests::tools::{assert_clean, checked, run, text};
use hearth_chaos_tests::{bin_path, free_port, tools, wait_for, LogDir, Proc};
use hearth_client::{Client, ClientConfig};
use serde_json::Value;

/// The units and the binary each one starts.
const UNITS: [(&str, &str); 2] = [
    ("hearth-broker@.service", "hearth-broker"),
    ("hearth-worker@.service", "hearth-worker"),
];

/// A fresh directory for one test's files, under the target dir's temp dir (not /tmp:
/// the sandbox check tells writes under /tmp, which PrivateTmp= permits, from the rest).
fn scratch_dir(test: &str) -> PathBuf {
    tools::scratch_dir(env!("CARGO_TARGET_TMPDIR"), &format!("hearth-ops-{test}"))
}

// ---------------------------------------------------------------------------------------
// systemd

/// The `[Service]` settings of a unit file, in order (a key may repeat).
fn service_settings(unit_text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in unit_text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_owned();
        } else if section == "[Service]" {
            if let Some((key, value)) = line.split_once('=') {
                out.push((key.trim().to_owned(), value.trim().to_owned()));
            }
        }
    }
    out
}

fn values_of<'a>(settings: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    settings
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn read_unit(name: &str) -> String {
    let path = ops_dir().join("systemd").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The unit's text with `ExecStart=/usr/bin/<bin>` pointing at the built binary instead:
/// `systemd-analyze verify` requires the program to exist, and it checks the host's
/// /usr/bin, ignoring `--root`. Nothing else changes.
fn unit_with_built_binary(unit: &str, bin: &str) -> String {
    let text = read_unit(unit);
    let installed = format!("ExecStart=/usr/bin/{bin} ");
    assert_eq!(
        text.matches(&installed).count(),
        1,
        "{unit} must start /usr/bin/{bin} in exactly one ExecStart="
    );
    text.replace(
        &installed,
        &format!("ExecStart={} ", bin_path(bin).display()),
    )
}

#[test]
fn systemd_units_have_the_promised_settings() {
    for (unit, bin) in UNITS {
        let settings = service_settings(&read_unit(unit));
        let one = |key: &str| -> String {
            let values = values_of(&settings, key);
            assert_eq!(
                values.len(),
                1,
                "{unit}: {key}= should be set once: {values:?}"
            );
            values[0].to_owned()
        };
        assert_eq!(
            one("ExecStart"),
            format!("/usr/bin/{bin} --config /etc/hearth/%i.toml"),
            "{unit}"
        );
        let expected = [
            ("User", "hearth"),
            ("Group", "hearth"),
            ("Restart", "on-failure"),
            ("RestartPreventExitStatus", "2"),
            ("KillSignal", "SIGTERM"),
            ("NoNewPrivileges", "yes"),
            ("CapabilityBoundingSet", ""),
            ("AmbientCapabilities", ""),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
            ("MemoryDenyWriteExecute", "yes"),
            ("RestrictNamespaces", "yes"),
            ("LockPersonality", "yes"),
        ];
        for (key, value) in expected {
            assert_eq!(one(key), value, "{unit}: {key}=");
        }
        assert!(!one("TimeoutStopSec").is_empty());
        assert_eq!(
            values_of(&settings, "SystemCallFilter"),
            vec!["@system-service", "~@privileged"],
            "{unit}"
        );
        if bin == "hearth-broker" {
            assert_eq!(one("StateDirectory"), "hearth", "{unit}");
        }
    }
    // The configs the units read keep the broker's data where StateDirectory= puts it.
    for config in ["primary.toml", "backup.toml"] {
        let path = ops_dir().join("config").join(config);
        let text = std::fs::read_to_string(&path).expect("reading a broker config");
        assert!(
            text.lines()
                .any(|l| l.starts_with("data_dir = \"/var/lib/hearth\"")),
            "{config}: data_dir must be /var/lib/hearth (StateDirectory=hearth)"
        );
    }
}

#[test]
fn systemd_units_pass_systemd_analyze() {
    let Some(analyze) = tools::require("systemd-analyze") else {
        return;
    };
    let dir = scratch_dir("systemd-verify");
    for (unit, bin) in UNITS {
        let path = dir.join(unit);
        std::fs::write(&path, unit_with_built_binary(unit, bin)).expect("writing a unit copy");
        // The template itself (systemd takes a placeholder instance), then named instances.
        let instances = if bin == "hearth-broker" {
            vec!["primary", "backup"]
        } else {
            vec!["worker"]
        };
        let mut paths = vec![path.clone()];
        paths.extend(
            instances
                .iter()
                .map(|i| dir.join(unit.replace('@', &format!("@{i}")))),
        );
        for target in &paths {
            let output = run(Command::new(&analyze).arg("verify").arg(target));
            assert_clean(
                &format!("systemd-analyze verify {}", target.display()),
                &output,
            );
        }
        // Exposure on systemd's 0-10 scale (the threshold is in tenths): below 2.0, "OK".
        let summary = checked(
            &format!("systemd-analyze security {unit}"),
            run(Command::new(&analyze)
                .args(["security", "--offline=yes", "--threshold=20"])
                .arg(&path)),
        );
        eprintln!(
            "{unit}: {}",
            summary.lines().last().unwrap_or("(no summary)").trim()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// The example configs, run as a pair and a worker (optionally each under strace)

/// One process of the example cluster: the binary itself, or `strace -f` running it.
struct Launched {
    proc: Proc,
    /// The strace output file, when traced.
    trace: Option<PathBuf>,
    /// The traced binary's PID, once known.
    tracee: Option<libc::pid_t>,
}

impl Launched {
    /// Starts `bin` with `args`, or, given `strace` (the program and a directory for its
    /// output), `strace -f` running it as a unit would: systemd's default PATH, no
    /// LD_LIBRARY_PATH (cargo's test environment points both into $HOME).
    fn spawn(
        name: &str,
        bin: &str,
        args: &[String],
        logs: &LogDir,
        strace: Option<(&Path, &Path)>,
    ) -> anyhow::Result<Launched> {
        let program = bin_path(bin);
        match strace {
            None => Ok(Launched {
                proc: Proc::spawn(name, &program, args, logs)?,
                trace: None,
                tracee: None,
            }),
            Some((strace, dir)) => {
                let trace = dir.join(format!("{name}.strace"));
                let mut full = vec![
                    "-E".to_owned(),
                    "LD_LIBRARY_PATH".to_owned(),
                    "-E".to_owned(),
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin".to_owned(),
                    "-f".to_owned(),
                    "-qq".to_owned(),
                    "-s".to_owned(),
                    "256".to_owned(),
                    "-o".to_owned(),
                    trace.display().to_string(),
                    "--".to_owned(),
                    program.display().to_string(),
                ];
                full.extend(args.iter().cloned());
                let mut proc = Proc::spawn(name, strace, &full, logs)?;
                let pid = proc.pid();
                // strace forks short-lived children of its own first (to probe ptrace), so
                // the tracee is the child whose executable is the binary.
                let exe = program.canonicalize()?;
                let tracee = wait_for(
                    &format!("strace to start {name}"),
                    Duration::from_secs(10),
                    || {
                        if let Some(status) = proc.try_status() {
                            return Ok(Err(anyhow!("strace for {name} exited: {status}")));
                        }
                        let children =
                            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                                .unwrap_or_default();
                        children
                            .split_whitespace()
                            .filter_map(|c| c.parse::<libc::pid_t>().ok())
                            .find(|c| {
                                std::fs::read_link(format!("/proc/{c}/exe")).is_ok_and(|e| e == exe)
                            })
                            .map(Ok)
                            .ok_or_else(|| format!("children of strace: {children:?}"))
                    },
                )??;
                Ok(Launched {
                    proc,
                    trace: Some(trace),
                    tracee: Some(tracee),
                })
            }
        }
    }

    /// SIGTERM to the binary (not to strace), then its exit status (strace exits with its
    /// tracee's status), waiting at most `grace`; SIGKILL after that.
    fn stop(&mut self, grace: Duration) -> ExitStatus {
        let Some(tracee) = self.tracee else {
            return self.proc.stop(grace);
        };
        // SAFETY: kill(2) on the PID of the binary this test started under strace, which
        // is still strace's child while strace (our unreaped child) runs.
        unsafe {
            libc::kill(tracee, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.proc.try_status() {
                self.tracee = None;
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_tracee();
        self.proc.kill9()
    }

    fn kill_tracee(&mut self) {
        if let Some(tracee) = self.tracee.take() {
            if self.proc.is_running() {
                // SAFETY: as in `stop`: strace still runs, so its child keeps its PID.
                unsafe {
                    libc::kill(tracee, libc::SIGKILL);
                }
            }
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        // A traced binary outlives a killed strace (it is only detached): kill it first.
        self.kill_tracee();
    }
}

/// The pair of the example configs and one worker of `worker.toml`, on free loopback
/// ports. Dropping it kills whatever still runs.
struct ExampleCluster {
    // Drop order: processes first, logs last.
    worker: Launched,
    backup: Launched,
    primary: Launched,
    frontends: [String; 2],
    metrics: [SocketAddr; 2],
    data_root: PathBuf,
    logs: LogDir,
}

impl ExampleCluster {
    /// Starts `hearth-broker --config primary.toml` and `--config backup.toml` with the
    /// addresses and data dirs overridden (the hostnames hearth-a/hearth-b and port 5555
    /// are for the real machines), then `hearth-worker --config worker.toml` with the two
    /// frontends as its brokers and `worker_extra` flags.
    fn start(
        test: &str,
        strace: Option<&Path>,
        worker_extra: &[&str],
    ) -> anyhow::Result<ExampleCluster> {
        let logs = LogDir::new(test)?;
        let data_root = scratch_dir(test);
        let strace = strace.map(|program| (program, data_root.as_path()));
        let config = |name: &str| ops_dir().join("config").join(name).display().to_string();
        let frontends = [free_port(), free_port()].map(|p| format!("tcp://127.0.0.1:{p}"));
        let peers = [free_port(), free_port()].map(|p| format!("tcp://127.0.0.1:{p}"));
        let feeds = [free_port(), free_port()].map(|p| format!("tcp://127.0.0.1:{p}"));
        let metrics = [free_port(), free_port()].map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let broker_args = |i: usize, role: &str| -> Vec<String> {
            [
                "--config",
                &config(&format!("{role}.toml")),
                "--frontend",
                &frontends[i],
                "--peer-bind",
                &peers[i],
                "--peer-connect",
                &peers[1 - i],
                "--publish",
                &feeds[i],
                "--metrics",
                &metrics[i].to_string(),
                "--data-dir",
                &data_root.join(role).display().to_string(),
            ]
            .map(str::to_owned)
            .to_vec()
        };
        let broker = |i: usize, role: &str| {
            let args = broker_args(i, role);
            Launched::spawn(
                &format!("broker-{role}"),
                "hearth-broker",
                &args,
                &logs,
                strace,
            )
        };
        let primary = broker(0, "primary")?;
        let backup = broker(1, "backup")?;
        let mut worker_args = vec!["--config".to_owned(), config("worker.toml")];
        for frontend in &frontends {
            worker_args.extend(["--broker".to_owned(), frontend.clone()]);
        }
        worker_args.extend(worker_extra.iter().map(|s| (*s).to_owned()));
        let worker = Launched::spawn("worker", "hearth-worker", &worker_args, &logs, strace)?;
        Ok(ExampleCluster {
            worker,
            backup,
            primary,
            frontends,
            metrics,
            data_root,
            logs,
        })
    }

    /// Waits until the primary reports role primary and state active, the backup role
    /// backup and state passive (from `/status`), and both count one worker of `service`.
    fn wait_settled(&self, service: &str, timeout: Duration) -> anyhow::Result<()> {
        let expected = [("primary", "active"), ("backup", "passive")];
        for (addr, (role, state)) in self.metrics.iter().zip(expected) {
            wait_for(
                &format!("the {role} to be {state} with a worker of {service}"),
                timeout,
                || -> Result<(), String> {
                    let status = http_get_within(*addr, "/status", Duration::from_millis(500))
                        .map_err(|e| format!("{e:#}"))?;
                    let json: Value =
                        serde_json::from_str(&status).map_err(|e| format!("{e}: {status}"))?;
                    let seen = (json["role"].as_str(), json["state"].as_str());
                    if seen != (Some(role), Some(state)) {
                        return Err(format!("role/state {seen:?}"));
                    }
                    let sample = BrokerSample::fetch(*addr, Duration::from_millis(500))
                        .map_err(|e| format!("{e:#}"))?;
                    match sample.workers_of(service) {
                        1 => Ok(()),
                        n => Err(format!("{n} workers of {service}")),
                    }
                },
            )?;
        }
        Ok(())
    }

    /// A client of both frontends, as an application of the pair would have.
    fn client(&self) -> anyhow::Result<Client> {
        let mut config = ClientConfig::new(self.frontends.clone());
        config.timeout = Duration::from_secs(10);
        Ok(Client::new(config)?)
    }

    /// SIGTERM to the worker, the backup, the primary, in that order; each must exit 0.
    fn stop_all(&mut self) -> anyhow::Result<()> {
        for (name, launched) in [
            ("worker", &mut self.worker),
            ("backup", &mut self.backup),
            ("primary", &mut self.primary),
        ] {
            let status = launched.stop(Duration::from_secs(15));
            if status.code() != Some(0) {
                bail!(
                    "the {name} did not exit 0 on SIGTERM but {status}; logs in {}",
                    self.logs.path().display()
                );
            }
        }
        Ok(())
    }

    fn passed(&self) {
        self.logs.mark_passed();
        let _ = std::fs::remove_dir_all(&self.data_root);
    }
}

#[test]
fn example_configs_run_a_pair_and_a_worker() -> anyhow::Result<()> {
    for (file, host) in [
        ("primary.toml", "hearth-b"),
        ("backup.toml", "hearth-a"),
        ("worker.toml", "hearth-a"),
        ("worker.toml", "hearth-b"),
    ] {
        let text = std::fs::read_to_string(ops_dir().join("config").join(file))?;
        assert!(text.contains(host), "{file} should name {host}");
    }
    let mut cluster = ExampleCluster::start("ops-example-configs", None, &[])?;
    cluster.wait_settled("echo", Duration::from_secs(20))?;
    let mut client = cluster.client()?;
    let reply = client.call_one("echo", b"hello from the example configs")?;
    assert_eq!(reply, b"hello from the example configs");
    cluster.stop_all()?;
    cluster.passed();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The units' sandbox against what the binaries do

/// One system call of an strace log: its name and, unless it is a `resumed` tail, its
/// arguments as printed.
struct TracedCall<'a> {
    name: &'a str,
    args: Option<&'a str>,
}

/// Reads a line of `strace -f` output (`PID name(args) = ret`, `PID <... name resumed>`,
/// signals and exits).
fn traced_call(line: &str) -> Option<TracedCall<'_>> {
    let (_pid, rest) = line.split_once(' ')?;
    let rest = rest.trim_start();
    if let Some(resumed) = rest.strip_prefix("<... ") {
        let name = resumed.split(' ').next()?;
        return Some(TracedCall { name, args: None });
    }
    let (name, args) = rest.split_once('(')?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    Some(TracedCall {
        name,
        args: Some(args),
    })
}

/// The first quoted string of `args` (a path, for the file calls).
fn first_string(args: &str) -> Option<&str> {
    let start = args.find('"')? + 1;
    let len = args[start..].find('"')?;
    Some(&args[start..start + len])
}

/// Every system call `SystemCallFilter=` lines permit: the first list, minus `~` lists.
fn permitted_syscalls(analyze: &Path, filters: &[&str]) -> BTreeSet<String> {
    let mut memo = BTreeMap::new();
    let mut permitted = BTreeSet::new();
    for filter in filters {
        let (deny, list) = match filter.strip_prefix('~') {
            Some(list) => (true, list),
            None => (false, *filter),
        };
        for item in list.split_whitespace() {
            let names = expand_syscall_group(analyze, item, &mut memo);
            for name in names {
                if deny {
                    permitted.remove(&name);
                } else {
                    permitted.insert(name);
                }
            }
        }
    }
    permitted
}

/// The system calls of `item` (`@group`, expanded by `systemd-analyze syscall-filter`,
/// nested groups included, or a plain name).
fn expand_syscall_group(
    analyze: &Path,
    item: &str,
    memo: &mut BTreeMap<String, BTreeSet<String>>,
) -> BTreeSet<String> {
    if !item.starts_with('@') {
        return BTreeSet::from([item.to_owned()]);
    }
    if let Some(known) = memo.get(item) {
        return known.clone();
    }
    let output = run(Command::new(analyze).args(["syscall-filter", item]));
    assert!(
        output.status.success(),
        "systemd-analyze syscall-filter {item}"
    );
    let mut names = BTreeSet::new();
    for line in text(&output.stdout).lines().skip(1) {
        let entry = line.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        names.extend(expand_syscall_group(analyze, entry, memo));
    }
    memo.insert(item.to_owned(), names.clone());
    names
}

/// What a unit's sandbox would refuse in one strace log: each finding once, with an
/// example line.
fn sandbox_findings(
    trace: &str,
    permitted: &BTreeSet<String>,
    families: &[&str],
    writable: &[PathBuf],
) -> BTreeMap<String, String> {
    let mut findings = BTreeMap::new();
    let devices = [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
    ];
    for line in trace.lines() {
        let Some(call) = traced_call(line) else {
            continue;
        };
        let mut find = |what: String| {
            findings.entry(what).or_insert_with(|| line.to_owned());
        };
        if !permitted.contains(call.name) {
            find(format!("SystemCallFilter refuses {}", call.name));
        }
        let Some(args) = call.args else { continue };
        match call.name {
            "socket" | "socketpair" => {
                let family = args.split([',', ' ']).next().unwrap_or("");
                if !families.contains(&family) {
                    find(format!("RestrictAddressFamilies refuses {family}"));
                }
            }
            "mmap" if args.contains("PROT_WRITE") && args.contains("PROT_EXEC") => {
                find("MemoryDenyWriteExecute refuses a writable and executable mapping".into())
            }
            "mprotect" | "pkey_mprotect" if args.contains("PROT_EXEC") => {
                find("MemoryDenyWriteExecute refuses making memory executable".into())
            }
            "clone" | "clone3" | "unshare" | "setns" if args.contains("CLONE_NEW") => {
                find("RestrictNamespaces refuses a new namespace".into())
            }
            _ => {}
        }
        let Some(path) = first_string(args) else {
            continue;
        };
        if path.starts_with("/dev/") && !devices.contains(&path) && !path.starts_with("/dev/shm/") {
            find(format!("PrivateDevices hides {path}"));
        }
        if ["/home/", "/root/", "/run/user/"]
            .iter()
            .any(|p| path.starts_with(p))
        {
            find(format!("ProtectHome hides {path}"));
        }
        let writes = match call.name {
            "open" | "openat" | "openat2" => {
                args.contains("O_WRONLY")
                    || args.contains("O_RDWR")
                    || args.contains("O_CREAT")
                    || args.contains("O_TRUNC")
            }
            "creat" | "mkdir" | "mkdirat" | "unlink" | "unlinkat" | "rename" | "renameat"
            | "renameat2" | "rmdir" | "link" | "linkat" | "symlink" | "symlinkat" | "truncate"
            | "mknod" | "mknodat" | "chmod" | "fchmodat" => true,
            _ => false,
        };
        let may_write = path == "/dev/null"
            || path.starts_with("/tmp/")
            || path.starts_with("/var/tmp/")
            || path.starts_with("/dev/shm/")
            || writable.iter().any(|dir| Path::new(path).starts_with(dir));
        if writes && !may_write {
            find(format!("ProtectSystem=strict refuses writing {path}"));
        }
    }
    findings
}

#[test]
fn systemd_sandbox_permits_what_the_binaries_do() -> anyhow::Result<()> {
    let Some(analyze) = tools::require("systemd-analyze") else {
        return Ok(());
    };
    let Some(strace) = tools::require("strace") else {
        return Ok(());
    };
    // The worker runs its --exec command under the worker unit's sandbox too.
    let mut cluster = ExampleCluster::start(
        "ops-sandbox",
        Some(&strace),
        &["--service", "upper", "--exec", "tr a-z A-Z"],
    )?;
    cluster.wait_settled("upper", Duration::from_secs(30))?;
    let mut client = cluster.client()?;
    assert_eq!(client.call_one("upper", b"sandboxed")?, b"SANDBOXED");
    let seq = client
        .state()
        .set([("ops/sandbox", hearth_client::state::Write::new(1i64))])?;
    assert!(seq >= 1);
    for addr in cluster.metrics {
        for path in ["/metrics", "/status", "/healthz", "/conflicts"] {
            http_get_within(addr, path, Duration::from_secs(2))
                .with_context(|| format!("GET {path} on {addr}"))?;
        }
    }
    cluster.stop_all()?;

    let mut report = Vec::new();
    for (unit, bin) in UNITS {
        let settings = service_settings(&read_unit(unit));
        let permitted = permitted_syscalls(&analyze, &values_of(&settings, "SystemCallFilter"));
        let families: Vec<&str> = values_of(&settings, "RestrictAddressFamilies")
            .iter()
            .flat_map(|v| v.split_whitespace())
            .collect();
        let launched: Vec<(&str, &Launched)> = if bin == "hearth-broker" {
            vec![("primary", &cluster.primary), ("backup", &cluster.backup)]
        } else {
            vec![("worker", &cluster.worker)]
        };
        for (name, process) in launched {
            let trace_path = process
                .trace
                .as_ref()
                .ok_or_else(|| anyhow!("{name} untraced"))?;
            let trace = std::fs::read_to_string(trace_path)?;
            let calls = trace.lines().filter_map(traced_call).count();
            assert!(calls > 1000, "{name}: only {calls} system calls traced");
            // StateDirectory= is the one writable place (data_dir in the configs).
            let writable = vec![cluster.data_root.join(name)];
            for (finding, example) in sandbox_findings(&trace, &permitted, &families, &writable) {
                report.push(format!("{unit} ({name}): {finding}\n    e.g. {example}"));
            }
        }
    }
    assert!(
        report.is_empty(),
        "the units' sandbox would break the binaries:\n{}",
        report.join("\n")
    );
    cluster.passed();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Prometheus

fn prometheus_file(name: &str) -> PathBuf {
    ops_dir().join("prometheus").join(name)
}

#[test]
fn prometheus_files_pass_promtool() {
    let Some(promtool) = tools::require("promtool") else {
        return;
    };
    let checks: [(&str, &[&str], &str); 3] = [
        ("check", &["config"], "prometheus.yml"),
        ("check", &["rules"], "hearth-alerts.yml"),
        ("test", &["rules"], "hearth-alerts.test.yml"),
    ];
    for (verb, what, file) in checks {
        checked(
            &format!("promtool {verb} {} {file}", what.join(" ")),
            run(Command::new(&promtool)
                .arg(verb)
                .args(what)
                .arg(file)
                .current_dir(ops_dir().join("prometheus"))),
        );
    }
}

/// The alert names of the rules file (`- alert: Name` lines).
fn alert_names() -> Vec<String> {
    let rules = std::fs::read_to_string(prometheus_file("hearth-alerts.yml")).expect("rules");
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_test() {
    let tests = std::fs::read_to_string(prometheus_file("hearth-alerts.test.yml")).expect("tests");
    // Each case of the test file is `alertname: X` followed by `exp_alerts: []` (quiet) or
    // `exp_alerts:` and a list (fires).
    let mut fires: BTreeSet<String> = BTreeSet::new();
    let mut quiet: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in tests.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("alertname:") {
            current = Some(name.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("exp_alerts:") {
            let name = current.take().expect("exp_alerts without an alertname");
            if rest.trim() == "[]" {
                quiet.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    let names = alert_names();
    assert!(names.len() >= 10, "alerts found: {names:?}");
    for name in &names {
        assert!(fires.contains(name), "no test where {name} fires");
        assert!(quiet.contains(name), "no test where {name} stays quiet");
    }
    for name in fires.union(&quiet) {
        assert!(
            names.contains(name),
            "the tests name an unknown alert {name}"
        );
    }
    for required in [
        "HearthBrokerDown",
        "HearthNoActiveBroker",
        "HearthTwoActiveBrokers",
        "HearthPeerDown",
        "HearthFailover",
        "HearthServiceWithoutWorkers",
        "HearthQueueDepthRising",
        "HearthRequeuesSpiking",
        "HearthMalformedInput",
        "HearthReplicationLag",
        "HearthWaitingForPeer",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "missing alert {required}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Grafana

fn dashboard() -> Value {
    let path = ops_dir().join("grafana").join("hearth.json");
    let text = std::fs::read_to_string(&path).expect("reading the dashboard");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every `datasource` object in `value` (panels, targets, annotations).
fn datasources<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "datasource" {
                    out.push(inner);
                } else {
                    datasources(inner, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| datasources(v, out)),
        _ => {}
    }
}

#[test]
fn grafana_dashboard_parses_and_takes_its_datasource_from_a_variable() {
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    assert!(
        variables.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus datasource variable named `datasource`"
    );
    let mut found = Vec::new();
    datasources(&dashboard["panels"], &mut found);
    datasources(&dashboard["annotations"], &mut found);
    assert!(!found.is_empty());
    for ds in found {
        assert_eq!(ds["uid"], "${datasource}", "hard-coded datasource: {ds}");
    }
    let queries = dashboard_queries(&dashboard);
    let has = |kind: Option<&str>, needle: &str| {
        queries
            .iter()
            .any(|q| q.expr.contains(needle) && kind.map_or(true, |k| q.kind == k))
    };
    for needle in [
        "hearth_requests_total",
        "histogram_quantile(0.5,",
        "histogram_quantile(0.99,",
        "hearth_request_duration_seconds_bucket",
        "hearth_workers",
        "hearth_queue_depth",
        "hearth_failovers_total",
        "hearth_state_seq",
        "hearth_state_replication_lag",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(has(None, needle), "no dashboard query uses {needle}");
    }
    assert!(
        has(Some("state-timeline"), "hearth_bstar_state"),
        "no state timeline of hearth_bstar_state"
    );
}

#[test]
fn grafana_queries_pass_promtool() {
    let Some(promtool) = tools::require("promtool") else {
        return;
    };
    let queries = dashboard_queries(&dashboard());
    assert!(queries.len() >= 15, "{} queries", queries.len());
    // Each query as a recording rule: `promtool check rules` parses every expression.
    // JSON is YAML, so the rules file is written with serde_json.
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            serde_json::json!({
                "record": format!("hearth_dashboard:query_{i}"),
                "expr": fill_grafana_vars(&q.expr, "1m", "1h"),
            })
        })
        .collect();
    let file = serde_json::json!({"groups": [{"name": "hearth-dashboard", "rules": rules}]});
    let dir = scratch_dir("grafana-queries");
    let path = dir.join("dashboard-queries.yml");
    std::fs::write(&path, file.to_string()).expect("writing the queries");
    let output = run(Command::new(&promtool).args(["check", "rules"]).arg(&path));
    assert!(
        output.status.success(),
        "promtool check rules on the dashboard's queries: {}\n{}{}\nqueries:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr),
        queries
            .iter()
            .enumerate()
            .map(|(i, q)| format!("query_{i} ({}): {}", q.panel, q.expr))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
