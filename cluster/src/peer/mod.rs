//! The protocol between nodes on the peer address (`cluster.md` §1): every request proves the
//! cluster's shared secret (`auth`), and carries its consensus message in a small binary
//! envelope (`frame`). Nothing a peer sends may panic the process: both decoders answer an
//! error on garbage.

pub mod auth;
pub mod frame;
