//! The hold's XRPC methods (`/xrpc/io.atcr.hold.*`): `requestCrew` (with a session of a local
//! account, or a service token from any user's PDS), the upload methods and `notifyManifest` (with service auth), `getQuota` (see
//! `docs/hold.md`).

use crate::http::body::RequestBody;
use http::{Request, Response, StatusCode};
use serde_json::json;

use super::{CREW, Hold, HoldError, Permission};
use crate::http::body::Body;
use crate::pds::xrpc::{Call, UNKNOWN_LABEL, XrpcError, XrpcKind, ok_json};

/// Largest request body: the input is a role and a few permissions.
const MAX_BODY: usize = 64 << 10;

/// Permissions a `requestCrew` without any asks for.
const DEFAULT_PERMISSIONS: [Permission; 2] = [Permission::BlobRead, Permission::BlobWrite];

/// Every `io.atcr.hold.*` method the hold serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldMethod {
    RequestCrew,
    InitiateUpload,
    GetPartUploadUrl,
    UploadPart,
    CompleteUpload,
    AbortUpload,
    NotifyManifest,
    GetQuota,
}

impl HoldMethod {
    /// All methods, in the order of the enum.
    pub const ALL: [HoldMethod; 8] = [
        HoldMethod::RequestCrew,
        HoldMethod::InitiateUpload,
        HoldMethod::GetPartUploadUrl,
        HoldMethod::UploadPart,
        HoldMethod::CompleteUpload,
        HoldMethod::AbortUpload,
        HoldMethod::NotifyManifest,
        HoldMethod::GetQuota,
    ];

    /// The method an NSID names; `None` for one the hold does not serve.
    #[must_use]
    pub fn parse(nsid: &str) -> Option<HoldMethod> {
        Self::ALL.into_iter().find(|m| m.nsid() == nsid)
    }

    /// The method's NSID, which is also its metrics label.
    #[must_use]
    pub fn nsid(self) -> &'static str {
        match self {
            HoldMethod::RequestCrew => "io.atcr.hold.requestCrew",
            HoldMethod::InitiateUpload => "io.atcr.hold.initiateUpload",
            HoldMethod::GetPartUploadUrl => "io.atcr.hold.getPartUploadUrl",
            HoldMethod::UploadPart => "io.atcr.hold.uploadPart",
            HoldMethod::CompleteUpload => "io.atcr.hold.completeUpload",
            HoldMethod::AbortUpload => "io.atcr.hold.abortUpload",
            HoldMethod::NotifyManifest => "io.atcr.hold.notifyManifest",
            HoldMethod::GetQuota => "io.atcr.hold.getQuota",
        }
    }

    /// Query or procedure, as the method's lexicon defines it.
    #[must_use]
    pub fn kind(self) -> XrpcKind {
        match self {
            HoldMethod::GetQuota => XrpcKind::Query,
            _ => XrpcKind::Procedure,
        }
    }
}

/// Answers `/xrpc/<nsid>` for an `io.atcr.hold.*` method. Returns the endpoint label for
/// metrics: the NSID of a method the hold serves, [`UNKNOWN_LABEL`] for any other.
pub async fn handle(
    hold: &Hold,
    req: Request<RequestBody>,
    nsid: &str,
) -> (&'static str, Response<Body>) {
    let Some(method) = HoldMethod::parse(nsid) else {
        return (UNKNOWN_LABEL, XrpcError::not_implemented(nsid).response());
    };
    let result = answer(hold, method, Call::new(req)).await;
    (method.nsid(), result.unwrap_or_else(|e| e.response()))
}

/// Refuses a call with the wrong HTTP method, then hands it to the method's handler.
/// `uploadPart` also takes `PUT`, the method `getPartUploadUrl` names.
async fn answer(hold: &Hold, method: HoldMethod, call: Call) -> Result<Response<Body>, XrpcError> {
    if !(method == HoldMethod::UploadPart && call.method == http::Method::PUT) {
        call.check_kind(method.kind())?;
    }
    match method {
        HoldMethod::RequestCrew => request_crew(hold, call).await,
        HoldMethod::InitiateUpload => hold.initiate_upload(call).await,
        HoldMethod::GetPartUploadUrl => hold.part_upload_url(call).await,
        HoldMethod::UploadPart => hold.upload_part(call).await,
        HoldMethod::CompleteUpload => hold.complete_upload(call).await,
        HoldMethod::AbortUpload => hold.abort_upload(call).await,
        HoldMethod::NotifyManifest => hold.notify_manifest(call).await,
        HoldMethod::GetQuota => hold.get_quota(call).await,
    }
}

impl From<HoldError> for XrpcError {
    fn from(e: HoldError) -> Self {
        match e {
            HoldError::Pds(e) => e.into(),
            HoldError::Repo(e) => e.into(),
            HoldError::Store(e) => e.into(),
            e => {
                tracing::error!(error = %e, "hold internal error");
                XrpcError::internal()
            }
        }
    }
}

/// `io.atcr.hold.requestCrew`: the caller joins the crew, when the captain record lets anyone
/// join (`allowAllCrew`) or the caller is the owner. Only the owner may ask for `crew:admin`.
/// A caller who is already a member gets his record back, unchanged.
async fn request_crew(hold: &Hold, call: Call) -> Result<Response<Body>, XrpcError> {
    let caller = hold.crew_applicant(&call).await?;
    let body = call.body(MAX_BODY).await?;
    let input: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| XrpcError::invalid(format!("request body is not JSON: {e}")))?
    };
    let (role, permissions) = parse_input(&input)?;
    let captain = hold.ensure_captain().await?;
    let owner = caller == captain.owner;
    if !captain.allow_all_crew && !owner {
        return Err(XrpcError::new(
            StatusCode::FORBIDDEN,
            "RegistrationDisabled",
            "this hold does not take new crew members",
        ));
    }
    if !owner
        && (permissions.contains(&Permission::CrewAdmin) || role == "admin" || role == "owner")
    {
        return Err(XrpcError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "only the hold's owner may grant crew:admin or the admin and owner roles",
        ));
    }
    let node = &hold.pds().node_did;
    let (status, member) = match hold.member(&caller)? {
        Some(m) => ("already_member", m),
        None => (
            "created",
            hold.add_crew(&caller, &role, &permissions).await?,
        ),
    };
    ok_json(&json!({
        "status": status,
        "uri": format!("at://{node}/{CREW}/{}", member.rkey),
        "cid": member.cid.to_string(),
    }))
}

/// The requested role (default `member`) and permissions (default blob read and write).
fn parse_input(input: &serde_json::Value) -> Result<(String, Vec<Permission>), XrpcError> {
    if !input.is_object() {
        return Err(XrpcError::invalid("request body must be a JSON object"));
    }
    let role = match &input["role"] {
        serde_json::Value::Null => "member".to_owned(),
        serde_json::Value::String(r) if !r.is_empty() && r.len() <= 32 => r.clone(),
        _ => return Err(XrpcError::invalid("role must be a string of 1 to 32 bytes")),
    };
    let permissions = match &input["permissions"] {
        serde_json::Value::Null => DEFAULT_PERMISSIONS.to_vec(),
        serde_json::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let p = item
                    .as_str()
                    .ok_or_else(|| XrpcError::invalid("permissions must be strings"))?
                    .parse::<Permission>()
                    .map_err(XrpcError::invalid)?;
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            out
        }
        _ => return Err(XrpcError::invalid("permissions must be an array")),
    };
    Ok((role, permissions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_and_match_their_lexicons() {
        let lexicons = [
            include_str!("../../lexicons/io.atcr.hold.requestCrew.json"),
            include_str!("../../lexicons/io.atcr.hold.initiateUpload.json"),
            include_str!("../../lexicons/io.atcr.hold.getPartUploadUrl.json"),
            include_str!("../../lexicons/io.atcr.hold.uploadPart.json"),
            include_str!("../../lexicons/io.atcr.hold.completeUpload.json"),
            include_str!("../../lexicons/io.atcr.hold.abortUpload.json"),
            include_str!("../../lexicons/io.atcr.hold.notifyManifest.json"),
            include_str!("../../lexicons/io.atcr.hold.getQuota.json"),
        ];
        for (m, doc) in HoldMethod::ALL.into_iter().zip(lexicons) {
            assert_eq!(HoldMethod::parse(m.nsid()), Some(m));
            let doc: serde_json::Value = serde_json::from_str(doc).unwrap();
            assert_eq!(doc["id"], m.nsid());
            let kind = match doc["defs"]["main"]["type"].as_str() {
                Some("query") => XrpcKind::Query,
                Some("procedure") => XrpcKind::Procedure,
                t => panic!("{t:?}"),
            };
            assert_eq!(m.kind(), kind, "{m:?}");
        }
        assert_eq!(HoldMethod::parse("io.atcr.hold.nope"), None);
        assert_eq!(HoldMethod::parse("io.atcr.hold.getLayersForManifest"), None);
    }

    #[test]
    fn input_defaults_and_checks() {
        let (role, perms) = parse_input(&json!({})).unwrap();
        assert_eq!(role, "member");
        assert_eq!(perms, DEFAULT_PERMISSIONS.to_vec());
        let (role, perms) =
            parse_input(&json!({"role": "read", "permissions": ["blob:read", "blob:read"]}))
                .unwrap();
        assert_eq!((role.as_str(), perms), ("read", vec![Permission::BlobRead]));
        assert!(parse_input(&json!({"permissions": ["blob:delete"]})).is_err());
        assert!(parse_input(&json!({"permissions": "blob:read"})).is_err());
        assert!(parse_input(&json!({"role": 3})).is_err());
        assert!(parse_input(&json!([])).is_err());
    }
}
