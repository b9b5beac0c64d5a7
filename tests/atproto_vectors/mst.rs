use atcr::atproto::mst::{common_prefix_len, key_height};

use crate::common::{json, lines};

#[test]
fn key_heights() {
    let cases = json("mst/key_heights.json");
    assert!(!cases.as_array().unwrap().is_empty());
    for case in cases.as_array().unwrap() {
        let key = case["key"].as_str().unwrap();
        assert_eq!(
            u64::from(key_height(key)),
            case["height"].as_u64().unwrap(),
            "{key}"
        );
    }
}

#[test]
fn common_prefixes() {
    let cases = json("mst/common_prefix.json");
    assert!(!cases.as_array().unwrap().is_empty());
    for case in cases.as_array().unwrap() {
        let (l, r) = (
            case["left"].as_str().unwrap(),
            case["right"].as_str().unwrap(),
        );
        let n = common_prefix_len(l.as_bytes(), r.as_bytes());
        assert_eq!(n as u64, case["len"].as_u64().unwrap(), "{l:?} {r:?}");
    }
}

#[test]
fn example_keys() {
    // `A0/…` has height 0, `C2/…` height 2: the digit after the letter is the height.
    for key in lines("mst/example_keys.txt") {
        let expected = key[1..2].parse::<u8>().unwrap();
        assert_eq!(key_height(&key), expected, "{key}");
    }
}
