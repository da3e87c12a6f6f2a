//! [`StateLimits`]: the state model's limits, with DESIGN.md's defaults, read from the
//! broker's TOML config (a `[state]` table) and checked against the promises clients rely
//! on. The request reader and the model both enforce them, so they live apart from either.

use serde::Deserialize;
use thiserror::Error;

/// The model's limits (the defaults are DESIGN.md's); a `[state]` table of the broker's
/// TOML config can override any of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateLimits {
    /// Longest key, in bytes of UTF-8.
    pub max_key_bytes: usize,
    /// Largest value, in bytes of its Bencode encoding (an entry wrapper not counted).
    pub max_value_bytes: usize,
    /// Most keys in one request.
    pub max_keys_per_request: usize,
    /// Most keys in the model.
    pub max_keys: usize,
    /// Most bytes in the model: the sum of its keys' and values' lengths.
    pub max_bytes: usize,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Deepest nesting of lists and dicts in a value.
    pub max_depth: usize,
    /// How long a write id is remembered after its write was applied.
    pub write_id_ttl_ms: u64,
}

impl Default for StateLimits {
    fn default() -> Self {
        StateLimits {
            max_key_bytes: 256,
            max_value_bytes: 64 << 10,
            max_keys_per_request: 10_000,
            max_keys: 1_000_000,
            max_bytes: 256 << 20,
            max_request_bytes: 4 << 20,
            max_depth: 32,
            write_id_ttl_ms: 600_000,
        }
    }
}

/// The highest `max_depth` allowed: the Bencode reader recurses once per level.
pub const MAX_DEPTH_LIMIT: usize = 256;

/// Limits that break a promise of DESIGN.md.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("state limits: {0}")]
pub struct InvalidLimits(pub String);

impl StateLimits {
    /// Checks the promises clients rely on: at least 1,000 keys per request, write ids
    /// remembered at least 10 minutes, room for at least one key and value.
    pub fn validate(&self) -> Result<(), InvalidLimits> {
        let fail = |what: &str| Err(InvalidLimits(what.into()));
        if self.max_keys_per_request < 1_000 {
            return fail("max_keys_per_request must be at least 1000");
        }
        if self.write_id_ttl_ms < 600_000 {
            return fail("write_id_ttl_ms must be at least 600000 (10 minutes)");
        }
        if self.max_key_bytes == 0 || self.max_value_bytes == 0 || self.max_keys == 0 {
            return fail("max_key_bytes, max_value_bytes and max_keys must be at least 1");
        }
        if self.max_depth > MAX_DEPTH_LIMIT {
            // The Bencode reader recurses once per level.
            return fail("max_depth must be at most 256");
        }
        if self.max_request_bytes < self.max_value_bytes {
            return fail("max_request_bytes must be at least max_value_bytes");
        }
        Ok(())
    }
}
