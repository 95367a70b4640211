//! Before forking, when started as root: can the workers' user reach the folders it must use
//! (`data_dir`, the logs' folders)? The master chowns the data folder and the logs to it, but
//! not the folders above them; a checkout in a private folder (`mktemp -d`, `/root/...`) then
//! left every worker failing with "Permission denied" and the daemon exiting on "no worker
//! could start". Now the start fails with one line that names the user, the folder that
//! refuses it, and the two ways out.
//!
//! Read from the mode bits (owner, group, other; the user's groups from the group database);
//! ACLs and other security modules are not looked at, so a folder they open is still refused
//! here only when its mode bits refuse it too.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use conf::{Conf, LogTarget};
use nix::unistd::{Gid, Group, User};

use crate::error::MasterError;

/// Checks every folder `user` must reach (search permission on each component above it).
pub fn check_reachable(conf: &Conf, user: &User) -> Result<(), MasterError> {
    if user.uid.is_root() {
        return Ok(());
    }
    let groups = groups_of(user);
    let mut needed: Vec<PathBuf> = vec![conf.data_dir.clone()];
    let mut log_parent = |target: Option<&Path>| {
        if let Some(parent) = target.and_then(Path::parent) {
            needed.push(parent.to_path_buf());
        }
    };
    if let LogTarget::File(p) = &conf.error_log {
        log_parent(Some(p));
    }
    log_parent(conf.access_log.as_deref());
    for path in needed {
        if let Some(refusing) = first_refusing(&path, user, &groups) {
            return Err(MasterError::Unreachable {
                user: user.name.clone(),
                path,
                what: describe(&refusing),
                refusing,
            });
        }
    }
    Ok(())
}

/// The user's primary group and the groups that list it.
fn groups_of(user: &User) -> Vec<Gid> {
    let mut gids = vec![user.gid];
    if let Ok(name) = std::ffi::CString::new(user.name.as_str()) {
        if let Ok(list) = nix::unistd::getgrouplist(&name, user.gid) {
            gids.extend(list);
        }
    }
    gids
}

/// The first folder from the root down to `path` (included, when it exists) that `user`
/// may not search; `None` when every one lets it through.
fn first_refusing(path: &Path, user: &User, groups: &[Gid]) -> Option<PathBuf> {
    let mut at = PathBuf::new();
    for part in path.components() {
        at.push(part);
        let Ok(meta) = std::fs::metadata(&at) else {
            // Not there yet: the master creates it (as root, then chowned) or fails clearly.
            return None;
        };
        if !meta.is_dir() {
            return None;
        }
        if !may_search(meta.mode(), meta.uid(), meta.gid(), user, groups) {
            return Some(at);
        }
    }
    None
}

fn may_search(mode: u32, uid: u32, gid: u32, user: &User, groups: &[Gid]) -> bool {
    if uid == user.uid.as_raw() {
        mode & 0o100 != 0
    } else if groups.iter().any(|g| g.as_raw() == gid) {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// The owner of `path` and its mode, for the error line.
fn describe(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => {
            let owner = nix::unistd::User::from_uid(m.uid().into())
                .ok()
                .flatten()
                .map_or_else(|| m.uid().to_string(), |u| u.name);
            let group = Group::from_gid(m.gid().into())
                .ok()
                .flatten()
                .map_or_else(|| m.gid().to_string(), |g| g.name);
            format!("mode {:04o}, owner {owner}:{group}", m.mode() & 0o7777)
        }
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32, gid: u32) -> User {
        let mut u = User::from_uid(0.into()).unwrap().unwrap();
        u.uid = uid.into();
        u.gid = gid.into();
        u.name = "someone".into();
        u
    }

    #[test]
    fn search_permission_comes_from_the_class_the_user_is_in() {
        let u = user(1000, 1000);
        let g = [Gid::from_raw(1000)];
        assert!(may_search(0o700, 1000, 0, &u, &g));
        assert!(!may_search(0o700, 0, 0, &u, &g));
        assert!(may_search(0o710, 0, 1000, &u, &g));
        assert!(!may_search(0o770 & !0o010, 0, 1000, &u, &g));
        assert!(may_search(0o701, 0, 0, &u, &g));
        // The owner class decides for the owner, even when "other" may.
        assert!(!may_search(0o601, 1000, 0, &u, &g));
    }

    #[test]
    fn a_private_folder_above_the_data_is_found() {
        let dir = std::env::temp_dir().join(format!("hust-access-{}", std::process::id()));
        let inner = dir.join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("a"), std::fs::Permissions::from_mode(0o700)).unwrap();
        // A user who is neither the owner nor in its group.
        let u = user(4_000_000, 4_000_000);
        let found = first_refusing(&inner.join("data"), &u, &[u.gid]);
        assert_eq!(found, Some(dir.join("a")));
        std::fs::set_permissions(dir.join("a"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(first_refusing(&inner.join("data"), &u, &[u.gid]), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
