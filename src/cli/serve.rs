//! `atcr serve`: open the state, bind, serve until a signal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::appview::index::Index;
use crate::blobstore::BlobStore;
use crate::config::{Backend, Config, Role};
use crate::server::{self, App, Listener, ServerLimits};
use crate::tls::CertStore;
use crate::worker::Workers;

/// How often sessions nobody can use any more are removed.
const SESSION_SWEEP: Duration = Duration::from_hours(1);
/// How often the managed server certificate is checked for renewal.
const RENEWAL_CHECK: Duration = Duration::from_hours(6);

pub fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))
}

/// Opens the registry index; its lock keeps a second process off this state, so it is opened
/// before anything in the state is touched. A damaged index is moved aside and started afresh
/// (see [`Index::open_or_replace`]); the registry rebuilds it from the PDS event log. Then the
/// state is made owner-only.
pub(super) fn open_index(config: &Config) -> anyhow::Result<Index> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let index_path = config.data_dir.join("index.redb");
    let (index, _) = Index::open_or_replace(&index_path)
        .with_context(|| format!("cannot open index {}", index_path.display()))?;
    make_private(&config.data_dir)?;
    Ok(index)
}

/// Takes group and other permissions off `dir` and what is in it: state written by an
/// earlier version, or by a start under a looser umask.
pub(super) fn make_private(dir: &std::path::Path) -> anyhow::Result<()> {
    let changed = super::private::tighten(dir)
        .with_context(|| format!("cannot make {} owner-only", dir.display()))?;
    if changed > 0 {
        tracing::info!(dir = %dir.display(), changed, "state made owner-only");
    }
    Ok(())
}

/// The search index in `<data_dir>/search` (derived: made afresh when missing or unreadable).
pub(super) fn open_search(config: &Config) -> anyhow::Result<Arc<crate::search::Search>> {
    let dir = config.data_dir.join("search");
    let (search, _) = crate::search::Search::open(&dir)
        .with_context(|| format!("cannot open the search index {}", dir.display()))?;
    Ok(Arc::new(search))
}

/// The configured blob store, as it is: nothing is created or cleaned (`doctor`, `fsck`,
/// `storage migrate`). [`open_blobs`] is the daemon's.
pub(super) fn blob_store(config: &Config) -> anyhow::Result<BlobStore> {
    Ok(match config.storage.backend {
        Backend::Fs => BlobStore::filesystem(&config.blob_root())?,
        Backend::Memory => BlobStore::memory()?,
        Backend::S3 => s3_store(config)?,
    })
}

fn s3_store(config: &Config) -> anyhow::Result<BlobStore> {
    let settings = config
        .storage
        .s3_settings()?
        .context("storage.backend is not s3")?;
    BlobStore::s3(&settings).with_context(|| format!("cannot open {}", settings.describe()))
}

pub(super) fn open_blobs(config: &Config) -> anyhow::Result<BlobStore> {
    Ok(match config.storage.backend {
        Backend::Fs => {
            let root = config.blob_root();
            std::fs::create_dir_all(&root)
                .with_context(|| format!("cannot create {}", root.display()))?;
            if !root.starts_with(&config.data_dir) {
                make_private(&root)?;
            }
            remove_partial_writes(&root);
            BlobStore::filesystem(&root)?
        }
        Backend::Memory => BlobStore::memory()?,
        Backend::S3 => s3_store(config)?,
    })
}

/// Removes temporary files of writes a crash interrupted. Safe at start only, with the index
/// open: its lock means no other process writes here.
fn remove_partial_writes(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root.join(".partial")) else {
        return;
    };
    let removed = entries
        .filter_map(Result::ok)
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count();
    if removed > 0 {
        tracing::info!(removed, "removed partial writes left by a crash");
    }
}

async fn bind(addr: std::net::SocketAddr, scheme: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, scheme = %scheme, "listening");
    Ok(listener)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let index = open_index(&config)?;
    // `atcr user|hold|crew` act through this socket while the daemon holds the state. Bound
    // now, with the state locked and before the "listening" lines, so a command run as soon as
    // the daemon appears waits in the socket's backlog instead of finding no daemon.
    let admin = crate::admin::AdminSocket::bind(&config.data_dir)?;
    let blobs = open_blobs(&config)?;
    let certs = if config.tls.enabled {
        Some(CertStore::load(
            config.cert_source(),
            time::OffsetDateTime::now_utc(),
        )?)
    } else {
        None
    };

    // Signal handlers go in before the "listening" lines: a signal sent as soon as a line
    // appears must already be caught.
    let shutdown = CancellationToken::new();
    let signals = Signals::install()?;
    let mut listeners = Vec::new();
    if config.http {
        listeners.push(Listener::plain(bind(config.listen, "http").await?));
    }
    if let Some(store) = &certs {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(store.server_config()?));
        listeners.push(Listener {
            tcp: bind(config.tls.listen, "https").await?,
            tls: Some(acceptor),
        });
    }
    // The node's did:web names its port when it serves on localhost: open the PDS once the
    // port is known.
    let port = listeners
        .first()
        .and_then(|l| l.tcp.local_addr().ok())
        .map_or(config.listen.port(), |a| a.port());
    let mut pds = crate::pds::Pds::open(&config.data_dir, config.pds_settings(port), blobs)
        .await
        .context("cannot open the PDS")?;
    pds.shutdown = shutdown.clone();
    tracing::info!(did = %pds.node_did, "pds ready");
    let role = config.node.role;
    // A hold has no search: the registry's pages and catalog are elsewhere.
    let search = match role {
        Role::Full => open_search(&config)?,
        Role::Hold => Arc::new(crate::search::Search::in_memory()?),
    };
    let mut app = App::assemble(pds, index, search)
        .await
        .context("cannot start the registry")?;
    app.role = role;
    app.registry
        .appview()
        .set_default_quota(config.quota.default_bytes()?);
    let trusted = Arc::new(crate::hold::trusted::Trusted::open(&config.data_dir)?);
    app.registry.use_holds(crate::registry::holds::Holds::new(
        trusted.clone(),
        config.holds.default_did()?,
    ));
    let chosen = match &config.accounts.admin_password_file {
        Some(path) => Some(crate::config::read_secret(path)?),
        None => None,
    };
    let password = chosen
        .clone()
        .unwrap_or_else(crate::pds::accounts::generate_app_password);
    if app
        .first_start(&password)
        .await
        .context("cannot create the first account")?
    {
        if chosen.is_some() {
            tracing::info!(
                user = server::ADMIN,
                "first start: created the administrator account with the password of accounts.admin_password_file"
            );
        } else {
            // Shown once, on purpose: the operator's only way to learn it.
            tracing::warn!(
                user = server::ADMIN,
                password = %password,
                "first start: created the administrator account; this password is shown only now (change it with `atcr user passwd admin`)"
            );
        }
    }
    if config.storage.backend == Backend::Fs {
        app = app.with_disk_floor(config.blob_root(), config.storage.min_free_bytes);
    }
    app.ca_pem = certs.as_ref().and_then(|c| c.ca_pem().map(str::to_owned));
    app.ca_fingerprint = app.ca_pem.as_deref().and_then(crate::tls::fingerprint);
    app.metrics_token = match &config.server.metrics_token_file {
        Some(path) => Some(crate::config::read_secret(path)?),
        None => None,
    };
    let app = Arc::new(app);
    tracing::info!(data_dir = %config.data_dir.display(), %role, "serving");

    let workers = Workers::new(shutdown.clone());
    // A hold keeps the index too: the collector and the event-log pruner go by it.
    workers.spawn("indexer", app.indexer(shutdown.clone()));
    workers.spawn("remote follower", app.remote_follower(shutdown.clone()));
    if role == Role::Full {
        workers.spawn("search", app.searcher(shutdown.clone()));
    }
    workers.spawn("storage-recovery", app.storage_recovery(shutdown.clone()));
    let gc_opts = crate::appview::gc::GcOptions {
        dry_run: false,
        grace_secs: config.gc.grace_secs,
        upload_expiry_secs: config.uploads.expire_after_secs,
    };
    let gc_app = app.clone();
    let rules = match role {
        Role::Full => config.retention.rules()?,
        Role::Hold => {
            if !config.retention.rules.is_empty() {
                tracing::warn!("retention rules are not applied in role hold: it has no tags");
            }
            Vec::new()
        }
    };
    let gc_rules = rules.clone();
    let gc_hook = Arc::new(crate::admin::GcHook {
        run: Box::new(move |dry_run| {
            let (app, rules) = (gc_app.clone(), gc_rules.clone());
            Box::pin(async move {
                let opts = crate::appview::gc::GcOptions { dry_run, ..gc_opts };
                let mut report = app.collect_garbage(opts).await?;
                // A dry run also says what the retention rules would delete now (their own
                // schedule deletes it; this collection would not free those bytes yet).
                if dry_run {
                    let plan = app
                        .registry
                        .appview()
                        .retention_plan(&rules, crate::pds::now_secs())?;
                    report.retention = plan.iter().map(Into::into).collect();
                }
                Ok(report)
            })
        }),
        interval_secs: config.gc.interval_secs,
    });
    workers.spawn(
        "admin-socket",
        admin.serve(
            app.hold.clone(),
            app.registry.appview().index().clone(),
            gc_hook,
            config.quota.default_bytes()?,
            Some(trusted),
            shutdown.clone(),
        ),
    );
    if config.gc.interval_secs > 0 {
        let gc_app = app.clone();
        workers.every(
            "gc",
            Duration::from_secs(config.gc.interval_secs),
            move || {
                let app = gc_app.clone();
                async move { app.collect_garbage(gc_opts).await }
            },
        );
    }
    let sweeper = app.clone();
    let max_idle = config.uploads.expire_after_secs;
    workers.every(
        "upload-sweeper",
        Duration::from_secs(config.uploads.sweep_interval_secs),
        move || {
            let app = sweeper.clone();
            async move {
                app.registry
                    .expire_uploads(max_idle, false)
                    .await
                    .map_err(|e| e.message)
            }
        },
    );
    if !rules.is_empty() {
        let appview = app.registry.appview().clone();
        let dry_run = config.retention.dry_run;
        let interval = Duration::from_secs(config.retention.interval_secs);
        workers.every("retention", interval, move || {
            let (appview, rules) = (appview.clone(), rules.clone());
            async move { apply_retention(&appview, &rules, dry_run).await }
        });
    }
    let keep = config.pds.events_keep_secs;
    if keep > 0 {
        let appview = app.registry.appview().clone();
        workers.every("event-log-pruner", prune_interval(keep), move || {
            let appview = appview.clone();
            async move {
                appview
                    .prune_event_log(keep, crate::pds::accounts::now_secs())
                    .await
            }
        });
    }
    let pds = app.pds.clone();
    workers.every("session-sweeper", SESSION_SWEEP, move || {
        let pds = pds.clone();
        async move {
            let now = crate::pds::accounts::now_secs();
            let pruned = tokio::task::spawn_blocking(move || pds.accounts.prune_sessions(now))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            if pruned > 0 {
                tracing::info!(pruned, "removed expired sessions");
            }
            Ok::<(), String>(())
        }
    });
    if let Some(store) = certs.clone() {
        workers.every("certificate-renewal", RENEWAL_CHECK, move || {
            let store = store.clone();
            async move { store.renew_if_due(time::OffsetDateTime::now_utc()) }
        });
    }
    workers.spawn("signals", signals.handle(shutdown.clone(), certs));

    let limits = ServerLimits {
        drain: Duration::from_secs(config.server.shutdown_drain_secs),
        header_read_timeout: Duration::from_secs(config.server.header_read_timeout_secs),
        idle_timeout: Duration::from_secs(config.server.idle_timeout_secs),
        body_read_timeout: Duration::from_secs(config.server.body_read_timeout_secs),
        max_connections: config.server.max_connections,
    };
    server::run(listeners, app, shutdown, limits).await;
    workers.stop(Duration::from_secs(10)).await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM, SIGINT and SIGHUP, caught from the moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot install a SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("cannot install a SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("cannot install a SIGHUP handler")?,
        })
    }

    /// Cancels `shutdown` on the first SIGTERM or SIGINT; reloads certificates on SIGHUP.
    async fn handle(mut self, shutdown: CancellationToken, certs: Option<Arc<CertStore>>) {
        loop {
            tokio::select! {
                _ = self.term.recv() => {
                    tracing::info!(signal = "SIGTERM", "stopping");
                    break;
                }
                _ = self.int.recv() => {
                    tracing::info!(signal = "SIGINT", "stopping");
                    break;
                }
                _ = self.hup.recv() => {
                    if let Some(Err(e)) = certs.as_ref().map(|c| c.reload()) {
                        tracing::error!(error = %e, "certificate reload failed; keeping the current one");
                    }
                }
                () = shutdown.cancelled() => return,
            }
        }
        shutdown.cancel();
    }
}

/// How often the event log is pruned: a quarter of the window, between a second and an hour.
fn prune_interval(keep_secs: u64) -> Duration {
    Duration::from_secs((keep_secs / 4).clamp(1, 3600))
}

/// One run of the retention rules; with `dry_run`, only logs what they would remove.
async fn apply_retention(
    appview: &crate::appview::AppView,
    rules: &[crate::appview::retention::Rule],
    dry_run: bool,
) -> Result<usize, crate::appview::AppViewError> {
    let now = crate::pds::now_secs();
    let removals = if dry_run {
        let plan = appview.retention_plan(rules, now)?;
        for r in &plan {
            tracing::info!(
                repository = %r.name,
                tags = ?r.tags,
                manifests = r.manifests.len(),
                "retention (dry run) would remove"
            );
        }
        plan
    } else {
        appview.apply_retention(rules, now).await?
    };
    Ok(removals.len())
}
