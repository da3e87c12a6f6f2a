//! Raw ZeroMQ sockets, not hearth's client or worker, speak RFC 7 byte for byte to the
//! broker: the wire stays exact for clients and workers written in any language.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(5);

/// A raw worker that has registered `service`.
fn raw_worker(ctx: &zmq::Context, endpoint: &str, service: &str) -> zmq::Socket {
    let w = raw(ctx, zmq::DEALER, endpoint);
    send(&w, &[b"", b"MDPW01", b"\x01", service.as_bytes()]);
    w
}

#[test]
fn rfc7_request_and_reply_frames_are_exact() {
    let broker = start_broker(|_| {});
    let ctx = zmq::Context::new();
    let worker = raw_worker(&ctx, broker.frontend(), "echo");
    let client = raw(&ctx, zmq::REQ, broker.frontend());
    // A REQ socket adds the empty delimiter itself, as in the guide's C client.
    send(&client, &[b"MDPC01", b"echo", b"hello", b"world"]);
    let request = recv_until(&worker, T, |f| is_command(f, 0x02));
    assert_eq!(request.len(), 7, "{request:?}");
    assert_eq!(request[0], b"");
    assert_eq!(request[1], b"MDPW01");
    assert_eq!(request[2], b"\x02");
    assert!(!request[3].is_empty(), "client address");
    assert_eq!(request[4], b"");
    assert_eq!(&request[5..], &[b"hello".to_vec(), b"world".to_vec()]);
    send(
        &worker,
        &[
            b"",
            b"MDPW01",
            b"\x03",
            &request[3],
            b"",
            b"HELLO",
            b"WORLD",
        ],
    );
    let reply = recv(&client, T).expect("reply");
    assert_eq!(
        reply,
        vec![
            b"MDPC01".to_vec(),
            b"echo".to_vec(),
            b"HELLO".to_vec(),
            b"WORLD".to_vec()
        ]
    );
    broker.shutdown().unwrap();
}

#[test]
fn dealer_client_gets_the_empty_delimiter() {
    let broker = start_broker(|_| {});
    let ctx = zmq::Context::new();
    let worker = raw_worker(&ctx, broker.frontend(), "echo");
    let client = raw(&ctx, zmq::DEALER, broker.frontend());
    send(&client, &[b"", b"MDPC01", b"echo", b"x"]);
    let request = recv_until(&worker, T, |f| is_command(f, 0x02));
    send(&worker, &[b"", b"MDPW01", b"\x03", &request[3], b"", b"x"]);
    assert_eq!(
        recv(&client, T).unwrap(),
        vec![
            b"".to_vec(),
            b"MDPC01".to_vec(),
            b"echo".to_vec(),
            b"x".to_vec()
        ]
    );
}

#[test]
fn broker_heartbeats_are_exact() {
    let broker = start_broker(|_| {});
    let ctx = zmq::Context::new();
    let worker = raw_worker(&ctx, broker.frontend(), "echo");
    let hb = recv_until(&worker, T, |f| is_command(f, 0x04));
    assert_eq!(hb, vec![b"".to_vec(), b"MDPW01".to_vec(), b"\x04".to_vec()]);
}

#[test]
fn mmi_rules() {
    let broker = start_broker(|_| {});
    let ctx = zmq::Context::new();
    let client = raw(&ctx, zmq::REQ, broker.frontend());
    let ask = |service: &[u8], body: &[u8]| {
        send(&client, &[b"MDPC01", service, body]);
        recv(&client, T).expect("mmi reply")
    };
    assert_eq!(
        ask(b"mmi.service", b"echo"),
        vec![b"MDPC01".to_vec(), b"mmi.service".to_vec(), b"404".to_vec()]
    );
    let worker = raw_worker(&ctx, broker.frontend(), "echo");
    wait_for("echo registered", T, || {
        let reply = ask(b"mmi.service", b"echo");
        if reply[2] == b"200" {
            Ok(())
        } else {
            Err(reply)
        }
    });
    assert_eq!(ask(b"mmi.nothing", b"echo")[2], b"501");
    // The worker leaves: 404 again.
    send(&worker, &[b"", b"MDPW01", b"\x05"]);
    wait_for("echo gone", T, || {
        let reply = ask(b"mmi.service", b"echo");
        if reply[2] == b"404" {
            Ok(())
        } else {
            Err(reply)
        }
    });
}

#[test]
fn protocol_errors_get_disconnect() {
    let broker = start_broker(|_| {});
    let ctx = zmq::Context::new();
    let disconnect = vec![b"".to_vec(), b"MDPW01".to_vec(), b"\x05".to_vec()];
    let cases: [&[&[u8]]; 4] = [
        &[b"", b"MDPW01", b"\x01", b"mmi.service"], // READY for an mmi.* service
        &[b"", b"MDPW01", b"\x04"],                 // HEARTBEAT from an unknown worker
        &[b"", b"MDPW01", b"\x03", b"C1", b"", b"x"], // REPLY from an unknown worker
        &[b"", b"MDPW01", b"\x02", b"C1", b"", b"x"], // REQUEST sent to the broker
    ];
    for frames in cases {
        let w = raw(&ctx, zmq::DEALER, broker.frontend());
        send(&w, frames);
        assert_eq!(recv(&w, T), Some(disconnect.clone()), "after {frames:?}");
    }
    // A second READY from a registered worker.
    let w = raw_worker(&ctx, broker.frontend(), "echo");
    send(&w, &[b"", b"MDPW01", b"\x01", b"echo"]);
    recv_until(&w, T, |f| *f == disconnect);
}

#[test]
fn each_malformed_shape_is_counted_and_dropped_and_the_broker_still_serves() {
    let broker = start_broker(|c| {
        c.max_frame_size = 1024;
        c.max_frames = 16;
        // The frame limit must exceed the state request limit (and that the value limit).
        c.state.max_request_bytes = 1000;
        c.state.max_value_bytes = 500;
    });
    let http = broker.metrics_addr().unwrap();
    let ctx = zmq::Context::new();
    let worker = raw_worker(&ctx, broker.frontend(), "echo");
    let big = vec![b'x'; 2048];
    let many: Vec<&[u8]> = std::iter::repeat_n(&b"x"[..], 20).collect();
    let cases: Vec<(&str, Vec<&[u8]>)> = vec![
        ("missing_delimiter", vec![b"MDPC01", b"echo", b"x"]),
        ("missing_header", vec![b""]),
        ("wrong_header", vec![b"", b"MDPX01", b"echo", b"x"]),
        ("missing_command", vec![b"", b"MDPW01"]),
        ("unknown_command", vec![b"", b"MDPW01", b"\x09"]),
        ("missing_service", vec![b"", b"MDPC01"]),
        ("invalid_service_name", vec![b"", b"MDPC01", b"\xff", b"x"]),
        ("missing_body", vec![b"", b"MDPC01", b"echo"]),
        ("ready_without_service", vec![b"", b"MDPW01", b"\x01"]),
        ("missing_client_address", vec![b"", b"MDPW01", b"\x03"]),
        (
            "missing_envelope_delimiter",
            vec![b"", b"MDPW01", b"\x03", b"C1", b"x"],
        ),
        ("trailing_frames", vec![b"", b"MDPW01", b"\x04", b"extra"]),
        ("frame_too_large", vec![b"", b"MDPC01", b"echo", &big]),
        (
            "too_many_frames",
            [&[&b""[..], b"MDPC01", b"echo"][..], &many[..]].concat(),
        ),
    ];
    for (reason, frames) in cases {
        let bad = raw(&ctx, zmq::DEALER, broker.frontend());
        send(&bad, &frames);
        let series = format!("hearth_malformed_messages_total{{reason=\"{reason}\"}}");
        wait_for(&series, T, || {
            let v = metric(http, &series);
            if v >= 1.0 {
                Ok(())
            } else {
                Err(v)
            }
        });
        // The broker still answers a normal request after each bad one.
        let client = raw(&ctx, zmq::DEALER, broker.frontend());
        send(&client, &[b"", b"MDPC01", b"echo", reason.as_bytes()]);
        let request = recv_until(&worker, T, |f| is_command(f, 0x02));
        assert_eq!(request[5], reason.as_bytes());
        send(
            &worker,
            &[b"", b"MDPW01", b"\x03", &request[3], b"", reason.as_bytes()],
        );
        let reply = recv(&client, T).expect("reply after malformed input");
        assert_eq!(reply[3], reason.as_bytes());
    }
    // An empty message cannot be sent through ZeroMQ (a message has at least one frame);
    // its decoder case is covered by hearth-proto's unit tests.
    assert!(broker.is_running());
}

#[test]
fn http_endpoints() {
    let broker = start_broker(|_| {});
    let http = broker.metrics_addr().unwrap();
    let ctx = zmq::Context::new();
    let _worker = raw_worker(&ctx, broker.frontend(), "echo");
    let (code, body) = http_get(http, "/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let status = wait_for("status with echo", T, || {
        let (code, body) = http_get(http, "/status");
        let json: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{code} {e} {body}"))?;
        if json["services"][0]["workers"] == 1 {
            Ok(json)
        } else {
            Err(body)
        }
    });
    assert_eq!(status["role"], "standalone");
    assert_eq!(status["state"], "active");
    assert_eq!(status["peer_alive"], false);
    assert_eq!(status["state_seq"], 0);
    assert_eq!(status["services"][0]["name"], "echo");
    let (code, metrics) = http_get(http, "/metrics");
    assert_eq!(code, 200);
    for name in [
        "hearth_workers{service=\"echo\"} 1",
        "hearth_bstar_state{state=\"active\"} 1",
        "hearth_peer_alive 0",
        "hearth_state_seq 0",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    assert_eq!(http_get(http, "/nope").0, 404);
}
