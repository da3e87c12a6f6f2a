//! hearth's one process-supervision layer, used by `hearth up`, `hearth bench` and the
//! tests: they all start the real binaries as child processes, signal them, watch them and
//! wait on them, and here is the one way to do each.
//!
//! * [`proc`]: [`Proc`], a child process signalled only by the PID of a child this process
//!   started and has not reaped (kill -9, freeze, thaw, terminate with grace), killed and
//!   reaped on drop; how children start ([`Launch`], [`Output`]);
//! * [`dirs`]: [`LogDir`] (one log file per child start, kept with its tails printed when a
//!   run fails) and [`ScratchDir`] (data dirs, removed when done);
//! * [`wait`]: [`wait_until`], the one poll-until-deadline, reporting the last value seen;
//! * [`args`]: the `hearth-broker` and `hearth-worker` command lines;
//! * [`broker`]: [`Broker`], one broker process that is killed and started again as itself;
//! * [`pair`]: [`Pair`], a Binary Star pair of brokers and its workers, by [`Side`];
//! * [`worker`]: what a worker serves and where ([`WorkerSpec`]), and a supervisor's
//!   workers ([`Workers`]);
//! * [`ask`] (ZeroMQ) and [`http`] + [`metrics`] (HTTP): asking a broker where it stands;
//! * [`bins`], [`net`], [`procfs`], [`stop`]: where the binaries are, free loopback ports,
//!   `/proc` readings (CPU time, RSS, peak RSS), and Ctrl-C for a supervisor.
//!
//! It links into the `hearth` binary, so it depends on little: libc, zmq, hearth-proto and
//! thiserror.

pub mod args;
pub mod ask;
pub mod bins;
pub mod broker;
pub mod dirs;
pub mod error;
pub mod http;
pub mod metrics;
pub mod net;
pub mod pair;
pub mod proc;
pub mod procfs;
pub mod stop;
pub mod wait;
pub mod worker;

pub use args::{duration_arg, BrokerArgs, PeerArgs, WorkerArgs, WorkerKind};
pub use bins::{built_binary, sibling_binary, Programs, BIN_DIR_ENV};
pub use broker::Broker;
pub use dirs::{LogDir, ScratchDir, KEEP_LOGS_ENV};
pub use error::{Error, Result};
pub use metrics::BrokerSample;
pub use net::{free_port, free_ports, loopback_endpoint};
pub use pair::{settled, BrokerEndpoints, Observed, Pair, PairSpec, Reach, Side};
pub use proc::{Exited, Launch, Output, Proc};
pub use procfs::{cpu_time, memory, Memory};
pub use stop::{install_stop_signals, stop_requested};
pub use wait::{wait_until, Wait, POLL};
pub use worker::{Worker, WorkerSpec, Workers};
