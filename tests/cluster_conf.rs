//! The `cluster { }` block through the real binary: `-t` checks it (ok, or one line naming
//! file:line); a start with one serves (the master forks the cluster helper); a HUP may change
//! `timeout` and `reads` (the helper keeps running) but not the cluster's shape, nor add or
//! remove the block (one log line naming what, the old conf keeps serving); USR2 is refused.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{children_of, cluster_helper_pid, free_port, get, is_alive, wait_until, Server};

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Writes a secret file in the server's folder with permission bits `mode`.
fn secret(server: &Server, mode: u32) -> PathBuf {
    let path = server.dir.join("cluster.secret");
    std::fs::write(&path, "a secret of more than 16 bytes\n").expect("write the secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// A cluster block for node n1 of three, n1's client address the server's own listen address;
/// `edit` replaces the line starting with its key. Lines: `cluster {` is the block's first,
/// `node_id` its third, `replicas` its seventh.
fn block(server: &Server, secret: &Path, edit: Option<(&str, &str)>) -> String {
    let port = server.port;
    let lines = [
        "cluster {".to_string(),
        "    name test;".to_string(),
        "    node_id n1;".to_string(),
        format!("    node n1 127.0.0.1:{port} 127.0.0.1:{};", port + 1),
        "    node n2 127.0.0.2:8082 127.0.0.2:9082;".to_string(),
        "    node n3 127.0.0.3:8082 127.0.0.3:9082;".to_string(),
        "    replicas 3;".to_string(),
        format!("    secret {};", secret.display()),
        "}".to_string(),
    ];
    let mut text = String::new();
    for line in lines {
        match edit {
            Some((key, new)) if line.trim_start().starts_with(key) => text.push_str(new),
            _ => text.push_str(&line),
        }
        text.push('\n');
    }
    text
}

/// Appends `block` to the server's conf; gives the line `cluster {` is on.
fn append_block(server: &Server, block: &str) -> usize {
    let base = std::fs::read_to_string(&server.conf_path).expect("read the conf");
    server.write_conf_text(&format!("{base}{block}"));
    base.lines().count() + 1
}

#[test]
fn conf_test_accepts_a_good_cluster_block() {
    let server = Server::prepare(&[]);
    let secret = secret(&server, 0o600);
    append_block(&server, &block(&server, &secret, None));
    let out = server.command(&["-t"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("conf {} is ok\n", server.conf_path.display())
    );
}

#[test]
fn conf_test_refuses_bad_cluster_blocks_with_file_and_line() {
    let mut server = Server::prepare(&[]);
    let conf = server.conf_path.display().to_string();
    // (edit, secret mode, line of the error within the block, end of the message)
    let cases = [
        (
            None,
            0o644,
            7,
            "readable by everyone (mode 0644): run chmod o-r on it",
        ),
        (
            Some(("node_id", "    node_id n4;")),
            0o600,
            2,
            "\"node_id\" \"n4\" is not the name of a \"node\" line",
        ),
        (
            Some(("replicas", "    replicas 4;")),
            0o600,
            6,
            "invalid value \"4\" in \"replicas\" (expected at most the number of nodes, 3)",
        ),
    ];
    for (edit, mode, offset, want) in cases {
        // Back to the base conf, then this case's block.
        server.rewrite_conf(&[]);
        let secret = secret(&server, mode);
        let line = append_block(&server, &block(&server, &secret, edit)) + offset;
        let out = server.command(&["-t"]);
        assert_eq!(out.status.code(), Some(1), "{want}: {out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let file = secret.display().to_string();
        assert!(
            lines[0].starts_with(&format!("huststore: {conf}:{line}: ")),
            "{lines:?}"
        );
        assert!(lines[0].ends_with(want), "{lines:?}");
        if mode == 0o644 {
            assert!(lines[0].contains(&file), "{lines:?}");
        }
    }
}

/// A one-node cluster block (n1 on the server's own listen address, peer port `peer`,
/// replicas 1, so that writes commit alone), `extra` lines inside it.
fn one_node_block(server: &Server, secret: &Path, peer: u16, extra: &str) -> String {
    format!(
        "cluster {{\n    name test;\n    node_id n1;\n    node n1 127.0.0.1:{} 127.0.0.1:{peer};\n    groups 4;\n    replicas 1;\n    secret {};\n{extra}}}\n",
        server.port,
        secret.display()
    )
}

/// The base conf followed by `block`.
fn with_block(base: &str, block: &str) -> String {
    format!("{base}{block}")
}

/// A started one-node cluster, its base conf text (without the block), the secret and the
/// peer port.
fn start_one_node(extra: &str) -> (Server, String, PathBuf, u16) {
    let mut server = Server::prepare(&[]);
    let base = std::fs::read_to_string(&server.conf_path).expect("read the conf");
    let secret = secret(&server, 0o600);
    let peer = free_port();
    server.write_conf_text(&with_block(
        &base,
        &one_node_block(&server, &secret, peer, extra),
    ));
    server.restart();
    (server, base, secret, peer)
}

#[test]
fn a_start_with_a_cluster_block_serves_with_a_helper() {
    let (server, ..) = start_one_node("");
    let helper = cluster_helper_pid(&server).expect("a cluster helper among the master's children");
    // Two workers and the helper.
    assert_eq!(children_of(server.master_pid()).len(), 3);
    assert!(server.error_log().contains(&format!(
        "huststore started: master {}, 2 workers, cluster helper {helper}, listening on",
        server.master_pid()
    )));
    put_until_ok(&server, "k", "v1");
}

#[test]
fn a_reload_that_changes_the_cluster_shape_is_refused_and_the_old_conf_kept() {
    let (server, base, secret, peer) = start_one_node("");
    put_until_ok(&server, "before", "1");
    let children = children_of(server.master_pid());
    let conf = server.conf_path.display().to_string();
    let cases = [
        (
            with_block(&base, &one_node_block(&server, &secret, peer, "").replace("groups 4;", "groups 8;").replace("name test;", "name other;")),
            format!("reload failed, keeping the old conf: conf {conf}: \"name\", \"groups\" cannot change by a reload in cluster mode; restart the node"),
        ),
        (
            with_block(&base, &one_node_block(&server, &secret, free_port(), "    election_timeout 2s;\n")),
            format!("reload failed, keeping the old conf: conf {conf}: \"node\", \"election_timeout\" cannot change by a reload in cluster mode; restart the node"),
        ),
        (
            base.clone(),
            format!("reload failed, keeping the old conf: conf {conf}: the cluster block cannot be removed by a reload; restart the node"),
        ),
    ];
    for (text, want) in cases {
        server.write_conf_text(&text);
        server.signal(libc::SIGHUP);
        assert!(
            wait_until(Duration::from_secs(5), || server
                .error_log()
                .contains(&want)),
            "{want}\n{}",
            server.error_log()
        );
    }
    assert!(
        !server.error_log().contains("reloaded"),
        "{}",
        server.error_log()
    );
    assert_eq!(children_of(server.master_pid()), children);
    put_until_ok(&server, "after", "2");
}

#[test]
fn a_reload_to_a_cluster_block_is_refused_and_the_old_conf_kept() {
    let server = Server::start(&[]);
    let old = server.worker_pids();
    let secret = secret(&server, 0o600);
    append_block(&server, &block(&server, &secret, None));
    server.signal(libc::SIGHUP);
    let want = format!(
        "reload failed, keeping the old conf: conf {}: a cluster block cannot be added by a reload; restart the node",
        server.conf_path.display()
    );
    assert!(
        wait_until(Duration::from_secs(5), || server
            .error_log()
            .contains(&want)),
        "{}",
        server.error_log()
    );
    assert_eq!(get(server.addr(), "/status.html").status, 200);
    assert_eq!(server.worker_pids(), old);
    assert!(
        !server.error_log().contains("reloaded"),
        "{}",
        server.error_log()
    );
}

#[test]
fn a_reload_of_timeout_and_reads_keeps_the_helper_and_renews_the_workers() {
    let (server, base, secret, peer) = start_one_node("");
    put_until_ok(&server, "before", "1");
    let helper = cluster_helper_pid(&server).expect("the helper");
    let workers: Vec<i32> = children_of(server.master_pid())
        .into_iter()
        .filter(|&p| p != helper)
        .collect();
    let extra = "    timeout 2s;\n    reads local;\n";
    server.write_conf_text(&with_block(
        &base,
        &one_node_block(&server, &secret, peer, extra),
    ));
    server.signal(libc::SIGHUP);
    let renewed = wait_until(Duration::from_secs(15), || {
        let now = children_of(server.master_pid());
        now.len() == 3 && now.contains(&helper) && workers.iter().all(|w| !now.contains(w))
    });
    assert!(
        renewed,
        "{:?}\n{}",
        children_of(server.master_pid()),
        server.error_log()
    );
    assert!(
        server.error_log().contains("reloaded"),
        "{}",
        server.error_log()
    );
    assert!(is_alive(helper));
    // The new workers reach the same helper.
    put_until_ok(&server, "after", "2");
    assert_eq!(cluster_helper_pid(&server), Some(helper));
}

#[test]
fn a_binary_upgrade_is_refused_in_cluster_mode() {
    let (server, ..) = start_one_node("");
    let children = children_of(server.master_pid());
    server.signal(libc::SIGUSR2);
    let want = "binary upgrade (USR2) refused in cluster mode";
    assert!(
        wait_until(Duration::from_secs(5), || server.error_log().contains(want)),
        "{}",
        server.error_log()
    );
    let mut oldbin = server.pid_file().into_os_string();
    oldbin.push(".oldbin");
    assert!(!Path::new(&oldbin).exists());
    assert!(server.pid_file().exists());
    assert_eq!(children_of(server.master_pid()), children);
    put_until_ok(&server, "k", "v");
}

/// The shipped confs of a local three-node cluster (README, "Try a three-node cluster") pass
/// `-t` once their secret exists: copied with a secret beside them, as the README makes it.
#[test]
fn the_shipped_three_node_confs_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/cluster");
    let server = Server::prepare(&[]);
    let dir = server.dir.join("cluster");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let secret = dir.join("secret");
    std::fs::write(&secret, "c2VjcmV0IG9mIHRoZSB0ZXN0IGNsdXN0ZXIgbm9kZXMK\n").expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    for n in 1..=3 {
        let name = format!("n{n}.conf");
        let text = std::fs::read_to_string(root.join(&name)).expect("read a shipped conf");
        assert!(text.contains(&format!("listen            127.0.0.1:809{n};")));
        assert!(text.contains("replicas    3;") && text.contains("groups      16;"));
        let copy = dir.join(&name);
        std::fs::write(&copy, &text).expect("copy");
        let out = common::run_bin(
            &["-c", copy.to_str().expect("utf-8"), "-t"],
            Duration::from_secs(10),
        );
        assert_eq!(out.status.code(), Some(0), "{name}: {out:?}");
    }
}

/// [`common::put_until_ok`], then the value reads back through the same node.
fn put_until_ok(server: &Server, key: &str, value: &str) {
    common::put_until_ok(server, key, value);
    let got = get(server.addr(), &format!("/get?key={key}"));
    assert_eq!((got.status, got.text()), (200, value.to_string()));
}
