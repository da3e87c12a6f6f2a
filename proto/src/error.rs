//! Why a multipart message is not valid MDP/0.1.
//!
//! One variant per malformed shape, so that the broker can count each in
//! `hearth_malformed_messages_total{reason}` and tests can name the shape they send.

use thiserror::Error;

/// A multipart message that is not a valid MDP/0.1 message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The message has no frames at all.
    #[error("empty message")]
    Empty,
    /// More frames than the configured limit.
    #[error("too many frames: {count} (limit {max})")]
    TooManyFrames { count: usize, max: usize },
    /// One frame is larger than the configured limit.
    #[error("frame {index} is {size} bytes (limit {max})")]
    FrameTooLarge {
        index: usize,
        size: usize,
        max: usize,
    },
    /// The first frame must be empty (the REQ/DEALER envelope delimiter).
    #[error("missing empty delimiter frame")]
    MissingDelimiter,
    /// The protocol header frame is absent.
    #[error("missing protocol header frame")]
    MissingHeader,
    /// The header frame is neither `MDPC01` nor `MDPW01`, or not the one expected here.
    #[error("wrong protocol header")]
    WrongHeader,
    /// A worker message without its command frame.
    #[error("missing worker command frame")]
    MissingCommand,
    /// A worker command frame that is not one of 0x01..=0x05.
    #[error("unknown worker command {0:#04x}")]
    UnknownCommand(u8),
    /// A client message without its service frame.
    #[error("missing service frame")]
    MissingService,
    /// A service name that is empty, longer than 255 bytes, or not UTF-8.
    #[error("invalid service name")]
    InvalidServiceName,
    /// A request or reply without any body frame.
    #[error("missing body frame")]
    MissingBody,
    /// A READY without the service name frame.
    #[error("READY without service name")]
    ReadyWithoutService,
    /// A REQUEST or REPLY without the client address frame.
    #[error("missing client address frame")]
    MissingClientAddress,
    /// A REQUEST or REPLY whose client address is not followed by an empty frame.
    #[error("missing empty frame after the client address")]
    MissingEnvelopeDelimiter,
    /// READY, HEARTBEAT or DISCONNECT followed by frames RFC 7 does not define.
    #[error("unexpected frames after a {command} command")]
    TrailingFrames { command: &'static str },
}

crate::label_enum! {
    /// Why a frontend message was dropped as malformed: the `reason` label of
    /// `hearth_malformed_messages_total`, one value per [`DecodeError`] variant.
    pub enum MalformedReason {
        /// [`DecodeError::Empty`].
        Empty => "empty",
        /// [`DecodeError::TooManyFrames`].
        TooManyFrames => "too_many_frames",
        /// [`DecodeError::FrameTooLarge`].
        FrameTooLarge => "frame_too_large",
        /// [`DecodeError::MissingDelimiter`].
        MissingDelimiter => "missing_delimiter",
        /// [`DecodeError::MissingHeader`].
        MissingHeader => "missing_header",
        /// [`DecodeError::WrongHeader`].
        WrongHeader => "wrong_header",
        /// [`DecodeError::MissingCommand`].
        MissingCommand => "missing_command",
        /// [`DecodeError::UnknownCommand`].
        UnknownCommand => "unknown_command",
        /// [`DecodeError::MissingService`].
        MissingService => "missing_service",
        /// [`DecodeError::InvalidServiceName`].
        InvalidServiceName => "invalid_service_name",
        /// [`DecodeError::MissingBody`].
        MissingBody => "missing_body",
        /// [`DecodeError::ReadyWithoutService`].
        ReadyWithoutService => "ready_without_service",
        /// [`DecodeError::MissingClientAddress`].
        MissingClientAddress => "missing_client_address",
        /// [`DecodeError::MissingEnvelopeDelimiter`].
        MissingEnvelopeDelimiter => "missing_envelope_delimiter",
        /// [`DecodeError::TrailingFrames`].
        TrailingFrames => "trailing_frames",
    }
}

impl DecodeError {
    /// Which shape of malformed message this is, for `hearth_malformed_messages_total{reason}`.
    pub fn kind(&self) -> MalformedReason {
        match self {
            DecodeError::Empty => MalformedReason::Empty,
            DecodeError::TooManyFrames { .. } => MalformedReason::TooManyFrames,
            DecodeError::FrameTooLarge { .. } => MalformedReason::FrameTooLarge,
            DecodeError::MissingDelimiter => MalformedReason::MissingDelimiter,
            DecodeError::MissingHeader => MalformedReason::MissingHeader,
            DecodeError::WrongHeader => MalformedReason::WrongHeader,
            DecodeError::MissingCommand => MalformedReason::MissingCommand,
            DecodeError::UnknownCommand(_) => MalformedReason::UnknownCommand,
            DecodeError::MissingService => MalformedReason::MissingService,
            DecodeError::InvalidServiceName => MalformedReason::InvalidServiceName,
            DecodeError::MissingBody => MalformedReason::MissingBody,
            DecodeError::ReadyWithoutService => MalformedReason::ReadyWithoutService,
            DecodeError::MissingClientAddress => MalformedReason::MissingClientAddress,
            DecodeError::MissingEnvelopeDelimiter => MalformedReason::MissingEnvelopeDelimiter,
            DecodeError::TrailingFrames { .. } => MalformedReason::TrailingFrames,
        }
    }

    /// A short, stable label for metrics (`hearth_malformed_messages_total{reason}`).
    pub fn reason(&self) -> &'static str {
        self.kind().as_str()
    }
}
