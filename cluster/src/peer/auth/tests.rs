//! Peer authentication: what verifies, and that every way of getting a request wrong is
//! refused with its own reason.

use super::*;
use conf::{ClusterNode, Reads, Secret};
use std::time::Duration;

const NOW: u64 = 1_764_000_000_000;
const SECRET: &[u8] = b"0123456789abcdef-the-shared-secret";
const BODY: &[u8] = b"\x01\x02append entries\xff";
const TARGET: &str = "/raft/append?group=3";

fn conf(name: &str, this: usize, secret: &[u8]) -> ClusterConf {
    let names = ["alpha", "beta", "gamma"];
    let nodes = names
        .iter()
        .enumerate()
        .map(|(i, n)| ClusterNode {
            name: n.to_string(),
            client: format!("127.0.0.1:{}", 8000 + i).parse().unwrap(),
            client_text: format!("127.0.0.1:{}", 8000 + i),
            peer: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
            peer_text: format!("127.0.0.1:{}", 9000 + i),
        })
        .collect();
    ClusterConf {
        line: 1,
        name: name.to_string(),
        node_id: names[this].to_string(),
        this,
        nodes,
        groups: 16,
        replicas: 3,
        secret_path: "/etc/huststore/cluster.secret".into(),
        secret: Secret::trimmed(secret.to_vec()),
        timeout: Duration::from_secs(5),
        election_timeout: Duration::from_secs(1),
        reads: Reads::Linearizable,
    }
}

/// A sender (alpha) and a receiver (beta) of cluster "prod", both started a minute ago.
fn pair() -> (PeerKey, PeerKey) {
    let start = NOW - 60_000;
    (
        PeerKey::new(&conf("prod", 0, SECRET), start),
        PeerKey::new(&conf("prod", 1, SECRET), start),
    )
}

fn verify(key: &PeerKey, h: &Headers, target: &str, body: &[u8]) -> Result<NodeIndex, AuthError> {
    let pairs = h.pairs();
    key.verify(
        pairs.iter().map(|(n, v)| (*n, v.as_bytes())),
        "POST",
        target,
        body,
        NOW,
    )
}

fn flip(s: &str, at: usize, mask: u8) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b[at] ^= mask;
    b
}

/// `h` with header `which` (an index of `pairs`) replaced by raw bytes.
fn verify_raw(
    key: &PeerKey,
    h: &Headers,
    which: usize,
    value: &[u8],
) -> Result<NodeIndex, AuthError> {
    let pairs = h.pairs();
    let headers = pairs
        .iter()
        .enumerate()
        .map(|(i, (n, v))| (*n, if i == which { value } else { v.as_bytes() }));
    key.verify(headers, "POST", TARGET, BODY, NOW)
}

#[test]
fn a_good_signature_verifies_once() {
    let (a, b) = pair();
    let h = a.sign(1, "POST", TARGET, BODY, NOW);
    assert_eq!(h.cluster, "prod");
    assert_eq!((h.node.as_str(), h.to.as_str()), ("alpha", "beta"));
    assert_eq!(h.auth.len(), 64);
    assert_eq!(verify(&b, &h, TARGET, BODY), Ok(0));
    assert_eq!(
        verify(&b, &h, TARGET, BODY),
        Err(AuthError::Replayed {
            node: "alpha".into(),
            nonce: h.nonce.parse().unwrap()
        })
    );
    // Header names in any case, other headers ignored, the body may be empty.
    let h = a.sign(1, "GET", "/raft/vote", b"", NOW);
    let pairs = h.pairs();
    let lower: Vec<(String, &[u8])> = pairs
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes()))
        .collect();
    let headers = lower
        .iter()
        .map(|(n, v)| (n.as_str(), *v))
        .chain([("Content-Length", &b"0"[..])]);
    assert_eq!(
        b.verify(headers, "GET", "/raft/vote", b"", NOW + 29_000),
        Ok(0)
    );
}

#[test]
fn nonces_count_up_per_receiver_from_the_start_time() {
    let (a, _) = pair();
    let n = |to| {
        a.sign(to, "POST", TARGET, BODY, NOW)
            .nonce
            .parse::<u64>()
            .unwrap()
    };
    let base = (NOW - 60_000) << 20;
    assert_eq!(
        (n(1), n(1), n(2), n(1), n(2)),
        (base, base + 1, base, base + 2, base + 1)
    );
    // A restart a millisecond later starts above every nonce of the previous run.
    let again = PeerKey::new(&conf("prod", 0, SECRET), NOW - 59_999);
    let first: u64 = again
        .sign(1, "POST", TARGET, BODY, NOW)
        .nonce
        .parse()
        .unwrap();
    assert!(first > base + 2);
}

#[test]
fn out_of_order_nonces_within_the_window_are_accepted_once() {
    let (a, b) = pair();
    let signed: Vec<Headers> = (0..10)
        .map(|_| a.sign(1, "POST", TARGET, BODY, NOW))
        .collect();
    for i in [3, 0, 9, 1, 2, 8, 4, 7, 5, 6] {
        assert_eq!(verify(&b, &signed[i], TARGET, BODY), Ok(0), "request {i}");
    }
    for h in &signed {
        assert!(matches!(
            verify(&b, h, TARGET, BODY),
            Err(AuthError::Replayed { .. })
        ));
    }
    // One that fell below the window: its nonce can no longer be told apart from a replay.
    let late = a.sign(1, "POST", TARGET, BODY, NOW);
    for _ in 0..NONCE_WINDOW {
        let h = a.sign(1, "POST", TARGET, BODY, NOW);
        assert_eq!(verify(&b, &h, TARGET, BODY), Ok(0));
    }
    assert!(matches!(
        verify(&b, &late, TARGET, BODY),
        Err(AuthError::NonceTooOld { .. })
    ));
}

#[test]
fn every_flip_of_body_target_or_method_is_a_bad_mac() {
    let (a, b) = pair();
    let h = a.sign(1, "POST", TARGET, BODY, NOW);
    for at in 0..BODY.len() {
        let mut body = BODY.to_vec();
        body[at] ^= 0x01;
        assert_eq!(
            verify(&b, &h, TARGET, &body),
            Err(AuthError::BadMac("alpha".into()))
        );
    }
    for at in 0..TARGET.len() {
        let target = String::from_utf8(flip(TARGET, at, 0x01)).unwrap();
        assert_eq!(
            verify(&b, &h, &target, BODY),
            Err(AuthError::BadMac("alpha".into()))
        );
    }
    let pairs = h.pairs();
    let headers = pairs.iter().map(|(n, v)| (*n, v.as_bytes()));
    assert_eq!(
        b.verify(headers, "GET", TARGET, BODY, NOW),
        Err(AuthError::BadMac("alpha".into()))
    );
    // A body cut short or extended.
    assert!(matches!(
        verify(&b, &h, TARGET, &BODY[1..]),
        Err(AuthError::BadMac(_))
    ));
    assert!(matches!(
        verify(&b, &h, &format!("{TARGET}&x"), BODY),
        Err(AuthError::BadMac(_))
    ));
    // None of these spent the nonce.
    assert_eq!(verify(&b, &h, TARGET, BODY), Ok(0));
}

#[test]
fn every_flip_of_a_header_is_refused_with_its_reason() {
    let (a, b) = pair();
    let h = a.sign(1, "POST", TARGET, BODY, NOW);
    let values = h.pairs().map(|(_, v)| v.to_string());
    for (which, value) in values.iter().enumerate() {
        for at in 0..value.len() {
            for mask in [0x01, 0x20, 0x80] {
                let raw = flip(value, at, mask);
                let text = std::str::from_utf8(&raw).ok();
                if which == 5 && text.is_some_and(|t| t.eq_ignore_ascii_case(value)) {
                    // An upper-case digit of the same value is the same MAC.
                    continue;
                }
                let got = verify_raw(&b, &h, which, &raw).expect_err("a flipped header");
                let number = text.filter(|t| t.bytes().all(|c| c.is_ascii_digit()));
                let expected = match (which, text) {
                    (_, None) => AuthError::Garbled(h.pairs()[which].0),
                    (0, Some(t)) => AuthError::ForeignCluster(t.into()),
                    (1, Some(t)) => AuthError::UnknownNode(t.into()),
                    (2, Some(t)) => AuthError::NotForThisNode(t.into()),
                    (3, Some(_)) => match number.map(|n| n.parse::<u64>().unwrap()) {
                        None => AuthError::Garbled(HEADER_TIME),
                        Some(t) if t + MAX_SKEW_MS < NOW => AuthError::Stale {
                            node: "alpha".into(),
                            behind_ms: NOW - t,
                        },
                        Some(t) if t > NOW + MAX_SKEW_MS => AuthError::Future {
                            node: "alpha".into(),
                            ahead_ms: t - NOW,
                        },
                        Some(_) => AuthError::BadMac("alpha".into()),
                    },
                    (4, Some(_)) if number.is_none() => AuthError::Garbled(HEADER_NONCE),
                    (5, Some(t)) if !t.bytes().all(|c| c.is_ascii_hexdigit()) => {
                        AuthError::Garbled(HEADER_AUTH)
                    }
                    (4 | 5, Some(_)) => AuthError::BadMac("alpha".into()),
                    _ => unreachable!(),
                };
                assert_eq!(got, expected, "header {which} byte {at} mask {mask:#x}");
            }
        }
    }
    assert_eq!(verify(&b, &h, TARGET, BODY), Ok(0));
}

#[test]
fn a_known_node_claiming_to_be_another_is_a_bad_mac() {
    let (a, b) = pair();
    let h = a.sign(1, "POST", TARGET, BODY, NOW);
    let gamma = Headers {
        node: "gamma".into(),
        ..h.clone()
    };
    assert_eq!(
        verify(&b, &gamma, TARGET, BODY),
        Err(AuthError::BadMac("gamma".into()))
    );
    // A request for beta is refused by gamma even though the secret is the same.
    let c = PeerKey::new(&conf("prod", 2, SECRET), NOW - 60_000);
    assert_eq!(
        verify(&c, &h, TARGET, BODY),
        Err(AuthError::NotForThisNode("beta".into()))
    );
    let redirected = Headers {
        to: "gamma".into(),
        ..h
    };
    assert_eq!(
        verify(&c, &redirected, TARGET, BODY),
        Err(AuthError::BadMac("alpha".into()))
    );
}

#[test]
fn stale_and_future_times_are_refused() {
    let (a, b) = pair();
    let old = a.sign(1, "POST", TARGET, BODY, NOW - MAX_SKEW_MS - 1);
    assert_eq!(
        verify(&b, &old, TARGET, BODY),
        Err(AuthError::Stale {
            node: "alpha".into(),
            behind_ms: MAX_SKEW_MS + 1
        })
    );
    let ahead = a.sign(1, "POST", TARGET, BODY, NOW + MAX_SKEW_MS + 5);
    assert_eq!(
        verify(&b, &ahead, TARGET, BODY),
        Err(AuthError::Future {
            node: "alpha".into(),
            ahead_ms: MAX_SKEW_MS + 5
        })
    );
    // The edges of the window hold.
    let edge = a.sign(1, "POST", TARGET, BODY, NOW - MAX_SKEW_MS);
    assert_eq!(verify(&b, &edge, TARGET, BODY), Ok(0));
    let edge = a.sign(1, "POST", TARGET, BODY, NOW + MAX_SKEW_MS);
    assert_eq!(verify(&b, &edge, TARGET, BODY), Ok(0));
    // Extremes of u64 overflow nothing.
    for t in [0, u64::MAX] {
        let h = Headers {
            time: t.to_string(),
            ..a.sign(1, "POST", TARGET, BODY, NOW)
        };
        assert!(matches!(
            verify(&b, &h, TARGET, BODY),
            Err(AuthError::Stale { .. } | AuthError::Future { .. })
        ));
    }
}

#[test]
fn a_request_signed_before_the_receiver_started_is_refused() {
    let a = PeerKey::new(&conf("prod", 0, SECRET), NOW - 60_000);
    let h = a.sign(1, "POST", TARGET, BODY, NOW - 10);
    let b = PeerKey::new(&conf("prod", 1, SECRET), NOW - 5);
    assert_eq!(
        verify(&b, &h, TARGET, BODY),
        Err(AuthError::BeforeStart("alpha".into()))
    );
}

#[test]
fn the_wrong_secret_or_cluster_is_refused() {
    let (_, b) = pair();
    let other = PeerKey::new(&conf("prod", 0, b"another secret of sixteen"), NOW - 60_000);
    let h = other.sign(1, "POST", TARGET, BODY, NOW);
    assert_eq!(
        verify(&b, &h, TARGET, BODY),
        Err(AuthError::BadMac("alpha".into()))
    );
    let staging = PeerKey::new(&conf("staging", 0, SECRET), NOW - 60_000);
    let h = staging.sign(1, "POST", TARGET, BODY, NOW);
    let e = verify(&b, &h, TARGET, BODY).unwrap_err();
    assert_eq!(e, AuthError::ForeignCluster("staging".into()));
    assert_eq!(e.to_string(), "peer of another cluster \"staging\"");
}

/// xorshift64: reproducible garbage without a dependency.
fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn garbage_headers_are_refused() {
    let (a, b) = pair();
    let h = a.sign(1, "POST", TARGET, BODY, NOW);
    let pairs = h.pairs();
    for missing in 0..6 {
        let headers = pairs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != missing)
            .map(|(_, (n, v))| (*n, v.as_bytes()));
        let got = b.verify(headers, "POST", TARGET, BODY, NOW);
        assert_eq!(got, Err(AuthError::Missing(pairs[missing].0)));
    }
    for twice in 0..6 {
        let headers = pairs
            .iter()
            .map(|(n, v)| (*n, v.as_bytes()))
            .chain([(pairs[twice].0, pairs[twice].1.as_bytes())]);
        let got = b.verify(headers, "POST", TARGET, BODY, NOW);
        assert_eq!(got, Err(AuthError::Garbled(pairs[twice].0)));
    }
    let bad: &[(usize, &[u8])] = &[
        (3, b""),
        (3, b"+1764000000000"),
        (3, b" 1764000000000"),
        (3, b"99999999999999999999999"),
        (4, b"-1"),
        (4, b"18446744073709551616"),
        (5, b""),
        (5, &[b'a'; 63]),
        (5, &[b'a'; 65]),
        (5, &[0xff; 64]),
        (0, &[0xc3]),
    ];
    for (which, value) in bad {
        let got = verify_raw(&b, &h, *which, value);
        assert_eq!(got, Err(AuthError::Garbled(pairs[*which].0)), "{value:?}");
    }
    assert_eq!(
        b.verify(std::iter::empty(), "POST", TARGET, BODY, NOW),
        Err(AuthError::Missing(HEADER_CLUSTER))
    );
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..2000 {
        let mut raw = [0u8; 80];
        for byte in raw.iter_mut() {
            *byte = xorshift(&mut seed) as u8;
        }
        let which = (seed % 6) as usize;
        let len = (seed >> 8) as usize % raw.len();
        assert!(verify_raw(&b, &h, which, &raw[..len]).is_err());
    }
}

#[test]
fn log_lines_escape_and_cut_what_a_peer_sent() {
    let e = AuthError::UnknownNode("evil\n\u{1b}[31m".into());
    assert_eq!(e.to_string(), "unknown node \"evil\\n\\u{1b}[31m\"");
    let long = AuthError::ForeignCluster("x".repeat(500));
    assert!(long.to_string().len() < 100);
    assert_eq!(
        AuthError::Missing(HEADER_AUTH).to_string(),
        "no Hust-Auth header"
    );
}

#[test]
fn the_key_never_shows_the_secret() {
    let (a, _) = pair();
    let shown = format!("{a:?}");
    assert!(!shown.contains("the-shared-secret"), "{shown}");
}

#[test]
fn the_nonce_window_agrees_with_a_set() {
    use std::collections::BTreeSet;
    let mut w = Window::default();
    let mut model: BTreeSet<u64> = BTreeSet::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut top = 5_000_u64;
    for _ in 0..20_000 {
        xorshift(&mut seed);
        // Mostly near the top, sometimes a jump ahead (of up to two windows).
        let nonce = match seed % 8 {
            0 => top + (seed >> 3) % (2 * NONCE_WINDOW),
            _ => top.saturating_sub((seed >> 3) % (NONCE_WINDOW + 40)) + (seed >> 20) % 3,
        };
        let highest = model.last().copied();
        let expected = match highest {
            Some(h) if nonce + NONCE_WINDOW <= h => Err(Refusal::TooOld),
            _ if model.contains(&nonce) => Err(Refusal::Replayed),
            _ => Ok(()),
        };
        assert_eq!(w.accept(nonce), expected, "nonce {nonce} top {highest:?}");
        if expected.is_ok() {
            model.insert(nonce);
            top = top.max(nonce);
        }
    }
}

#[test]
fn hex_round_trips() {
    let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
    let text = hex(&bytes);
    assert_eq!(unhex(&text), Some(bytes));
    assert_eq!(unhex(&text.to_ascii_uppercase()), Some(bytes));
    assert_eq!(&text[..4], "0025");
    assert_eq!(unhex("zz"), None);
}
