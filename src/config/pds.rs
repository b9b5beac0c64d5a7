//! `[pds]` and `[accounts]`: the embedded PDS and the accounts the node creates.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// A file holding the password of the `admin` account that the first start creates (one
    /// line; owner-only permissions, or it is refused). Unset: a random password is generated
    /// and logged once. Read only on the start that creates the account.
    pub admin_password_file: Option<PathBuf>,
}

/// `pds.events_keep_secs` by default: three days, as relays expect to catch up within.
pub const DEFAULT_EVENTS_KEEP_SECS: u64 = 72 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PdsConfig {
    /// Serve the PDS (`/xrpc/com.atproto.*`, `/.well-known/…`, the built-in PLC directory).
    /// Default true. The registry keeps its manifests and tags as records in this PDS, so it
    /// cannot be turned off yet (a registry whose users live on other PDSes is future work).
    pub enabled: bool,
    /// The node's public host name: its identity is `did:web:<public_host>`. Unset: the node is
    /// `localhost:<listen port>` (`did:web:localhost%3A<port>`), reachable only locally.
    pub public_host: Option<String>,
    /// `http` or `https`: the scheme of the PDS endpoint written into DID documents.
    /// Default `http` (`https` when `tls.enabled`).
    pub scheme: Option<String>,
    /// Local users get handles `<name>.<handle_domain>`. Default `atcr.test`.
    pub handle_domain: String,
    /// Largest AT Protocol blob (`com.atproto.repo.uploadBlob`), in bytes. Default 50 MiB.
    pub max_blob_bytes: u64,
    /// Most bytes of blobs one account may hold uploaded (`uploadBlob`) but referenced by no
    /// record yet; an upload past it is refused (400 `QuotaExceeded`). Such blobs are removed
    /// once idle for `gc.grace_secs`. Default 256 MiB.
    pub max_temp_blob_bytes: u64,
    /// An upstream PLC directory (`https://plc.directory`, or a LAN mirror): every did:plc
    /// operation of this node's users is sent there too, and account creation or an identity
    /// update fails when it refuses. Unset: the built-in directory only (air-gapped).
    pub plc_upstream: Option<String>,
    /// Let anyone register a new did:plc in the built-in directory (`POST /did:plc:…` with a
    /// genesis operation), as a public directory does. Default false: only the node creates
    /// DIDs there (its accounts); updates of existing DIDs need their rotation key either way.
    pub plc_open_creation: bool,
    /// Firehose (`subscribeRepos`) subscribers at once, all clients together; more are refused
    /// with 429. Default 256.
    pub firehose_max_subscribers: usize,
    /// Firehose subscribers at once from one client address. Default 8.
    pub firehose_max_per_address: usize,
    /// A subscriber that takes longer than this many seconds to accept one frame (it stopped
    /// reading) is disconnected, freeing what is queued for it. Default 30.
    pub firehose_send_timeout_secs: u64,
    /// How long the firehose event log keeps an event, in seconds. Older events are pruned
    /// (never one the registry index has not applied); a subscriber asking from before the
    /// oldest kept event gets `#info OutdatedCursor`, then the oldest kept events. Default 72 h;
    /// 0 keeps every event forever.
    pub events_keep_secs: u64,
}

impl Default for PdsConfig {
    fn default() -> Self {
        PdsConfig {
            enabled: true,
            public_host: None,
            scheme: None,
            handle_domain: "atcr.test".to_owned(),
            max_blob_bytes: 50 << 20,
            max_temp_blob_bytes: crate::pds::DEFAULT_MAX_TEMP_BLOB_BYTES,
            plc_upstream: None,
            plc_open_creation: false,
            firehose_max_subscribers: crate::pds::subscribers::DEFAULT_MAX_SUBSCRIBERS,
            firehose_max_per_address: crate::pds::subscribers::DEFAULT_MAX_PER_ADDRESS,
            firehose_send_timeout_secs: crate::pds::subscribers::DEFAULT_SEND_TIMEOUT_SECS,
            events_keep_secs: DEFAULT_EVENTS_KEEP_SECS,
        }
    }
}
