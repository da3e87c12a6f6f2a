//! A TCP proxy on 127.0.0.1 that a test can cut and heal, to partition the peer link of a
//! pair without touching either broker.
//!
//! Each accepted connection is forwarded to the target, both ways, by two copy threads.
//! [`Proxy::cut`] shuts every forwarded connection down and from then on accepts new ones
//! only to drop them at once: the listening port stays bound (so no other socket can take it
//! while the link is cut), but ZeroMQ's continuous reconnects never complete a handshake, so
//! neither of a broker's PUSH sockets gets a byte through. [`Proxy::heal`] forwards again.
//! Dropping the proxy stops its accept thread and closes every connection.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Forwarded connections at most at once; more are dropped as they come.
const MAX_CONNECTIONS: usize = 64;

/// How long connecting to the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A forwarded connection: the accepted side and the side towards the target.
struct Forwarded {
    id: u64,
    client: TcpStream,
    upstream: TcpStream,
}

impl Forwarded {
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

/// What the accept thread and the copy threads share with the test.
#[derive(Default)]
struct Links {
    cut: bool,
    next_id: u64,
    open: Vec<Forwarded>,
}

/// A cuttable TCP proxy (see the module documentation).
pub struct Proxy {
    addr: SocketAddr,
    links: Arc<Mutex<Links>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let links = Arc::new(Mutex::new(Links::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (links, stop) = (links.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(listener, target, links, stop))
        };
        Proxy {
            addr,
            links,
            stop,
            accept: Some(accept),
        }
    }

    /// The address to connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The same as a ZeroMQ TCP endpoint.
    pub fn endpoint(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// Closes every forwarded connection and drops new ones until [`Proxy::heal`].
    pub fn cut(&self) {
        let mut links = lock(&self.links);
        links.cut = true;
        for link in links.open.drain(..) {
            link.close();
        }
    }

    /// Forwards new connections again.
    pub fn heal(&self) {
        lock(&self.links).cut = false;
    }

    /// Connections forwarded right now.
    pub fn open_connections(&self) -> usize {
        lock(&self.links).open.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept; it sees `stop` and returns.
        let _ = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for link in lock(&self.links).open.drain(..) {
            link.close();
        }
    }
}

/// A poisoned lock only means a copy thread panicked; the list itself is still sound.
fn lock(links: &Mutex<Links>) -> MutexGuard<'_, Links> {
    links.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    links: Arc<Mutex<Links>>,
    stop: Arc<AtomicBool>,
) {
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let refused = {
            let links = lock(&links);
            links.cut || links.open.len() >= MAX_CONNECTIONS
        };
        if refused {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(upstream) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let streams = (
            client.try_clone(),
            upstream.try_clone(),
            client.try_clone(),
            upstream.try_clone(),
        );
        let (Ok(c_read), Ok(u_write), Ok(c_write), Ok(u_read)) = streams else {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
            continue;
        };
        // Registered under the same lock that `cut` takes, so a connection accepted while
        // the proxy is being cut is either closed by the cut or refused here.
        let id = {
            let mut links = lock(&links);
            if links.cut {
                let _ = client.shutdown(Shutdown::Both);
                let _ = upstream.shutdown(Shutdown::Both);
                continue;
            }
            let id = links.next_id;
            links.next_id += 1;
            links.open.push(Forwarded {
                id,
                client,
                upstream,
            });
            id
        };
        for (from, to) in [(c_read, u_write), (u_read, c_write)] {
            let links = links.clone();
            std::thread::spawn(move || {
                copy(from, to);
                // One direction ended: close the whole connection and forget it.
                let mut links = lock(&links);
                if let Some(at) = links.open.iter().position(|l| l.id == id) {
                    links.open.swap_remove(at).close();
                }
            });
        }
    }
}

/// Copies until either side closes or fails.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
