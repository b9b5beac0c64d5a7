//! The command line: one file per subcommand.
//!
//! The top of the map: the only module that imports `server`.

mod admin;
mod check_config;
mod credential;
mod doctor;
mod fsck;
mod gc;
mod generate;
mod hold;
mod index;
mod login;
mod login_oauth;
mod pds;
mod private;
mod serve;
mod storage;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use hold::{CrewCommand, HoldCommand};

#[derive(Parser)]
#[command(
    name = "atcr",
    version,
    about = "A container registry appliance on the AT Protocol",
    after_long_help = "Each command's own options: atcr help <command>, or atcr <command> --help."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node: the registry, its PDS and hold (or, with `--role hold`, the hold alone).
    Serve(ServeArgs),
    /// Read and check the configuration (file, `ATCR_*` environment, flags) and exit.
    CheckConfig(ConfigArgs),
    /// The configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check permissions, ports, certificates, the clock, storage and the index, and say what
    /// to fix; exits 1 when a check fails.
    Doctor(ConfigArgs),
    /// Hash every stored blob and manifest again and list those whose bytes do not match their
    /// digest; exits 1 when any does. Only reads, so the daemon may run.
    Fsck {
        /// Move damaged objects to <blob root>/quarantine/ so they are no longer served.
        #[arg(long)]
        quarantine: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Delete blobs no manifest uses (written or linked longer ago than `gc.grace_secs`) and
    /// stale uploads, and print what was freed. Through the running daemon (which keeps
    /// serving), or on the state itself when the daemon is stopped.
    Gc {
        /// Print what would be freed; delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// HTTPS certificates.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Local PDS accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// The hold: who owns this node's blob storage, whether pulls are public; and the holds
    /// on other machines this registry trusts.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// The hold's crew: who may pull from and push to this node.
    #[command(subcommand)]
    Crew(CrewCommand),
    /// The registry index.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Blob storage.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// The embedded PDS's storage (pds.redb, pds.wal).
    #[command(subcommand)]
    Pds(PdsCommand),
    /// Log in to a node: create an app password with the account password (read once) and
    /// keep it for docker-credential-atcr; with --oauth, as a user of another PDS, through a
    /// browser sign-in at that PDS.
    Login {
        /// The registry: host[:port], or a URL.
        registry: String,
        /// Account: short name, handle or DID.
        #[arg(short, long, required_unless_present = "oauth")]
        username: Option<String>,
        /// A user of another PDS: sign in through the browser (the command prints the link to
        /// open and waits on a loopback address for it to come back); no password is read.
        #[arg(long, conflicts_with_all = ["password_stdin", "username"])]
        oauth: bool,
        /// Read the account password from the first line of stdin (default: ask for it at the
        /// terminal).
        #[arg(long)]
        password_stdin: bool,
        #[arg(
            long,
            help = "Plain HTTP (a node on a trusted LAN without TLS). Loopback (127.0.0.0/8, ::1, \
                    localhost) speaks plain HTTP without it, as docker does"
        )]
        insecure: bool,
        /// Trust this CA (PEM), e.g. the node's own from /ca.crt; default: the system's.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Print a shell completion script (the packages install them), e.g.
    /// `atcr completions bash > /etc/bash_completion.d/atcr`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; the packages install it): `atcr man | man -l -`.
    Man,
}

impl Command {
    /// Whether the command may create files in the node's state (which must then be
    /// owner-only: see `private.rs`).
    fn writes_state(&self) -> bool {
        matches!(
            self,
            Command::Serve(_)
                | Command::Doctor(_)
                | Command::User(_)
                | Command::Hold(_)
                | Command::Crew(_)
                | Command::Index(_)
                | Command::Storage(_)
                | Command::Gc { .. }
        )
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration, each value with where it came from.
    Show(ConfigArgs),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account `<name>.<handle domain>` with a new did:plc; prints handle and DID.
    /// The password must have at least 8 characters.
    Add {
        /// The account's short name: 1-63 lowercase letters, digits and inner hyphens.
        name: String,
        /// Read the password (at least 8 characters) from the first line of stdin (default: ask
        /// for it twice at the terminal).
        #[arg(long)]
        password_stdin: bool,
        /// Make the account an administrator.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List accounts: name, handle, DID, storage used, quota (and `admin` for administrators).
    List(ConfigArgs),
    /// Show or set an account's storage quota: the bytes of unique blobs its manifests may use.
    Quota {
        /// The account: name, handle or DID.
        name: String,
        /// The limit: a size (50GiB, 500MB), `none` (the node's quota.default) or `unlimited`.
        /// Omitted: show the quota and usage only.
        limit: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Remove an account (by name, handle or DID); its repository is kept, inactive.
    Remove {
        /// The account: name, handle or DID.
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Change an account's password (at least 8 characters); its sessions end.
    Passwd {
        /// The account: name, handle or DID.
        name: String,
        /// Read the password (at least 8 characters) from the first line of stdin (default: ask
        /// for it twice at the terminal).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Recreate the registry index from the repositories' records and blob storage (with the
    /// daemon stopped).
    Rebuild(ConfigArgs),
}

#[derive(Subcommand)]
enum StorageCommand {
    /// Copy every blob from the configured backend to the one the `[storage]` section of
    /// another file describes (e.g. from disk to S3), with the daemon stopped. Each blob is
    /// verified against its digest while it streams; blobs already there with the right size
    /// are skipped, so an interrupted run resumes. Nothing is deleted from the source.
    Migrate {
        /// A configuration file whose `[storage]` section is the target (the rest is ignored).
        #[arg(long, value_name = "FILE")]
        to_config: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
enum PdsCommand {
    /// Start again after pds.wal was lost (deleted, emptied, written over) when pds.redb still
    /// needed it: keeps what pds.redb holds and gives up the commits only the log had (daemon
    /// stopped). Does nothing when the two files agree.
    Recover {
        /// Required to give up the commits the lost log held.
        #[arg(long)]
        accept_loss: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Print how docker, podman and containerd clients come to trust this node's certificate.
    TrustInstructions(ConfigArgs),
}

/// `atcr serve`: the configuration, and the role to run.
#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// What to run, as `node.role` in the configuration: `full` (registry, PDS and hold) or
    /// `hold` (the hold and its PDS only).
    #[arg(long, value_parser = ["full", "hold"])]
    role: Option<String>,
}

impl ServeArgs {
    fn load(&self) -> anyhow::Result<crate::config::Config> {
        let role = self.role.iter().map(|role| crate::config::Flag {
            flag: "--role",
            key: "node.role",
            value: role.clone(),
        });
        Ok(self.config.layered_with(role.collect())?.config)
    }
}

/// Where the configuration comes from: the file, then `ATCR_*` variables, then these flags.
#[derive(Args)]
struct ConfigArgs {
    /// Configuration file (default: /etc/atcr/atcr.toml if it exists, else built-in defaults).
    #[arg(long, env = "ATCR_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:5000 (port 0 picks a free one).
    #[arg(long)]
    listen: Option<String>,
    /// State directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// Every layer, checked.
    fn layered(&self) -> anyhow::Result<crate::config::Layered> {
        self.layered_with(Vec::new())
    }

    /// Every layer, checked, with a command's own `flags` besides those of this struct.
    fn layered_with(
        &self,
        mut flags: Vec<crate::config::Flag>,
    ) -> anyhow::Result<crate::config::Layered> {
        use crate::config::Flag;
        if let Some(listen) = &self.listen {
            flags.push(Flag {
                flag: "--listen",
                key: "listen",
                value: listen.clone(),
            });
        }
        if let Some(dir) = &self.data_dir {
            flags.push(Flag {
                flag: "--data-dir",
                key: "data_dir",
                value: dir.to_string_lossy().into_owned(),
            });
        }
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        let layered = crate::config::Config::load_layered(self.config.as_deref(), env, &flags)?;
        for name in &layered.unknown_env {
            tracing::warn!(variable = %name, "not a configuration key; ignored (`atcr config show` lists the keys)");
        }
        layered.config.check()?;
        Ok(layered)
    }

    fn load(&self) -> anyhow::Result<crate::config::Config> {
        Ok(self.layered()?.config)
    }
}

/// An administration command: its configuration and its operation (or why it has none).
type Administration = (ConfigArgs, anyhow::Result<crate::admin::Op>);

fn administer((config, op): Administration) -> anyhow::Result<()> {
    let config = config.load()?;
    admin::run(&config, op?)
}

impl UserCommand {
    fn into_op(self) -> Administration {
        use crate::admin::Op;
        match self {
            UserCommand::Add {
                name,
                password_stdin,
                admin,
                config,
            } => (
                config,
                admin::read_password(password_stdin, admin::Ask::New).map(|password| Op::UserAdd {
                    name,
                    password,
                    admin,
                }),
            ),
            UserCommand::List(config) => (config, Ok(Op::UserList)),
            UserCommand::Quota {
                name,
                limit,
                config,
            } => (
                config,
                limit
                    .as_deref()
                    .map(crate::admin::QuotaSetting::parse)
                    .transpose()
                    .map(|setting| Op::UserQuota { name, setting }),
            ),
            UserCommand::Remove { name, config } => (config, Ok(Op::UserRemove { name })),
            UserCommand::Passwd {
                name,
                password_stdin,
                config,
            } => (
                config,
                admin::read_password(password_stdin, admin::Ask::New)
                    .map(|password| Op::UserPasswd { name, password }),
            ),
        }
    }
}

/// Writes command output and a line end to stdout; a closed pipe (`atcr … | head`) is not an
/// error.
fn print(text: &str) -> anyhow::Result<()> {
    write_out(&[text.as_bytes(), b"\n"].concat())
}

/// Writes `bytes` to stdout as they are; a closed pipe is not an error.
fn write_out(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The program: parse arguments, run one subcommand.
#[must_use]
pub fn main() -> ExitCode {
    // Invoked as docker-credential-atcr (a link to this binary): the credential helper.
    let args: Vec<String> = std::env::args().collect();
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str());
    if invoked_as == Some(credential::HELPER_NAME) {
        return credential::helper_main(&args);
    }
    let cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit());
    init_logging();
    crate::tls::install_crypto_provider();
    if cli.command.writes_state() {
        private::restrict_umask();
    }
    let result = match cli.command {
        Command::Serve(args) => args.load().and_then(serve::run),
        Command::CheckConfig(args) => args.layered().and_then(|l| check_config::run(&l)),
        Command::Doctor(args) => args.layered().and_then(|l| doctor::run(&l)),
        Command::Fsck { quarantine, config } => {
            config.load().and_then(|c| fsck::run(&c, quarantine))
        }
        Command::Gc { dry_run, config } => config.load().and_then(|c| gc::run(&c, dry_run)),
        Command::Config(ConfigCommand::Show(args)) => {
            args.layered().and_then(|l| print(&l.render()))
        }
        Command::Tls(TlsCommand::TrustInstructions(args)) => {
            args.load().and_then(|c| tls::trust_instructions(&c))
        }
        Command::User(cmd) => administer(cmd.into_op()),
        Command::Hold(cmd) => administer(cmd.into_op()),
        Command::Crew(cmd) => administer(cmd.into_op()),
        Command::Login {
            registry,
            username,
            oauth,
            password_stdin,
            insecure,
            ca_file,
        } => {
            let args = login::LoginArgs {
                registry: &registry,
                username: username.as_deref(),
                password_stdin,
                insecure,
                ca_file: ca_file.as_deref(),
            };
            if oauth {
                login_oauth::run(&args)
            } else {
                login::run(&args)
            }
        }
        Command::Pds(PdsCommand::Recover {
            accept_loss,
            config,
        }) => config.load().and_then(|c| pds::recover(&c, accept_loss)),
        Command::Index(IndexCommand::Rebuild(config)) => {
            config.load().and_then(|c| index::rebuild(&c))
        }
        Command::Storage(StorageCommand::Migrate { to_config, config }) => {
            config.load().and_then(|c| storage::migrate(&c, &to_config))
        }
        Command::Completions { shell } => generate::completions(shell),
        Command::Man => generate::man(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A message for a person, not a log line.
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, `outer: inner: …`, each said once: many errors
/// already include their source's text in their own (`{path}: {source}`).
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// What `--listen` means to the commands other than `serve`.
const LISTEN_ELSEWHERE: &str = "The daemon's listen address, as `listen` in the configuration; \
    this command listens on nothing. With pds.public_host unset, its port is part of the node's \
    identity (localhost:PORT): give the daemon's";

/// The command line's definition: the derived one, with `--listen` described for what it
/// means to each command. Completions and the manual page come from it too.
fn command() -> clap::Command {
    fn describe_listen(cmd: clap::Command) -> clap::Command {
        let cmd = cmd.mut_subcommands(describe_listen);
        if cmd.get_name() == "serve" || !cmd.get_arguments().any(|a| a.get_id() == "listen") {
            return cmd;
        }
        cmd.mut_arg("listen", |a| a.help(LISTEN_ELSEWHERE))
    }
    describe_listen(Cli::command())
}
