//! Tests of the canonical Bencode reader: every rule, and a comparison with bendy's decoder
//! (which agrees wherever it enforces a rule, see the module documentation).

use bendy::decoding::{Decoder, Object};
use proptest::prelude::*;

use super::*;

fn ok(bytes: &[u8]) -> Node<'_> {
    match parse(bytes, 32) {
        Ok(node) => node,
        Err(e) => panic!("{:?}: {e}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn canonical_values_are_read() {
    for (bytes, height) in [
        (&b"i0e"[..], 0),
        (b"i-1e", 0),
        (b"i9223372036854775807e", 0),
        (b"i-9223372036854775808e", 0),
        (b"0:", 0),
        (b"3:abc", 0),
        (b"le", 1),
        (b"de", 1),
        (b"d1:ai1e1:bi2ee", 1),
        (b"d1:ali1eee", 2),
        (b"d0:i1e1:ai2ee", 1),
    ] {
        assert_eq!(ok(bytes).height(), height, "{bytes:?}");
        assert_eq!(ok(bytes).raw(), bytes);
    }
    assert_eq!(ok(b"i-42e").as_int(), Some(-42));
    assert_eq!(ok(b"i-9223372036854775808e").as_int(), Some(i64::MIN));
    assert_eq!(ok(b"4:\xff\x00ab").as_bytes(), Some(&b"\xff\x00ab"[..]));
}

#[test]
fn non_canonical_or_broken_bencode_is_refused() {
    use NotBencode::*;
    for (bytes, error) in [
        (&b""[..], UnexpectedEnd(0)),
        (b"i03e", NonCanonicalNumber(1)),
        (b"i-0e", NonCanonicalNumber(1)),
        (b"i00e", NonCanonicalNumber(1)),
        (b"i-03e", NonCanonicalNumber(2)),
        (b"ie", UnexpectedByte { at: 1, byte: b'e' }),
        (b"i-e", UnexpectedByte { at: 2, byte: b'e' }),
        (b"i+1e", UnexpectedByte { at: 1, byte: b'+' }),
        (b"i1", UnexpectedEnd(2)),
        (b"i9223372036854775808e", NumberTooLarge(1)),
        (b"i-9223372036854775809e", NumberTooLarge(1)),
        (b"i99999999999999999999999e", NumberTooLarge(1)),
        (b"03:abc", NonCanonicalNumber(0)),
        (b"00:", NonCanonicalNumber(0)),
        (b"-1:a", UnexpectedByte { at: 0, byte: b'-' }),
        (b"4:abc", UnexpectedEnd(5)),
        (b"99999999999999999999999:a", NumberTooLarge(0)),
        (b"3abc", UnexpectedByte { at: 1, byte: b'a' }),
        (b"d1:bi1e1:ai2ee", UnsortedKeys(7)),
        (b"d1:ai1e1:ai2ee", UnsortedKeys(7)),
        (b"d2:abi1e1:ai2ee", UnsortedKeys(8)),
        (b"di1ei2ee", UnexpectedByte { at: 1, byte: b'i' }),
        (b"d1:ae", UnexpectedByte { at: 4, byte: b'e' }),
        (b"l", UnexpectedEnd(1)),
        (b"li1e", UnexpectedEnd(4)),
        (b"e", UnexpectedByte { at: 0, byte: b'e' }),
        (b"x", UnexpectedByte { at: 0, byte: b'x' }),
        (b"i1ei2e", TrailingBytes(3)),
        (b"lee", TrailingBytes(1)),
        (b"3:abc ", TrailingBytes(1)),
    ] {
        assert_eq!(
            parse(bytes, 32),
            Err(error),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn nesting_is_limited() {
    let nested = |levels: usize| {
        let mut v = vec![b'l'; levels];
        v.extend_from_slice(&vec![b'e'; levels]);
        v
    };
    assert_eq!(parse(&nested(32), 32).map(|n| n.height()), Ok(32));
    assert_eq!(parse(&nested(33), 32), Err(NotBencode::TooDeep(32)));
    // Far deeper than any stack could recurse: refused without recursing.
    assert_eq!(parse(&nested(1 << 20), 32), Err(NotBencode::TooDeep(32)));
    assert_eq!(parse(b"i1e", 0).map(|n| n.height()), Ok(0));
    assert_eq!(parse(b"le", 0), Err(NotBencode::TooDeep(0)));
}

#[test]
fn lists_and_dicts_are_walked_as_sub_slices() {
    let node = ok(b"d1:ali1e3:xyze1:bd1:ci-5eee");
    let Kind::Dict(pairs) = node.kind() else {
        panic!("not a dict");
    };
    let pairs: Vec<_> = pairs.map(|(k, v)| (k, v.raw(), v.height())).collect();
    assert_eq!(
        pairs,
        [(&b"a"[..], &b"li1e3:xyze"[..], 1), (b"b", b"d1:ci-5ee", 1)]
    );
    let Kind::List(items) = ok(b"li1e3:xyzlee").kind() else {
        panic!("not a list");
    };
    let items: Vec<_> = items.map(|n| n.raw()).collect();
    assert_eq!(items, [&b"i1e"[..], b"3:xyz", b"le"]);
}

#[test]
fn writers_write_bencode() {
    let mut out = Vec::new();
    put_bytes(&mut out, b"kitchen");
    put_uint(&mut out, 0);
    put_uint(&mut out, u64::MAX);
    assert_eq!(out, b"7:kitcheni0ei18446744073709551615e");
}

/// What bendy's decoder says, with the rules it leaves to its caller added: no bytes after
/// the value, integers in i64.
fn bendy_accepts(bytes: &[u8], max_depth: usize) -> bool {
    fn walk(object: Object) -> bool {
        match object {
            Object::Integer(digits) => digits.parse::<i64>().is_ok(),
            Object::Bytes(_) => true,
            Object::List(mut list) => loop {
                match list.next_object() {
                    Ok(Some(item)) => {
                        if !walk(item) {
                            break false;
                        }
                    }
                    Ok(None) => break true,
                    Err(_) => break false,
                }
            },
            Object::Dict(mut dict) => loop {
                match dict.next_pair() {
                    Ok(Some((_, value))) => {
                        if !walk(value) {
                            break false;
                        }
                    }
                    Ok(None) => break true,
                    Err(_) => break false,
                }
            },
        }
    }
    let mut decoder = Decoder::new(bytes).with_max_depth(max_depth);
    let first = match decoder.next_object() {
        Ok(Some(object)) => walk(object),
        _ => false,
    };
    first && matches!(decoder.next_object(), Ok(None))
}

fn bencode_like() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"l".to_vec()),
        Just(b"d".to_vec()),
        Just(b"e".to_vec()),
        Just(b"i".to_vec()),
        Just(b"-".to_vec()),
        Just(b":".to_vec()),
        Just(b"0".to_vec()),
        (1u8..=9).prop_map(|d| vec![b'0' + d]),
        Just(b"1:a".to_vec()),
        Just(b"1:b".to_vec()),
        Just(b"i1e".to_vec()),
        Just(b"i-10e".to_vec()),
        Just(b"i9223372036854775808e".to_vec()),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

proptest! {
    #[test]
    fn agrees_with_bendy_on_what_is_canonical(bytes in bencode_like(), depth in 0usize..5) {
        prop_assert_eq!(parse(&bytes, depth).is_ok(), bendy_accepts(&bytes, depth), "{:?}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse(&bytes, 32);
    }
}
