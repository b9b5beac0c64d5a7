//! Node administration: the operations behind `atcr user`, `atcr hold` and `atcr crew`, and the
//! admin socket through which those commands act while the daemon runs.
//!
//! `atcr serve` holds the state's redb files, so no second process can open them. It listens on
//! `<data dir>/admin.sock`: mode 0600, and a connection is served only when its peer (by kernel
//! credentials) is the daemon's own user or root. A connection carries one JSON [`Op`] (the
//! client then shuts its writing side) and gets one JSON [`Reply`]. The command-line tools send
//! their operation there when the socket answers, and open the state themselves when nothing
//! listens (daemon stopped; a socket file a crash left behind refuses connections).
//!
//! Sits under `cli` (it runs the operator's commands): imports `appview`, `hold`, `pds` and
//! `doctor`; never `server`, `registry` or `web`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use std::future::Future;

use crate::appview::gc::GcReport;
use crate::appview::index::Index;
use crate::atproto::Did;
use crate::hold::trusted::Trusted;
use crate::hold::{Hold, Permission, role_permissions};

mod holds;
mod quota;
pub use quota::QuotaSetting;

/// The socket's file name in the data directory.
pub const SOCKET: &str = "admin.sock";
/// A request larger than this is refused (an operation is a few names and a password).
const MAX_REQUEST: u64 = 64 * 1024;
/// How long a connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client waits for the daemon's reply (password hashing is deliberately slow).
const REPLY_TIMEOUT: Duration = Duration::from_mins(2);

/// One administration operation. Passwords travel inside, so it is neither `Debug` nor logged;
/// [`Op::name`] is what the log shows.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    UserAdd {
        name: String,
        password: String,
        admin: bool,
    },
    UserList,
    UserRemove {
        name: String,
    },
    UserPasswd {
        name: String,
        password: String,
    },
    /// `atcr user quota NAME [LIMIT]`: sets the limit when given; the reply says where the
    /// user stands.
    UserQuota {
        name: String,
        setting: Option<QuotaSetting>,
    },
    HoldShow,
    /// `atcr hold add DID [--endpoint URL]`: trust a hold on another machine.
    HoldAdd {
        did: String,
        endpoint: Option<String>,
    },
    HoldList,
    HoldRemove {
        did: String,
    },
    HoldSet {
        owner: Option<String>,
        public: Option<bool>,
        allow_all_crew: Option<bool>,
    },
    CrewAdd {
        who: String,
        role: String,
        /// Empty: the role's permissions.
        permissions: Vec<String>,
    },
    CrewRemove {
        who: String,
    },
    CrewList,
    /// `atcr doctor`'s state checks ([`crate::doctor::check_state`]); the reply is the
    /// findings as JSON.
    Doctor,
    /// `atcr gc [--dry-run]`: one garbage collection by the daemon; the reply is its
    /// [`GcReport`] as JSON.
    Gc {
        dry_run: bool,
    },
}

/// The daemon's collector as the admin socket reaches it: the registry's collection (which
/// knows the uploads requests are writing to) and its schedule.
pub struct GcHook {
    /// Runs one collection (`true`: dry).
    #[allow(clippy::type_complexity)]
    pub run: Box<
        dyn Fn(bool) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<GcReport>> + Send>>
            + Send
            + Sync,
    >,
    /// `gc.interval_secs` (0: not scheduled).
    pub interval_secs: u64,
}

/// What operations act on: the hold (and its PDS), and the registry index when it is open
/// (the daemon's, or `atcr doctor`'s own with the daemon stopped).
pub struct Node<'a> {
    pub hold: &'a Hold,
    pub index: Option<&'a Index>,
    /// Whether this is the running daemon.
    pub running: bool,
    /// The daemon's collector (`None` in the command-line tools).
    pub gc: Option<&'a GcHook>,
    /// `quota.default` in bytes (0: no limit), for what `atcr user` shows.
    pub default_quota: u64,
    /// The holds on other machines the registry trusts (`atcr hold add|list|remove`).
    pub trusted: Option<&'a Trusted>,
}

/// The daemon's answer: the command's output, or why it failed.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok(String),
    Error(String),
}

impl Op {
    /// The operation's name, for logs.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Op::UserAdd { .. } => "user add",
            Op::UserList => "user list",
            Op::UserRemove { .. } => "user remove",
            Op::UserPasswd { .. } => "user passwd",
            Op::UserQuota { .. } => "user quota",
            Op::HoldShow => "hold show",
            Op::HoldSet { .. } => "hold set",
            Op::HoldAdd { .. } => "hold add",
            Op::HoldList => "hold list",
            Op::HoldRemove { .. } => "hold remove",
            Op::CrewAdd { .. } => "crew add",
            Op::CrewRemove { .. } => "crew remove",
            Op::CrewList => "crew list",
            Op::Doctor => "doctor",
            Op::Gc { .. } => "gc",
        }
    }

    /// Runs the operation on an open node; returns the text to print.
    pub async fn execute(self, node: &Node<'_>) -> anyhow::Result<String> {
        let hold = node.hold;
        let pds = hold.pds();
        match self {
            Op::UserAdd {
                name,
                password,
                admin,
            } => {
                let account = pds.create_account(&name, &password, admin).await?;
                // A new user can push: crew with the write role (admin role for administrators).
                let role = if admin { "admin" } else { "write" };
                let permissions = role_permissions(role).unwrap_or_default();
                hold.add_crew(&account.did, role, permissions).await?;
                Ok(format!("{}\t{}", account.handle, account.did))
            }
            Op::UserList => quota::list(node),
            Op::UserQuota { name, setting } => quota::quota(node, &name, setting),
            Op::UserRemove { name } => {
                let account = find_user(hold, &name)?;
                pds.remove_account(&account.did).await?;
                hold.remove_crew(&account.did).await?;
                Ok(format!("removed {}", account.handle))
            }
            Op::UserPasswd { name, password } => {
                let account = find_user(hold, &name)?;
                pds.accounts.set_password(&account.did, &password)?;
                Ok(format!(
                    "password changed for {}; its sessions ended",
                    account.handle
                ))
            }
            Op::HoldShow => hold_show(hold),
            Op::HoldAdd { did, endpoint } => holds::add(node, &did, endpoint.as_deref()).await,
            Op::HoldList => holds::list(node),
            Op::HoldRemove { did } => holds::remove(node, &did),
            Op::HoldSet {
                owner,
                public,
                allow_all_crew,
            } => {
                if owner.is_none() && public.is_none() && allow_all_crew.is_none() {
                    bail!("nothing to set: give --owner, --public or --allow-all-crew");
                }
                let owner = owner.map(|who| resolve(hold, &who)).transpose()?;
                let captain = hold.set_captain(owner, public, allow_all_crew).await?;
                Ok(format!(
                    "owner {}, public {}, allowAllCrew {}",
                    captain.owner, captain.public, captain.allow_all_crew
                ))
            }
            Op::CrewAdd {
                who,
                role,
                permissions,
            } => {
                let defaults = role_permissions(&role)
                    .with_context(|| format!("unknown role {role:?}: read, write or admin"))?;
                let permissions = permissions
                    .iter()
                    .map(|p| p.parse::<Permission>().map_err(anyhow::Error::msg))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let permissions = if permissions.is_empty() {
                    defaults
                } else {
                    &permissions
                };
                let did = resolve(hold, &who)?;
                let m = hold.add_crew(&did, &role, permissions).await?;
                Ok(format!(
                    "{}\t{}\t{}",
                    m.member,
                    m.role,
                    m.permissions.join(",")
                ))
            }
            Op::CrewRemove { who } => {
                let did = resolve(hold, &who)?;
                if !hold.remove_crew(&did).await? {
                    bail!("{did} is not in the crew");
                }
                Ok(format!("removed {did} from the crew"))
            }
            Op::CrewList => {
                let mut lines = Vec::new();
                for m in hold.crew()? {
                    let handle = pds.handle_of(&m.member)?;
                    lines.push(format!(
                        "{}\t{}\t{}\t{}",
                        m.member,
                        handle.as_deref().unwrap_or("-"),
                        m.role,
                        m.permissions.join(",")
                    ));
                }
                Ok(lines.join("\n"))
            }
            Op::Doctor => {
                let index = node
                    .index
                    .context("the state checks need the registry index open")?;
                let mut findings = crate::doctor::check_state(pds, index, node.running).await;
                if let Some(gc) = node.gc {
                    findings.push(crate::doctor::check_gc(
                        index.gc_last_run()?,
                        gc.interval_secs,
                        crate::pds::accounts::now_secs(),
                    ));
                }
                Ok(serde_json::to_string(&findings)?)
            }
            Op::Gc { dry_run } => {
                let gc = node
                    .gc
                    .context("garbage collection runs in the daemon or offline by `atcr gc`")?;
                Ok(serde_json::to_string(&(gc.run)(dry_run).await?)?)
            }
        }
    }
}

fn find_user(hold: &Hold, name: &str) -> anyhow::Result<crate::pds::accounts::Account> {
    hold.pds()
        .accounts
        .find(name)?
        .with_context(|| format!("no such user: {name}"))
}

/// A local user by name, handle or DID, or any DID (users of other PDSes may be crew too).
fn resolve(hold: &Hold, who: &str) -> anyhow::Result<Did> {
    if let Some(account) = hold.pds().accounts.find(who)? {
        return Ok(account.did);
    }
    if who.starts_with("did:") {
        return who.parse().with_context(|| format!("invalid DID {who:?}"));
    }
    bail!("no local user {who:?} (name, handle or DID; users of other PDSes by DID)")
}

fn hold_show(hold: &Hold) -> anyhow::Result<String> {
    let captain = hold.captain()?;
    let crew = hold.crew()?;
    let owner = match hold.pds().handle_of(&captain.owner)? {
        Some(handle) => format!("{} ({handle})", captain.owner),
        None if captain.owner == hold.pds().node_did => {
            format!("{} (this node)", captain.owner)
        }
        None => captain.owner.to_string(),
    };
    Ok(format!(
        "owner\t{owner}\npublic\t{}\nallowAllCrew\t{}\ndeployedAt\t{}\ncrew\t{}",
        captain.public,
        captain.allow_all_crew,
        captain.deployed_at,
        crew.len()
    ))
}

/// Sends `op` to the daemon serving `data_dir`. `None` when no daemon listens there (no socket
/// file, or one a crash left behind), so the caller may open the state itself.
#[must_use]
pub fn call(data_dir: &Path, op: &Op) -> Option<anyhow::Result<String>> {
    let path = data_dir.join(SOCKET);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return None;
        }
        Err(e) => {
            return Some(Err(anyhow::Error::from(e).context(format!(
                "the daemon's admin socket {} cannot be reached (run this as the service's user or root)",
                path.display()
            ))));
        }
    };
    // The daemon's own refusal (a name taken, no such user) is the command's error as it is;
    // only a failed exchange is about the socket.
    Some(
        match exchange(&mut stream, op).with_context(|| {
            format!(
                "no answer from the daemon's admin socket {}",
                path.display()
            )
        }) {
            Ok(Reply::Ok(text)) => Ok(text),
            Ok(Reply::Error(message)) => Err(anyhow::Error::msg(message)),
            Err(e) => Err(e),
        },
    )
}

fn exchange(stream: &mut std::os::unix::net::UnixStream, op: &Op) -> anyhow::Result<Reply> {
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.write_all(&serde_json::to_vec(op)?)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    if reply.is_empty() {
        bail!("the daemon closed the connection (see its log)");
    }
    serde_json::from_slice(&reply).context("unreadable reply")
}

/// The daemon's side: a listening admin socket.
pub struct AdminSocket {
    path: PathBuf,
    listener: UnixListener,
    /// The user allowed besides root: the socket file's owner, i.e. the daemon's own user.
    owner: u32,
}

impl AdminSocket {
    /// Listens on `<data_dir>/admin.sock`, replacing a file left by an earlier run. Call only
    /// with the state's locks held (no other daemon can be serving this directory). The socket
    /// is created under a temporary name and made owner-only before it takes the real name, so
    /// no other user can connect in between.
    pub fn bind(data_dir: &Path) -> anyhow::Result<AdminSocket> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let path = data_dir.join(SOCKET);
        let staging = data_dir.join(format!("{SOCKET}.new"));
        for stale in [&staging, &path] {
            match std::fs::remove_file(stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(anyhow::Error::from(e)
                        .context(format!("cannot remove {}", stale.display())));
                }
                _ => {}
            }
        }
        let listener = UnixListener::bind(&staging)
            .with_context(|| format!("cannot listen on {}", staging.display()))?;
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))?;
        let owner = std::fs::metadata(&staging)?.uid();
        std::fs::rename(&staging, &path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        tracing::info!(path = %path.display(), "admin socket");
        Ok(AdminSocket {
            path,
            listener,
            owner,
        })
    }

    /// Serves connections until `shutdown`; the socket file goes when `self` is dropped.
    pub async fn serve(
        self,
        hold: Arc<Hold>,
        index: Index,
        gc: Arc<GcHook>,
        default_quota: u64,
        trusted: Option<Arc<Trusted>>,
        shutdown: CancellationToken,
    ) {
        // One operation at a time: they are rare, and this keeps their effects in order.
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        loop {
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let (hold, index, gc, turn, owner, trusted) = (
                hold.clone(),
                index.clone(),
                gc.clone(),
                turn.clone(),
                self.owner,
                trusted.clone(),
            );
            tokio::spawn(async move {
                let node = Node {
                    hold: &hold,
                    index: Some(&index),
                    running: true,
                    gc: Some(&gc),
                    default_quota,
                    trusted: trusted.as_deref(),
                };
                if let Err(e) = serve_one(stream, &node, owner, &turn).await {
                    tracing::warn!(error = %format!("{e:#}"), "admin socket");
                }
            });
        }
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_one(
    mut stream: UnixStream,
    node: &Node<'_>,
    owner: u32,
    turn: &tokio::sync::Mutex<()>,
) -> anyhow::Result<()> {
    let peer = stream.peer_cred()?.uid();
    if peer != owner && peer != 0 {
        bail!("refused a connection from uid {peer}");
    }
    let mut request = Vec::new();
    let mut limited = (&mut stream).take(MAX_REQUEST + 1);
    tokio::time::timeout(READ_TIMEOUT, limited.read_to_end(&mut request))
        .await
        .context("the request did not arrive in time")??;
    let reply = if request.len() as u64 > MAX_REQUEST {
        Reply::Error(format!("request larger than {MAX_REQUEST} bytes"))
    } else {
        match serde_json::from_slice::<Op>(&request) {
            Err(e) => Reply::Error(format!("not an administration request: {e}")),
            Ok(op) => {
                let name = op.name();
                // A slow client holds up no one while it sends; the operations themselves
                // run one at a time.
                let _turn = turn.lock().await;
                match op.execute(node).await {
                    Ok(text) => {
                        tracing::info!(op = name, uid = peer, "admin socket: done");
                        Reply::Ok(text)
                    }
                    Err(e) => {
                        tracing::info!(op = name, uid = peer, error = %format!("{e:#}"), "admin socket: failed");
                        Reply::Error(format!("{e:#}"))
                    }
                }
            }
        }
    };
    stream.write_all(&serde_json::to_vec(&reply)?).await?;
    stream.shutdown().await?;
    Ok(())
}
