//! Worker processes: what one serves and where ([`WorkerSpec`], enough to start a
//! replacement after a kill), a running one ([`Worker`]), and the workers of one supervisor
//! ([`Workers`]), numbered from 1 in start order, stopped last started first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::args::{WorkerArgs, WorkerKind};
use crate::error::{Error, Result};
use crate::pair::{Reach, Side};
use crate::proc::{Exited, Launch, Proc};

/// What a worker serves and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    /// The service it offers.
    pub service: String,
    /// Echo or exec.
    pub kind: WorkerKind,
    /// The brokers it connects to (a standalone broker's workers: [`Reach::Both`]).
    pub reach: Reach,
    /// Further flags, e.g. `--concurrency 2`.
    pub extra: Vec<String>,
}

impl WorkerSpec {
    /// A worker of `service` doing `kind`, reaching `reach`, with no further flags.
    pub fn new(service: &str, kind: WorkerKind, reach: Reach) -> WorkerSpec {
        WorkerSpec {
            service: service.to_owned(),
            kind,
            reach,
            extra: Vec::new(),
        }
    }

    /// The name of worker number `id` in messages and log files:
    /// `hearth-worker echo#2`, or `hearth-worker echo#2@primary` if it reaches one broker.
    pub fn name(&self, id: usize) -> String {
        match self.reach {
            Reach::Both => format!("hearth-worker {}#{id}", self.service),
            Reach::Only(side) => format!("hearth-worker {}#{id}@{side}", self.service),
        }
    }

    /// Whether it registers with `side`.
    pub fn reaches(&self, side: Side) -> bool {
        self.reach.includes(side)
    }
}

/// One running worker process.
#[derive(Debug)]
pub struct Worker {
    /// Unique among its supervisor's workers, from 1 in start order.
    pub id: usize,
    /// How to start it again.
    pub spec: WorkerSpec,
    /// The process.
    pub proc: Proc,
    /// Whether it has been sent SIGSTOP (and not SIGCONT since).
    pub frozen: bool,
}

/// The running workers of one supervisor (a pair, a standalone broker).
#[derive(Debug)]
pub struct Workers {
    program: PathBuf,
    launch: Launch,
    running: Vec<Worker>,
    next_id: usize,
}

impl Workers {
    /// None yet; each will run `program` (`hearth-worker`) as `launch` says.
    pub fn new(program: &Path, launch: Launch) -> Workers {
        Workers {
            program: program.to_path_buf(),
            launch,
            running: Vec::new(),
            next_id: 1,
        }
    }

    /// Starts a worker of `spec` with the command line `args`; its id (it registers by
    /// itself).
    pub fn add(&mut self, spec: &WorkerSpec, args: &WorkerArgs) -> Result<usize> {
        let id = self.next_id;
        let proc = Proc::spawn(&spec.name(id), &self.program, &args.to_args(), &self.launch)?;
        self.next_id += 1;
        self.running.push(Worker {
            id,
            spec: spec.clone(),
            proc,
            frozen: false,
        });
        Ok(id)
    }

    /// The running workers, in start order.
    pub fn all(&self) -> &[Worker] {
        &self.running
    }

    /// The running worker with this id.
    pub fn get_mut(&mut self, id: usize) -> Option<&mut Worker> {
        self.running.iter_mut().find(|w| w.id == id)
    }

    /// `kill -9` of worker `id`, which is forgotten; its spec, to start a replacement.
    pub fn kill(&mut self, id: usize) -> Result<WorkerSpec> {
        let at = self
            .running
            .iter()
            .position(|w| w.id == id)
            .ok_or_else(|| Error::NotRunning(format!("worker {id}")))?;
        let mut worker = self.running.remove(at);
        worker.proc.kill9()?;
        Ok(worker.spec)
    }

    /// Every worker that ended without being killed here (a crash).
    pub fn exited(&mut self) -> impl Iterator<Item = Exited> + '_ {
        self.running
            .iter_mut()
            .filter_map(|w| Exited::of(&mut w.proc))
    }

    /// Stops them all, last started first: SIGTERM, SIGKILL after `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        for mut worker in self.running.drain(..).rev() {
            let _ = worker.proc.terminate(grace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_service_number_and_reach() {
        let mut spec = WorkerSpec::new("echo", WorkerKind::Echo, Reach::Both);
        assert_eq!(spec.name(2), "hearth-worker echo#2");
        spec.reach = Reach::Only(Side::Primary);
        assert_eq!(spec.name(3), "hearth-worker echo#3@primary");
    }

    #[test]
    fn workers_are_numbered_killed_and_seen_crashing() {
        // A stand-in for hearth-worker: serving `crash` it exits at once, else it runs.
        let dir = crate::ScratchDir::new("supervise-worker-test").unwrap();
        let program = dir.of("fake-worker");
        std::fs::write(
            &program,
            "#!/bin/sh\ncase \"$*\" in *crash*) exit 3;; esac\nexec sleep 30\n",
        )
        .unwrap();
        let mut perms = std::fs::metadata(&program).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&program, perms).unwrap();

        let mut workers = Workers::new(&program, Launch::harness(crate::Output::Null));
        let add = |workers: &mut Workers, service: &str| {
            let spec = WorkerSpec::new(service, WorkerKind::Echo, Reach::Both);
            let args = WorkerArgs::new(Vec::new(), service, WorkerKind::Echo);
            workers.add(&spec, &args).unwrap()
        };
        assert_eq!(
            (add(&mut workers, "echo"), add(&mut workers, "crash")),
            (1, 2)
        );
        let crashed = crate::wait_until("worker 2 to crash", Duration::from_secs(5), || {
            workers.exited().next().ok_or("none yet")
        })
        .unwrap();
        assert_eq!(crashed.name, "hearth-worker crash#2");
        assert_eq!(workers.kill(1).unwrap().service, "echo");
        assert_eq!(workers.all().len(), 1);
        assert!(workers.kill(1).is_err());
        workers.terminate(Duration::from_secs(1));
        assert!(workers.all().is_empty());
    }
}
