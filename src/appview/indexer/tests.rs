//! Which published events the indexer applies.

use bytes::Bytes;

use super::following;

fn seqs(batch: Option<Vec<(u64, Bytes)>>) -> Option<Vec<u64>> {
    batch.map(|b| b.into_iter().map(|e| e.0).collect())
}

#[test]
fn published_events_apply_only_when_they_follow_the_cursor() {
    let batch = |seqs: &[u64]| seqs.iter().map(|s| (*s, Bytes::new())).collect();
    // Read from the log already: dropped; the rest follows.
    assert_eq!(seqs(following(5, batch(&[4, 5, 6, 7]))), Some(vec![6, 7]));
    assert_eq!(seqs(following(5, batch(&[5]))), Some(vec![]));
    // One missing (not handed out, or lost to a lag): the log fills it in.
    assert_eq!(seqs(following(5, batch(&[7]))), None);
    assert_eq!(seqs(following(5, batch(&[6, 8]))), None);
}
