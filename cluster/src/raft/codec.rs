//! The binary form of what the log and the state machine persist of openraft's types: log
//! ids, votes, memberships (with their nodes' peer addresses) and entries, little endian,
//! byte strings prefixed by their u32 length. openraft is built without serde, so the form is
//! ours and stable across openraft versions. Every decoder returns [`CodecError`] on garbage
//! (short input, bad tag, trailing bytes, counts beyond the input): a peer's or a disk's
//! bytes never panic the process. It knows no file and no store.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use openraft::Vote;
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership};

use super::{LogCommand, NodeId, TypeConfig};

/// Bytes that are not what the decoder expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecError;

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed consensus record")
    }
}

impl std::error::Error for CodecError {}

/// A cursor over bytes being decoded.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, CodecError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    /// A u32-length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A count of items that take at least `min_size` bytes each: refused when the rest of
    /// the input cannot hold them, so garbage never makes us reserve gigabytes.
    pub fn count(&mut self, min_size: usize) -> Result<usize, CodecError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size) > self.buf.len() {
            return Err(CodecError);
        }
        Ok(n)
    }

    /// Fails unless every byte was read.
    pub fn end(&self) -> Result<(), CodecError> {
        match self.buf.is_empty() {
            true => Ok(()),
            false => Err(CodecError),
        }
    }
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

pub fn put_log_id(out: &mut Vec<u8>, id: &LogId<NodeId>) {
    put_u64(out, id.leader_id.term);
    put_u64(out, id.leader_id.node_id);
    put_u64(out, id.index);
}

pub fn get_log_id(r: &mut Reader<'_>) -> Result<LogId<NodeId>, CodecError> {
    let (term, node_id, index) = (r.u64()?, r.u64()?, r.u64()?);
    Ok(LogId::new(CommittedLeaderId::new(term, node_id), index))
}

pub fn put_opt_log_id(out: &mut Vec<u8>, id: &Option<LogId<NodeId>>) {
    match id {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            put_log_id(out, id);
        }
    }
}

pub fn get_opt_log_id(r: &mut Reader<'_>) -> Result<Option<LogId<NodeId>>, CodecError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(get_log_id(r)?)),
        _ => Err(CodecError),
    }
}

pub fn put_vote(out: &mut Vec<u8>, v: &Vote<NodeId>) {
    put_u64(out, v.leader_id.term);
    put_u64(out, v.leader_id.node_id);
    out.push(u8::from(v.committed));
}

pub fn get_vote(r: &mut Reader<'_>) -> Result<Vote<NodeId>, CodecError> {
    let (term, node_id) = (r.u64()?, r.u64()?);
    let mut v = Vote::new(term, node_id);
    match r.u8()? {
        0 => {}
        1 => v.commit(),
        _ => return Err(CodecError),
    }
    Ok(v)
}

/// The joint configs (voter id sets), then every node (voters and learners) with its address.
pub fn put_membership(out: &mut Vec<u8>, m: &Membership<NodeId, BasicNode>) {
    let configs = m.get_joint_config();
    put_u32(out, configs.len() as u32);
    for config in configs {
        put_u32(out, config.len() as u32);
        for id in config {
            put_u64(out, *id);
        }
    }
    let nodes: Vec<_> = m.nodes().collect();
    put_u32(out, nodes.len() as u32);
    for (id, node) in nodes {
        put_u64(out, *id);
        put_bytes(out, node.addr.as_bytes());
    }
}

pub fn get_membership(r: &mut Reader<'_>) -> Result<Membership<NodeId, BasicNode>, CodecError> {
    let mut configs = Vec::new();
    for _ in 0..r.count(4)? {
        let mut config = BTreeSet::new();
        for _ in 0..r.count(8)? {
            config.insert(r.u64()?);
        }
        configs.push(config);
    }
    let mut nodes = BTreeMap::new();
    for _ in 0..r.count(12)? {
        let id = r.u64()?;
        let addr = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| CodecError)?;
        nodes.insert(id, BasicNode { addr });
    }
    // `Membership::new` fills in voters missing from `nodes`; ours are all there.
    Ok(Membership::new(configs, nodes))
}

/// An entry: its log id, then a payload tag (0 blank, 1 command, 2 membership) and payload.
pub fn put_entry(out: &mut Vec<u8>, e: &Entry<TypeConfig>) {
    put_log_id(out, &e.log_id);
    match &e.payload {
        EntryPayload::Blank => out.push(0),
        EntryPayload::Normal(cmd) => {
            out.push(1);
            put_bytes(out, &cmd.bytes);
        }
        EntryPayload::Membership(m) => {
            out.push(2);
            put_membership(out, m);
        }
    }
}

/// Reads a whole buffer written by [`put_entry`].
pub fn decode_entry(buf: &[u8]) -> Result<Entry<TypeConfig>, CodecError> {
    let mut r = Reader::new(buf);
    let log_id = get_log_id(&mut r)?;
    let payload = match r.u8()? {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Normal(LogCommand {
            bytes: r.bytes()?.to_vec(),
        }),
        2 => EntryPayload::Membership(get_membership(&mut r)?),
        _ => return Err(CodecError),
    };
    r.end()?;
    Ok(Entry { log_id, payload })
}
