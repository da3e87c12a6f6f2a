//! Benchmark request bodies that check themselves: an 8-byte little-endian request id, then
//! bytes derived from that id. A reply is verified byte for byte by regenerating the body
//! from the id it carries, so replies may come back in any order.

/// Bytes of the request id at the start of every body; the smallest body allowed.
pub const ID_LEN: usize = 8;

/// Writes the body of request `id` into `out` (whose length is the body size, at least
/// [`ID_LEN`]).
pub fn fill(id: u64, out: &mut [u8]) {
    let (head, tail) = out.split_at_mut(ID_LEN.min(out.len()));
    head.copy_from_slice(&id.to_le_bytes()[..head.len()]);
    let mut state = id;
    for chunk in tail.chunks_mut(8) {
        state = splitmix64(state);
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

/// The body of request `id`, `size` bytes long.
#[cfg(test)]
pub fn body(id: u64, size: usize) -> Vec<u8> {
    let mut out = vec![0; size];
    fill(id, &mut out);
    out
}

/// The request id a reply claims to answer, if it is long enough to carry one.
pub fn id_of(reply: &[u8]) -> Option<u64> {
    let head: [u8; ID_LEN] = reply.get(..ID_LEN)?.try_into().ok()?;
    Some(u64::from_le_bytes(head))
}

/// Whether `reply` is exactly the body of request `id`, `size` bytes long; `scratch` is
/// reused to avoid an allocation per reply.
pub fn matches(id: u64, reply: &[u8], size: usize, scratch: &mut Vec<u8>) -> bool {
    if reply.len() != size {
        return false;
    }
    scratch.resize(size, 0);
    fill(id, scratch);
    scratch.as_slice() == reply
}

/// SplitMix64: a fast, well-mixed step so that neighbouring ids give unrelated bytes.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_starts_with_its_id_and_is_deterministic() {
        let b = body(0x0102_0304_0506_0708, 64);
        assert_eq!(b.len(), 64);
        assert_eq!(&b[..8], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(id_of(&b), Some(0x0102_0304_0506_0708));
        assert_eq!(b, body(0x0102_0304_0506_0708, 64));
        assert_ne!(b[8..], body(0x0102_0304_0506_0709, 64)[8..]);
    }

    #[test]
    fn odd_sizes_and_the_minimum_size_work() {
        let mut scratch = Vec::new();
        for size in [8, 9, 15, 16, 17, 1000] {
            let b = body(42, size);
            assert_eq!(b.len(), size);
            assert!(matches(42, &b, size, &mut scratch));
        }
    }

    #[test]
    fn any_changed_byte_or_length_is_a_mismatch() {
        let mut scratch = Vec::new();
        let good = body(7, 33);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x20;
            assert!(!matches(7, &bad, 33, &mut scratch), "byte {i}");
        }
        assert!(!matches(7, &good[..32], 33, &mut scratch));
        assert!(!matches(8, &good, 33, &mut scratch));
        assert_eq!(id_of(&good[..7]), None);
    }
}
