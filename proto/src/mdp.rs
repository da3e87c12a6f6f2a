//! MDP/0.1, the Majordomo Protocol (ZeroMQ RFC 7), as Rust types.
//!
//! Every message starts with an empty delimiter frame and a protocol header:
//!
//! | message | frames |
//! |---|---|
//! | client request / reply | `""`, `"MDPC01"`, service, body (1 or more frames) |
//! | READY | `""`, `"MDPW01"`, `0x01`, service |
//! | REQUEST | `""`, `"MDPW01"`, `0x02`, client address, `""`, body (1 or more frames) |
//! | REPLY | `""`, `"MDPW01"`, `0x03`, client address, `""`, body (1 or more frames) |
//! | HEARTBEAT | `""`, `"MDPW01"`, `0x04` |
//! | DISCONNECT | `""`, `"MDPW01"`, `0x05` |
//!
//! A request and a reply between client and broker have the same shape, so one type,
//! [`ClientMessage`], serves both directions; likewise [`WorkerMessage`] for the worker half.
//! The routing id frame a ROUTER socket adds or needs is not part of these messages.

use crate::{DecodeError, Frame};

/// Header frame of the client half of MDP/0.1.
pub const CLIENT_HEADER: &[u8] = b"MDPC01";
/// Header frame of the worker half of MDP/0.1.
pub const WORKER_HEADER: &[u8] = b"MDPW01";
/// Longest service name accepted (RFC 7 says a service name is a short printable string).
pub const MAX_SERVICE_NAME: usize = 255;

/// The default of [`Limits::max_frame_size`]: 8 MiB. DESIGN.md promises that a state request
/// of up to 4 MiB (the state model's `max_request_bytes`) passes the frontend's frame limit,
/// and one somewhat larger must still reach the state service to be answered with an
/// `{error}`: so the default frame limit is twice the request limit, in the broker, the
/// client library and the worker alike.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 8 << 20;

/// Bounds applied while decoding, so that one hostile message cannot make a peer allocate or
/// work without limit. Checked before anything else is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most frames one message may have, envelope included.
    pub max_frames: usize,
    /// Most bytes one frame may have.
    pub max_frame_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frames: 64,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        }
    }
}

impl Limits {
    fn check(&self, frames: &[Frame]) -> Result<(), DecodeError> {
        if frames.is_empty() {
            return Err(DecodeError::Empty);
        }
        if frames.len() > self.max_frames {
            return Err(DecodeError::TooManyFrames {
                count: frames.len(),
                max: self.max_frames,
            });
        }
        if let Some((index, frame)) = frames
            .iter()
            .enumerate()
            .find(|(_, f)| f.len() > self.max_frame_size)
        {
            return Err(DecodeError::FrameTooLarge {
                index,
                size: frame.len(),
                max: self.max_frame_size,
            });
        }
        Ok(())
    }
}

/// A client request (client to broker) or a reply (broker to client): a service name and an
/// opaque body of one or more frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// The service the request is for, or that answered.
    pub service: String,
    /// The opaque body; never empty.
    pub body: Vec<Frame>,
}

/// The five worker commands of RFC 7, by their command byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WorkerCommand {
    /// 0x01: a worker offers a service.
    Ready = 0x01,
    /// 0x02: the broker hands a worker a request.
    Request = 0x02,
    /// 0x03: a worker answers a request.
    Reply = 0x03,
    /// 0x04: either side says it is alive.
    Heartbeat = 0x04,
    /// 0x05: either side ends the session.
    Disconnect = 0x05,
}

impl WorkerCommand {
    /// The command for a command byte, if it is one RFC 7 defines.
    pub fn from_byte(byte: u8) -> Option<WorkerCommand> {
        match byte {
            0x01 => Some(WorkerCommand::Ready),
            0x02 => Some(WorkerCommand::Request),
            0x03 => Some(WorkerCommand::Reply),
            0x04 => Some(WorkerCommand::Heartbeat),
            0x05 => Some(WorkerCommand::Disconnect),
            _ => None,
        }
    }

    /// The upper-case name RFC 7 uses, for logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            WorkerCommand::Ready => "READY",
            WorkerCommand::Request => "REQUEST",
            WorkerCommand::Reply => "REPLY",
            WorkerCommand::Heartbeat => "HEARTBEAT",
            WorkerCommand::Disconnect => "DISCONNECT",
        }
    }
}

/// A message of the worker half of MDP/0.1, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerMessage {
    /// Worker to broker: "I serve this service".
    Ready { service: String },
    /// Broker to worker: a request from `client` (an opaque return address).
    Request { client: Frame, body: Vec<Frame> },
    /// Worker to broker: the answer to the request from `client`.
    Reply { client: Frame, body: Vec<Frame> },
    /// Either direction: still alive.
    Heartbeat,
    /// Either direction: the session is over.
    Disconnect,
}

/// Whatever may arrive at a broker's frontend (after the ROUTER's routing id frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A client request (`MDPC01`).
    Client(ClientMessage),
    /// A worker command (`MDPW01`).
    Worker(WorkerMessage),
}

impl Inbound {
    /// Decodes a message received on a broker's ROUTER frontend, routing id frame removed.
    pub fn decode(frames: Vec<Frame>, limits: &Limits) -> Result<Inbound, DecodeError> {
        limits.check(&frames)?;
        let mut frames = frames.into_iter();
        expect_delimiter(&mut frames)?;
        match frames.next() {
            None => Err(DecodeError::MissingHeader),
            Some(h) if h == CLIENT_HEADER => {
                ClientMessage::decode_rest(frames).map(Inbound::Client)
            }
            Some(h) if h == WORKER_HEADER => {
                WorkerMessage::decode_rest(frames).map(Inbound::Worker)
            }
            Some(_) => Err(DecodeError::WrongHeader),
        }
    }
}

fn expect_delimiter(frames: &mut impl Iterator<Item = Frame>) -> Result<(), DecodeError> {
    match frames.next() {
        Some(f) if f.is_empty() => Ok(()),
        _ => Err(DecodeError::MissingDelimiter),
    }
}

fn expect_header(
    frames: &mut impl Iterator<Item = Frame>,
    header: &[u8],
) -> Result<(), DecodeError> {
    match frames.next() {
        None => Err(DecodeError::MissingHeader),
        Some(h) if h == header => Ok(()),
        Some(_) => Err(DecodeError::WrongHeader),
    }
}

fn service_name(frame: Frame) -> Result<String, DecodeError> {
    if frame.is_empty() || frame.len() > MAX_SERVICE_NAME {
        return Err(DecodeError::InvalidServiceName);
    }
    String::from_utf8(frame).map_err(|_| DecodeError::InvalidServiceName)
}

fn body(frames: impl Iterator<Item = Frame>) -> Result<Vec<Frame>, DecodeError> {
    let body: Vec<Frame> = frames.collect();
    if body.is_empty() {
        return Err(DecodeError::MissingBody);
    }
    Ok(body)
}

impl ClientMessage {
    /// A message with a one-frame body.
    pub fn new(service: impl Into<String>, body: impl Into<Frame>) -> ClientMessage {
        ClientMessage {
            service: service.into(),
            body: vec![body.into()],
        }
    }

    /// Decodes `["", "MDPC01", service, body...]`, as a DEALER client or the broker sees it.
    pub fn decode(frames: Vec<Frame>, limits: &Limits) -> Result<ClientMessage, DecodeError> {
        limits.check(&frames)?;
        let mut frames = frames.into_iter();
        expect_delimiter(&mut frames)?;
        expect_header(&mut frames, CLIENT_HEADER)?;
        ClientMessage::decode_rest(frames)
    }

    fn decode_rest(mut frames: impl Iterator<Item = Frame>) -> Result<ClientMessage, DecodeError> {
        let service = service_name(frames.next().ok_or(DecodeError::MissingService)?)?;
        Ok(ClientMessage {
            service,
            body: body(frames)?,
        })
    }

    /// The frames of this message, borrowed, ready to send (delimiter first).
    pub fn frames(&self) -> Vec<&[u8]> {
        let mut out = Vec::with_capacity(3 + self.body.len());
        out.extend_from_slice(&[&b""[..], CLIENT_HEADER, self.service.as_bytes()]);
        out.extend(self.body.iter().map(Vec::as_slice));
        out
    }

    /// The frames of this message, owned.
    pub fn encode(&self) -> Vec<Frame> {
        self.frames().into_iter().map(<[u8]>::to_vec).collect()
    }
}

impl WorkerMessage {
    /// Decodes `["", "MDPW01", command, ...]`, as a DEALER worker or the broker sees it.
    pub fn decode(frames: Vec<Frame>, limits: &Limits) -> Result<WorkerMessage, DecodeError> {
        limits.check(&frames)?;
        let mut frames = frames.into_iter();
        expect_delimiter(&mut frames)?;
        expect_header(&mut frames, WORKER_HEADER)?;
        WorkerMessage::decode_rest(frames)
    }

    fn decode_rest(mut frames: impl Iterator<Item = Frame>) -> Result<WorkerMessage, DecodeError> {
        let command = frames.next().ok_or(DecodeError::MissingCommand)?;
        let command = match command.as_slice() {
            [byte] => WorkerCommand::from_byte(*byte).ok_or(DecodeError::UnknownCommand(*byte))?,
            [] => return Err(DecodeError::MissingCommand),
            // A multi-byte command frame is no command RFC 7 knows; report its first byte.
            [byte, ..] => return Err(DecodeError::UnknownCommand(*byte)),
        };
        let msg = match command {
            WorkerCommand::Ready => {
                let service = frames.next().ok_or(DecodeError::ReadyWithoutService)?;
                WorkerMessage::Ready {
                    service: service_name(service)?,
                }
            }
            WorkerCommand::Request | WorkerCommand::Reply => {
                let client = frames.next().ok_or(DecodeError::MissingClientAddress)?;
                if client.is_empty() {
                    return Err(DecodeError::MissingClientAddress);
                }
                match frames.next() {
                    Some(f) if f.is_empty() => {}
                    _ => return Err(DecodeError::MissingEnvelopeDelimiter),
                }
                let body = body(frames)?;
                return Ok(if command == WorkerCommand::Request {
                    WorkerMessage::Request { client, body }
                } else {
                    WorkerMessage::Reply { client, body }
                });
            }
            WorkerCommand::Heartbeat => WorkerMessage::Heartbeat,
            WorkerCommand::Disconnect => WorkerMessage::Disconnect,
        };
        if frames.next().is_some() {
            return Err(DecodeError::TrailingFrames {
                command: command.name(),
            });
        }
        Ok(msg)
    }

    /// The command byte of this message.
    pub fn command(&self) -> WorkerCommand {
        match self {
            WorkerMessage::Ready { .. } => WorkerCommand::Ready,
            WorkerMessage::Request { .. } => WorkerCommand::Request,
            WorkerMessage::Reply { .. } => WorkerCommand::Reply,
            WorkerMessage::Heartbeat => WorkerCommand::Heartbeat,
            WorkerMessage::Disconnect => WorkerCommand::Disconnect,
        }
    }

    /// The frames of this message, borrowed, ready to send (delimiter first).
    pub fn frames(&self) -> Vec<&[u8]> {
        const COMMANDS: [&[u8]; 5] = [b"\x01", b"\x02", b"\x03", b"\x04", b"\x05"];
        let command = COMMANDS[self.command() as usize - 1];
        let mut out: Vec<&[u8]> = Vec::with_capacity(6);
        out.extend_from_slice(&[&b""[..], WORKER_HEADER, command]);
        match self {
            WorkerMessage::Ready { service } => out.push(service.as_bytes()),
            WorkerMessage::Request { client, body } | WorkerMessage::Reply { client, body } => {
                out.extend_from_slice(&[client.as_slice(), &b""[..]]);
                out.extend(body.iter().map(Vec::as_slice));
            }
            WorkerMessage::Heartbeat | WorkerMessage::Disconnect => {}
        }
        out
    }

    /// The frames of this message, owned.
    pub fn encode(&self) -> Vec<Frame> {
        self.frames().into_iter().map(<[u8]>::to_vec).collect()
    }
}

#[cfg(test)]
mod tests;
