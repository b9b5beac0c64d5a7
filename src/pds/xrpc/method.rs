//! NSID → the XRPC method it names: each method the PDS serves, parsed once from the request
//! path, with its kind (query or procedure) and a fixed label for metrics.

use http::Method;

/// Whether an XRPC method is a query (`GET`, which `HEAD` may stand in for) or a procedure
/// (`POST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XrpcKind {
    Query,
    Procedure,
}

impl XrpcKind {
    /// The HTTP method a call must use.
    #[must_use]
    pub fn http_method(self) -> Method {
        match self {
            XrpcKind::Query => Method::GET,
            XrpcKind::Procedure => Method::POST,
        }
    }

    /// Whether a call made with `method` may go on.
    #[must_use]
    pub fn admits(self, method: &Method) -> bool {
        match self {
            XrpcKind::Query => method == Method::GET || method == Method::HEAD,
            XrpcKind::Procedure => method == Method::POST,
        }
    }
}

/// The metrics label of a call to a method the node does not serve: one label for them all,
/// so a client cannot mint labels.
pub const UNKNOWN_LABEL: &str = "xrpc_unknown";

/// Every `com.atproto.*` method the PDS serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XrpcMethod {
    DescribeServer,
    CreateSession,
    RefreshSession,
    GetSession,
    DeleteSession,
    CreateAppPassword,
    ListAppPasswords,
    RevokeAppPassword,
    GetServiceAuth,
    ResolveHandle,
    CreateRecord,
    PutRecord,
    DeleteRecord,
    ApplyWrites,
    UploadBlob,
    GetRecord,
    ListRecords,
    DescribeRepo,
    SyncGetRepo,
    SyncGetLatestCommit,
    SyncGetRecord,
    SyncGetBlocks,
    SyncGetBlob,
    SyncListBlobs,
    SyncListRepos,
    SyncGetRepoStatus,
    SyncSubscribeRepos,
}

impl XrpcMethod {
    /// All methods, in the order of the enum.
    pub const ALL: [XrpcMethod; 27] = {
        use XrpcMethod as M;
        [
            M::DescribeServer,
            M::CreateSession,
            M::RefreshSession,
            M::GetSession,
            M::DeleteSession,
            M::CreateAppPassword,
            M::ListAppPasswords,
            M::RevokeAppPassword,
            M::GetServiceAuth,
            M::ResolveHandle,
            M::CreateRecord,
            M::PutRecord,
            M::DeleteRecord,
            M::ApplyWrites,
            M::UploadBlob,
            M::GetRecord,
            M::ListRecords,
            M::DescribeRepo,
            M::SyncGetRepo,
            M::SyncGetLatestCommit,
            M::SyncGetRecord,
            M::SyncGetBlocks,
            M::SyncGetBlob,
            M::SyncListBlobs,
            M::SyncListRepos,
            M::SyncGetRepoStatus,
            M::SyncSubscribeRepos,
        ]
    };

    /// The method an NSID names; `None` for one the node does not serve.
    #[must_use]
    pub fn parse(nsid: &str) -> Option<XrpcMethod> {
        Self::ALL.into_iter().find(|m| m.nsid() == nsid)
    }

    /// The method's NSID, which is also its metrics label.
    #[must_use]
    pub fn nsid(self) -> &'static str {
        use XrpcMethod as M;
        match self {
            M::DescribeServer => "com.atproto.server.describeServer",
            M::CreateSession => "com.atproto.server.createSession",
            M::RefreshSession => "com.atproto.server.refreshSession",
            M::GetSession => "com.atproto.server.getSession",
            M::DeleteSession => "com.atproto.server.deleteSession",
            M::CreateAppPassword => "com.atproto.server.createAppPassword",
            M::ListAppPasswords => "com.atproto.server.listAppPasswords",
            M::RevokeAppPassword => "com.atproto.server.revokeAppPassword",
            M::GetServiceAuth => "com.atproto.server.getServiceAuth",
            M::ResolveHandle => "com.atproto.identity.resolveHandle",
            M::CreateRecord => "com.atproto.repo.createRecord",
            M::PutRecord => "com.atproto.repo.putRecord",
            M::DeleteRecord => "com.atproto.repo.deleteRecord",
            M::ApplyWrites => "com.atproto.repo.applyWrites",
            M::UploadBlob => "com.atproto.repo.uploadBlob",
            M::GetRecord => "com.atproto.repo.getRecord",
            M::ListRecords => "com.atproto.repo.listRecords",
            M::DescribeRepo => "com.atproto.repo.describeRepo",
            M::SyncGetRepo => "com.atproto.sync.getRepo",
            M::SyncGetLatestCommit => "com.atproto.sync.getLatestCommit",
            M::SyncGetRecord => "com.atproto.sync.getRecord",
            M::SyncGetBlocks => "com.atproto.sync.getBlocks",
            M::SyncGetBlob => "com.atproto.sync.getBlob",
            M::SyncListBlobs => "com.atproto.sync.listBlobs",
            M::SyncListRepos => "com.atproto.sync.listRepos",
            M::SyncGetRepoStatus => "com.atproto.sync.getRepoStatus",
            M::SyncSubscribeRepos => "com.atproto.sync.subscribeRepos",
        }
    }

    /// Query or procedure, as the method's lexicon defines it.
    #[must_use]
    pub fn kind(self) -> XrpcKind {
        use XrpcMethod as M;
        match self {
            M::CreateSession
            | M::RefreshSession
            | M::DeleteSession
            | M::CreateAppPassword
            | M::RevokeAppPassword
            | M::CreateRecord
            | M::PutRecord
            | M::DeleteRecord
            | M::ApplyWrites
            | M::UploadBlob => XrpcKind::Procedure,
            M::DescribeServer
            | M::GetSession
            | M::ListAppPasswords
            | M::GetServiceAuth
            | M::ResolveHandle
            | M::GetRecord
            | M::ListRecords
            | M::DescribeRepo
            | M::SyncGetRepo
            | M::SyncGetLatestCommit
            | M::SyncGetRecord
            | M::SyncGetBlocks
            | M::SyncGetBlob
            | M::SyncListBlobs
            | M::SyncListRepos
            | M::SyncGetRepoStatus
            | M::SyncSubscribeRepos => XrpcKind::Query,
        }
    }

    /// Whether the method reads repository contents: on a node whose read policy is closed (a
    /// private hold) it needs a session of someone the policy admits, or of the repository's own
    /// account.
    #[must_use]
    pub fn reads_repository(self) -> bool {
        use XrpcMethod as M;
        matches!(
            self,
            M::GetRecord
                | M::ListRecords
                | M::DescribeRepo
                | M::SyncGetRepo
                | M::SyncGetLatestCommit
                | M::SyncGetRecord
                | M::SyncGetBlob
                | M::SyncGetBlocks
                | M::SyncListBlobs
                | M::SyncListRepos
                | M::SyncGetRepoStatus
                | M::SyncSubscribeRepos
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_parses_from_its_nsid() {
        for m in XrpcMethod::ALL {
            assert_eq!(XrpcMethod::parse(m.nsid()), Some(m), "{m:?}");
        }
        assert_eq!(XrpcMethod::parse("com.example.nothing"), None);
        assert_eq!(XrpcMethod::parse(""), None);
        // NSIDs are matched exactly: no case folding, no prefixes.
        assert_eq!(XrpcMethod::parse("com.atproto.server.describeserver"), None);
        assert_eq!(
            XrpcMethod::parse("com.atproto.server.describeServer/"),
            None
        );
    }

    #[test]
    fn kinds_follow_the_lexicons() {
        assert_eq!(XrpcMethod::GetRecord.kind(), XrpcKind::Query);
        assert_eq!(XrpcMethod::CreateSession.kind(), XrpcKind::Procedure);
        assert_eq!(XrpcMethod::SyncSubscribeRepos.kind(), XrpcKind::Query);
        // Every read is a query.
        for m in XrpcMethod::ALL.into_iter().filter(|m| m.reads_repository()) {
            assert_eq!(m.kind(), XrpcKind::Query, "{m:?}");
        }
    }

    #[test]
    fn head_stands_in_for_get_only() {
        let q = XrpcKind::Query;
        let p = XrpcKind::Procedure;
        assert!(q.admits(&Method::GET) && q.admits(&Method::HEAD));
        assert!(!q.admits(&Method::POST) && !q.admits(&Method::PUT));
        assert!(p.admits(&Method::POST));
        assert!(!p.admits(&Method::GET) && !p.admits(&Method::HEAD));
        assert_eq!(q.http_method(), Method::GET);
        assert_eq!(p.http_method(), Method::POST);
    }
}
