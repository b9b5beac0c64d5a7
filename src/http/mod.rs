//! HTTP plumbing every surface shares, and nothing else: the body types handlers read and
//! return (`body`), the request facts every surface reads (the client's address, the host it
//! addressed), and formatting for people. A leaf: it imports nothing of the app.

pub mod body;
pub mod sendfile;
pub mod stall;

/// A plain (not TLS) connection's socket as it is served: writes that stall are cut off
/// (`stall`), file bodies go out with `sendfile`. An upgraded connection is downcast to it.
pub type PlainIo = stall::StallGuard<sendfile::SendfileIo>;

/// The client's address, in every request's extensions (for per-client limits).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The host the client addressed, if it is one: the URI's authority (HTTP/2's `:authority`,
/// or an HTTP/1.1 absolute-form target, which RFC 9112 says wins over `Host`), else the `Host`
/// header. Either must be a host name, IPv4 address or bracketed IPv6 address, with an
/// optional port; anything else (user info, quotes, commas, spaces…) is not echoed into headers
/// or pages.
#[must_use]
pub fn request_host<'a>(uri: &'a http::Uri, headers: &'a http::HeaderMap) -> Option<&'a str> {
    match uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok()),
    }
    .filter(|h| is_host(h))
}

/// Whether `s` is `host[:port]` in URL authority syntax (no user info).
#[must_use]
pub fn is_host(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", port),
                None => return false,
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (s, ""),
        }
    };
    let port_ok = (port.is_empty() && !s.ends_with(':'))
        || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok());
    let host_ok = s.starts_with('[')
        || (!host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            }));
    port_ok && host_ok
}

/// A byte count for people: `512 B`, `1.5 KiB`, `3.0 GiB`.
#[must_use]
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut unit, mut divisor) = (0, 1u64);
    while unit < UNITS.len() - 1 && bytes / divisor >= 1024 {
        divisor *= 1024;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let tenths = u128::from(bytes) * 10 / u128::from(divisor);
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::{is_host, request_host};

    #[test]
    fn only_host_syntax_is_taken_from_the_host_header() {
        for ok in [
            "registry.lan",
            "registry.lan:5000",
            "127.0.0.1:5000",
            "localhost",
            "[::1]",
            "[::1]:5443",
            "a-b.example.com",
        ] {
            assert!(is_host(ok), "{ok:?}");
        }
        for bad in [
            r#"evil",error="x"#,
            "evil example",
            "evil,example",
            "evil:",
            "evil:99999",
            "evil:5x",
            "user@evil",
            "[::1",
            "[nope]:1",
            "[::1]x",
            "-evil",
            "evil..example",
            "",
            "evil/path",
            "evil\t",
        ] {
            assert!(!is_host(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_uri_authority_wins_over_the_host_header() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, "by-header:5000".parse().unwrap());
        let origin_form: http::Uri = "/v2/".parse().unwrap();
        let h2: http::Uri = "https://by-authority:5443/v2/".parse().unwrap();
        let with_user: http::Uri = "https://user@evil/v2/".parse().unwrap();
        assert_eq!(request_host(&origin_form, &headers), Some("by-header:5000"));
        assert_eq!(request_host(&h2, &headers), Some("by-authority:5443"));
        assert_eq!(request_host(&with_user, &headers), None);
        assert_eq!(
            request_host(&h2, &http::HeaderMap::new()),
            Some("by-authority:5443")
        );
        assert_eq!(request_host(&origin_form, &http::HeaderMap::new()), None);
    }

    #[test]
    fn human_bytes() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }
}
