//! `atcr user add|list|remove|passwd`: local PDS accounts. A new account joins the hold's crew
//! (write role, admin role with `--admin`); a removed one leaves it.
//!
//! The commands open `pds.redb` directly, so they work while the daemon is stopped. While it
//! runs it holds the database and they fail with a message saying so (the admin socket that
//! would let them act through the daemon is not built yet: see docs/pds.md).

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};

use crate::blobstore::BlobStore;
use crate::config::Config;
use crate::hold::role_permissions;
use crate::pds::Pds;

/// Opens the node's PDS for an administration command (shared by `user`, `hold` and `crew`).
pub(super) async fn open(config: &Config) -> anyhow::Result<Pds> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    // Blobs are not touched by account administration.
    let blobs = BlobStore::memory()?;
    Pds::open(&config.data_dir, config.pds_settings(config.listen.port()), blobs)
        .await
        .map_err(|e| {
            if e.to_string().contains("already open") {
                anyhow::anyhow!(
                    "{}/pds.redb is in use: stop `atcr serve` first (acting through the running daemon is not supported yet)",
                    config.data_dir.display()
                )
            } else {
                anyhow::Error::from(e).context("cannot open the PDS")
            }
        })
}

/// Reads a password: one line from stdin with `--password-stdin`.
pub(super) fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if !from_stdin {
        if std::io::stdin().is_terminal() {
            bail!(
                "give the password on stdin with --password-stdin (interactive prompts are not supported yet)"
            );
        }
        bail!("--password-stdin is required to read the password from stdin");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn add(config: &Config, name: &str, password_stdin: bool, admin: bool) -> anyhow::Result<()> {
    let password = read_password(password_stdin)?;
    runtime()?.block_on(async {
        let hold = super::hold::open(config).await?;
        let account = hold.pds().create_account(name, &password, admin).await?;
        // A new user can push: crew with the write role (admin role for administrators).
        let role = if admin { "admin" } else { "write" };
        let permissions = role_permissions(role).unwrap_or_default();
        hold.add_crew(&account.did, role, permissions).await?;
        super::print(&format!("{}\t{}", account.handle, account.did))
    })
}

pub fn list(config: &Config) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let pds = open(config).await?;
        let mut accounts = pds.accounts.list()?;
        accounts.sort_by(|a, b| a.name.cmp(&b.name));
        let lines: Vec<String> = accounts
            .iter()
            .map(|a| {
                format!(
                    "{}\t{}\t{}{}",
                    a.name,
                    a.handle,
                    a.did,
                    if a.admin { "\tadmin" } else { "" }
                )
            })
            .collect();
        super::print(&lines.join("\n"))
    })
}

pub fn remove(config: &Config, name: &str) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let hold = super::hold::open(config).await?;
        let pds = hold.pds();
        let account = pds
            .accounts
            .find(name)?
            .with_context(|| format!("no such user: {name}"))?;
        pds.remove_account(&account.did).await?;
        hold.remove_crew(&account.did).await?;
        super::print(&format!("removed {}", account.handle))
    })
}

pub fn passwd(config: &Config, name: &str, password_stdin: bool) -> anyhow::Result<()> {
    let password = read_password(password_stdin)?;
    runtime()?.block_on(async {
        let pds = open(config).await?;
        let account = pds
            .accounts
            .find(name)?
            .with_context(|| format!("no such user: {name}"))?;
        pds.accounts.set_password(&account.did, &password)?;
        super::print(&format!(
            "password changed for {}; its sessions ended",
            account.handle
        ))
    })
}
