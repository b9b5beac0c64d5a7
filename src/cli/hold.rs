//! `atcr hold …` and `atcr crew …`: the hold's captain and crew, and the holds on other
//! machines this registry trusts. Each becomes an [`crate::admin::Op`].

use clap::Subcommand;

use super::{Administration, ConfigArgs};

#[derive(Subcommand)]
pub(super) enum HoldCommand {
    /// Print the captain record (owner, public, allowAllCrew, deployedAt) and the crew size.
    Show(ConfigArgs),
    /// Change the captain record.
    Set {
        /// The new owner: a local user (name, handle or DID) or any DID.
        #[arg(long)]
        owner: Option<String>,
        /// Whether anyone, anonymous callers included, may pull.
        #[arg(long)]
        public: Option<bool>,
        /// Whether any authenticated user may join the crew (io.atcr.hold.requestCrew).
        #[arg(long)]
        allow_all_crew: Option<bool>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Trust a hold on another machine: pushes may send blobs there (holds.default, or a
    /// user's profile), pulls read them back. Checks that the server answers as that DID.
    Add {
        /// The hold's DID (did:web:nas.lan).
        did: String,
        /// Where its XRPC answers (`https://nas.lan:8443`). Default: the host of a did:web.
        #[arg(long)]
        endpoint: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List the trusted holds on other machines: DID and endpoint.
    List(ConfigArgs),
    /// Stop trusting a hold; blobs already sent there can no longer be read through this node.
    Remove {
        /// The hold's DID.
        did: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
pub(super) enum CrewCommand {
    /// Make a user (name, handle or DID) a crew member, replacing any membership it has.
    Add {
        /// The user: a local user's name, handle or DID, or any DID (users of other PDSes).
        who: String,
        /// read: blob:read; write: blob:read, blob:write; admin: those and crew:admin.
        #[arg(long, default_value = "write", value_parser = ["read", "write", "admin"])]
        role: String,
        /// Grant exactly these permissions instead of the role's (repeatable): blob:read,
        /// blob:write, crew:admin.
        #[arg(long = "permission")]
        permissions: Vec<crate::hold::Permission>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Remove a user's crew membership (every crew record naming it).
    Remove {
        /// The user: a local user's name, handle or DID, or any DID.
        who: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List the crew: member DID, handle (local users), role, permissions.
    List(ConfigArgs),
}

impl HoldCommand {
    pub(super) fn into_op(self) -> Administration {
        use crate::admin::Op;
        match self {
            HoldCommand::Show(config) => (config, Ok(Op::HoldShow)),
            HoldCommand::Add {
                did,
                endpoint,
                config,
            } => (config, Ok(Op::HoldAdd { did, endpoint })),
            HoldCommand::List(config) => (config, Ok(Op::HoldList)),
            HoldCommand::Remove { did, config } => (config, Ok(Op::HoldRemove { did })),
            HoldCommand::Set {
                owner,
                public,
                allow_all_crew,
                config,
            } => (
                config,
                Ok(Op::HoldSet {
                    owner,
                    public,
                    allow_all_crew,
                }),
            ),
        }
    }
}

impl CrewCommand {
    pub(super) fn into_op(self) -> Administration {
        use crate::admin::Op;
        match self {
            CrewCommand::Add {
                who,
                role,
                permissions,
                config,
            } => (
                config,
                Ok(Op::CrewAdd {
                    who,
                    role,
                    permissions: permissions.iter().map(ToString::to_string).collect(),
                }),
            ),
            CrewCommand::Remove { who, config } => (config, Ok(Op::CrewRemove { who })),
            CrewCommand::List(config) => (config, Ok(Op::CrewList)),
        }
    }
}
