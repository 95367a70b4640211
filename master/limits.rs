//! `worker_rlimit_nofile`: the master sets its own open-file limit (soft and hard) before it
//! forks, so every worker inherits it, as nginx's directive does (nginx sets it in each worker;
//! here the workers drop privileges right after the fork, so the master, still root when
//! started as root, is the one that can raise the hard limit). A limit that cannot be set is
//! an `[alert]` naming the limit kept; the daemon goes on with it.

use conf::Conf;

/// Applies `conf`'s `worker_rlimit_nofile`, if any; called at start and on each reload.
pub fn set_nofile(conf: &Conf) {
    let Some(wanted) = conf.worker_rlimit_nofile else {
        return;
    };
    let limit = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: wanted,
    };
    // SAFETY: setrlimit reads the one struct passed by reference; it touches no other memory.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        log::info!("worker_rlimit_nofile: open-file limit set to {wanted}");
        return;
    }
    let err = std::io::Error::last_os_error();
    let kept = current_nofile().map_or("unknown".to_string(), |(soft, hard)| {
        format!("{soft} (hard {hard})")
    });
    conf::alert!(
        "setrlimit(RLIMIT_NOFILE, {wanted}) failed: {err}; the open-file limit stays {kept}"
    );
}

/// The open-file limit now: (soft, hard).
pub fn current_nofile() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the one struct passed by mutable reference.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    Some((limit.rlim_cur, limit.rlim_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_set_when_allowed_and_kept_when_not() {
        let (_, hard) = current_nofile().expect("getrlimit");
        let mut conf = Conf::defaults("/tmp/x.conf".into());
        // Raising the soft limit up to the hard one needs no privilege.
        let hard = hard.min(1 << 30);
        conf.worker_rlimit_nofile = Some(hard);
        set_nofile(&conf);
        let after = current_nofile().expect("getrlimit");
        assert_eq!(after, (hard, hard));
        // Asking for more than the hard limit without privilege fails and keeps the limit;
        // as root it may succeed: then the new limit is what was asked.
        let wanted = after.1.saturating_add(1).min(1 << 30);
        conf.worker_rlimit_nofile = Some(wanted);
        set_nofile(&conf);
        let now = current_nofile().expect("getrlimit");
        assert!(
            now == after || now == (wanted, wanted),
            "{now:?} after asking {wanted}"
        );
    }
}
