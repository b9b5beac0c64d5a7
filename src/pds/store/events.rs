//! The event log of `pds.redb`: appending an event and reading it back by sequence number.

use bytes::Bytes;
use redb::{ReadableTable, WriteTransaction};

use super::{EVENTS, PdsStore, StoreError};

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
}

fn append_event(
    tx: &WriteTransaction,
    event: Box<dyn FnOnce(u64) -> Vec<u8> + Send>,
) -> Result<(u64, Vec<u8>), StoreError> {
    let mut events = tx.open_table(EVENTS)?;
    let seq = events.last()?.map_or(0, |(k, _)| k.value()) + 1;
    let frame = event(seq);
    events.insert(seq, frame.as_slice())?;
    Ok((seq, frame))
}
