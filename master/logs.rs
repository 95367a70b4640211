//! The master's error log: (re)initialised from the conf at start and on reload, and the log
//! files handed to the workers' user, who writes them too.

use conf::{Conf, LogTarget};
use nix::unistd::User;

use crate::error::MasterError;
use crate::process;

/// (Re)initialises the error log from `conf`.
pub fn init_logger(conf: &Conf) -> Result<(), MasterError> {
    conf::logger::init(&conf.error_log, conf.error_log_level).map_err(|err| MasterError::Log {
        target: match &conf.error_log {
            LogTarget::File(p) => p.display().to_string(),
            LogTarget::Stderr => "stderr".to_string(),
        },
        err,
    })
}

/// Hands the log files the master opened to the workers' user, who writes them too.
pub fn chown_logs(conf: &Conf, user: &User) {
    let files = [
        match &conf.error_log {
            LogTarget::File(p) => Some(p),
            LogTarget::Stderr => None,
        },
        conf.access_log.as_ref(),
    ];
    if let Some(path) = &conf.access_log {
        // Workers open the access log themselves (after switching user), so it must exist
        // and be theirs before they start.
        if let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            log::warn!("could not create access_log {}: {e}", path.display());
        }
    }
    for path in files.into_iter().flatten() {
        if path.exists() {
            if let Err(e) = process::chown_tree(path, user) {
                log::warn!("{e}");
            }
        }
    }
}
