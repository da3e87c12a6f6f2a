//! Asking a broker one question over ZeroMQ, as a plain RFC 7 client on a fresh DEALER
//! socket: [`status`] (`hearth.status`, which a broker answers in every Binary Star state
//! without counting it as a client request, so asking never triggers a takeover) and any
//! other service ([`ask`]). A fresh socket per question means a late answer to an earlier
//! question is never taken for this one.

use std::time::Duration;

use hearth_proto::mmi::STATUS_SERVICE;
use hearth_proto::status::BrokerStatus;
use hearth_proto::{ClientMessage, Limits};

use crate::error::{Error, Result};

/// One request to `service` at `endpoint`, waiting at most `timeout` for the reply.
pub fn ask(
    ctx: &zmq::Context,
    endpoint: &str,
    service: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<ClientMessage> {
    let fail = |why: String| Error::Ask {
        endpoint: endpoint.to_owned(),
        service: service.to_owned(),
        why,
    };
    let socket = ctx.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    socket.connect(endpoint)?;
    let request = ClientMessage::new(service, body.to_vec());
    socket.send_multipart(request.frames(), 0)?;
    let millis = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    if socket.poll(zmq::POLLIN, millis)? == 0 {
        return Err(fail(format!("no answer within {timeout:?}")));
    }
    let frames = socket.recv_multipart(0)?;
    ClientMessage::decode(frames, &Limits::default())
        .map_err(|e| fail(format!("undecodable reply: {e}")))
}

/// The broker's status record (`hearth.status`), waiting at most `timeout`.
pub fn status(ctx: &zmq::Context, endpoint: &str, timeout: Duration) -> Result<BrokerStatus> {
    let reply = ask(ctx, endpoint, STATUS_SERVICE, b"", timeout)?;
    let body = reply.body.first().map(Vec::as_slice).unwrap_or_default();
    BrokerStatus::from_bencode(body).map_err(|e| Error::Ask {
        endpoint: endpoint.to_owned(),
        service: STATUS_SERVICE.to_owned(),
        why: format!("bad status record: {e}"),
    })
}

/// Workers of `service` a status record counts (0 if it lists no such service).
pub fn workers_of(status: &BrokerStatus, service: &str) -> u64 {
    status
        .services
        .iter()
        .find(|s| s.name == service)
        .map_or(0, |s| s.workers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_endpoint_is_an_error_naming_it() {
        let ctx = zmq::Context::new();
        let port = crate::free_port().unwrap();
        let endpoint = crate::net::loopback_endpoint(port);
        let err = status(&ctx, &endpoint, Duration::from_millis(50)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("hearth.status at {endpoint}: no answer within 50ms")
        );
    }

    #[test]
    fn answers_are_decoded() {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let broker = std::thread::spawn(move || {
            let frames = router.recv_multipart(0).unwrap();
            let record = BrokerStatus {
                services: vec![hearth_proto::status::ServiceStatus {
                    name: "echo".into(),
                    workers: 2,
                    ..Default::default()
                }],
                ..BrokerStatus::default()
            };
            let reply: Vec<Vec<u8>> = vec![
                frames[0].clone(),
                Vec::new(),
                b"MDPC01".to_vec(),
                STATUS_SERVICE.as_bytes().to_vec(),
                record.to_bencode(),
            ];
            router.send_multipart(reply, 0).unwrap();
        });
        let got = status(&ctx, &endpoint, Duration::from_secs(5)).unwrap();
        broker.join().unwrap();
        assert_eq!((workers_of(&got, "echo"), workers_of(&got, "x")), (2, 0));
    }
}
