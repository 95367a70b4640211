//! The one function that applies a [`Command`] to a write transaction: the operation's
//! read-only check, then (after the caller's `before_changes`) its changes.

use std::borrow::Cow;

use lmdb::RwTransaction;

use super::{Command, Outcome, Write};
use crate::env::{Ctx, Target};
use crate::kv::{self, Put};
use crate::members::{self, MemberReq};
use crate::room::Pass;
use crate::txn::{Apply, Wtx};
use crate::{cache, purge, Result, StorageError, TableType};

/// How a command failed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// Before its first change: the transaction is as it was (unless a failed read made LMDB
    /// flag it unusable).
    Refused(StorageError),
    /// Once its changes had started: the transaction holds part of them.
    Broken(StorageError),
}

/// Applies `cmd` to `txn`, a write transaction of `target`'s environment, and returns its
/// outcome. First the operation's check, which only reads and decides every refusal
/// (`NotFound`, `VersionMismatch`, `WrongType`, `NotNumeric`, `TooLarge`, `Invalid`,
/// `MapFull`); then `before_changes` (the batch allocates file blocks there; its refusal is a
/// refusal too); then the changes, which fail only the way LMDB fails. A command for the other
/// environment is refused.
///
/// It reads no clock and nothing but `txn`, `target`'s databases and room, and `cmd`: the same
/// command on the same state gives the same outcome and the same state after. One exception:
/// `MapFull` can also come from the physical page accounting of `pass` (pages in use, the
/// free-list) and from `before_changes` (`fallocate`), which depend on the node's file and
/// disk, not only on the logical contents; such a refusal changes nothing, so replicas differ
/// at most in which commands were refused for room.
pub(crate) fn apply(
    cmd: &Command<'_>,
    txn: &mut Wtx<'_, '_>,
    pass: &mut Pass,
    target: Target<'_>,
    before_changes: impl FnOnce(&mut Pass) -> Result<()>,
) -> std::result::Result<Outcome, Failed> {
    if let Some(e) = cmd.write.refusal() {
        return Err(Failed::Refused(e));
    }
    let now = cmd.now_ms;
    let step = Step {
        txn,
        pass,
        before_changes,
    };
    let written = Outcome::Written;
    match (target, cmd.write) {
        (
            Target::Data(cx),
            Write::Put {
                key,
                val,
                expires_at,
                ver,
            },
        ) => {
            let put = Put {
                key,
                val,
                exp: expires_at,
                ver,
                now,
            };
            step.run(&cx, |t, p| kv::kv_put(t, p, &cx, put), written)
        }
        (Target::Data(cx), Write::Del { key, ver }) => {
            step.run(&cx, |t, _| kv::kv_del(t, &cx, key, ver, now), written)
        }
        (
            Target::Data(cx),
            Write::Hset {
                tb,
                key,
                val,
                expires_at,
                ver,
            },
        ) => {
            let req = member(tb, key, expires_at, ver, now);
            step.run(&cx, |t, p| members::hset(t, p, &cx, req, val), written)
        }
        (
            Target::Data(cx),
            Write::Hincrby {
                tb,
                key,
                delta,
                expires_at,
                ver,
            },
        ) => {
            let req = member(tb, key, expires_at, ver, now);
            let out = |(w, n)| Outcome::Counted(w, n);
            step.run(&cx, |t, p| members::hincrby(t, p, &cx, req, delta), out)
        }
        (Target::Data(cx), Write::Hdel { tb, key, ver }) => step.run(
            &cx,
            |t, _| members::member_del(t, &cx, tb, TableType::Hash, key, ver, now),
            written,
        ),
        (
            Target::Data(cx),
            Write::Sadd {
                tb,
                member: m,
                expires_at,
                ver,
            },
        ) => {
            let req = member(tb, m, expires_at, ver, now);
            step.run(&cx, |t, p| members::sadd(t, p, &cx, req), written)
        }
        (Target::Data(cx), Write::Srem { tb, member, ver }) => step.run(
            &cx,
            |t, _| members::member_del(t, &cx, tb, TableType::Set, member, ver, now),
            written,
        ),
        (
            Target::Data(cx),
            Write::Zadd {
                tb,
                member: m,
                score,
                mode,
                expires_at,
                ver,
            },
        ) => {
            let req = member(tb, m, expires_at, ver, now);
            let out = |(w, n)| Outcome::Scored(w, n);
            step.run(&cx, |t, p| members::zadd(t, p, &cx, req, score, mode), out)
        }
        (Target::Data(cx), Write::Zrem { tb, member, ver }) => step.run(
            &cx,
            |t, _| members::member_del(t, &cx, tb, TableType::SortedSet, member, ver, now),
            written,
        ),
        (Target::Data(cx), Write::PurgeExpired { max }) => {
            step.run(&cx, |t, _| purge::purge(t, &cx, now, max), Outcome::Purged)
        }
        (Target::Data(cx), Write::PurgeExpiredSlots { start, end, max }) => {
            let slots = start..end;
            step.run(
                &cx,
                |t, _| purge::purge_slots(t, &cx, now, max, &slots),
                Outcome::Purged,
            )
        }
        (
            Target::Cache(cx),
            Write::CachePut {
                key,
                val,
                expires_at,
            },
        ) => step.run(
            &cx,
            |t, p| cache::put(t, p, &cx, key, val, expires_at, now),
            done,
        ),
        (Target::Cache(cx), Write::CacheDel { key }) => {
            step.run(&cx, |t, _| cache::del(t, &cx, key, now), done)
        }
        (Target::Cache(cx), Write::CacheExpire { key, expires_at }) => step.run(
            &cx,
            |t, p| cache::set_expiry(t, p, &cx, key, expires_at, now, false),
            done,
        ),
        (Target::Cache(cx), Write::CachePersist { key }) => step.run(
            &cx,
            |t, p| cache::set_expiry(t, p, &cx, key, 0, now, true),
            done,
        ),
        (Target::Cache(cx), Write::CacheAppend { key, val }) => {
            step.run(&cx, |t, p| cache::append(t, p, &cx, key, val, now), done)
        }
        (Target::Cache(cx), Write::CacheHset { tb, key, val }) => step.run(
            &cx,
            |t, p| cache::hset(t, p, &cx, tb, key, |_| Ok(Cow::Borrowed(val))),
            done,
        ),
        (Target::Cache(cx), Write::CacheHdel { tb, key }) => {
            step.run(&cx, |t, _| cache::hdel(t, &cx, tb, key), done)
        }
        (Target::Cache(cx), Write::CacheHincrby { tb, key, delta }) => step.run(
            &cx,
            |t, p| cache::hincrby(t, p, &cx, tb, key, delta),
            Outcome::Int,
        ),
        (Target::Cache(cx), Write::CacheHincrbyfloat { tb, key, delta }) => step.run(
            &cx,
            |t, p| cache::hincrbyfloat(t, p, &cx, tb, key, delta),
            Outcome::Float,
        ),
        (Target::Cache(cx), Write::CachePurgeExpired { max }) => {
            step.run(&cx, |t, _| cache::purge(t, &cx, now, max), Outcome::Purged)
        }
        (Target::Data(_), _) | (Target::Cache(_), _) => Err(Failed::Refused(
            StorageError::Invalid("a write for the other environment"),
        )),
    }
}

fn member<'a>(tb: &'a str, key: &'a [u8], exp: u64, ver: u32, now: u64) -> MemberReq<'a> {
    MemberReq {
        tb,
        key,
        exp,
        ver,
        now,
    }
}

fn done(_: ()) -> Outcome {
    Outcome::Done
}

/// One command's run: its transaction, its pass, and what comes between check and changes.
struct Step<'t, 'a, 'e, B> {
    txn: &'t mut Wtx<'a, 'e>,
    pass: &'t mut Pass,
    before_changes: B,
}

impl<B: FnOnce(&mut Pass) -> Result<()>> Step<'_, '_, '_, B> {
    /// The check, `before_changes`, then the changes of the checked plan; `out` turns its
    /// answer into the outcome.
    fn run<D, P: Apply<D>>(
        self,
        cx: &Ctx<'_, D>,
        check: impl FnOnce(&RwTransaction<'_>, &mut Pass) -> Result<P>,
        out: impl FnOnce(P::Out) -> Outcome,
    ) -> std::result::Result<Outcome, Failed> {
        let Step {
            txn,
            pass,
            before_changes,
        } = self;
        checked(txn, pass, cx, check, before_changes).map(out)
    }
}

/// A checked change outside the commands (a slot snapshot's import): `check` (which only
/// reads and decides every refusal), `before_changes`, then the changes of the checked plan.
pub(crate) fn checked<D, P: Apply<D>>(
    txn: &mut Wtx<'_, '_>,
    pass: &mut Pass,
    cx: &Ctx<'_, D>,
    check: impl FnOnce(&RwTransaction<'_>, &mut Pass) -> Result<P>,
    before_changes: impl FnOnce(&mut Pass) -> Result<()>,
) -> std::result::Result<P::Out, Failed> {
    let plan = check(txn.view(), pass)
        .and_then(|plan| {
            before_changes(pass)?;
            Ok(plan)
        })
        .map_err(Failed::Refused)?;
    plan.apply(txn, cx).map_err(Failed::Broken)
}
