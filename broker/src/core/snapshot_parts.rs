//! How a snapshot of the state model is cut into parts for the peer link: entries and
//! remembered write ids alike count against one byte budget per part, so that no part
//! outgrows what the peer accepts (`hearth_proto::peer::MAX_REPL_BODY`), however many write
//! ids the last ten minutes left. (All ids once rode in the last part: past about 190,000
//! of them it was refused as too large and resent for ever.)

use hearth_proto::repl::{SnapshotEntry, SnapshotWrite};

/// What a record costs beyond its key, value or id in the encoded part: field names, seqs,
/// lengths and times (a write id's record is about 82 bytes besides the id), rounded up.
const RECORD_OVERHEAD: usize = 96;

/// The entries and write ids of one part.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Part {
    pub entries: Vec<SnapshotEntry>,
    pub writes: Vec<SnapshotWrite>,
}

/// Cuts `entries` then `writes` into parts of at most about `budget` bytes each (a single
/// record larger than the budget gets a part to itself). Always at least one part, so that
/// an empty model still sends its `last` part.
pub(super) fn cut(
    entries: impl IntoIterator<Item = SnapshotEntry>,
    writes: impl IntoIterator<Item = SnapshotWrite>,
    budget: usize,
) -> Vec<Part> {
    let mut parts = vec![Part::default()];
    let mut bytes = 0;
    let mut make_room = |parts: &mut Vec<Part>, size: usize| {
        let current_is_empty =
            matches!(parts.last(), Some(p) if p.entries.is_empty() && p.writes.is_empty());
        if bytes + size > budget && !current_is_empty {
            parts.push(Part::default());
            bytes = 0;
        }
        bytes += size;
    };
    for entry in entries {
        make_room(
            &mut parts,
            entry.key.len() + entry.value.len() + RECORD_OVERHEAD,
        );
        if let Some(part) = parts.last_mut() {
            part.entries.push(entry);
        }
    }
    for write in writes {
        make_room(&mut parts, write.tag.id.len() + RECORD_OVERHEAD);
        if let Some(part) = parts.last_mut() {
            part.writes.push(write);
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::peer::{PeerMessage, MAX_REPL_BODY};
    use hearth_proto::repl::{History, SnapshotChunk};
    use hearth_proto::state::WriteTag;

    fn entry(i: usize, value_len: usize) -> SnapshotEntry {
        SnapshotEntry {
            key: format!("k{i:05}"),
            seq: i as u64,
            value: vec![b'x'; value_len],
            expires_at_ms: None,
        }
    }

    fn write(i: usize) -> SnapshotWrite {
        SnapshotWrite {
            seq: i as u64,
            tag: WriteTag {
                id: format!("w-{i:08}").into_bytes(),
                digest: i as u64,
                at_ms: 0,
            },
        }
    }

    fn cost(part: &Part) -> usize {
        let e: usize = part
            .entries
            .iter()
            .map(|e| e.key.len() + e.value.len() + RECORD_OVERHEAD)
            .sum();
        let w: usize = part
            .writes
            .iter()
            .map(|w| w.tag.id.len() + RECORD_OVERHEAD)
            .sum();
        e + w
    }

    #[test]
    fn an_empty_model_is_one_empty_part() {
        assert_eq!(cut(Vec::new(), Vec::new(), 1000), vec![Part::default()]);
    }

    #[test]
    fn write_ids_are_spread_over_parts_within_the_budget() {
        let budget = 4096;
        let entries: Vec<_> = (0..200).map(|i| entry(i, 30)).collect();
        let writes: Vec<_> = (0..5000).map(write).collect();
        let parts = cut(entries.clone(), writes.clone(), budget);
        assert!(parts.len() > 50, "{} parts", parts.len());
        for (i, part) in parts.iter().enumerate() {
            assert!(cost(part) <= budget, "part {i} costs {}", cost(part));
            assert!(
                !part.entries.is_empty() || !part.writes.is_empty(),
                "part {i} empty"
            );
        }
        // Nothing lost, nothing reordered.
        let got_entries: Vec<_> = parts.iter().flat_map(|p| p.entries.clone()).collect();
        let got_writes: Vec<_> = parts.iter().flat_map(|p| p.writes.clone()).collect();
        assert_eq!(got_entries, entries);
        assert_eq!(got_writes, writes);
    }

    #[test]
    fn a_record_over_the_budget_gets_a_part_to_itself() {
        let parts = cut(
            vec![entry(0, 10), entry(1, 5000), entry(2, 10)],
            Vec::new(),
            1000,
        );
        let sizes: Vec<usize> = parts.iter().map(|p| p.entries.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
    }

    #[test]
    fn the_budget_of_the_peer_link_holds_the_ids_of_ten_busy_minutes() {
        // 200,000 ids of 64 bytes (the longest allowed) under the real budget: every part
        // stays far below what the peer accepts.
        let writes = (0..200_000).map(|i| SnapshotWrite {
            seq: i as u64,
            tag: WriteTag {
                id: vec![b'i'; 64],
                digest: i as u64,
                at_ms: 1_800_000_000_000,
            },
        });
        let budget = super::super::replication::BYTES_PER_MESSAGE;
        let parts = cut(Vec::new(), writes, budget);
        assert_eq!(parts.iter().map(|p| p.writes.len()).sum::<usize>(), 200_000);
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            assert!(cost(&part) <= budget);
            let message = PeerMessage::Snapshot(SnapshotChunk {
                seq: 200_000,
                history: History::default(),
                common: 0,
                part: i as u32,
                last: i == last,
                entries: part.entries,
                writes: part.writes,
            });
            let encoded: usize = message.encode().iter().map(|f| f.len()).sum();
            assert!(encoded <= budget, "part {i} encodes to {encoded} bytes");
            assert!(encoded <= MAX_REPL_BODY);
        }
    }
}
