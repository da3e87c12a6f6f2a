//! The follower's accept/drop/gap decisions, table by table, on a fake clock.

use super::*;

fn update(key: &str, seq: u64, value: &[u8]) -> FeedUpdate {
    FeedUpdate {
        key: key.into(),
        seq,
        value: (!value.is_empty()).then(|| value.to_vec()),
    }
}

fn seqs(updates: &[FeedUpdate]) -> Vec<u64> {
    updates.iter().map(|u| u.seq).collect()
}

#[test]
fn judge_table() {
    // (last, seq, digest, digest seen under seq, verdict)
    let rows: [(u64, u64, u64, Option<u64>, Verdict); 9] = [
        (10, 11, 1, None, Verdict::Next),
        (0, 1, 1, None, Verdict::Next),
        (10, 12, 1, None, Verdict::Ahead),
        (10, u64::MAX, 1, None, Verdict::Ahead),
        (10, 10, 1, Some(1), Verdict::Duplicate),
        (10, 3, 1, None, Verdict::Duplicate), // before the window or the snapshot
        (10, 0, 1, None, Verdict::Duplicate),
        (10, 9, 2, Some(1), Verdict::Conflict),
        (u64::MAX, u64::MAX, 1, None, Verdict::Duplicate),
    ];
    for (last, seq, digest, seen, expected) in rows {
        assert_eq!(
            judge(last, seq, digest, |_| seen),
            expected,
            "last {last}, seq {seq}"
        );
    }
}

#[test]
fn nothing_is_accepted_before_the_first_snapshot() {
    let now = Instant::now();
    let mut t = SeqTracker::new(Duration::from_millis(200));
    assert_eq!(t.resync_due(), Some(ResyncReason::Start));
    assert!(t.offer(update("a", 1, b"i1e"), now).is_empty());
    t.reset(5);
    assert_eq!((t.resync_due(), t.last()), (None, Some(5)));
}

#[test]
fn updates_from_two_feeds_are_accepted_once_in_order() {
    let now = Instant::now();
    let mut t = SeqTracker::new(Duration::from_millis(200));
    t.reset(10);
    // (update offered, seqs accepted by it); `a` and `p` are the active's and the
    // passive's feeds, interleaved as two sockets might deliver them.
    let script: Vec<(FeedUpdate, Vec<u64>)> = vec![
        (update("k", 9, b"i1e"), vec![]),    // a: covered by the snapshot
        (update("k", 11, b"i1e"), vec![11]), // a
        (update("k", 11, b"i1e"), vec![]),   // p: duplicate
        (update("j", 12, b""), vec![12]),    // p first this time (a delete)
        (update("k", 13, b"i3e"), vec![13]), // p
        (update("j", 12, b""), vec![]),      // a
        (update("k", 13, b"i3e"), vec![]),   // a
        (update("k", 15, b"i5e"), vec![]),   // a: 14 missing so far, held
        (update("k", 16, b"i6e"), vec![]),   // a: held
        (update("m", 14, b"i4e"), vec![14, 15, 16]), // p fills the gap
        (update("k", 15, b"i5e"), vec![]),   // p
    ];
    for (i, (u, expected)) in script.into_iter().enumerate() {
        assert_eq!(seqs(&t.offer(u, now)), expected, "step {i}");
        assert_eq!(t.resync_due(), None, "step {i}");
    }
    assert_eq!(t.last(), Some(16));
    assert_eq!(t.deadline(), None, "no gap is open");
}

#[test]
fn a_gap_that_stays_open_past_the_grace_calls_for_a_resync() {
    let start = Instant::now();
    let grace = Duration::from_millis(200);
    let mut t = SeqTracker::new(grace);
    t.reset(10);
    assert!(t.offer(update("k", 12, b"i2e"), start).is_empty());
    assert_eq!(t.deadline(), Some(start + grace));
    t.tick(start + grace / 2);
    assert_eq!(t.resync_due(), None);
    t.tick(start + grace);
    assert_eq!(
        t.resync_due(),
        Some(ResyncReason::Gap {
            last: 10,
            known: 12
        })
    );
    assert_eq!(t.last(), None);
    assert!(
        t.offer(update("k", 11, b"i1e"), start).is_empty(),
        "not until the snapshot"
    );
    t.reset(12);
    assert_eq!(seqs(&t.offer(update("k", 13, b"i3e"), start)), [13]);
}

#[test]
fn a_broker_status_ahead_of_the_feed_opens_a_gap_too() {
    let start = Instant::now();
    let grace = Duration::from_millis(200);
    let mut t = SeqTracker::new(grace);
    t.reset(10);
    t.learn(10, start);
    assert_eq!(t.deadline(), None, "not behind");
    t.learn(11, start);
    assert_eq!(t.deadline(), Some(start + grace));
    // The change was only in flight: it arrives within the grace and closes the gap.
    assert_eq!(seqs(&t.offer(update("k", 11, b"i1e"), start)), [11]);
    assert_eq!(t.deadline(), None);
    t.learn(13, start);
    t.tick(start + grace);
    assert_eq!(
        t.resync_due(),
        Some(ResyncReason::Gap {
            last: 11,
            known: 13
        })
    );
}

#[test]
fn a_contradicting_duplicate_calls_for_a_resync() {
    let now = Instant::now();
    let mut t = SeqTracker::new(Duration::from_millis(200));
    t.reset(10);
    assert_eq!(seqs(&t.offer(update("k", 11, b"i1e"), now)), [11]);
    assert_eq!(seqs(&t.offer(update("k", 12, b"i2e"), now)), [12]);
    assert!(t.offer(update("k", 11, b"i1e"), now).is_empty());
    assert_eq!(t.resync_due(), None);
    // The same seq with another value: one of the feeds is on a lost branch.
    assert!(t.offer(update("k", 11, b"i9e"), now).is_empty());
    assert_eq!(t.resync_due(), Some(ResyncReason::Conflict { seq: 11 }));
}

#[test]
fn a_held_update_that_contradicts_calls_for_a_resync() {
    let now = Instant::now();
    let mut t = SeqTracker::new(Duration::from_millis(200));
    t.reset(10);
    assert!(t.offer(update("k", 12, b"i2e"), now).is_empty());
    assert!(t.offer(update("k", 13, b"i3e"), now).is_empty());
    assert_eq!(seqs(&t.offer(update("k", 11, b"i1e"), now)), [11, 12, 13]);
    assert!(t.offer(update("x", 12, b"i2e"), now).is_empty());
    assert_eq!(t.resync_due(), Some(ResyncReason::Conflict { seq: 12 }));
}

#[test]
fn the_duplicate_window_is_bounded() {
    let now = Instant::now();
    let mut t = SeqTracker::new(Duration::from_millis(200));
    t.reset(0);
    let total = RECENT_WINDOW as u64 + 10;
    for seq in 1..=total {
        assert_eq!(seqs(&t.offer(update("k", seq, b"i1e"), now)), [seq]);
    }
    // Seq 1 is out of the window: a contradicting copy is just dropped.
    assert!(t.offer(update("other", 1, b"i1e"), now).is_empty());
    assert_eq!(t.resync_due(), None);
    assert!(t.offer(update("other", total, b"i1e"), now).is_empty());
    assert!(t.resync_due().is_some());
}

#[test]
fn too_many_held_updates_force_a_resync() {
    let now = Instant::now();
    let mut t = SeqTracker::new(Duration::from_secs(60));
    t.reset(0);
    for seq in 2..=(MAX_HELD as u64 + 2) {
        t.offer(update("k", seq, b"i1e"), now);
    }
    assert_eq!(t.resync_due(), Some(ResyncReason::Overflow));
}
