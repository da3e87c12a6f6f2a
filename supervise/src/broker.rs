//! One `hearth-broker` under supervision: its command line, kept so that a broker killed
//! with `kill -9` is started again as the same broker (same ports, same data dir), its
//! process while it runs, whether it is frozen, and how to ask it where it stands — over
//! ZeroMQ (`hearth.status`) or HTTP (`/metrics`), never while it is known to be down or
//! frozen, since a frozen broker's kernel accepts the question and nobody answers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use hearth_proto::status::BrokerStatus;

use crate::args::BrokerArgs;
use crate::error::{Error, Result};
use crate::metrics::BrokerSample;
use crate::proc::{Exited, Launch, Proc};
use crate::wait::wait_until;

/// A broker process that can be killed, frozen, thawed and started again.
#[derive(Debug)]
pub struct Broker {
    name: String,
    program: PathBuf,
    args: BrokerArgs,
    launch: Launch,
    proc: Option<Proc>,
    frozen: bool,
    starts: usize,
}

impl Broker {
    /// A broker named `name` (in messages and log files) that runs `program` with `args`;
    /// not started yet.
    pub fn new(name: &str, program: &Path, args: BrokerArgs, launch: Launch) -> Broker {
        Broker {
            name: name.to_owned(),
            program: program.to_path_buf(),
            args,
            launch,
            proc: None,
            frozen: false,
            starts: 0,
        }
    }

    /// [`Broker::new`], then [`Broker::start`].
    pub fn spawn(name: &str, program: &Path, args: BrokerArgs, launch: Launch) -> Result<Broker> {
        let mut broker = Broker::new(name, program, args, launch);
        broker.start()?;
        Ok(broker)
    }

    /// Starts the process (again, after a kill or a crash); its PID. Fails if it runs.
    pub fn start(&mut self) -> Result<u32> {
        if let Some(proc) = &mut self.proc {
            if proc.is_running() {
                return Err(Error::AlreadyRunning(self.name.clone()));
            }
        }
        let proc = Proc::spawn(
            &self.name,
            &self.program,
            &self.args.to_args(),
            &self.launch,
        )?;
        let pid = proc.pid();
        self.proc = Some(proc);
        self.frozen = false;
        self.starts += 1;
        Ok(pid)
    }

    /// `kill -9` (frozen or not) and reap; it stays down until [`Broker::start`]. Its exit
    /// status, or `None` if it was not running.
    pub fn kill9(&mut self) -> Result<Option<ExitStatus>> {
        self.frozen = false;
        self.proc.take().map(|mut proc| proc.kill9()).transpose()
    }

    /// `kill -9` if it runs, then [`Broker::start`]; the new PID.
    pub fn restart(&mut self) -> Result<u32> {
        self.kill9()?;
        self.start()
    }

    /// SIGSTOP: it stops in its tracks, sockets open (see [`Proc::freeze`]).
    pub fn freeze(&mut self) -> Result<()> {
        self.running()?.freeze()?;
        self.frozen = true;
        Ok(())
    }

    /// SIGCONT after [`Broker::freeze`].
    pub fn thaw(&mut self) -> Result<()> {
        self.running()?.thaw()?;
        self.frozen = false;
        Ok(())
    }

    /// Stops it cleanly (SIGTERM, SIGKILL after `grace`); its exit status if it ran.
    pub fn terminate(&mut self, grace: Duration) -> Result<Option<ExitStatus>> {
        self.frozen = false;
        self.proc
            .take()
            .map(|mut proc| proc.terminate(grace))
            .transpose()
    }

    fn running(&mut self) -> Result<&mut Proc> {
        self.proc
            .as_mut()
            .ok_or_else(|| Error::NotRunning(self.name.clone()))
    }

    /// The name given at [`Broker::new`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its command line.
    pub fn args(&self) -> &BrokerArgs {
        &self.args
    }

    /// Its command line, to change before the next [`Broker::start`].
    pub fn args_mut(&mut self) -> &mut BrokerArgs {
        &mut self.args
    }

    /// Its frontend endpoint.
    pub fn frontend(&self) -> &str {
        &self.args.frontend
    }

    /// Its HTTP address (`--metrics`), if it serves one.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>> {
        self.args.metrics_addr()
    }

    /// The PID of its process, if it has one (running or frozen).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Whether it has a process (running, frozen, or crashed and not noticed yet).
    pub fn is_up(&self) -> bool {
        self.proc.is_some()
    }

    /// Whether it is frozen by SIGSTOP.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// How many times it has been started.
    pub fn starts(&self) -> usize {
        self.starts
    }

    /// Its process, if it has one.
    pub fn proc_mut(&mut self) -> Option<&mut Proc> {
        self.proc.as_mut()
    }

    /// How it ended, if its process exited without being killed here (a crash).
    pub fn exited(&mut self) -> Option<Exited> {
        Exited::of(self.proc.as_mut()?)
    }

    /// Fails at once, without asking, if it is down or frozen.
    fn askable(&self) -> Result<()> {
        if self.proc.is_none() {
            return Err(Error::NotRunning(self.name.clone()));
        }
        if self.frozen {
            return Err(Error::Frozen(self.name.clone()));
        }
        Ok(())
    }

    /// Its status record over ZeroMQ (`hearth.status`), waiting at most `timeout`.
    pub fn status(&self, ctx: &zmq::Context, timeout: Duration) -> Result<BrokerStatus> {
        self.askable()?;
        crate::ask::status(ctx, self.frontend(), timeout)
    }

    /// Its `/metrics`, read into a [`BrokerSample`], waiting at most `timeout`.
    pub fn sample(&self, timeout: Duration) -> Result<BrokerSample> {
        self.askable()?;
        let addr = self
            .metrics_addr()?
            .ok_or_else(|| Error::NotRunning(format!("{}'s HTTP server", self.name)))?;
        BrokerSample::fetch(addr, timeout)
    }

    /// Polls `probe` until it accepts the broker (see [`crate::wait_until`]); fails at once
    /// if the process exits meanwhile.
    pub fn wait_ready<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&Broker) -> std::result::Result<T, String>,
    ) -> Result<T> {
        wait_until(what, timeout, || {
            if let Some(exited) = self.exited() {
                return Ok(Err(exited.into()));
            }
            probe(self).map(Ok)
        })?
    }

    /// Waits until `hearth.status` counts at least `count` workers of `service`; fails at
    /// once if the process exits meanwhile.
    pub fn wait_workers(
        &mut self,
        ctx: &zmq::Context,
        service: &str,
        count: u64,
        timeout: Duration,
    ) -> Result<()> {
        let what = format!("{count} {service} workers on {}", self.name);
        self.wait_ready(&what, timeout, |broker| {
            let status = broker
                .status(ctx, WORKERS_ASK_TIMEOUT)
                .map_err(|e| e.to_string())?;
            match crate::ask::workers_of(&status, service) {
                n if n >= count => Ok(()),
                n => Err(format!("{n} of {count}")),
            }
        })
    }
}

/// How long one `hearth.status` question of [`Broker::wait_workers`] may take.
const WORKERS_ASK_TIMEOUT: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::Output;

    #[test]
    fn a_broker_that_exits_ends_the_wait_at_once() {
        // `false` stands in for a broker that cannot bind its port.
        let mut broker = Broker::spawn(
            "hearth-broker standalone",
            Path::new("false"),
            BrokerArgs::standalone("tcp://127.0.0.1:1"),
            Launch::harness(Output::Null),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let err = broker
            .wait_ready("it to answer", Duration::from_secs(30), |_| {
                Err::<(), _>("no answer".to_owned())
            })
            .unwrap_err();
        assert!(matches!(err, Error::Exited { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(broker.starts(), 1);
        assert!(matches!(
            broker.sample(Duration::ZERO),
            Err(Error::NotRunning(_))
        ));
        assert!(broker.kill9().unwrap().is_some());
        assert!(!broker.is_up());
        assert!(matches!(broker.freeze(), Err(Error::NotRunning(_))));
    }
}
