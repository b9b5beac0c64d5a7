use atcr::atproto::cid::is_valid_cid_syntax;
use atcr::atproto::syntax::{
    AtIdentifier, AtUri, Datetime, Did, Handle, Nsid, RecordKey, Tid, is_valid_language,
    is_valid_language_syntax, is_valid_uri,
};

use crate::common::{check_lists, lines};

fn parses<T: std::str::FromStr>(s: &str) -> bool {
    s.parse::<T>().is_ok()
}

#[test]
fn did() {
    check_lists(
        "syntax/did_syntax_valid.txt",
        "syntax/did_syntax_invalid.txt",
        parses::<Did>,
    );
}

#[test]
fn did_atproto_methods() {
    // Syntactically valid DIDs that atproto must not resolve.
    for l in lines("from-atproto-repo/syntax/did_parse_invalid.txt") {
        let did: Did = l.parse().unwrap_or_else(|e| panic!("{l}: {e}"));
        // This line of the upstream file is a well-formed did:plc (it is also in
        // did_syntax_valid.txt); every other line must be refused.
        if l == "did:plc:7iza6de2dwap2sbkpav7c6c6" {
            assert!(did.check_atproto_method().is_ok());
        } else {
            assert!(did.check_atproto_method().is_err(), "accepted {l}");
        }
    }
    for ok in [
        "did:web:example.com",
        "did:web:localhost%3A8080",
        "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
    ] {
        assert!(
            ok.parse::<Did>().unwrap().check_atproto_method().is_ok(),
            "{ok}"
        );
    }
}

#[test]
fn handle() {
    check_lists(
        "syntax/handle_syntax_valid.txt",
        "syntax/handle_syntax_invalid.txt",
        parses::<Handle>,
    );
}

#[test]
fn at_identifier() {
    check_lists(
        "syntax/atidentifier_syntax_valid.txt",
        "syntax/atidentifier_syntax_invalid.txt",
        parses::<AtIdentifier>,
    );
}

#[test]
fn nsid() {
    check_lists(
        "syntax/nsid_syntax_valid.txt",
        "syntax/nsid_syntax_invalid.txt",
        parses::<Nsid>,
    );
}

#[test]
fn record_key() {
    check_lists(
        "syntax/recordkey_syntax_valid.txt",
        "syntax/recordkey_syntax_invalid.txt",
        parses::<RecordKey>,
    );
}

#[test]
fn tid() {
    check_lists(
        "syntax/tid_syntax_valid.txt",
        "syntax/tid_syntax_invalid.txt",
        parses::<Tid>,
    );
}

#[test]
fn at_uri() {
    check_lists(
        "syntax/aturi_syntax_valid.txt",
        "syntax/aturi_syntax_invalid.txt",
        parses::<AtUri>,
    );
    for l in lines("syntax/aturi_syntax_valid.txt") {
        assert_eq!(l.parse::<AtUri>().unwrap().to_string(), l);
    }
}

#[test]
fn datetime() {
    check_lists(
        "syntax/datetime_syntax_valid.txt",
        "syntax/datetime_syntax_invalid.txt",
        parses::<Datetime>,
    );
    for l in lines("syntax/datetime_parse_invalid.txt") {
        assert!(l.parse::<Datetime>().is_err(), "accepted {l}");
    }
}

#[test]
fn language() {
    check_lists(
        "syntax/language_syntax_valid.txt",
        "syntax/language_syntax_invalid.txt",
        is_valid_language_syntax,
    );
    for l in lines("syntax/language_syntax_valid.txt") {
        assert!(is_valid_language(&l), "{l}");
    }
    for l in lines("syntax/language_parse_invalid.txt") {
        assert!(is_valid_language_syntax(&l), "syntax of {l}");
        assert!(!is_valid_language(&l), "accepted {l}");
    }
}

#[test]
fn uri() {
    check_lists(
        "syntax/uri_syntax_valid.txt",
        "syntax/uri_syntax_invalid.txt",
        is_valid_uri,
    );
}

#[test]
fn cid() {
    check_lists(
        "syntax/cid_syntax_valid.txt",
        "syntax/cid_syntax_invalid.txt",
        is_valid_cid_syntax,
    );
    // The typed Cid decodes the CIDv1 SHA-256 vectors and round-trips base32 ones.
    for l in lines("syntax/cid_syntax_valid.txt") {
        if l.starts_with("bafy") {
            let cid: atcr::atproto::Cid = l.parse().unwrap();
            assert_eq!(cid.to_string(), l);
        }
    }
    for l in lines("syntax/cid_syntax_invalid.txt") {
        assert!(l.parse::<atcr::atproto::Cid>().is_err(), "{l}");
    }
}
