//! One test per malformed shape, plus property tests: encode→decode round-trips, and decode
//! of arbitrary frames never panics.

use super::*;
use proptest::prelude::*;

fn f(parts: &[&[u8]]) -> Vec<Frame> {
    parts.iter().map(|p| p.to_vec()).collect()
}

fn inbound(parts: &[&[u8]]) -> Result<Inbound, DecodeError> {
    Inbound::decode(f(parts), &Limits::default())
}

#[test]
fn client_request_decodes() {
    let msg = inbound(&[b"", b"MDPC01", b"echo", b"hello", b"world"]).unwrap();
    assert_eq!(
        msg,
        Inbound::Client(ClientMessage {
            service: "echo".into(),
            body: vec![b"hello".to_vec(), b"world".to_vec()]
        })
    );
}

#[test]
fn client_message_encodes_exactly_rfc7() {
    let msg = ClientMessage::new("echo", b"hi".to_vec());
    assert_eq!(msg.encode(), f(&[b"", b"MDPC01", b"echo", b"hi"]));
}

#[test]
fn worker_messages_encode_exactly_rfc7() {
    let cases: Vec<(WorkerMessage, Vec<Frame>)> = vec![
        (
            WorkerMessage::Ready {
                service: "echo".into(),
            },
            f(&[b"", b"MDPW01", b"\x01", b"echo"]),
        ),
        (
            WorkerMessage::Request {
                client: b"C1".to_vec(),
                body: vec![b"x".to_vec()],
            },
            f(&[b"", b"MDPW01", b"\x02", b"C1", b"", b"x"]),
        ),
        (
            WorkerMessage::Reply {
                client: b"C1".to_vec(),
                body: vec![b"y".to_vec()],
            },
            f(&[b"", b"MDPW01", b"\x03", b"C1", b"", b"y"]),
        ),
        (WorkerMessage::Heartbeat, f(&[b"", b"MDPW01", b"\x04"])),
        (WorkerMessage::Disconnect, f(&[b"", b"MDPW01", b"\x05"])),
    ];
    for (msg, frames) in cases {
        assert_eq!(msg.encode(), frames, "{msg:?}");
        assert_eq!(
            WorkerMessage::decode(frames.clone(), &Limits::default()),
            Ok(msg.clone())
        );
        assert_eq!(inbound_frames(frames), Ok(Inbound::Worker(msg)));
    }
}

fn inbound_frames(frames: Vec<Frame>) -> Result<Inbound, DecodeError> {
    Inbound::decode(frames, &Limits::default())
}

#[test]
fn empty_message() {
    assert_eq!(inbound(&[]), Err(DecodeError::Empty));
    assert_eq!(
        ClientMessage::decode(vec![], &Limits::default()),
        Err(DecodeError::Empty)
    );
    assert_eq!(
        WorkerMessage::decode(vec![], &Limits::default()),
        Err(DecodeError::Empty)
    );
}

#[test]
fn missing_empty_delimiter() {
    assert_eq!(
        inbound(&[b"MDPC01", b"echo", b"x"]),
        Err(DecodeError::MissingDelimiter)
    );
    assert_eq!(
        inbound(&[b"x", b"MDPC01", b"echo", b"x"]),
        Err(DecodeError::MissingDelimiter)
    );
}

#[test]
fn missing_header() {
    assert_eq!(inbound(&[b""]), Err(DecodeError::MissingHeader));
}

#[test]
fn wrong_header() {
    assert_eq!(
        inbound(&[b"", b"MDPC02", b"echo", b"x"]),
        Err(DecodeError::WrongHeader)
    );
    assert_eq!(
        inbound(&[b"", b"", b"echo", b"x"]),
        Err(DecodeError::WrongHeader)
    );
    // A worker message where a client message is expected, and the other way round.
    assert_eq!(
        ClientMessage::decode(f(&[b"", b"MDPW01", b"\x04"]), &Limits::default()),
        Err(DecodeError::WrongHeader)
    );
    assert_eq!(
        WorkerMessage::decode(f(&[b"", b"MDPC01", b"echo", b"x"]), &Limits::default()),
        Err(DecodeError::WrongHeader)
    );
}

#[test]
fn unknown_command_byte() {
    assert_eq!(
        inbound(&[b"", b"MDPW01", b"\x06"]),
        Err(DecodeError::UnknownCommand(6))
    );
    assert_eq!(
        inbound(&[b"", b"MDPW01", b"\x00"]),
        Err(DecodeError::UnknownCommand(0))
    );
    assert_eq!(
        inbound(&[b"", b"MDPW01", b"\x01\x01"]),
        Err(DecodeError::UnknownCommand(1))
    );
}

#[test]
fn missing_command() {
    assert_eq!(inbound(&[b"", b"MDPW01"]), Err(DecodeError::MissingCommand));
    assert_eq!(
        inbound(&[b"", b"MDPW01", b""]),
        Err(DecodeError::MissingCommand)
    );
}

#[test]
fn missing_service_frame() {
    assert_eq!(inbound(&[b"", b"MDPC01"]), Err(DecodeError::MissingService));
}

#[test]
fn invalid_service_name() {
    assert_eq!(
        inbound(&[b"", b"MDPC01", b"", b"x"]),
        Err(DecodeError::InvalidServiceName)
    );
    assert_eq!(
        inbound(&[b"", b"MDPC01", b"\xff\xfe", b"x"]),
        Err(DecodeError::InvalidServiceName)
    );
    let long = vec![b'a'; MAX_SERVICE_NAME + 1];
    assert_eq!(
        inbound(&[b"", b"MDPC01", &long, b"x"]),
        Err(DecodeError::InvalidServiceName)
    );
    assert_eq!(
        inbound(&[b"", b"MDPW01", b"\x01", b""]),
        Err(DecodeError::InvalidServiceName)
    );
}

#[test]
fn missing_body_frame() {
    assert_eq!(
        inbound(&[b"", b"MDPC01", b"echo"]),
        Err(DecodeError::MissingBody)
    );
    assert_eq!(
        inbound(&[b"", b"MDPW01", b"\x03", b"C1", b""]),
        Err(DecodeError::MissingBody)
    );
    assert_eq!(
        inbound(&[b"", b"MDPW01", b"\x02", b"C1", b""]),
        Err(DecodeError::MissingBody)
    );
}

#[test]
fn ready_without_service() {
    assert_eq!(
        inbound(&[b"", b"MDPW01", b"\x01"]),
        Err(DecodeError::ReadyWithoutService)
    );
}

#[test]
fn reply_without_client_address() {
    assert_eq!(
        inbound(&[b"", b"MDPW01", b"\x03"]),
        Err(DecodeError::MissingClientAddress)
    );
    assert_eq!(
        inbound(&[b"", b"MDPW01", b"\x03", b"", b"", b"x"]),
        Err(DecodeError::MissingClientAddress)
    );
}

#[test]
fn reply_without_envelope_delimiter() {
    assert_eq!(
        inbound(&[b"", b"MDPW01", b"\x03", b"C1"]),
        Err(DecodeError::MissingEnvelopeDelimiter)
    );
    assert_eq!(
        inbound(&[b"", b"MDPW01", b"\x03", b"C1", b"x"]),
        Err(DecodeError::MissingEnvelopeDelimiter)
    );
}

#[test]
fn trailing_frames_after_fixed_commands() {
    assert_eq!(
        inbound(&[b"", b"MDPW01", b"\x01", b"echo", b"extra"]),
        Err(DecodeError::TrailingFrames { command: "READY" })
    );
    assert_eq!(
        inbound(&[b"", b"MDPW01", b"\x04", b"x"]),
        Err(DecodeError::TrailingFrames {
            command: "HEARTBEAT"
        })
    );
    assert_eq!(
        inbound(&[b"", b"MDPW01", b"\x05", b"x"]),
        Err(DecodeError::TrailingFrames {
            command: "DISCONNECT"
        })
    );
}

#[test]
fn too_many_frames() {
    let limits = Limits {
        max_frames: 4,
        max_frame_size: 100,
    };
    let frames = f(&[b"", b"MDPC01", b"echo", b"a", b"b"]);
    assert_eq!(
        Inbound::decode(frames, &limits),
        Err(DecodeError::TooManyFrames { count: 5, max: 4 })
    );
}

#[test]
fn frame_over_size_limit() {
    let limits = Limits {
        max_frames: 10,
        max_frame_size: 8,
    };
    let frames = f(&[b"", b"MDPC01", b"echo", b"123456789"]);
    assert_eq!(
        Inbound::decode(frames, &limits),
        Err(DecodeError::FrameTooLarge {
            index: 3,
            size: 9,
            max: 8
        })
    );
    let frames = f(&[b"", b"MDPC01", b"echo", b"12345678"]);
    assert!(Inbound::decode(frames, &limits).is_ok());
}

#[test]
fn the_default_frame_limit_admits_a_state_request_and_more() {
    // DESIGN.md: a state request of 4 MiB passes the frontend, and one over it still reaches
    // the state service (to be refused with an `{error}`), so the default is above 4 MiB.
    let limits = Limits::default();
    assert_eq!(limits.max_frame_size, DEFAULT_MAX_FRAME_SIZE);
    assert_eq!(DEFAULT_MAX_FRAME_SIZE, 8 << 20);
    let request = |size: usize| f(&[b"", b"MDPC01", b"state.set", &vec![b'x'; size]]);
    for size in [4 << 20, (4 << 20) + 1, DEFAULT_MAX_FRAME_SIZE] {
        assert!(Inbound::decode(request(size), &limits).is_ok(), "{size}");
    }
    assert_eq!(
        Inbound::decode(request(DEFAULT_MAX_FRAME_SIZE + 1), &limits),
        Err(DecodeError::FrameTooLarge {
            index: 3,
            size: DEFAULT_MAX_FRAME_SIZE + 1,
            max: DEFAULT_MAX_FRAME_SIZE
        })
    );
}

#[test]
fn every_reason_label_is_distinct() {
    let errors = [
        DecodeError::Empty,
        DecodeError::TooManyFrames { count: 0, max: 0 },
        DecodeError::FrameTooLarge {
            index: 0,
            size: 0,
            max: 0,
        },
        DecodeError::MissingDelimiter,
        DecodeError::MissingHeader,
        DecodeError::WrongHeader,
        DecodeError::MissingCommand,
        DecodeError::UnknownCommand(9),
        DecodeError::MissingService,
        DecodeError::InvalidServiceName,
        DecodeError::MissingBody,
        DecodeError::ReadyWithoutService,
        DecodeError::MissingClientAddress,
        DecodeError::MissingEnvelopeDelimiter,
        DecodeError::TrailingFrames { command: "READY" },
    ];
    let mut reasons: Vec<_> = errors.iter().map(DecodeError::reason).collect();
    reasons.sort();
    reasons.dedup();
    assert_eq!(reasons.len(), errors.len());
}

fn service() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9._-]{0,30}"
}

fn body_frames() -> impl Strategy<Value = Vec<Frame>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..5)
}

fn client_address() -> impl Strategy<Value = Frame> {
    prop::collection::vec(any::<u8>(), 1..16)
}

fn worker_message() -> impl Strategy<Value = WorkerMessage> {
    prop_oneof![
        service().prop_map(|service| WorkerMessage::Ready { service }),
        (client_address(), body_frames())
            .prop_map(|(client, body)| WorkerMessage::Request { client, body }),
        (client_address(), body_frames())
            .prop_map(|(client, body)| WorkerMessage::Reply { client, body }),
        Just(WorkerMessage::Heartbeat),
        Just(WorkerMessage::Disconnect),
    ]
}

proptest! {
    #[test]
    fn client_message_round_trips(service in service(), body in body_frames()) {
        let msg = ClientMessage { service, body };
        prop_assert_eq!(ClientMessage::decode(msg.encode(), &Limits::default()), Ok(msg.clone()));
        prop_assert_eq!(Inbound::decode(msg.encode(), &Limits::default()), Ok(Inbound::Client(msg)));
    }

    #[test]
    fn worker_message_round_trips(msg in worker_message()) {
        prop_assert_eq!(WorkerMessage::decode(msg.encode(), &Limits::default()), Ok(msg.clone()));
        prop_assert_eq!(Inbound::decode(msg.encode(), &Limits::default()), Ok(Inbound::Worker(msg)));
    }

    #[test]
    fn decode_of_arbitrary_frames_never_panics(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..10),
        max_frames in 0usize..12,
        max_frame_size in 0usize..16,
    ) {
        let limits = Limits { max_frames, max_frame_size };
        let _ = Inbound::decode(frames.clone(), &limits);
        let _ = ClientMessage::decode(frames.clone(), &limits);
        let _ = WorkerMessage::decode(frames, &limits);
    }

    #[test]
    fn decode_of_near_valid_frames_never_panics(
        prefix in prop::sample::select(vec![&b""[..], b"MDPC01", b"MDPW01"]),
        command in any::<u8>(),
        rest in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..4), 0..6),
    ) {
        let mut frames = vec![Vec::new(), prefix.to_vec(), vec![command]];
        frames.extend(rest);
        let _ = Inbound::decode(frames, &Limits::default());
    }
}
