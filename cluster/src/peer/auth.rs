//! Proof of the cluster's shared secret on every peer request (`cluster.md` §1: "requests to
//! it without the cluster's secret are refused (`401`) and logged"). The sender signs with an
//! HMAC-SHA256, keyed by the secret, over the cluster name, the sender, the receiver, the time,
//! a nonce, the method, the request target and the body; the receiver checks each in turn and
//! names the first that fails ([`AuthError`], one variant per refusal, for the log line).
//!
//! Replay: a signature holds for [`MAX_SKEW_MS`] either side of the receiver's clock, and
//! within that window each nonce is accepted once. Nonces count up per (sender, receiver)
//! pair from `start_ms << 20` (the signer's start time), so a restarted sender continues above
//! its previous run's nonces (unless that run sent over a million requests per millisecond of
//! its life to one peer). The receiver keeps, per sender, the highest nonce and a bitmap of the
//! [`NONCE_WINDOW`] below it rather than the last nonce alone: requests of one sender go over
//! several connections at once (heartbeats, appends and forwarded writes of different groups),
//! so they may arrive a little out of order, and a strictly monotonic check would refuse the
//! late ones. A receiver forgets its bitmaps when it restarts, so it refuses anything signed
//! before it started ([`AuthError::BeforeStart`]); a request recorded before could otherwise be
//! replayed once to the new run. Naming the receiver in the MAC stops a request to one node
//! being replayed to another. One process per node signs (the cluster helper): two signers
//! with one node name would trip each other's nonces.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use conf::ClusterConf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::placement::NodeIndex;

type HmacSha256 = Hmac<Sha256>;

/// The header names, in the order [`Headers::pairs`] lists them.
pub const HEADER_CLUSTER: &str = "Hust-Cluster";
pub const HEADER_NODE: &str = "Hust-Node";
pub const HEADER_TO: &str = "Hust-To";
pub const HEADER_TIME: &str = "Hust-Time";
pub const HEADER_NONCE: &str = "Hust-Nonce";
pub const HEADER_AUTH: &str = "Hust-Auth";

/// How far a request's time may be from the receiver's clock, either way.
pub const MAX_SKEW_MS: u64 = 30_000;

/// How many nonces below a sender's highest the receiver remembers (a multiple of 64).
pub const NONCE_WINDOW: u64 = 1024;

const WORDS: usize = (NONCE_WINDOW / 64) as usize;

/// What the MAC starts with, so that it can never be mistaken for another use of the secret,
/// and so that a change of the signed fields changes the version here.
const DOMAIN: &[u8] = b"huststore peer auth v1\0";

/// The headers that authenticate one request (values as sent on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    pub cluster: String,
    pub node: String,
    pub to: String,
    pub time: String,
    pub nonce: String,
    pub auth: String,
}

impl Headers {
    /// Name and value of each header, to add to the request.
    pub fn pairs(&self) -> [(&'static str, &str); 6] {
        [
            (HEADER_CLUSTER, &self.cluster),
            (HEADER_NODE, &self.node),
            (HEADER_TO, &self.to),
            (HEADER_TIME, &self.time),
            (HEADER_NONCE, &self.nonce),
            (HEADER_AUTH, &self.auth),
        ]
    }
}

/// Why a peer request was refused; `Display` is the log line's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// A header is absent.
    Missing(&'static str),
    /// A header is sent twice, is not UTF-8, or is not a number or MAC of the right form.
    Garbled(&'static str),
    /// The cluster name is not ours (a node of another cluster, or a misplaced conf).
    ForeignCluster(String),
    /// The sender is not one of the conf's nodes.
    UnknownNode(String),
    /// The request names another receiver (a peer address that points at the wrong node).
    NotForThisNode(String),
    /// The time is further in the past than the window (by `behind_ms`).
    Stale { node: String, behind_ms: u64 },
    /// The time is further in the future than the window (by `ahead_ms`).
    Future { node: String, ahead_ms: u64 },
    /// The MAC does not match: the wrong secret, or a request changed on the way.
    BadMac(String),
    /// Signed before this node started, so it may be a replay its previous run accepted.
    BeforeStart(String),
    /// This nonce was accepted already.
    Replayed { node: String, nonce: u64 },
    /// The nonce is below the remembered window, so whether it was seen is not known.
    NonceTooOld { node: String, nonce: u64 },
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing(h) => write!(f, "no {h} header"),
            AuthError::Garbled(h) => write!(f, "garbled {h} header"),
            AuthError::ForeignCluster(name) => {
                write!(f, "peer of another cluster \"{}\"", shown(name))
            }
            AuthError::UnknownNode(name) => write!(f, "unknown node \"{}\"", shown(name)),
            AuthError::NotForThisNode(to) => {
                write!(f, "request meant for node \"{}\", not this one", shown(to))
            }
            AuthError::Stale { node, behind_ms } => write!(
                f,
                "stale request from node \"{}\" ({behind_ms} ms old, the window is {MAX_SKEW_MS} ms)",
                shown(node)
            ),
            AuthError::Future { node, ahead_ms } => write!(
                f,
                "request from node \"{}\" dated {ahead_ms} ms in the future (the window is {MAX_SKEW_MS} ms)",
                shown(node)
            ),
            AuthError::BadMac(node) => write!(
                f,
                "wrong {HEADER_AUTH} from node \"{}\" (another secret, or a changed request)",
                shown(node)
            ),
            AuthError::BeforeStart(node) => write!(
                f,
                "request from node \"{}\" signed before this node started",
                shown(node)
            ),
            AuthError::Replayed { node, nonce } => {
                write!(f, "replayed nonce {nonce} from node \"{}\"", shown(node))
            }
            AuthError::NonceTooOld { node, nonce } => write!(
                f,
                "nonce {nonce} from node \"{}\" is below the last {NONCE_WINDOW} seen",
                shown(node)
            ),
        }
    }
}

impl std::error::Error for AuthError {}

/// A name from the wire as a log line may show it: escaped and cut short.
fn shown(name: &str) -> String {
    let escaped: String = name.escape_debug().collect();
    match escaped.char_indices().nth(64) {
        Some((at, _)) => format!("{}...", &escaped[..at]),
        None => escaped,
    }
}

/// The secret, the cluster's name and nodes, this node's nonce counters and what it has seen:
/// everything needed to sign and to verify. One per process that talks to peers.
pub struct PeerKey {
    name: String,
    nodes: Vec<String>,
    this: NodeIndex,
    /// Keyed once; cloned per message.
    mac: HmacSha256,
    /// When this key was made (unix ms): nonces start above it, and older requests are refused.
    started_ms: u64,
    /// The next nonce towards each node.
    next: Vec<AtomicU64>,
    /// What each sender's nonces have been.
    seen: Mutex<Vec<Window>>,
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("PeerKey")
            .field("name", &self.name)
            .field("nodes", &self.nodes)
            .field("this", &self.this)
            .finish_non_exhaustive()
    }
}

/// The fields a MAC covers.
struct Message<'a> {
    from: &'a str,
    to: &'a str,
    time: u64,
    nonce: u64,
    method: &'a str,
    path: &'a str,
    body: &'a [u8],
}

impl PeerKey {
    /// The key of `conf`'s cluster, for this node, made at `now_ms` (unix ms).
    pub fn new(conf: &ClusterConf, now_ms: u64) -> PeerKey {
        let nodes: Vec<String> = conf.nodes.iter().map(|n| n.name.clone()).collect();
        // HMAC takes a key of any length (a long one is hashed first): this cannot fail.
        let mac = HmacSha256::new_from_slice(conf.secret.bytes())
            .expect("HMAC accepts keys of every length");
        let base = now_ms << 20;
        PeerKey {
            name: conf.name.clone(),
            next: nodes.iter().map(|_| AtomicU64::new(base)).collect(),
            seen: Mutex::new(vec![Window::default(); nodes.len()]),
            nodes,
            this: conf.this,
            mac,
            started_ms: now_ms,
        }
    }

    /// The headers for a request from this node to node `to`: `method`, `target` (the path
    /// with its query string, exactly as sent) and `body`, at `now_ms` (unix ms).
    pub fn sign(
        &self,
        to: NodeIndex,
        method: &str,
        target: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Headers {
        // `to` comes from the placement, never from a peer; an index out of range still signs
        // (for no node's name, so the receiver refuses it) rather than panic.
        let counter = &self.next[to % self.next.len().max(1)];
        let nonce = counter.fetch_add(1, Ordering::Relaxed);
        let from = self.nodes.get(self.this).map_or("", String::as_str);
        let to = self.nodes.get(to).map_or("", String::as_str);
        let msg = Message {
            from,
            to,
            time: now_ms,
            nonce,
            method,
            path: target,
            body,
        };
        Headers {
            cluster: self.name.clone(),
            node: from.to_string(),
            to: to.to_string(),
            time: now_ms.to_string(),
            nonce: nonce.to_string(),
            auth: hex(&self.mac_of(&msg).finalize().into_bytes()),
        }
    }

    /// Checks a request's headers (name and raw value, names in any case) against its method,
    /// target and body at `now_ms`; on success the sender, whose nonce is now spent.
    pub fn verify<'h, I>(
        &self,
        headers: I,
        method: &str,
        target: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<NodeIndex, AuthError>
    where
        I: IntoIterator<Item = (&'h str, &'h [u8])>,
    {
        let h = Received::parse(headers)?;
        if h.cluster != self.name {
            return Err(AuthError::ForeignCluster(h.cluster.to_string()));
        }
        let from = self
            .nodes
            .iter()
            .position(|n| n == h.node)
            .ok_or_else(|| AuthError::UnknownNode(h.node.to_string()))?;
        if self.nodes.get(self.this).map(String::as_str) != Some(h.to) {
            return Err(AuthError::NotForThisNode(h.to.to_string()));
        }
        let node = || h.node.to_string();
        if now_ms > h.time.saturating_add(MAX_SKEW_MS) {
            let behind_ms = now_ms - h.time;
            return Err(AuthError::Stale {
                node: node(),
                behind_ms,
            });
        }
        if h.time > now_ms.saturating_add(MAX_SKEW_MS) {
            let ahead_ms = h.time - now_ms;
            return Err(AuthError::Future {
                node: node(),
                ahead_ms,
            });
        }
        let msg = Message {
            from: h.node,
            to: h.to,
            time: h.time,
            nonce: h.nonce,
            method,
            path: target,
            body,
        };
        // Constant time: `verify_slice` compares without an early exit.
        self.mac_of(&msg)
            .verify_slice(&h.auth)
            .map_err(|_| AuthError::BadMac(node()))?;
        if h.time < self.started_ms {
            return Err(AuthError::BeforeStart(node()));
        }
        // Only an authentic request may move a sender's window.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get_mut(from).map(|w| w.accept(h.nonce)) {
            Some(Ok(())) => Ok(from),
            Some(Err(Refusal::Replayed)) => Err(AuthError::Replayed {
                node: node(),
                nonce: h.nonce,
            }),
            Some(Err(Refusal::TooOld)) | None => Err(AuthError::NonceTooOld {
                node: node(),
                nonce: h.nonce,
            }),
        }
    }

    /// The MAC of `msg`, not yet finalized: every field length-prefixed or fixed-width, so
    /// that no two messages give the same input.
    fn mac_of(&self, msg: &Message<'_>) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        for field in [self.name.as_bytes(), msg.from.as_bytes(), msg.to.as_bytes()] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac.update(&msg.time.to_be_bytes());
        mac.update(&msg.nonce.to_be_bytes());
        for field in [msg.method.as_bytes(), msg.path.as_bytes(), msg.body] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac
    }
}

/// The authentication headers of a request, parsed.
struct Received<'h> {
    cluster: &'h str,
    node: &'h str,
    to: &'h str,
    time: u64,
    nonce: u64,
    auth: [u8; 32],
}

impl<'h> Received<'h> {
    fn parse<I>(headers: I) -> Result<Received<'h>, AuthError>
    where
        I: IntoIterator<Item = (&'h str, &'h [u8])>,
    {
        const NAMES: [&str; 6] = [
            HEADER_CLUSTER,
            HEADER_NODE,
            HEADER_TO,
            HEADER_TIME,
            HEADER_NONCE,
            HEADER_AUTH,
        ];
        let mut values: [Option<&'h [u8]>; 6] = [None; 6];
        for (name, value) in headers {
            if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) {
                if values[i].replace(value).is_some() {
                    return Err(AuthError::Garbled(NAMES[i]));
                }
            }
        }
        let text = |i: usize| -> Result<&'h str, AuthError> {
            let raw = values[i].ok_or(AuthError::Missing(NAMES[i]))?;
            std::str::from_utf8(raw).map_err(|_| AuthError::Garbled(NAMES[i]))
        };
        let number = |i: usize| -> Result<u64, AuthError> {
            let s = text(i)?;
            // Digits only: `u64::from_str` would also take a leading `+`.
            if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(AuthError::Garbled(NAMES[i]));
            }
            s.parse().map_err(|_| AuthError::Garbled(NAMES[i]))
        };
        Ok(Received {
            cluster: text(0)?,
            node: text(1)?,
            to: text(2)?,
            time: number(3)?,
            nonce: number(4)?,
            auth: unhex(text(5)?).ok_or(AuthError::Garbled(HEADER_AUTH))?,
        })
    }
}

/// One sender's nonces: the highest accepted, and which of the [`NONCE_WINDOW`] below it
/// were (bit `i` of the map: `top - i`).
#[derive(Debug, Clone, Default)]
struct Window {
    top: u64,
    bits: [u64; WORDS],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Replayed,
    TooOld,
}

impl Window {
    /// Records `nonce` unless it was seen or is too old to tell.
    fn accept(&mut self, nonce: u64) -> Result<(), Refusal> {
        if nonce > self.top || self.is_empty() {
            self.shift(nonce.saturating_sub(self.top));
            self.top = nonce;
            self.bits[0] |= 1;
            return Ok(());
        }
        let back = self.top - nonce;
        if back >= NONCE_WINDOW {
            return Err(Refusal::TooOld);
        }
        let (word, bit) = ((back / 64) as usize, back % 64);
        if self.bits[word] & (1 << bit) != 0 {
            return Err(Refusal::Replayed);
        }
        self.bits[word] |= 1 << bit;
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    /// Moves every bit `by` places up (towards older), dropping those past the window.
    fn shift(&mut self, by: u64) {
        if by >= NONCE_WINDOW {
            self.bits = [0; WORDS];
            return;
        }
        let (words, bits) = ((by / 64) as usize, (by % 64) as u32);
        for i in (0..WORDS).rev() {
            let low = i.checked_sub(words).map_or(0, |j| self.bits[j]);
            let carry = match i.checked_sub(words + 1) {
                Some(j) if bits > 0 => self.bits[j] >> (64 - bits),
                _ => 0,
            };
            self.bits[i] = (low << bits) | carry;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// 64 hex digits (either case) as 32 bytes.
fn unhex(s: &str) -> Option<[u8; 32]> {
    let digits = s.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0; 32];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
