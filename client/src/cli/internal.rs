//! Hidden helpers `hearth bench --baseline` starts as child processes: a bare libzmq relay
//! and REP echo sockets behind it, the ceiling a broker is compared with.

use anyhow::{anyhow, Context as _};
use clap::Subcommand;

use super::Outcome;

/// `hearth internal ...`.
#[derive(Debug, Subcommand)]
pub enum InternalCommand {
    /// `zmq::proxy` between a ROUTER frontend and a DEALER backend, until killed
    Relay {
        /// ROUTER endpoint to bind for clients
        #[arg(long)]
        frontend: String,
        /// DEALER endpoint to bind for the echo sockets
        #[arg(long)]
        backend: String,
    },
    /// REP sockets that send back every message they receive, until killed
    RepEcho {
        /// The relay's backend endpoint
        #[arg(long)]
        connect: String,
        /// REP sockets, one thread each
        #[arg(long, default_value_t = 4)]
        threads: usize,
    },
}

/// Runs a helper; it returns only on error.
pub fn run(command: InternalCommand) -> anyhow::Result<Outcome> {
    let context = zmq::Context::new();
    match command {
        InternalCommand::Relay { frontend, backend } => {
            let front = context.socket(zmq::ROUTER)?;
            front
                .bind(&frontend)
                .with_context(|| format!("cannot bind {frontend}"))?;
            let back = context.socket(zmq::DEALER)?;
            back.bind(&backend)
                .with_context(|| format!("cannot bind {backend}"))?;
            zmq::proxy(&front, &back).context("relay")?;
            Ok(Outcome::Success)
        }
        InternalCommand::RepEcho { connect, threads } => {
            let mut handles = Vec::with_capacity(threads);
            for _ in 0..threads.max(1) {
                let socket = context.socket(zmq::REP)?;
                socket
                    .connect(&connect)
                    .with_context(|| format!("cannot connect to {connect}"))?;
                handles.push(std::thread::spawn(move || -> Result<(), zmq::Error> {
                    loop {
                        let message = socket.recv_multipart(0)?;
                        socket.send_multipart(message, 0)?;
                    }
                }));
            }
            for handle in handles {
                handle
                    .join()
                    .map_err(|_| anyhow!("an echo thread panicked"))?
                    .context("echo")?;
            }
            Ok(Outcome::Success)
        }
    }
}
