//! The model against a plain `BTreeMap` reference under random sequences of sets (plain and
//! entry form, TTLs, right and wrong `if_seq`), deletes, expiry, resent writes, write ids
//! and their forgetting. After every step: the outcome is the reference's, seq equals the
//! number of changes, the entries are the reference's, a refused or repeated write changed
//! nothing, and a replica fed the changes through `apply` equals the model.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const KEYS: [&str; 6] = ["a", "b", "hall/light", "k", "kitchen/temp", "z"];

#[derive(Debug, Clone, Copy)]
enum IfSeq {
    Absent,
    Current,
    Other(u64),
}

/// (key index, value choice, ttl_ms, if_seq, write in the entry form even without options)
type EntryChoice = (usize, u8, Option<u64>, IfSeq, bool);

#[derive(Debug, Clone)]
enum Op {
    Set(Vec<EntryChoice>, Option<u8>),
    Del(Vec<usize>, Option<u8>),
    Garbage(Vec<u8>, Option<u8>),
    Resend,
    Wait(u64),
    Forget,
}

/// (seq, value, expires_at_ms) of a key in the reference.
type RefEntry = (u64, Vec<u8>, Option<u64>);

/// (key, value, ttl_ms, if_seq) of one entry a write means to set.
type SetIntent = (String, Vec<u8>, Option<u64>, Option<u64>);

/// What a write means, independent of its body.
#[derive(Debug, Clone)]
enum Intent {
    Set(Vec<SetIntent>),
    Del(Vec<String>),
    Garbage,
}

#[derive(Debug, Clone)]
struct Write {
    service: &'static str,
    body: Vec<u8>,
    id: Option<Vec<u8>>,
    intent: Intent,
}

#[derive(Debug, PartialEq)]
enum Expect {
    Applied(Vec<(u64, String)>),
    Repeat(u64),
    NoChange(u64),
    Refused(&'static str),
}

#[derive(Default)]
struct Reference {
    seq: u64,
    entries: BTreeMap<String, RefEntry>,
    ids: BTreeMap<Vec<u8>, (u64, &'static str, Vec<u8>, u64)>,
}

impl Reference {
    fn write(&mut self, w: &Write, now: u64) -> Expect {
        if let Some((seq, service, body, _)) = w.id.as_ref().and_then(|id| self.ids.get(id)) {
            if *service == w.service && *body == w.body {
                return Expect::Repeat(*seq);
            }
            return Expect::Refused("write_id_reused");
        }
        let mut changed = Vec::new();
        match &w.intent {
            Intent::Garbage => return Expect::Refused("any"),
            Intent::Set(entries) if entries.is_empty() => return Expect::Refused("empty"),
            Intent::Del(keys) if keys.is_empty() => return Expect::Refused("empty"),
            Intent::Set(entries) => {
                for (key, _, _, if_seq) in entries {
                    let current = self.entries.get(key).map_or(0, |e| e.0);
                    if if_seq.is_some_and(|s| s != current) {
                        return Expect::Refused("if_seq_failed");
                    }
                }
                for (key, value, ttl, _) in entries {
                    self.seq += 1;
                    let entry = (self.seq, value.clone(), ttl.map(|t| now + t));
                    self.entries.insert(key.clone(), entry);
                    changed.push((self.seq, key.clone()));
                }
            }
            Intent::Del(keys) => {
                for key in keys {
                    if self.entries.remove(key).is_some() {
                        self.seq += 1;
                        changed.push((self.seq, key.clone()));
                    }
                }
                if changed.is_empty() {
                    return Expect::NoChange(self.seq);
                }
            }
        }
        if let Some(id) = &w.id {
            self.ids
                .insert(id.clone(), (self.seq, w.service, w.body.clone(), now));
        }
        Expect::Applied(changed)
    }

    fn expire(&mut self, now: u64) -> Vec<(u64, String)> {
        let mut due: Vec<(u64, String)> = (self.entries.iter())
            .filter_map(|(k, e)| e.2.filter(|&d| d <= now).map(|d| (d, k.clone())))
            .collect();
        due.sort();
        due.into_iter()
            .map(|(_, key)| {
                self.entries.remove(&key);
                self.seq += 1;
                (self.seq, key)
            })
            .collect()
    }
}

fn value_bytes(choice: u8) -> Vec<u8> {
    if choice & 1 == 0 {
        format!("i{}e", i64::from(choice) - 100).into_bytes()
    } else {
        format!("{}:{}", choice % 7, "x".repeat(usize::from(choice % 7))).into_bytes()
    }
}

fn build_set(choices: &[EntryChoice], r: &Reference) -> (Vec<u8>, Intent) {
    let mut chosen = BTreeMap::new();
    for &(k, v, ttl, if_seq, wrap) in choices {
        let if_seq = match if_seq {
            IfSeq::Absent => None,
            IfSeq::Current => Some(r.entries.get(KEYS[k]).map_or(0, |e| e.0)),
            IfSeq::Other(s) => Some(s),
        };
        chosen.insert(KEYS[k], (value_bytes(v), ttl, if_seq, wrap));
    }
    let mut body = b"d".to_vec();
    let mut intent = Vec::new();
    for (key, (value, ttl, if_seq, wrap)) in chosen {
        put_bytes(&mut body, key.as_bytes());
        if ttl.is_some() || if_seq.is_some() || wrap {
            body.push(b'd');
            if let Some(s) = if_seq {
                body.extend_from_slice(format!("6:if_seqi{s}e").as_bytes());
            }
            if let Some(t) = ttl {
                body.extend_from_slice(format!("6:ttl_msi{t}e").as_bytes());
            }
            body.extend_from_slice(b"5:value");
            body.extend_from_slice(&value);
            body.push(b'e');
        } else {
            body.extend_from_slice(&value);
        }
        intent.push((key.to_owned(), value, ttl, if_seq));
    }
    body.push(b'e');
    (body, Intent::Set(intent))
}

fn op() -> impl Strategy<Value = Op> {
    let if_seq = prop_oneof![
        2 => Just(IfSeq::Absent),
        2 => Just(IfSeq::Current),
        1 => (0u64..4).prop_map(IfSeq::Other),
    ];
    let entry = (
        0..KEYS.len(),
        any::<u8>(),
        prop::option::of(1u64..100),
        if_seq,
        any::<bool>(),
    );
    let id = || prop::option::of(0u8..4);
    prop_oneof![
        5 => (prop::collection::vec(entry, 0..4), id()).prop_map(|(e, id)| Op::Set(e, id)),
        2 => (prop::collection::vec(0..KEYS.len(), 0..4), id()).prop_map(|(k, id)| Op::Del(k, id)),
        1 => (prop::collection::vec(any::<u8>(), 0..6), id()).prop_map(|(g, id)| Op::Garbage(g, id)),
        2 => Just(Op::Resend),
        2 => (0u64..120).prop_map(Op::Wait),
        1 => Just(Op::Forget),
    ]
}

fn snapshot(m: &StateModel) -> Vec<(String, RefEntry)> {
    m.entries()
        .map(|(k, e)| (k.to_owned(), (e.seq, e.value.clone(), e.expires_at_ms)))
        .collect()
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut model = StateModel::new(StateLimits::default());
    let mut replica = model.clone();
    let mut reference = Reference::default();
    let mut now = NOW;
    let mut changes_seen = 0u64;
    let mut last: Option<Write> = None;
    for op in ops {
        now += 1;
        let id = |i: Option<u8>| i.map(|i| vec![b'w', i]);
        let write = match op {
            Op::Set(choices, i) => {
                let (body, intent) = build_set(&choices, &reference);
                Write {
                    service: STATE_SET,
                    body,
                    id: id(i),
                    intent,
                }
            }
            Op::Del(keys, i) => {
                let keys: Vec<String> = keys.iter().map(|&k| KEYS[k].to_owned()).collect();
                let mut body = b"l".to_vec();
                keys.iter().for_each(|k| put_bytes(&mut body, k.as_bytes()));
                body.push(b'e');
                Write {
                    service: STATE_DEL,
                    body,
                    id: id(i),
                    intent: Intent::Del(keys),
                }
            }
            Op::Garbage(mut body, i) => {
                body.insert(0, b'x');
                Write {
                    service: STATE_SET,
                    body,
                    id: id(i),
                    intent: Intent::Garbage,
                }
            }
            Op::Resend => match last.clone() {
                Some(write) => write,
                None => continue,
            },
            Op::Wait(ms) => {
                now += ms;
                let changes = model.expire(now, 2);
                let got: Vec<_> = changes.iter().map(|c| (c.seq, c.key.clone())).collect();
                prop_assert_eq!(got, reference.expire(now));
                prop_assert!(changes
                    .iter()
                    .all(|c| c.cause == Cause::Expire && c.value.is_none()));
                for change in &changes {
                    prop_assert_eq!(replica.apply(change), Ok(()));
                }
                changes_seen += changes.len() as u64;
                prop_assert_eq!(&replica, &model);
                continue;
            }
            Op::Forget => {
                now += 600_001;
                let mut forgotten = model.forget_write_ids(now);
                forgotten.sort();
                let mut expected: Vec<Vec<u8>> = (reference.ids.iter())
                    .filter(|(_, r)| r.3 + 600_000 < now)
                    .map(|(id, _)| id.clone())
                    .collect();
                reference.ids.retain(|id, _| !expected.contains(id));
                expected.sort();
                prop_assert_eq!(forgotten, expected);
                replica.forget_write_ids(now);
                prop_assert_eq!(&replica, &model);
                continue;
            }
        };
        let before = model.clone();
        let outcome = if write.service == STATE_SET {
            model.set(&write.body, write.id.as_deref(), now, 1)
        } else {
            model.del(&write.body, write.id.as_deref(), now, 1)
        };
        let expected = reference.write(&write, now);
        match (outcome, expected) {
            (Ok(WriteOutcome::Applied { seq, changes }), Expect::Applied(keys)) => {
                let got: Vec<_> = changes.iter().map(|c| (c.seq, c.key.clone())).collect();
                prop_assert_eq!(&got, &keys);
                prop_assert_eq!(Some(seq), keys.last().map(|k| k.0));
                let tagged: Vec<_> = changes.iter().map(|c| c.write.is_some()).collect();
                let mut expected_tags = vec![false; changes.len()];
                if let Some(last_tag) = expected_tags.last_mut() {
                    *last_tag = write.id.is_some();
                }
                prop_assert_eq!(tagged, expected_tags);
                for change in &changes {
                    prop_assert_eq!(replica.apply(change), Ok(()));
                }
                changes_seen += changes.len() as u64;
            }
            (Ok(WriteOutcome::Repeat { seq }), Expect::Repeat(expected)) => {
                prop_assert_eq!(seq, expected);
                prop_assert_eq!(&model, &before);
            }
            (Ok(WriteOutcome::NoChange { seq }), Expect::NoChange(expected)) => {
                prop_assert_eq!(seq, expected);
                prop_assert_eq!(&model, &before);
            }
            (Err(e), Expect::Refused(reason)) => {
                prop_assert!(
                    reason == "any" || e.reason() == reason,
                    "{} vs {}",
                    e,
                    reason
                );
                prop_assert_eq!(&model, &before);
            }
            (outcome, expected) => {
                prop_assert!(
                    false,
                    "{:?}: model {:?}, reference {:?}",
                    write,
                    outcome,
                    expected
                )
            }
        }
        prop_assert_eq!(model.seq(), reference.seq);
        prop_assert_eq!(model.seq(), changes_seen);
        prop_assert_eq!(
            snapshot(&model),
            reference.entries.clone().into_iter().collect::<Vec<_>>()
        );
        let bytes: usize = reference
            .entries
            .iter()
            .map(|(k, e)| k.len() + e.1.len())
            .sum();
        prop_assert_eq!(model.bytes(), bytes);
        prop_assert_eq!(&replica, &model);
        last = Some(write);
    }
    Ok(())
}

proptest! {
    #[test]
    fn the_model_behaves_like_a_map_and_replicates(ops in prop::collection::vec(op(), 0..60)) {
        run(ops)?;
    }
}
