//! Loopback ports for the children to bind: picked free by binding port 0 and letting go.
//! Another process may take such a port before the child binds it, so a supervisor watches
//! its children start rather than trusting the pick.

use std::net::TcpListener;

use crate::error::{Error, Result};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(free_ports::<1>()?[0])
}

/// `N` different TCP ports on 127.0.0.1 that were free a moment ago (every listener is held
/// until all are picked, so no two are the same).
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::FreePort)?;
        *port = listener.local_addr().map_err(Error::FreePort)?.port();
        listeners.push(listener);
    }
    Ok(ports)
}

/// `tcp://127.0.0.1:PORT`: a loopback ZeroMQ endpoint.
pub fn loopback_endpoint(port: u16) -> String {
    format!("tcp://127.0.0.1:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_picked_together_differ() {
        let ports = free_ports::<8>().unwrap();
        let mut sorted = ports.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 8, "{ports:?}");
        assert!(free_port().unwrap() > 0);
        assert_eq!(loopback_endpoint(5555), "tcp://127.0.0.1:5555");
    }
}
