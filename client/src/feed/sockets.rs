//! The follower's SUB sockets: finding each broker's feed, subscribing, and reading
//! updates from all of them.
//!
//! Each SUB socket has a monitor that reports finished handshakes, for two reasons: at the
//! start the follower waits until its subscriptions have reached the feeds (so that the
//! first snapshot is not followed by changes published to nobody), and later a second
//! handshake means the feed reconnected and may have published something meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hearth_proto::state::FeedUpdate;
use tracing::debug;

use crate::state::Value;
use crate::{Client, ClientConfig, ClientError};

/// High-water mark of each SUB socket, in messages: deep enough to hold what arrives while
/// a snapshot is taken.
const RECEIVE_HWM: i32 = 100_000;
/// Most messages read from one socket in a row before the others get their turn.
const BATCH: usize = 256;

/// Gives every monitor in the process its own inproc endpoint.
static NEXT_MONITOR: AtomicUsize = AtomicUsize::new(0);

/// The feed endpoint to connect to for a broker reached at `broker` that reports its feed
/// bound at `publish`: a wildcard host (`*`, `0.0.0.0`, `[::]`) becomes the broker's host
/// (or `127.0.0.1` if the broker URL has none); anything else is used as it is.
pub fn feed_endpoint(publish: &str, broker: &str) -> String {
    let Some((host, port)) = publish
        .strip_prefix("tcp://")
        .and_then(|rest| rest.rsplit_once(':'))
    else {
        return publish.to_owned();
    };
    if !matches!(host, "*" | "0.0.0.0" | "[::]" | "::" | "[::0]") {
        return publish.to_owned();
    }
    let broker_host = broker
        .strip_prefix("tcp://")
        .and_then(|rest| rest.rsplit_once(':'))
        // `tcp://source;host:port` names a source address first; the host is after it.
        .map(|(host, _)| host.rsplit(';').next().unwrap_or(host))
        .filter(|host| !host.is_empty() && *host != "*");
    format!("tcp://{}:{port}", broker_host.unwrap_or("127.0.0.1"))
}

struct Feed {
    endpoint: String,
    socket: zmq::Socket,
    /// Reports finished handshakes; `None` if ZeroMQ would not monitor the socket.
    monitor: Option<zmq::Socket>,
    handshakes: u32,
}

/// What one [`Feeds::poll`] saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Polled {
    /// A feed message arrived.
    pub heard: bool,
    /// A feed connected again after it had been connected before.
    pub reconnected: bool,
}

/// Every feed the follower reads, and the brokers whose feed is not known yet.
pub struct Feeds {
    feeds: Vec<Feed>,
    /// Brokers that did not answer `hearth.status` yet.
    pending: Vec<String>,
    context: zmq::Context,
}

impl Feeds {
    /// Subscribes to `explicit`, or to the feed of every broker of `client` that answers;
    /// then waits up to the attempt timeout for the handshakes.
    pub fn open(client: &Client, explicit: &[String]) -> Result<Feeds, ClientError> {
        let config = client.config();
        let mut feeds = Feeds {
            feeds: Vec::new(),
            pending: Vec::new(),
            context: zmq::Context::new(),
        };
        if explicit.is_empty() {
            feeds.pending.clone_from(&config.brokers);
            feeds.rediscover(client)?;
        } else {
            for endpoint in explicit {
                feeds.subscribe(endpoint)?;
            }
        }
        if feeds.feeds.is_empty() {
            return Err(if feeds.pending.is_empty() {
                ClientError::Config(
                    "no broker publishes a change feed: start the brokers with --publish, \
                     or name the feed endpoints"
                        .into(),
                )
            } else {
                ClientError::Timeout {
                    service: hearth_proto::mmi::STATUS_SERVICE.into(),
                    after: config.attempt_timeout,
                }
            });
        }
        feeds.await_handshakes(Instant::now() + config.attempt_timeout)?;
        Ok(feeds)
    }

    /// Asks each broker whose feed is not known yet for its status (all at once, each
    /// within the attempt timeout) and subscribes to the feeds found.
    pub fn rediscover(&mut self, client: &Client) -> Result<(), ClientError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let config = client.config();
        let answers: Vec<(String, Result<Option<String>, ClientError>)> =
            std::thread::scope(|scope| {
                let asks: Vec<_> = self
                    .pending
                    .iter()
                    .map(|broker| {
                        (
                            broker.clone(),
                            scope.spawn(|| announced_feed(config, broker)),
                        )
                    })
                    .collect();
                asks.into_iter()
                    .map(|(broker, ask)| {
                        let answer = ask.join().unwrap_or_else(|_| {
                            Err(ClientError::BadReply("status thread panicked".into()))
                        });
                        (broker, answer)
                    })
                    .collect()
            });
        self.pending.clear();
        for (broker, answer) in answers {
            match answer {
                Ok(Some(publish)) => self.subscribe(&feed_endpoint(&publish, &broker))?,
                Ok(None) => debug!(%broker, "broker publishes no change feed"),
                Err(e) => {
                    debug!(%broker, error = %e, "cannot learn the broker's change feed yet");
                    self.pending.push(broker);
                }
            }
        }
        Ok(())
    }

    /// Reads every feed until `until` or until at least one message came, and hands each
    /// well-formed update to `on_update`.
    pub fn poll(
        &mut self,
        until: Instant,
        mut on_update: impl FnMut(FeedUpdate),
    ) -> Result<Polled, ClientError> {
        let mut polled = Polled::default();
        let mut items: Vec<zmq::PollItem> = self
            .feeds
            .iter()
            .map(|f| f.socket.as_poll_item(zmq::POLLIN))
            .collect();
        items.extend(
            self.feeds
                .iter()
                .filter_map(|f| f.monitor.as_ref())
                .map(|m| m.as_poll_item(zmq::POLLIN)),
        );
        if zmq::poll(&mut items, millis_until(until))? == 0 {
            return Ok(polled);
        }
        drop(items);
        for feed in &mut self.feeds {
            if feed.take_handshakes() > 0 && feed.handshakes > 1 {
                debug!(endpoint = %feed.endpoint, "change feed reconnected");
                polled.reconnected = true;
            }
        }
        // Round-robin over the sockets so that one busy feed cannot starve the other.
        let mut busy = true;
        while busy {
            busy = false;
            for feed in &self.feeds {
                for _ in 0..BATCH {
                    let Ok(frames) = feed.socket.recv_multipart(zmq::DONTWAIT) else {
                        break;
                    };
                    busy = true;
                    polled.heard = true;
                    match FeedUpdate::decode(&frames) {
                        Ok(update) if value_is_bencode(&update) => on_update(update),
                        Ok(update) => debug!(key = %update.key, "feed value is not Bencode"),
                        Err(e) => debug!(endpoint = %feed.endpoint, error = %e, "bad feed message"),
                    }
                }
            }
        }
        Ok(polled)
    }

    /// The endpoints subscribed to.
    pub fn endpoints(&self) -> Vec<String> {
        self.feeds.iter().map(|f| f.endpoint.clone()).collect()
    }

    fn subscribe(&mut self, endpoint: &str) -> Result<(), ClientError> {
        if self.feeds.iter().any(|f| f.endpoint == endpoint) {
            return Ok(());
        }
        let socket = self.context.socket(zmq::SUB)?;
        socket.set_linger(0)?;
        socket.set_rcvhwm(RECEIVE_HWM)?;
        socket.set_subscribe(b"")?;
        let monitor = self.monitor(&socket);
        socket
            .connect(endpoint)
            .map_err(|source| ClientError::Endpoint {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        debug!(%endpoint, "subscribed to a change feed");
        self.feeds.push(Feed {
            endpoint: endpoint.to_owned(),
            socket,
            monitor,
            handshakes: 0,
        });
        Ok(())
    }

    fn monitor(&self, socket: &zmq::Socket) -> Option<zmq::Socket> {
        let endpoint = format!(
            "inproc://hearth-feed-monitor-{}",
            NEXT_MONITOR.fetch_add(1, Ordering::Relaxed)
        );
        let events = zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32;
        let monitor = socket
            .monitor(&endpoint, events)
            .and_then(|()| self.context.socket(zmq::PAIR))
            .and_then(|pair| pair.connect(&endpoint).map(|()| pair));
        match monitor {
            Ok(pair) => Some(pair),
            Err(e) => {
                debug!(error = %e, "cannot monitor a feed socket; not waiting for its handshake");
                None
            }
        }
    }

    /// Waits until every monitored feed has finished a handshake, or `deadline`.
    fn await_handshakes(&mut self, deadline: Instant) -> Result<(), ClientError> {
        loop {
            for feed in &mut self.feeds {
                feed.take_handshakes();
            }
            let waiting: Vec<zmq::PollItem> = self
                .feeds
                .iter()
                .filter(|f| f.handshakes == 0)
                .filter_map(|f| f.monitor.as_ref())
                .map(|m| m.as_poll_item(zmq::POLLIN))
                .collect();
            let mut waiting = waiting;
            if waiting.is_empty() {
                return Ok(());
            }
            let wait = millis_until(deadline);
            if wait == 0 {
                debug!(
                    waiting = waiting.len(),
                    "change feeds not connected yet; going on"
                );
                return Ok(());
            }
            zmq::poll(&mut waiting, wait)?;
        }
    }
}

impl Feed {
    /// Reads the monitor's queued events; returns how many handshakes they report.
    fn take_handshakes(&mut self) -> u32 {
        let Some(monitor) = &self.monitor else {
            return 0;
        };
        let mut seen = 0;
        while let Ok(event) = monitor.recv_multipart(zmq::DONTWAIT) {
            let id = event
                .first()
                .and_then(|f| f.get(..2))
                .map(|b| u16::from_ne_bytes([b[0], b[1]]));
            if id == Some(zmq::SocketEvent::HANDSHAKE_SUCCEEDED as u16) {
                seen += 1;
            }
        }
        self.handshakes += seen;
        seen
    }
}

/// The feed endpoint one broker announces in its status, as bound.
fn announced_feed(config: &ClientConfig, broker: &str) -> Result<Option<String>, ClientError> {
    let mut single = config.clone();
    single.brokers = vec![broker.to_owned()];
    single.timeout = config.attempt_timeout;
    Ok(Client::new(single)?.status()?.publish)
}

fn value_is_bencode(update: &FeedUpdate) -> bool {
    match &update.value {
        Some(bytes) => Value::from_bencode(bytes).is_ok(),
        None => true,
    }
}

/// Milliseconds from now until `deadline`, rounded up, as `zmq::poll` takes them.
fn millis_until(deadline: Instant) -> i64 {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return 0;
    }
    i64::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wildcard_hosts_become_the_brokers_host() {
        let rows = [
            (
                "tcp://0.0.0.0:5557",
                "tcp://hub.local:5555",
                "tcp://hub.local:5557",
            ),
            ("tcp://*:5557", "tcp://10.0.0.2:5555", "tcp://10.0.0.2:5557"),
            (
                "tcp://[::]:5557",
                "tcp://[fe80::1]:5555",
                "tcp://[fe80::1]:5557",
            ),
            (
                "tcp://0.0.0.0:5557",
                "tcp://eth0;hub:5555",
                "tcp://hub:5557",
            ),
            (
                "tcp://0.0.0.0:5557",
                "ipc:///run/hearth",
                "tcp://127.0.0.1:5557",
            ),
            (
                "tcp://127.0.0.1:41234",
                "tcp://hub:5555",
                "tcp://127.0.0.1:41234",
            ),
            (
                "tcp://192.168.1.2:5557",
                "tcp://hub:5555",
                "tcp://192.168.1.2:5557",
            ),
            (
                "ipc:///run/hearth-feed",
                "tcp://hub:5555",
                "ipc:///run/hearth-feed",
            ),
            ("garbage", "tcp://hub:5555", "garbage"),
        ];
        for (publish, broker, expected) in rows {
            assert_eq!(
                feed_endpoint(publish, broker),
                expected,
                "{publish} via {broker}"
            );
        }
    }

    #[test]
    fn millis_round_up() {
        assert_eq!(millis_until(Instant::now()), 0);
        let ms = millis_until(Instant::now() + Duration::from_micros(1500));
        assert!((1..=2).contains(&ms), "{ms}");
    }
}
