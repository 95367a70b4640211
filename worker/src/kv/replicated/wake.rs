//! A parked read's wake-up: what the helper's answer to one of its requests makes of it (the
//! read run here after its barrier, a relayed reply or the next member asked, a replica's
//! answer of a comparison).

use super::answers::{compose, plain_of_reply, relay, unavailable, Plain};
use super::{gather, run_here, Job, Replicated, Waiting, Work};
use crate::cluster_link::Answer;
use crate::http::Response;
use crate::kv::KvService;
use crate::service::{ConnRef, Pass};

/// One answer of a job's one request: the wakeup, or `None` when the job goes on.
pub(super) fn finish(
    kv: &mut KvService,
    j: u64,
    job: Job,
    answer: Answer,
    pass: &mut Pass<'_, '_>,
) -> Option<(ConnRef, Response)> {
    let who = job.who;
    let resp = match (job.work, answer) {
        (Work::Barrier { handler, req }, Answer::ReadReady) => {
            run_here(kv, handler, &req.request(), pass)
        }
        (
            Work::Relay {
                target,
                authorization,
                mut next,
            },
            answer,
        ) => {
            // A member that cannot answer (down, or its group unavailable): the next one.
            let retry = match &answer {
                Answer::Reply { status, .. } => *status == 503,
                _ => true,
            };
            if retry && !next.is_empty() {
                let c = kv.cluster.as_mut()?;
                let node = next.remove(0);
                let id = c.fetch(node, target.clone(), authorization.clone());
                let work = Work::Relay {
                    target,
                    authorization,
                    next,
                };
                c.jobs.insert(j, Job { who, work });
                c.pending.insert(id, Waiting::Job(j));
                return None;
            }
            match answer {
                Answer::Reply {
                    status,
                    headers,
                    body,
                } => relay(status, headers, body),
                Answer::Unavailable(why) | Answer::Unknown(why) => unavailable(&why),
                other => {
                    log::error!(
                        "cluster helper: an answer of the wrong kind to a fetch: {other:?}"
                    );
                    Response::empty(500)
                }
            }
        }
        (
            Work::Report,
            Answer::Reply {
                status,
                headers,
                body,
            },
        ) => relay(status, headers, body),
        (_, Answer::Unavailable(why) | Answer::Unknown(why)) => unavailable(&why),
        (_, other) => {
            log::error!("cluster helper: an answer of the wrong kind to a read: {other:?}");
            Response::empty(500)
        }
    };
    Some((who, resp))
}

/// Replica `i`'s answer of compare job `j`.
pub(super) fn part(
    c: &mut Replicated,
    j: u64,
    i: usize,
    answer: Answer,
) -> Option<(ConnRef, Response)> {
    let job = c.jobs.get_mut(&j)?;
    if matches!(job.work, Work::Gather { .. }) {
        return gather::part(c, j, i, answer);
    }
    let Work::Compare { kind, answers } = &mut job.work else {
        return None;
    };
    let kind = *kind;
    match answer {
        Answer::Reply {
            status,
            headers,
            body,
        } => {
            *answers.get_mut(i)? = Some(plain_of_reply(status, &headers, body));
            if answers.iter().any(Option::is_none) {
                return None;
            }
            let all: Vec<Plain> = answers.iter().flatten().cloned().collect();
            let who = c.jobs.remove(&j)?.who;
            Some((who, compose(kind, &all)))
        }
        Answer::Unavailable(why) | Answer::Unknown(why) => {
            // The other replicas' answers find no job and are dropped.
            let who = c.jobs.remove(&j)?.who;
            Some((
                who,
                unavailable(&format!("a replica did not answer: {why}")),
            ))
        }
        other => {
            let who = c.jobs.remove(&j)?.who;
            log::error!("cluster helper: an answer of the wrong kind to a fetch: {other:?}");
            Some((who, Response::empty(500)))
        }
    }
}
