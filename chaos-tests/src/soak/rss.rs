//! Peak memory of the brokers over a soak: `VmHWM` (the resident set's high-water mark) and
//! `VmRSS` from `/proc/<pid>/status`, read regularly and just before every kill, and kept
//! as the maximum over all of a broker's processes (its incarnations).
//!
//! `VmHWM` only grows during a process's life, so one reading just before the process dies
//! covers everything it did; the regular readings are for the processes alive at the end and
//! for a run that fails half-way.

use std::collections::BTreeSet;

use crate::pair::{Pair, Side};

/// The memory figures of one reading, in KiB.
pub use hearth_supervise::Memory;

/// Reads the memory of process `pid` (`hearth_supervise::memory`); None if it is gone or
/// `/proc` says nothing.
pub fn read(pid: u32) -> Option<Memory> {
    hearth_supervise::memory(pid).ok()
}

/// The peak memory of one broker over its processes.
#[derive(Debug, Clone, Default)]
pub struct BrokerMemory {
    /// The highest `VmHWM` of any of its processes.
    pub peak: Memory,
    /// The PID and last reading of its current process.
    pub current: Option<(u32, Memory)>,
    /// The processes read at least once.
    pub processes: BTreeSet<u32>,
}

/// Both brokers' peak memory.
#[derive(Debug, Clone, Default)]
pub struct PeakMemory {
    brokers: [BrokerMemory; 2],
}

impl PeakMemory {
    /// Reads `side`'s process, if it runs (frozen or not).
    pub fn sample(&mut self, pair: &Pair, side: Side) {
        let Some(pid) = pair.pid(side) else { return };
        let Some(memory) = read(pid) else { return };
        let b = &mut self.brokers[side.index()];
        b.peak.hwm_kib = b.peak.hwm_kib.max(memory.hwm_kib);
        b.peak.rss_kib = b.peak.rss_kib.max(memory.rss_kib);
        b.current = Some((pid, memory));
        b.processes.insert(pid);
    }

    /// Reads both brokers.
    pub fn sample_both(&mut self, pair: &Pair) {
        for side in Side::BOTH {
            self.sample(pair, side);
        }
    }

    /// What is known of `side`.
    pub fn of(&self, side: Side) -> &BrokerMemory {
        &self.brokers[side.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = read(std::process::id()).expect("our own /proc status");
        assert!(me.hwm_kib >= me.rss_kib && me.rss_kib > 0, "{me:?}");
    }
}
