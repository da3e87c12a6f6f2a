//! Service names the broker answers itself: the Majordomo Management Interface (ZeroMQ RFC 8)
//! and hearth's own built-in services.
//!
//! RFC 8 reserves the `mmi.` prefix. hearth also reserves `hearth.` (broker introspection)
//! and `state.` (the state model). A worker that offers a reserved name is disconnected.

/// Prefix of the management services RFC 8 reserves.
pub const MMI_PREFIX: &str = "mmi.";
/// RFC 8's one defined service: does a service have a worker?
pub const MMI_SERVICE: &str = "mmi.service";
/// Prefix of hearth's broker-introspection services.
pub const HEARTH_PREFIX: &str = "hearth.";
/// The broker's status as a Bencode [`crate::status::BrokerStatus`].
pub const STATUS_SERVICE: &str = "hearth.status";
/// Prefix of the state-model services (`state.get`, `state.set`, `state.del`).
pub const STATE_PREFIX: &str = "state.";

/// The three answers of RFC 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmiCode {
    /// "200": the service has at least one worker.
    Found,
    /// "404": the service has no worker.
    NotFound,
    /// "501": no such management service.
    NotImplemented,
}

impl MmiCode {
    /// The reply body RFC 8 prescribes.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            MmiCode::Found => b"200",
            MmiCode::NotFound => b"404",
            MmiCode::NotImplemented => b"501",
        }
    }

    /// Reads an RFC 8 reply body.
    pub fn parse(body: &[u8]) -> Option<MmiCode> {
        match body {
            b"200" => Some(MmiCode::Found),
            b"404" => Some(MmiCode::NotFound),
            b"501" => Some(MmiCode::NotImplemented),
            _ => None,
        }
    }
}

/// Whether `service` is answered by the broker itself, so no worker may offer it.
pub fn is_reserved(service: &str) -> bool {
    [MMI_PREFIX, HEARTH_PREFIX, STATE_PREFIX]
        .iter()
        .any(|p| service.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_prefixes() {
        assert!(is_reserved("mmi.service"));
        assert!(is_reserved("mmi.anything"));
        assert!(is_reserved("hearth.status"));
        assert!(is_reserved("state.get"));
        assert!(!is_reserved("echo"));
        assert!(!is_reserved("mmi"));
        assert!(!is_reserved("lights.set"));
    }

    #[test]
    fn codes_round_trip() {
        for code in [MmiCode::Found, MmiCode::NotFound, MmiCode::NotImplemented] {
            assert_eq!(MmiCode::parse(code.as_bytes()), Some(code));
        }
        assert_eq!(MmiCode::parse(b"500"), None);
    }
}
