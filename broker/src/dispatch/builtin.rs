//! Services the dispatcher answers itself: MMI (RFC 8), and an error for any other reserved
//! name that reaches it (`hearth.status` and `state.*` are the core's, see `crate::core`).

use hearth_proto::mmi::{self, MmiCode};
use hearth_proto::{ClientMessage, Frame};

use super::Dispatcher;

impl Dispatcher {
    /// Answers a request for a reserved service name.
    pub(super) fn builtin(&self, request: &ClientMessage) -> Vec<Frame> {
        let body = match request.service.as_str() {
            mmi::MMI_SERVICE => {
                let name = request.body.first().map(Vec::as_slice).unwrap_or_default();
                let found = std::str::from_utf8(name)
                    .ok()
                    .and_then(|name| self.services.get(name))
                    .is_some_and(|s| s.workers > 0);
                let code = if found {
                    MmiCode::Found
                } else {
                    MmiCode::NotFound
                };
                code.as_bytes().to_vec()
            }
            name if name.starts_with(mmi::MMI_PREFIX) => {
                MmiCode::NotImplemented.as_bytes().to_vec()
            }
            name => error_body(&format!("{name}: no such built-in service")),
        };
        vec![body]
    }
}

/// The Bencode `{error: "..."}` body hearth uses for every error a service answers with.
pub fn error_body(text: &str) -> Frame {
    let mut map = std::collections::BTreeMap::new();
    map.insert("error", text);
    bendy::serde::to_bytes(&map).unwrap_or_else(|_| b"d5:error0:e".to_vec())
}
