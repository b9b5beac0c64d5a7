//! A handle's DID from DNS: the `_atproto.<handle>` TXT record (`did=<did>`), asked through
//! the system's resolver (`/etc/resolv.conf`), as the atproto handle specification describes.

use std::sync::OnceLock;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

use super::ResolveError;
use crate::atproto::{Did, Handle};

/// How long one lookup may take, retries included.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The system's resolver, made on first use; an error if `/etc/resolv.conf` is unusable, which
/// is not remembered (the next lookup tries again, after the file is fixed).
fn resolver() -> Result<&'static TokioResolver, ResolveError> {
    static RESOLVER: OnceLock<TokioResolver> = OnceLock::new();
    if let Some(resolver) = RESOLVER.get() {
        return Ok(resolver);
    }
    let built = TokioResolver::builder_tokio().and_then(|mut builder| {
        let options = builder.options_mut();
        options.timeout = Duration::from_secs(2);
        options.attempts = 2;
        builder.build()
    });
    match built {
        Ok(resolver) => Ok(RESOLVER.get_or_init(|| resolver)),
        Err(e) => Err(ResolveError::Unavailable(format!("DNS resolver: {e}"))),
    }
}

/// The DID `handle`'s TXT record names; `None` when there is no such record.
pub(super) async fn txt_did(handle: &Handle) -> Result<Option<Did>, ResolveError> {
    let resolver = resolver()?;
    let name = format!("_atproto.{}.", handle.as_str());
    let lookup = match tokio::time::timeout(LOOKUP_TIMEOUT, resolver.txt_lookup(name)).await {
        Err(_) => {
            return Err(ResolveError::Unavailable(
                "DNS did not answer in time".into(),
            ));
        }
        Ok(Err(e)) if e.is_no_records_found() => return Ok(None),
        Ok(Err(e)) => return Err(ResolveError::Unavailable(format!("DNS: {e}"))),
        Ok(Ok(lookup)) => lookup,
    };
    let texts: Vec<Vec<u8>> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(txt.txt_data.concat()),
            _ => None,
        })
        .collect();
    did_in_texts(&texts)
}

/// The DID of the `did=` record among TXT record texts. Several DIDs are an error (the
/// specification asks for exactly one); other records are ignored.
fn did_in_texts(texts: &[Vec<u8>]) -> Result<Option<Did>, ResolveError> {
    let dids: Vec<Did> = texts
        .iter()
        .filter_map(|t| {
            std::str::from_utf8(t)
                .ok()?
                .strip_prefix("did=")?
                .parse()
                .ok()
        })
        .collect();
    match dids.as_slice() {
        [] => Ok(None),
        [did] => Ok(Some(did.clone())),
        _ => Err(ResolveError::NotFound(
            "several _atproto TXT records name a DID".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_did_record_is_the_one_that_counts() {
        let did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
        let texts = |t: &[&str]| t.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(
            did_in_texts(&texts(&["v=spf1 -all", &format!("did={did}")])).unwrap(),
            Some(did.parse().unwrap())
        );
        assert_eq!(did_in_texts(&texts(&["v=spf1 -all"])).unwrap(), None);
        assert_eq!(did_in_texts(&texts(&["did=not a did"])).unwrap(), None);
        assert!(did_in_texts(&texts(&[&format!("did={did}"), "did=did:web:example.com"])).is_err());
        assert_eq!(did_in_texts(&[vec![0xff, 0xfe]]).unwrap(), None);
    }
}
