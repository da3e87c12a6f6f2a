//! Watching a failover with `hearth up`: the state-change lines of the two brokers, the
//! `k` + Enter command read from stdin, and the demo itself — kill -9 the active broker,
//! call echo once a second through both endpoints while the other takes over, restart the
//! killed broker after a while and show it come back passive.

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hearth_client::{Client, ClientConfig};
use hearth_supervise::{Observed, Pair, Side};

/// Time between two echo calls of the demo.
const CALL_EVERY: Duration = Duration::from_secs(1);
/// How long one demo call may take, retries on the other broker included.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a demo call waits for one broker before it tries the other, as a plain RFC 7
/// client would.
const CALL_ATTEMPT: Duration = Duration::from_secs(1);
/// How long the echo calls go on once the killed broker is back and passive.
const CALLS_AFTER_RETURN: Duration = Duration::from_secs(2);

/// The last state printed for each broker, turning new observations into the lines
/// `primary: active -> (killed)`.
#[derive(Debug)]
pub struct StateLog {
    last: [String; 2],
}

impl StateLog {
    /// Starts from these states, without printing them.
    pub fn new(states: &[Observed; 2]) -> StateLog {
        StateLog {
            last: [states[0].state().to_owned(), states[1].state().to_owned()],
        }
    }

    /// The lines for every broker whose state changed since the last call.
    pub fn update(&mut self, states: &[Observed; 2]) -> Vec<String> {
        Side::BOTH
            .iter()
            .zip(states)
            .filter_map(|(&side, observed)| self.set(side, observed.state()))
            .collect()
    }

    /// Records one broker's state; the line to print if it changed.
    pub fn set(&mut self, side: Side, state: &str) -> Option<String> {
        let last = &mut self.last[side.index()];
        if last == state {
            return None;
        }
        let line = format!("{side}: {last} -> {state}");
        state.clone_into(last);
        Some(line)
    }
}

/// A channel that receives `()` each time the user types `k` and Enter.
///
/// The reading thread ends at end of input (stdin from `/dev/null` or a closed pipe) and is
/// never joined, so a quiet stdin cannot hold up shutdown. SIGTTIN is ignored so that a
/// `hearth up &` in the background gets an error reading the terminal instead of being
/// stopped by the kernel.
pub fn kill_commands_from_stdin() -> Receiver<()> {
    let (tx, rx) = mpsc::channel();
    // SAFETY: setting a signal's disposition to "ignore" touches no memory.
    unsafe { libc::signal(libc::SIGTTIN, libc::SIG_IGN) };
    let reader = move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.lock().read_line(&mut line) {
                Ok(0) => return,
                Ok(_) if line.trim().eq_ignore_ascii_case("k") => {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) if line.trim().is_empty() => {}
                Ok(_) => eprintln!(
                    "hearth: type k and Enter to kill -9 the active broker; Ctrl-C stops the cluster"
                ),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(reader)
    {
        tracing::warn!(error = %e, "cannot read commands from stdin");
    }
    rx
}

/// Where the demo stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing killed; the next kill may come.
    Idle,
    /// `side` was killed; it is restarted once `restart_at` has passed and the other broker
    /// has taken over (or at `restart_anyway`, should no takeover come).
    Down {
        side: Side,
        restart_at: Instant,
        restart_anyway: Instant,
    },
    /// `side` was restarted and is not passive yet.
    Returning { side: Side },
    /// `side` is back and passive; the echo calls stop at `until`.
    Back { until: Instant },
}

/// How long after `restart_at` a killed broker is restarted even if its peer never became
/// active, so the demo cannot hang on a pair that misbehaves.
const TAKEOVER_PATIENCE: Duration = Duration::from_secs(10);

/// The failover demo: kills the active broker on request, restarts it once the other has
/// taken over, and runs the echo calls that show what a client sees meanwhile.
pub struct FailoverDemo {
    brokers: Vec<(Side, String)>,
    restart_after: Duration,
    phase: Phase,
    calls: Option<EchoCalls>,
}

impl FailoverDemo {
    /// A demo on the pair whose frontends are `brokers`, restarting a killed broker after
    /// `restart_after` at the earliest.
    pub fn new(brokers: Vec<(Side, String)>, restart_after: Duration) -> FailoverDemo {
        FailoverDemo {
            brokers,
            restart_after,
            phase: Phase::Idle,
            calls: None,
        }
    }

    /// The broker killed on purpose and not back yet, if any.
    pub fn down(&self) -> Option<Side> {
        match self.phase {
            Phase::Down { side, .. } | Phase::Returning { side } => Some(side),
            Phase::Idle | Phase::Back { .. } => None,
        }
    }

    /// Kills the currently active broker with kill -9, unless a kill is still in progress or
    /// no broker is active; `Err` says why not.
    pub fn kill_active(&mut self, pair: &mut Pair, log: &mut StateLog) -> Result<(), String> {
        if let Some(side) = self.down() {
            return Err(format!("{side} is not back yet; wait until it is passive"));
        }
        let Some(side) = pair.active() else {
            let states = pair.observe_both();
            return Err(format!(
                "no broker is active right now (primary {}, backup {})",
                states[0].state(),
                states[1].state()
            ));
        };
        let pid = pair.pid(side).unwrap_or_default();
        pair.kill_broker(side)
            .map_err(|e| format!("cannot kill {side}: {e}"))?;
        println!("kill -9 {side} (pid {pid}), the active broker");
        if let Some(line) = log.set(side, Observed::Killed.state()) {
            println!("{line}");
        }
        let now = Instant::now();
        self.phase = Phase::Down {
            side,
            restart_at: now + self.restart_after,
            restart_anyway: now + self.restart_after + TAKEOVER_PATIENCE,
        };
        self.start_calls();
        Ok(())
    }

    /// Moves the demo on given the brokers' latest states: restarts the killed broker when
    /// its time has come, notices it back as passive, ends the echo calls a little later.
    pub fn tick(&mut self, pair: &mut Pair, states: &[Observed; 2]) -> anyhow::Result<()> {
        let now = Instant::now();
        let state_of = |side: Side| states[side.index()].state();
        match self.phase {
            Phase::Down {
                side,
                restart_at,
                restart_anyway,
            } if now >= restart_at => {
                let taken_over = state_of(side.other()) == "active";
                if !taken_over && now < restart_anyway {
                    return Ok(());
                }
                if !taken_over {
                    println!(
                        "{} has not taken over ({}); restarting {side} anyway",
                        side.other(),
                        state_of(side.other())
                    );
                }
                let pid = pair.restart_broker(side)?;
                println!("restarting {side}: pid {pid}");
                self.phase = Phase::Returning { side };
            }
            Phase::Returning { side } if state_of(side) == "passive" => {
                println!(
                    "{side} is back as passive; {} stays active",
                    side.other().role()
                );
                self.phase = Phase::Back {
                    until: now + CALLS_AFTER_RETURN,
                };
            }
            Phase::Back { until } if now >= until => {
                self.stop_calls();
                self.phase = Phase::Idle;
            }
            _ => {}
        }
        Ok(())
    }

    /// Ends the echo calls, if they run, and prints their summary.
    pub fn stop_calls(&mut self) {
        if let Some(calls) = self.calls.take() {
            calls.stop();
        }
    }

    fn start_calls(&mut self) {
        if self.calls.is_none() {
            self.calls = EchoCalls::start(self.brokers.clone());
        }
    }
}

/// The thread that calls echo once a second while a failover goes on.
struct EchoCalls {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl EchoCalls {
    fn start(brokers: Vec<(Side, String)>) -> Option<EchoCalls> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("demo-calls".into())
            .spawn(move || call_echo_every_second(&brokers, &thread_stop));
        match spawned {
            Ok(thread) => Some(EchoCalls { stop, thread }),
            Err(e) => {
                eprintln!("hearth: cannot start the echo calls: {e}");
                None
            }
        }
    }

    /// Tells the thread to stop and waits for it (at most one call's deadline), so its
    /// summary is printed before anything else.
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.thread.join().is_err() {
            eprintln!("hearth: the echo calls thread panicked");
        }
    }
}

/// Calls echo once a second through a client given both brokers, printing who answered
/// each call and how long it took, until told to stop; then the counts.
fn call_echo_every_second(brokers: &[(Side, String)], stop: &AtomicBool) {
    let stopped = || stop.load(Ordering::SeqCst);
    let mut config = ClientConfig::new(brokers.iter().map(|(_, frontend)| frontend.clone()));
    config.timeout = CALL_TIMEOUT;
    config.attempt_timeout = CALL_ATTEMPT;
    let mut client = match Client::new(config) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("hearth: cannot start the echo calls: {e}");
            return;
        }
    };
    let (mut answered, mut failed, mut slowest) = (0u32, 0u32, Duration::ZERO);
    let mut next = Instant::now();
    for n in 1u64.. {
        while Instant::now() < next && !stopped() {
            std::thread::sleep(Duration::from_millis(20));
        }
        if stopped() {
            break;
        }
        let started = Instant::now();
        next = started + CALL_EVERY;
        let result = client.call_one("echo", format!("call {n}").as_bytes());
        let took = started.elapsed();
        match result {
            Ok(_) => {
                answered += 1;
                slowest = slowest.max(took);
                let by = brokers
                    .iter()
                    .find(|(_, frontend)| frontend == client.current_broker())
                    .map_or("?", |(side, _)| side.role());
                println!("echo #{n}: answered by {by} in {} ms", took.as_millis());
            }
            Err(e) => {
                failed += 1;
                println!("echo #{n}: not answered: {e}");
            }
        }
    }
    println!(
        "echo calls since the kill: {answered} answered, {failed} not answered, slowest {} ms",
        slowest.as_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::status::BrokerStatus;

    fn state(s: &str) -> Observed {
        Observed::Status(BrokerStatus {
            state: s.parse().expect("a state name"),
            ..BrokerStatus::default()
        })
    }

    #[test]
    fn state_log_prints_only_changes() {
        let mut log = StateLog::new(&[state("active"), state("passive")]);
        assert!(log.update(&[state("active"), state("passive")]).is_empty());
        assert_eq!(
            log.set(Side::Primary, Observed::Killed.state()).as_deref(),
            Some("primary: active -> (killed)")
        );
        assert_eq!(
            log.update(&[Observed::Killed, state("active")]),
            ["backup: passive -> active"]
        );
        assert_eq!(
            log.update(&[state("passive"), Observed::Silent]),
            [
                "primary: (killed) -> passive",
                "backup: active -> (no answer)"
            ]
        );
    }
}
