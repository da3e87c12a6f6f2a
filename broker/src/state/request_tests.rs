//! Tests of the request bodies: every shape that is refused, with its reason, and the entry
//! form.

use super::*;

fn limits() -> StateLimits {
    StateLimits::default()
}

fn set(body: &[u8]) -> Result<Vec<SetEntry<'_>>, BadRequest> {
    parse_set(body, &limits())
}

fn reason<T: std::fmt::Debug>(result: Result<T, BadRequest>) -> &'static str {
    match result {
        Ok(t) => panic!("accepted: {t:?}"),
        Err(e) => e.reason(),
    }
}

fn nested(levels: usize) -> Vec<u8> {
    let mut v = vec![b'l'; levels];
    v.extend_from_slice(&vec![b'e'; levels]);
    v
}

fn dict(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = vec![b'd'];
    for (k, v) in pairs {
        value::put_bytes(&mut out, k);
        out.extend_from_slice(v);
    }
    out.push(b'e');
    out
}

#[test]
fn bad_set_bodies_are_refused_with_their_reason() {
    let long_key = vec![b'k'; 257];
    let big_value = {
        let mut v = b"65537:".to_vec();
        v.resize(6 + 65_537, b'x');
        v
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "not_bencode"),
        (b"d1:ai1e".to_vec(), "not_bencode"),
        (b"d1:bi1e1:ai1ee".to_vec(), "not_bencode"),
        (b"d1:ai1e1:ai2ee".to_vec(), "not_bencode"),
        (b"d1:ai03ee".to_vec(), "not_bencode"),
        (b"d1:ai-0ee".to_vec(), "not_bencode"),
        (b"d1:a03:abce".to_vec(), "not_bencode"),
        (b"d1:ai1eei1e".to_vec(), "not_bencode"),
        (b"d1:ai9223372036854775808ee".to_vec(), "not_bencode"),
        (b"le".to_vec(), "wrong_shape"),
        (b"i1e".to_vec(), "wrong_shape"),
        (b"de".to_vec(), "empty"),
        (dict(&[(b"", b"i1e")]), "bad_key"),
        (dict(&[(&long_key, b"i1e")]), "bad_key"),
        (dict(&[(b"\xff", b"i1e")]), "bad_key"),
        (dict(&[(b"k", &big_value)]), "value_too_large"),
        (dict(&[(b"k", &nested(33))]), "too_deep"),
        (dict(&[(b"k", b"d5:valuei1e1:xi1ee")]), "unknown_field"),
        (dict(&[(b"k", b"d6:ttl_msi0e5:valuei1ee")]), "bad_ttl"),
        (dict(&[(b"k", b"d6:ttl_msi-5e5:valuei1ee")]), "bad_ttl"),
        (dict(&[(b"k", b"d6:ttl_ms2:105:valuei1ee")]), "bad_ttl"),
        (dict(&[(b"k", b"d6:if_seqi-1e5:valuei1ee")]), "bad_if_seq"),
        (dict(&[(b"k", b"d6:if_seqle5:valuei1ee")]), "bad_if_seq"),
    ];
    for (body, expected) in cases {
        assert_eq!(
            reason(set(&body)),
            expected,
            "{:?}",
            String::from_utf8_lossy(&body)
        );
    }
    let too_large = vec![b'x'; (4 << 20) + 1];
    assert_eq!(reason(set(&too_large)), "request_too_large");
}

#[test]
fn bad_key_lists_are_refused_with_their_reason() {
    let cases: [(&[u8], &str, &str); 8] = [
        (b"l1:a", "not_bencode", "not_bencode"),
        (b"de", "wrong_shape", "wrong_shape"),
        (b"li1ee", "wrong_shape", "wrong_shape"),
        (b"ll1:aee", "wrong_shape", "wrong_shape"),
        (b"l0:e", "bad_key", "bad_key"),
        (b"l1:\xffe", "bad_key", "bad_key"),
        (b"le", "accepted", "empty"),
        (b"l1:ae1:b", "not_bencode", "not_bencode"),
    ];
    for (body, get_reason, del_reason) in cases {
        let get = parse_get(body, &limits()).map_or_else(|e| e.reason(), |_| "accepted");
        let del = parse_del(body, &limits()).map_or_else(|e| e.reason(), |_| "accepted");
        assert_eq!((get, del), (get_reason, del_reason), "{body:?}");
    }
}

#[test]
fn keys_per_request_are_limited() {
    let keys = |n: usize| {
        let mut body = b"l".to_vec();
        for i in 0..n {
            value::put_bytes(&mut body, format!("k{i:05}").as_bytes());
        }
        body.push(b'e');
        body
    };
    assert_eq!(
        parse_get(&keys(10_000), &limits()).map(|k| k.len()),
        Ok(10_000)
    );
    assert_eq!(reason(parse_del(&keys(10_001), &limits())), "too_many_keys");
    let small = StateLimits {
        max_keys_per_request: 1_000,
        ..limits()
    };
    assert_eq!(parse_del(&keys(1_000), &small).map(|k| k.len()), Ok(1_000));
    assert_eq!(reason(parse_get(&keys(1_001), &small)), "too_many_keys");
}

#[test]
fn plain_values_and_entries_are_read() {
    let body = dict(&[
        (b"a", b"i1e"),
        (b"b", b"d6:if_seqi0e6:ttl_msi500e5:value3:xyze"),
        (b"c", b"d5:valued5:valuei1eee"),
        (b"d", b"d6:ttl_msi5ee"),
        (b"e", b"d5:valuei2ee"),
    ]);
    let entries = set(&body).expect("valid");
    let plain = |key, value| SetEntry {
        key,
        value,
        ttl_ms: None,
        if_seq: None,
    };
    assert_eq!(
        entries,
        [
            plain("a", b"i1e"),
            SetEntry {
                key: "b",
                value: b"3:xyz",
                ttl_ms: Some(500),
                if_seq: Some(0),
            },
            // The wrap rule: {value: {value: 1}} stores {value: 1}.
            plain("c", b"d5:valuei1ee"),
            // A dict without a value key is stored as it is.
            plain("d", b"d6:ttl_msi5ee"),
            plain("e", b"i2e"),
        ]
    );
}

#[test]
fn depth_and_size_limits_count_the_value_not_the_wrapper() {
    let deep = nested(32);
    let mut wrapped = b"d5:value".to_vec();
    wrapped.extend_from_slice(&deep);
    wrapped.push(b'e');
    for value in [&deep, &wrapped] {
        let body = dict(&[(b"k", value)]);
        assert_eq!(set(&body).map(|e| e[0].value.len()), Ok(64));
    }
    let mut too_deep_wrapped = b"d5:value".to_vec();
    too_deep_wrapped.extend_from_slice(&nested(33));
    too_deep_wrapped.push(b'e');
    assert_eq!(reason(set(&dict(&[(b"k", &too_deep_wrapped)]))), "too_deep");

    let mut max_value = b"65530:".to_vec();
    max_value.resize(65_536, b'x');
    let mut entry = b"d6:ttl_msi1e5:value".to_vec();
    entry.extend_from_slice(&max_value);
    entry.push(b'e');
    for value in [&max_value, &entry] {
        let body = dict(&[(b"k", value)]);
        assert_eq!(set(&body).map(|e| e[0].value.len()), Ok(65_536));
    }
    let long_key = vec![b'k'; 256];
    assert!(set(&dict(&[(&long_key, b"i1e")])).is_ok());
}

#[test]
fn error_texts_say_what_is_wrong() {
    let failed = BadRequest::IfSeqFailed {
        key: "kitchen/temp".into(),
        expected: 3,
        actual: 41,
    };
    assert_eq!(
        failed.to_string(),
        "if_seq 3 failed for kitchen/temp: its seq is 41"
    );
    let err = set(&dict(&[(b"k", b"d5:valuei1e3:zzzi1ee")])).unwrap_err();
    assert!(err.to_string().contains("\"zzz\""), "{err}");
    let err = set(b"d1:bi1e1:ai1ee").unwrap_err();
    assert!(err.to_string().starts_with("not Bencode: "), "{err}");
    assert_eq!(shown(&[b'a'; 100]).len(), 67);
}
