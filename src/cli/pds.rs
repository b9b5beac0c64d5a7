//! `atcr pds recover --accept-loss`: start again after `pds.wal` was lost while `pds.redb` still
//! needed it. Opens the store with the daemon stopped, keeps what redb holds, and leaves a fresh
//! log, so the next `atcr serve` starts.

use anyhow::Context;

use crate::config::Config;
use crate::pds::store::{PdsStore, Recovery, StoreError};

pub fn recover(config: &Config, accept_loss: bool) -> anyhow::Result<()> {
    let path = config.data_dir.join("pds.redb");
    match PdsStore::open(&path) {
        Ok(_) => {
            return super::print(&format!(
                "{} and its pds.wal are consistent: nothing to recover",
                path.display()
            ));
        }
        Err(StoreError::LogLost(message)) if !accept_loss => {
            anyhow::bail!("{message}; pass --accept-loss to start without those commits")
        }
        Err(StoreError::LogLost(_)) => {}
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot open {} (is `atcr serve` running? stop it first)",
                    path.display()
                )
            });
        }
    }
    let store = PdsStore::open_with(&path, Recovery::AcceptLoss)
        .with_context(|| format!("cannot open {}", path.display()))?;
    store.checkpoint()?;
    let seq = store.last_seq()?;
    super::print(&format!(
        "{} opened without its lost pds.wal: the event log ends at seq {seq}; commits \
         acknowledged after its last checkpoint are gone (run `atcr index rebuild` if the \
         registry shows images whose records are missing)",
        path.display()
    ))
}
