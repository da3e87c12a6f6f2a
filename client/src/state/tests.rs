//! The state services' request and reply shapes, without a broker.

use super::*;

fn parse(bytes: &[u8]) -> Value {
    Value::from_bencode(bytes).expect("test document is Bencode")
}

#[test]
fn keys_are_a_bencode_list() {
    assert_eq!(encode_keys(&[]), b"le");
    assert_eq!(encode_keys(&["kitchen/temp", "a"]), b"l12:kitchen/temp1:ae");
}

#[test]
fn set_always_uses_the_entry_form() {
    let entries = vec![
        ("b".to_owned(), Write::new(215)),
        (
            "a".to_owned(),
            Write::new("on").ttl(Duration::from_micros(1500)).if_seq(0),
        ),
    ];
    assert_eq!(
        encode_set(&entries).unwrap(),
        b"d1:ad6:if_seqi0e6:ttl_msi2e5:value2:one1:bd5:valuei215eee"
    );
    // A dict with its own `value` key is wrapped, so it is stored as it is.
    let inner = parse(b"d5:valuei1ee");
    let body = encode_set(&[("k".into(), Write::new(inner.clone()))]).unwrap();
    assert_eq!(
        parse(&body).get("k").and_then(|e| e.get("value")),
        Some(&inner)
    );
}

#[test]
fn set_refuses_what_the_broker_would() {
    let zero_ttl = Write::new(1).ttl(Duration::ZERO);
    assert!(matches!(
        encode_set(&[("k".into(), zero_ttl)]),
        Err(ClientError::InvalidRequest(_))
    ));
    let huge_if_seq = Write::new(1).if_seq(u64::MAX);
    assert!(matches!(
        encode_set(&[("k".into(), huge_if_seq)]),
        Err(ClientError::InvalidRequest(_))
    ));
    let twice = [("k".into(), Write::new(1)), ("k".into(), Write::new(2))];
    assert!(matches!(
        encode_set(&twice),
        Err(ClientError::InvalidRequest(_))
    ));
}

#[test]
fn refusals_are_recognised_and_a_key_named_error_is_not_one() {
    assert_eq!(
        refusal(&parse(b"d5:error8:bad keyse")),
        Some("bad keys".into())
    );
    let entry_named_error = parse(b"d5:errord3:seqi1e5:valuei2eee");
    assert_eq!(refusal(&entry_named_error), None);
    let entries = decode_entries(&entry_named_error, STATE_GET).unwrap();
    assert_eq!(entries["error"].value, Value::Int(2));
    assert_eq!(refusal(&parse(b"d3:seqi4ee")), None);
}

#[test]
fn get_replies_decode() {
    let reply = parse(b"d4:hall2:on12:kitchen/tempd3:seqi7e5:valuei215eee");
    assert!(
        decode_entries(&reply, STATE_GET).is_err(),
        "entry is not a dict"
    );
    let reply = parse(b"d12:kitchen/tempd3:seqi7e5:valuei215eee");
    let entries = decode_entries(&reply, STATE_GET).unwrap();
    assert_eq!(
        entries["kitchen/temp"],
        Entry {
            seq: 7,
            value: Value::Int(215)
        }
    );
    assert!(decode_entries(&parse(b"de"), STATE_GET).unwrap().is_empty());
    for bad in [
        &b"le"[..],
        b"d1:kd5:valuei1eee",
        b"d1:kd3:seqi1eee",
        b"d1:kd3:seqi-1e5:valuei1eee",
        b"d1:\xffd3:seqi1e5:valuei1eee",
    ] {
        assert!(
            decode_entries(&parse(bad), STATE_GET).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn write_and_snapshot_replies_decode() {
    assert_eq!(decode_seq(&parse(b"d3:seqi42ee"), STATE_SET).unwrap(), 42);
    assert!(decode_seq(&parse(b"de"), STATE_SET).is_err());
    assert!(decode_seq(&parse(b"d3:seq2:42e"), STATE_SET).is_err());
    let snapshot =
        decode_snapshot(&parse(b"d7:entriesd1:ad3:seqi3e5:value1:xee3:seqi9ee")).unwrap();
    assert_eq!(snapshot.seq, 9);
    assert_eq!(snapshot.entries["a"].value, Value::text("x"));
    assert!(decode_snapshot(&parse(b"d3:seqi9ee")).is_err());
}

#[test]
fn write_ids() {
    let a = WriteId::random();
    assert_eq!(a.as_bytes().len(), 16);
    assert_ne!(a, WriteId::random());
    assert!(WriteId::from_bytes(vec![]).is_err());
    assert!(WriteId::from_bytes(vec![1; 65]).is_err());
    assert_eq!(WriteId::from_bytes(&b"w-1"[..]).unwrap().as_bytes(), b"w-1");
}
