//! `atcr user|hold|crew …`: node administration. Each command becomes an [`Op`]; it goes to the
//! running daemon through its admin socket, or, with the daemon stopped, runs here on the state
//! opened directly.
//!
//! A new account joins the hold's crew (write role, admin role with `--admin`); a removed one
//! leaves it.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::admin::{Node, Op};
use crate::appview::index::Index;
use crate::blobstore::BlobStore;
use crate::config::Config;
use crate::hold::Hold;
use crate::pds::Pds;

/// Runs `op` through the daemon, or on the state itself when no daemon serves it; prints the
/// result.
pub fn run(config: &Config, op: Op) -> anyhow::Result<()> {
    let text = match crate::admin::call(&config.data_dir, &op) {
        Some(reply) => reply?,
        None => runtime()?.block_on(async {
            let hold = open(config).await?;
            let index = open_index(config);
            let trusted = crate::hold::trusted::Trusted::open(&config.data_dir)?;
            let node = Node {
                hold: &hold,
                index: index.as_ref(),
                running: false,
                gc: None,
                default_quota: config.quota.default_bytes()?,
                trusted: Some(&trusted),
            };
            op.execute(&node).await
        })?,
    };
    if text.is_empty() {
        return Ok(());
    }
    super::print(&text)
}

/// Opens the node's PDS and the hold over it, writing the captain record on first use.
async fn open(config: &Config) -> anyhow::Result<Hold> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    // Blobs are not touched by administration.
    let blobs = BlobStore::memory()?;
    let pds = Pds::open(
        &config.data_dir,
        config.pds_settings(config.listen.port()),
        blobs,
    )
    .await
    .map_err(|e| {
        if e.to_string().contains("already open") {
            anyhow::anyhow!(
                "{}/pds.redb is in use by another process, and no daemon answers on {}",
                config.data_dir.display(),
                config.data_dir.join(crate::admin::SOCKET).display()
            )
        } else {
            anyhow::Error::from(e).context("cannot open the PDS")
        }
    })?;
    // The PDS's lock is held: this process alone uses the state.
    super::serve::make_private(&config.data_dir)?;
    let hold = Hold::new(Arc::new(pds));
    hold.ensure_captain()
        .await
        .context("cannot read or write the hold's captain record")?;
    Ok(hold)
}

/// The registry index, for the usage `atcr user` shows, when there is one to open (a stopped
/// daemon's; none is created here). Without it usage shows as `-`.
fn open_index(config: &Config) -> Option<Index> {
    let path = config.data_dir.join("index.redb");
    if !path.exists() {
        return None;
    }
    Index::open(&path)
        .inspect_err(|e| tracing::debug!(error = %e, "registry index not opened; usage not shown"))
        .ok()
}

/// How a password is asked for at a terminal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ask {
    /// A password being set: asked twice, and the two must match.
    New,
    /// An existing password: asked once.
    Existing,
}

/// Reads a password: one line from stdin with `--password-stdin`; otherwise, at a terminal,
/// asked for on it with echo off.
pub(super) fn read_password(from_stdin: bool, ask: Ask) -> anyhow::Result<String> {
    let password = if from_stdin {
        read_line()?
    } else if std::io::stdin().is_terminal() {
        let first = prompt("Password: ")?;
        if ask == Ask::New && !first.is_empty() && prompt("Password (again): ")? != first {
            bail!("the passwords do not match");
        }
        first
    } else {
        bail!("--password-stdin is required to read the password from stdin");
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    if ask == Ask::New {
        crate::pds::accounts::check_new_password(&password)?;
    }
    Ok(password)
}

/// Asks for a line on the terminal (stdin) without echoing it.
fn prompt(question: &str) -> anyhow::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes -= LocalModes::ECHO;
    quiet.local_modes |= LocalModes::ECHONL;
    // Echo off before the question: what is typed once it shows is never echoed.
    tcsetattr(&stdin, OptionalActions::Flush, &quiet)
        .context("cannot turn the terminal's echo off")?;
    eprint!("{question}");
    let line = read_line();
    // Echo back on whatever the read did.
    let restored = tcsetattr(&stdin, OptionalActions::Now, &saved);
    let line = line?;
    restored.context("cannot turn the terminal's echo back on")?;
    Ok(line)
}

/// One line of stdin, without its line ending.
fn read_line() -> std::io::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
