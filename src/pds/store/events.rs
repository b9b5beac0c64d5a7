//! The event log of `pds.redb`: appending an event, reading it back by sequence number, and
//! pruning it to a time window.
//!
//! Append times are kept beside the events (`event_times`): for every `#identity`/`#account`
//! event, every event replayed from `pds.wal` (the time of the replay), and the first commit
//! event of each second — a time per commit would cost every commit one more table to write.
//! A commit event without a time was appended in the second of the timed event before it;
//! events from before times were kept are older than the first timed one.
//!
//! Pruning removes every event up to the newest one appended before the cutoff, never past a
//! bound the caller gives (the registry index's cursor: nothing it has not applied goes), and
//! never the newest event, whose number the next one continues from. When it removes a timed
//! event but keeps untimed ones of its second, the first kept one takes that time over.

use bytes::Bytes;
use redb::{ReadableTable, WriteTransaction};

use super::{EVENT_TIMES, EVENTS, PdsStore, StoreError};

impl PdsStore {
    /// Appends an event that changes nothing else (`#identity`, `#account`).
    pub fn append_event(
        &self,
        event: Box<dyn FnOnce(u64) -> Vec<u8> + Send>,
    ) -> Result<(u64, Vec<u8>), StoreError> {
        let tx = self.db.begin_write()?;
        let out = append_event(&tx, event)?;
        tx.commit()?;
        Ok(out)
    }

    /// The newest sequence number (0 when the log is empty).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(EVENTS)?;
        Ok(table.last()?.map_or(0, |(k, _)| k.value()))
    }

    /// Up to `limit` events with a sequence number greater than `after`.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(EVENTS)?;
        let mut out = Vec::new();
        for item in table.range(after.saturating_add(1)..)? {
            let (k, v) = item?;
            out.push((k.value(), Bytes::copy_from_slice(v.value())));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The oldest sequence number still in the log.
    pub fn first_seq(&self) -> Result<Option<u64>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(EVENTS)?;
        Ok(table.first()?.map(|(k, _)| k.value()))
    }

    /// Removes the events appended before `cutoff` (unix seconds) whose number is at most
    /// `max_seq`, keeping the newest event whatever its age; returns how many went. Works in
    /// bounded transactions, so a long-neglected log is pruned without one huge write.
    pub fn prune_events(&self, cutoff: u64, max_seq: u64) -> Result<u64, StoreError> {
        const STEP: usize = 10_000;
        let mut removed = 0;
        loop {
            let tx = self.db.begin_write()?;
            let gone = {
                let mut events = tx.open_table(EVENTS)?;
                let mut times = tx.open_table(EVENT_TIMES)?;
                let newest = events.last()?.map_or(0, |(k, _)| k.value());
                let bound = max_seq.min(newest.saturating_sub(1));
                // The newest timed event before the cutoff within the bound, looking at most
                // STEP events ahead, and the first timed one after it: everything before that
                // one goes in this round (untimed events share the time before them).
                let (mut upto, mut next, mut seen) = (None, None, 0);
                for item in times.range(..=bound)?.take(STEP) {
                    let (seq, at) = item?;
                    seen += 1;
                    if at.value() >= cutoff {
                        next = Some(seq.value());
                        break;
                    }
                    upto = Some((seq.value(), at.value()));
                }
                let Some((upto, at)) = upto else {
                    drop((events, times));
                    tx.abort()?;
                    return Ok(removed);
                };
                let through = match next {
                    Some(next) => next - 1,
                    None if seen < STEP => bound,
                    None => upto,
                };
                let gone = remove_through(&mut events, through)?;
                remove_through(&mut times, through)?;
                let kept = through + 1;
                if kept <= newest && times.get(kept)?.is_none() {
                    times.insert(kept, at)?;
                }
                gone
            };
            tx.commit()?;
            removed += gone;
        }
    }
}

fn append_event(
    tx: &WriteTransaction,
    event: Box<dyn FnOnce(u64) -> Vec<u8> + Send>,
) -> Result<(u64, Vec<u8>), StoreError> {
    let mut events = tx.open_table(EVENTS)?;
    let seq = events.last()?.map_or(0, |(k, _)| k.value()) + 1;
    let frame = event(seq);
    events.insert(seq, frame.as_slice())?;
    tx.open_table(EVENT_TIMES)?
        .insert(seq, crate::pds::accounts::now_secs())?;
    Ok((seq, frame))
}

/// Removes the entries of `table` numbered at most `upto`; returns how many went.
fn remove_through<V: redb::Value + 'static>(
    table: &mut redb::Table<'_, u64, V>,
    upto: u64,
) -> Result<u64, StoreError> {
    let mut gone = 0;
    loop {
        let Some(seq) = table.first()?.map(|(k, _)| k.value()) else {
            return Ok(gone);
        };
        if seq > upto {
            return Ok(gone);
        }
        table.remove(seq)?;
        gone += 1;
    }
}
