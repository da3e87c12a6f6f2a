//! Tests of [`StateModel`], one per rule of DESIGN.md "The state model" ("Precisely"), and
//! the property test against a plain map (in `model_proptest.rs`).

use super::*;
use crate::state::value::put_bytes;
use crate::state::write_ids::write_digest;

#[path = "model_proptest.rs"]
mod proptests;

const NOW: u64 = 1_700_000_000_000;

fn model() -> StateModel {
    StateModel::new(StateLimits::default())
}

fn dict(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![b'd'];
    for (k, v) in pairs {
        put_bytes(&mut out, k.as_bytes());
        out.extend_from_slice(v);
    }
    out.push(b'e');
    out
}

fn list(keys: &[&str]) -> Vec<u8> {
    let mut out = vec![b'l'];
    for k in keys {
        put_bytes(&mut out, k.as_bytes());
    }
    out.push(b'e');
    out
}

fn applied(outcome: Result<WriteOutcome, BadRequest>) -> (u64, Vec<Change>) {
    match outcome {
        Ok(WriteOutcome::Applied { seq, changes }) => (seq, changes),
        other => panic!("not applied: {other:?}"),
    }
}

fn refused(outcome: Result<WriteOutcome, BadRequest>) -> &'static str {
    match outcome {
        Err(e) => e.reason(),
        Ok(o) => panic!("not refused: {o:?}"),
    }
}

fn value_of<'m>(m: &'m StateModel, key: &str) -> Option<&'m [u8]> {
    m.entries()
        .find(|(k, _)| *k == key)
        .map(|(_, e)| e.value.as_slice())
}

#[test]
fn a_write_of_n_keys_takes_n_seqs_and_replies_the_last() {
    let mut m = model();
    let (seq, changes) = applied(m.set(&dict(&[("a", b"i1e"), ("b", b"i2e")]), None, NOW, 7));
    assert_eq!(seq, 2);
    assert_eq!(m.seq(), 2);
    let seqs: Vec<_> = changes
        .iter()
        .map(|c| (c.seq, c.key.as_str(), c.term))
        .collect();
    assert_eq!(seqs, [(1, "a", 7), (2, "b", 7)]);
    assert_eq!(changes[1].value.as_deref(), Some(&b"i2e"[..]));
    let (seq, _) = applied(m.set(
        &dict(&[("a", b"i3e"), ("c", b"i4e"), ("d", b"le")]),
        None,
        NOW,
        7,
    ));
    assert_eq!(seq, 5);
    assert_eq!(StateModel::write_reply(seq), b"d3:seqi5ee");
    assert_eq!((m.len(), m.bytes()), (4, 4 + 3 * 3 + 2));
}

#[test]
fn deleting_an_absent_key_takes_no_seq() {
    let mut m = model();
    applied(m.set(&dict(&[("a", b"i1e"), ("b", b"i2e")]), None, NOW, 0));
    assert_eq!(
        m.del(&list(&["x"]), None, NOW, 0),
        Ok(WriteOutcome::NoChange { seq: 2 })
    );
    let (seq, changes) = applied(m.del(&list(&["x", "b", "b", "y"]), None, NOW, 0));
    assert_eq!(seq, 3);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].cause, changes[0].value.as_ref()),
        (Cause::Delete, None)
    );
    assert_eq!(m.seq(), 3);
    assert_eq!((m.len(), m.bytes()), (1, 4));
}

#[test]
fn refused_requests_take_no_seq_and_change_nothing() {
    let mut m = model();
    applied(m.set(&dict(&[("a", b"i1e")]), None, NOW, 0));
    let before = m.clone();
    for (body, reason) in [
        (b"de".to_vec(), "empty"),
        (b"garbage".to_vec(), "not_bencode"),
        (b"le".to_vec(), "wrong_shape"),
        // All or nothing: a bad second entry refuses the first too.
        (
            dict(&[("b", b"i1e"), ("c", b"d5:valuei1e1:zi0ee")]),
            "unknown_field",
        ),
        (
            dict(&[("b", b"i1e"), ("c", b"d6:ttl_msi0e5:valuei1ee")]),
            "bad_ttl",
        ),
        (
            dict(&[("a", b"d6:if_seqi0e5:valuei1ee"), ("b", b"i1e")]),
            "if_seq_failed",
        ),
        (
            dict(&[("b", b"i1e"), ("c", b"d6:if_seqi9e5:valuei1ee")]),
            "if_seq_failed",
        ),
    ] {
        assert_eq!(refused(m.set(&body, Some(b"id-x"), NOW, 0)), reason);
        assert_eq!(m, before);
    }
    assert_eq!(refused(m.del(b"le", Some(b"id-x"), NOW, 0)), "empty");
    assert_eq!(
        refused(m.set(&dict(&[("b", b"i1e")]), Some(b""), NOW, 0)),
        "bad_write_id"
    );
    assert_eq!(
        refused(m.set(&dict(&[("b", b"i1e")]), Some(&[1; 65]), NOW, 0)),
        "bad_write_id"
    );
    assert_eq!(m, before);
    // The refused writes' id was not remembered: it can be used for another request.
    assert_eq!(
        applied(m.set(&dict(&[("z", b"i1e")]), Some(b"id-x"), NOW, 0)).0,
        2
    );
}

#[test]
fn if_seq_applies_only_to_the_current_seq() {
    let mut m = model();
    let create = dict(&[("k", b"d6:if_seqi0e5:valuei1ee")]);
    assert_eq!(applied(m.set(&create, None, NOW, 0)).0, 1);
    let err = m.set(&create, None, NOW, 0).unwrap_err();
    assert_eq!(err.to_string(), "if_seq 0 failed for k: its seq is 1");
    assert_eq!(
        applied(m.set(&dict(&[("k", b"d6:if_seqi1e5:valuei2ee")]), None, NOW, 0)).0,
        2
    );
    let err = m
        .set(&dict(&[("j", b"d6:if_seqi3e5:valuei1ee")]), None, NOW, 0)
        .unwrap_err();
    assert_eq!(err.to_string(), "if_seq 3 failed for j: its seq is 0");
}

#[test]
fn a_repeated_write_id_answers_the_original_seq_and_changes_nothing() {
    let mut m = model();
    let body = dict(&[("a", b"i1e"), ("b", b"i2e")]);
    let (seq, changes) = applied(m.set(&body, Some(b"w1"), NOW, 3));
    assert_eq!(changes[0].write, None);
    let tag = changes[1]
        .write
        .clone()
        .expect("the last change carries the id");
    assert_eq!((tag.id.as_slice(), tag.at_ms), (&b"w1"[..], NOW));
    assert_eq!(tag.digest, write_digest(STATE_SET, &body));
    applied(m.set(&dict(&[("a", b"i5e")]), None, NOW, 3));
    let before = m.clone();
    assert_eq!(
        m.set(&body, Some(b"w1"), NOW + 1, 3),
        Ok(WriteOutcome::Repeat { seq })
    );
    assert_eq!(
        refused(m.set(&dict(&[("a", b"i9e")]), Some(b"w1"), NOW, 3)),
        "write_id_reused"
    );
    // The same body to another service is another request.
    applied(m.del(&list(&["a"]), Some(b"w2"), NOW, 3));
    assert_eq!(
        refused(m.set(&list(&["a"]), Some(b"w2"), NOW, 3)),
        "write_id_reused"
    );
    assert_eq!(
        m.del(&list(&["a"]), Some(b"w2"), NOW, 3),
        Ok(WriteOutcome::Repeat { seq: 4 })
    );
    assert_eq!(m.seq(), before.seq() + 1);
}

#[test]
fn write_ids_are_forgotten_after_their_ttl() {
    let mut m = model();
    applied(m.set(&dict(&[("a", b"i1e")]), Some(b"old"), NOW, 0));
    applied(m.set(&dict(&[("b", b"i1e")]), Some(b"new"), NOW + 1000, 0));
    assert!(m.forget_write_ids(NOW + 600_000).is_empty());
    assert_eq!(m.forget_write_ids(NOW + 600_001), [b"old".to_vec()]);
    assert_eq!(m.forget_write_ids(NOW + 601_001), [b"new".to_vec()]);
    assert_eq!(m.write_tags().count(), 0);
    assert_eq!(
        applied(m.set(&dict(&[("a", b"i1e")]), Some(b"old"), NOW, 0)).0,
        3
    );
}

#[test]
fn ttl_counts_from_the_write_and_a_later_set_clears_it() {
    let mut m = model();
    applied(m.set(
        &dict(&[
            ("a", b"d6:ttl_msi100e5:valuei1ee"),
            ("b", b"d6:ttl_msi50e5:valuei1ee"),
        ]),
        None,
        NOW,
        0,
    ));
    assert_eq!(m.next_expiry_ms(), Some(NOW + 50));
    assert!(m.expire(NOW + 49, 0).is_empty());
    let gone = m.expire(NOW + 50, 9);
    assert_eq!(gone.len(), 1);
    assert_eq!(
        (
            gone[0].seq,
            gone[0].key.as_str(),
            gone[0].cause,
            gone[0].term
        ),
        (3, "b", Cause::Expire, 9)
    );
    applied(m.set(&dict(&[("a", b"i2e")]), None, NOW + 60, 0));
    assert_eq!(m.next_expiry_ms(), None);
    assert!(m.expire(NOW + 1000, 0).is_empty());
    assert_eq!(value_of(&m, "a"), Some(&b"i2e"[..]));
    assert_eq!(m.seq(), 4);
}

#[test]
fn expiry_goes_in_deadline_order() {
    let mut m = model();
    applied(m.set(
        &dict(&[
            ("a", b"d6:ttl_msi30e5:valuei1ee"),
            ("b", b"d6:ttl_msi10e5:valuei1ee"),
            ("c", b"d6:ttl_msi20e5:valuei1ee"),
        ]),
        None,
        NOW,
        0,
    ));
    let gone: Vec<_> = m
        .expire(NOW + 30, 0)
        .into_iter()
        .map(|c| (c.seq, c.key))
        .collect();
    assert_eq!(gone, [(4, "b".into()), (5, "c".into()), (6, "a".into())]);
    assert_eq!((m.len(), m.bytes(), m.next_expiry_ms()), (0, 0, None));
}

#[test]
fn get_returns_present_keys_sorted_and_all_keys_for_an_empty_list() {
    let mut m = model();
    applied(m.set(
        &dict(&[("hall/light", b"3:off"), ("kitchen/temp", b"i215e")]),
        None,
        NOW,
        0,
    ));
    assert_eq!(
        m.get(b"le").unwrap(),
        b"d10:hall/lightd3:seqi1e5:value3:offe12:kitchen/tempd3:seqi2e5:valuei215eee"
    );
    assert_eq!(
        m.get(&list(&["kitchen/temp", "nope", "kitchen/temp"]))
            .unwrap(),
        b"d12:kitchen/tempd3:seqi2e5:valuei215eee"
    );
    assert_eq!(m.get(&list(&["nope"])).unwrap(), b"de");
    assert_eq!(m.get(b"de").unwrap_err().reason(), "wrong_shape");
}

#[test]
fn the_wrap_rule_stores_the_inner_dict() {
    let mut m = model();
    applied(m.set(&dict(&[("k", b"d5:valued5:valuei1eee")]), None, NOW, 0));
    assert_eq!(value_of(&m, "k"), Some(&b"d5:valuei1ee"[..]));
}

#[test]
fn big_writes_are_accepted_and_the_model_caps_hold() {
    for n in [1_000, 10_000] {
        let mut m = model();
        let keys: Vec<String> = (0..n).map(|i| format!("sensor/{i:05}")).collect();
        let pairs: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"i1e"[..])).collect();
        assert_eq!(applied(m.set(&dict(&pairs), None, NOW, 0)).0, n as u64);
        assert_eq!(m.len(), n);
    }
    let mut m = StateModel::new(StateLimits {
        max_keys: 2,
        max_bytes: 10,
        ..StateLimits::default()
    });
    applied(m.set(&dict(&[("a", b"i1e"), ("b", b"i2e")]), None, NOW, 0));
    assert_eq!(
        refused(m.set(&dict(&[("c", b"i1e")]), None, NOW, 0)),
        "model_full"
    );
    assert_eq!(
        refused(m.set(&dict(&[("a", b"i1234e")]), None, NOW, 0)),
        "model_full"
    );
    assert_eq!(applied(m.set(&dict(&[("a", b"i123e")]), None, NOW, 0)).0, 3);
    assert_eq!(m.bytes(), 10);
    // Over a lowered cap, a write that does not grow the model still goes through.
    let entries: Vec<_> = m
        .entries()
        .map(|(k, e)| (k.to_owned(), e.clone()))
        .collect();
    let lowered = StateLimits {
        max_keys: 1,
        max_bytes: 4,
        ..StateLimits::default()
    };
    let mut m = StateModel::restore(lowered, m.seq(), entries, []);
    assert_eq!(applied(m.set(&dict(&[("a", b"i1e")]), None, NOW, 0)).0, 4);
    assert_eq!(
        refused(m.set(&dict(&[("b", b"i12e")]), None, NOW, 0)),
        "model_full"
    );
}

#[test]
fn apply_replays_changes_and_refuses_what_does_not_fit() {
    let mut active = model();
    let mut changes = applied(active.set(
        &dict(&[("a", b"d6:ttl_msi5e5:valuei1ee"), ("b", b"i2e")]),
        Some(b"w"),
        NOW,
        1,
    ))
    .1;
    changes.extend(applied(active.del(&list(&["b"]), None, NOW, 1)).1);
    changes.extend(active.expire(NOW + 5, 1));
    let mut passive = model();
    assert_eq!(
        passive.apply(&changes[1]).unwrap_err().to_string(),
        "change 2 is out of order: the model is at seq 0, so it expected 1"
    );
    for change in &changes {
        passive.apply(change).expect("fits");
    }
    assert_eq!(passive, active);
    assert_eq!(
        passive.set(
            &dict(&[("a", b"d6:ttl_msi5e5:valuei1ee"), ("b", b"i2e")]),
            Some(b"w"),
            NOW,
            1
        ),
        Ok(WriteOutcome::Repeat { seq: 2 })
    );
    let mut removal = changes[2].clone();
    removal.seq = 5;
    assert!(matches!(
        passive.apply(&removal),
        Err(ApplyError::Absent { seq: 5, .. })
    ));
    let no_value = Change {
        seq: 5,
        value: None,
        cause: Cause::Set,
        ..removal
    };
    assert!(matches!(
        passive.apply(&no_value),
        Err(ApplyError::NoValue { .. })
    ));
    assert_eq!(passive, active);
}

#[test]
fn restore_rebuilds_the_same_model() {
    let mut m = model();
    applied(m.set(
        &dict(&[("a", b"d6:ttl_msi5e5:valuei1ee"), ("b", b"i2e")]),
        Some(b"w"),
        NOW,
        1,
    ));
    let entries: Vec<_> = m
        .entries()
        .map(|(k, e)| (k.to_owned(), e.clone()))
        .collect();
    let restored = StateModel::restore(
        StateLimits::default(),
        m.seq(),
        entries,
        m.write_tags().collect::<Vec<_>>(),
    );
    assert_eq!(restored, m);
}

#[test]
fn replies_are_bencode() {
    assert_eq!(StateModel::write_reply(0), b"d3:seqi0ee");
    assert_eq!(error_reply("no"), b"d5:error2:noe");
    // FNV-1a is persisted: pin it.
    assert_eq!(write_digest("", b""), 0xaf63_bd4c_8601_b7df);
}

#[test]
fn limits_come_from_toml_and_are_checked() {
    let limits: StateLimits = toml::from_str("max_keys = 5").expect("toml");
    assert_eq!(
        limits,
        StateLimits {
            max_keys: 5,
            ..StateLimits::default()
        }
    );
    assert!(toml::from_str::<StateLimits>("max_kees = 5").is_err());
    assert_eq!(StateLimits::default().validate(), Ok(()));
    assert!(StateLimits {
        max_depth: 257,
        ..StateLimits::default()
    }
    .validate()
    .is_err());
    assert!(StateLimits {
        max_keys_per_request: 999,
        ..StateLimits::default()
    }
    .validate()
    .is_err());
}

/// Not a test of speed (tests never assert on it): prints how many single-key writes with a
/// write id the model alone takes per second. Run with
/// `cargo test -p hearth-broker --release --lib state::model::tests::single_key_write_rate -- --ignored --nocapture`.
#[test]
#[ignore]
fn single_key_write_rate() {
    let mut m = model();
    let bodies: Vec<Vec<u8>> = (0..1_000)
        .map(|i| dict(&[(&format!("room/{i}/temp"), b"d6:ttl_msi60000e5:valuei215ee")]))
        .collect();
    let started = std::time::Instant::now();
    let n = 500_000u64;
    for i in 0..n {
        let id = i.to_be_bytes();
        let outcome = m.set(&bodies[i as usize % bodies.len()], Some(&id), NOW + i, 1);
        assert!(matches!(outcome, Ok(WriteOutcome::Applied { .. })));
        if i % 1_000 == 0 {
            m.expire(NOW + i, 1);
            m.forget_write_ids(NOW + i);
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    println!("{rate:.0} single-key writes/s through StateModel::set");
}
