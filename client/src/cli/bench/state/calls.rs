//! Requests `hearth bench state` makes outside the load, one at a time: the survey of
//! every key (fill the missing ones; check each holds its last acknowledged write), and
//! the [`Caller`] that [`super::cluster`] writes with too.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail};
use hearth_proto::state::{STATE_GET, STATE_SET};
use hearth_proto::{ClientMessage, Limits};

use super::cluster::ASK_TIMEOUT;
use super::exchange::Book;
use super::wire::{self, Reply};

/// Keys per request of the survey.
const SURVEY_CHUNK: u64 = 1000;

/// What a survey of every key found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Survey {
    /// Keys present when asked.
    pub present: u64,
    /// Keys that were missing and were written by the survey.
    pub filled: u64,
    /// Keys that were missing or older than their last acknowledged write: with `fill`,
    /// only keys that had an acknowledged write; without, every missing key (the survey
    /// runs after a fill, so every key had one).
    pub lost: u64,
}

/// Reads every key of `book` in chunks from `frontend`; with `fill`, writes the missing
/// ones (one `state.set` per chunk, values of the benchmark's size).
pub fn survey(frontend: &str, book: &Book, fill: bool) -> anyhow::Result<Survey> {
    let caller = Caller::new(frontend, ASK_TIMEOUT)?;
    let mut result = Survey::default();
    let mut body = Vec::new();
    let mut start = 0;
    while start < book.keys() {
        let chunk: Vec<u64> = (start..book.keys().min(start + SURVEY_CHUNK)).collect();
        start += SURVEY_CHUNK;
        wire::get_body(&mut body, &chunk);
        let reply = caller.call(STATE_GET, &[&body])?;
        let Some(Reply::Entries(entries)) = wire::read_reply(&reply) else {
            bail!(
                "state.get answered {}",
                String::from_utf8_lossy(&reply[..reply.len().min(200)])
            );
        };
        let found: HashMap<&[u8], u64> = entries.iter().map(|e| (e.key, e.seq)).collect();
        let mut missing = Vec::new();
        for &key in &chunk {
            let acked = book.acked(key);
            match found.get(wire::key(key).as_bytes()) {
                Some(&seq) => {
                    result.present += 1;
                    if seq < acked {
                        result.lost += 1;
                    }
                }
                None => {
                    if acked > 0 || !fill {
                        result.lost += 1;
                    }
                    missing.push(key);
                }
            }
        }
        if fill && !missing.is_empty() {
            wire::set_body(&mut body, &missing, book.take_write(), book.value_len());
            let reply = caller.call(STATE_SET, &[&body])?;
            match wire::read_reply(&reply) {
                Some(Reply::Seq(_)) => result.filled += missing.len() as u64,
                _ => bail!(
                    "state.set of {} keys answered {}",
                    missing.len(),
                    String::from_utf8_lossy(&reply[..reply.len().min(200)])
                ),
            }
        }
    }
    Ok(result)
}

/// One request at a time on a DEALER.
pub struct Caller {
    _context: zmq::Context,
    socket: zmq::Socket,
    frontend: String,
    timeout: Duration,
}

impl Caller {
    /// A caller that waits up to `timeout` for each reply.
    pub fn new(frontend: &str, timeout: Duration) -> anyhow::Result<Caller> {
        let context = zmq::Context::new();
        let socket = context.socket(zmq::DEALER)?;
        socket.set_linger(0)?;
        socket.connect(frontend)?;
        Ok(Caller {
            _context: context,
            socket,
            frontend: frontend.to_owned(),
            timeout,
        })
    }

    /// The one body frame of the reply to `service` with `body`.
    pub fn call(&self, service: &str, body: &[&[u8]]) -> anyhow::Result<Vec<u8>> {
        let header = [&b""[..], b"MDPC01", service.as_bytes()];
        self.socket
            .send_multipart(header.into_iter().chain(body.iter().copied()), 0)?;
        if self
            .socket
            .poll(zmq::POLLIN, self.timeout.as_millis() as i64)?
            == 0
        {
            bail!(
                "no answer from {} to {service} within {:?}",
                self.frontend,
                self.timeout
            );
        }
        let reply = ClientMessage::decode(self.socket.recv_multipart(0)?, &Limits::default())
            .map_err(|e| anyhow!("undecodable reply to {service}: {e}"))?;
        match <[Vec<u8>; 1]>::try_from(reply.body) {
            Ok([body]) if reply.service == service => Ok(body),
            _ => bail!("a reply to {service} that is not one {service} frame"),
        }
    }
}
