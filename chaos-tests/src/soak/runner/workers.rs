//! The soak's worker events: worker *slots* (each slot of the layout names the worker that
//! now fills it, a replacement of the same spec once its worker was killed), kill -9 of a
//! slot's worker, and a slow worker hung (SIGSTOP) while it runs a request, then thawed.
//!
//! Signals go to a worker only while [`crate::Pair::workers`] still holds it: a child this
//! harness started and has not reaped, so its PID cannot have been reused.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use hearth_supervise::procfs::has_child;

use crate::pair::WorkerSpec;
use crate::POLL;

use super::Runner;

/// How long a hang waits for its worker to hold a request.
const BUSY_WITHIN: Duration = Duration::from_secs(2);

impl Runner {
    /// kill -9 of the worker in `slot`, replaced after `down`. False if the slot's worker
    /// has not been replaced yet.
    pub(super) fn kill_worker(&mut self, slot: usize, down: Duration) -> anyhow::Result<bool> {
        let Some(id) = self.slot_worker(slot) else {
            self.log(format!("worker slot {slot} is empty: skipped"));
            return Ok(false);
        };
        self.scenario.kill_workers(&[id], down)?;
        if let Some(s) = self.slots.get_mut(slot) {
            s.id = None;
        }
        Ok(true)
    }

    /// SIGSTOP of the worker in `slot` once it holds a request (or after [`BUSY_WITHIN`]),
    /// SIGCONT after `hold`. False if the slot's worker has not been replaced yet.
    pub(super) fn hang_worker(&mut self, slot: usize, hold: Duration) -> anyhow::Result<bool> {
        let Some(id) = self.slot_worker(slot) else {
            self.log(format!("worker slot {slot} is empty: skipped"));
            return Ok(false);
        };
        let Some(pid) = self.worker_pid(id) else {
            return Ok(false);
        };
        let deadline = Instant::now() + BUSY_WITHIN;
        let mut busy = has_child(pid);
        while !busy && Instant::now() < deadline {
            self.idle(POLL)?;
            busy = has_child(pid);
        }
        self.signal_worker(id, libc::SIGSTOP);
        self.hung = Some(id);
        let frozen_at = Instant::now();
        self.log(format!(
            "SIGSTOP worker {id} (pid {pid}) {}",
            if busy {
                "while it runs a request"
            } else {
                "(it held no request)"
            }
        ));
        self.idle(hold)?;
        self.signal_worker(id, libc::SIGCONT);
        self.hung = None;
        self.log(format!(
            "SIGCONT worker {id} after {:?}",
            frozen_at.elapsed()
        ));
        self.counts.hangs_mid_request += u64::from(busy);
        let options = self.scenario.pair.options();
        if hold > options.heartbeat * options.liveness {
            self.counts.hangs_past_liveness += 1;
        }
        Ok(true)
    }

    /// Brings every worker slot back: the hung worker thawed, the replacements due
    /// started now, and a slot left with no worker (one that crashed) given a new one.
    pub(super) fn recover_workers(&mut self) -> anyhow::Result<()> {
        if let Some(id) = self.hung.take() {
            self.signal_worker(id, libc::SIGCONT);
            self.log(format!("recovery: SIGCONT worker {id}"));
        }
        self.scenario.replace_all_now()?;
        for slot in 0..self.slots.len() {
            if self.slot_worker(slot).is_some() {
                continue;
            }
            let spec = self.slots[slot].spec.clone();
            let id = self.scenario.pair.add_worker(&spec)?;
            self.slots[slot].id = Some(id);
            self.log(format!(
                "recovery: worker slot {slot} was empty; started worker {id}"
            ));
        }
        Ok(())
    }

    /// The worker that fills `slot`: the one it had, if it still runs, else a running
    /// worker of the same spec that no other slot claims (a replacement).
    pub(super) fn slot_worker(&mut self, slot: usize) -> Option<usize> {
        let running: Vec<(usize, WorkerSpec)> = self
            .scenario
            .pair
            .workers()
            .iter()
            .map(|w| (w.id, w.spec.clone()))
            .collect();
        let is_running = |id: usize| running.iter().any(|(r, _)| *r == id);
        let current = self.slots.get(slot)?.id;
        if let Some(id) = current.filter(|id| is_running(*id)) {
            return Some(id);
        }
        let claimed: HashSet<usize> = self
            .slots
            .iter()
            .filter_map(|s| s.id)
            .filter(|id| is_running(*id))
            .collect();
        let spec = &self.slots[slot].spec;
        let adopted = running
            .iter()
            .find(|(id, s)| s == spec && !claimed.contains(id))
            .map(|(id, _)| *id);
        self.slots[slot].id = adopted;
        adopted
    }

    pub(super) fn worker_pid(&self, id: usize) -> Option<u32> {
        self.scenario
            .pair
            .workers()
            .iter()
            .find(|w| w.id == id)
            .map(|w| w.proc.pid())
    }

    /// Sends `signal` to worker `id` if the pair still holds it (by the PID of a child
    /// the pair started and has not reaped; one that exited on its own is left alone).
    pub(super) fn signal_worker(&self, id: usize, signal: libc::c_int) {
        if let Some(worker) = self.scenario.pair.workers().iter().find(|w| w.id == id) {
            let _ = worker.proc.signal(signal);
        }
    }
}
