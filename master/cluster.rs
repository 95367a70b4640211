//! What a reload (HUP) may change in cluster mode (`cluster.md` §1). The cluster helper keeps
//! running across a reload (no leader blips), so a reload may change only what the helper
//! does not hold: `timeout` and `reads` (the new workers use them; the helper's own
//! forwarding timeout stays the one it started with) and the single-node directives. Adding
//! or removing the block, or changing the cluster's shape (`name`, `node_id`, the `node`
//! lines, `groups`, `replicas`, `secret`, `election_timeout`) is refused as a whole, and so is
//! a change of `data_dir` (the helper's log, store and socket live there) or of the workers'
//! `user` when the master runs as root (the helper runs as that user and owns the socket).

use conf::{ClusterConf, Conf};

use crate::error::MasterError;

/// Refuses a reload from `old` to `new` that changes what a running node cannot change; the
/// error names every such directive. `as_root`: the workers (and the helper) switch to `user`.
pub fn check_reload(old: &Conf, new: &Conf, as_root: bool) -> Result<(), MasterError> {
    let refuse = |what: String| {
        Err(MasterError::ClusterReload {
            file: new.path.clone(),
            what,
        })
    };
    let (a, b) = match (&old.cluster, &new.cluster) {
        (None, None) => return Ok(()),
        (None, Some(_)) => {
            return refuse("a cluster block cannot be added by a reload; restart the node".into())
        }
        (Some(_), None) => {
            return refuse(
                "the cluster block cannot be removed by a reload; restart the node".into(),
            )
        }
        (Some(a), Some(b)) => (a, b),
    };
    let mut changed = block_changes(a, b);
    if old.data_dir != new.data_dir {
        changed.push("data_dir");
    }
    if as_root && old.user != new.user {
        changed.push("user");
    }
    if changed.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = changed.iter().map(|n| format!("\"{n}\"")).collect();
    refuse(format!(
        "{} cannot change by a reload in cluster mode; restart the node",
        names.join(", ")
    ))
}

/// The directives of the block that differ between `a` and `b`, among those a reload may
/// not change (`timeout` and `reads` may).
fn block_changes(a: &ClusterConf, b: &ClusterConf) -> Vec<&'static str> {
    let nodes = |c: &ClusterConf| -> Vec<(String, String, String)> {
        c.nodes
            .iter()
            .map(|n| (n.name.clone(), n.client.to_string(), n.peer.to_string()))
            .collect()
    };
    let checks = [
        ("name", a.name != b.name),
        ("node_id", a.node_id != b.node_id),
        ("node", nodes(a) != nodes(b)),
        ("groups", a.groups != b.groups),
        ("replicas", a.replicas != b.replicas),
        (
            "secret",
            a.secret != b.secret || a.secret_path != b.secret_path,
        ),
        ("election_timeout", a.election_timeout != b.election_timeout),
    ];
    checks
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::time::Duration;

    fn conf(dir: &Path, block: &str) -> Conf {
        let secret = dir.join("secret");
        std::fs::write(&secret, "a secret of more than 16 bytes\n").expect("secret");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let other = dir.join("other");
        std::fs::write(&other, "another secret of 16 bytes or more\n").expect("secret");
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let text = format!(
            "listen 127.0.0.1:8091;\ndata_dir {};\n{block}",
            dir.join("data").display()
        )
        .replace("{secret}", &secret.display().to_string())
        .replace("{other}", &other.display().to_string());
        conf::parse_str(&text, &dir.join("n1.conf")).expect("conf")
    }

    const BLOCK: &str = "cluster {\n name t;\n node_id n1;\n node n1 127.0.0.1:8091 127.0.0.1:9091;\n node n2 127.0.0.1:8092 127.0.0.1:9092;\n replicas 2;\n groups 4;\n secret {secret};\n}\n";

    fn what(old: &Conf, new: &Conf) -> String {
        match check_reload(old, new, false) {
            Ok(()) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_reload_may_change_timeout_and_reads_but_not_the_shape() {
        let dir = std::env::temp_dir().join(format!("master-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let old = conf(&dir, BLOCK);
        let plain = conf(&dir, "");
        assert_eq!(what(&plain, &plain), "ok");
        assert_eq!(what(&old, &old), "ok");
        let allowed = BLOCK.replace("groups 4;", "groups 4;\n timeout 2s;\n reads local;");
        assert_eq!(what(&old, &conf(&dir, &allowed)), "ok");
        assert!(what(&plain, &old)
            .ends_with(": a cluster block cannot be added by a reload; restart the node"));
        assert!(what(&old, &plain).contains("cannot be removed"));
        let changed = BLOCK
            .replace("groups 4;", "groups 8;\n election_timeout 2s;")
            .replace("9092", "9093")
            .replace("{secret}", "{other}");
        let mut new = conf(&dir, &changed);
        // (Through the text, node_id n2 would also need n2's client address in `listen`.)
        if let Some(c) = &mut new.cluster {
            c.node_id = "n2".into();
        }
        assert!(
            what(&old, &new).ends_with(": \"node_id\", \"node\", \"groups\", \"secret\", \"election_timeout\" cannot change by a reload in cluster mode; restart the node"),
            "{}",
            what(&old, &new)
        );
        let mut moved = old.clone();
        moved.data_dir = dir.join("elsewhere");
        moved.user = "someone".into();
        assert!(what(&old, &moved).contains(": \"data_dir\" cannot change"));
        assert!(check_reload(&old, &moved, true)
            .unwrap_err()
            .to_string()
            .contains(": \"data_dir\", \"user\" cannot"));
        let mut slower = old.clone();
        if let Some(c) = &mut slower.cluster {
            c.timeout = Duration::from_secs(9);
        }
        assert_eq!(what(&old, &slower), "ok");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
