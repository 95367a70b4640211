//! The `cluster { }` block through the real binary: `-t` checks it (ok, or one line naming
//! file:line), and since cluster mode is not built yet, a start or a HUP with one is refused.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{get, wait_until, Server};

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

const REFUSED: &str =
    "cluster mode is not available in this build yet (the cluster block is checked by -t only)";

#[test]
fn a_start_with_a_cluster_block_is_refused_with_one_line() {
    let server = Server::prepare(&[]);
    let secret = secret(&server, 0o600);
    let line = append_block(&server, &block(&server, &secret, None));
    let out = server.command(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = stderr_lines(&out);
    assert_eq!(
        lines,
        [format!(
            "huststore: conf {}:{line}: {REFUSED}",
            server.conf_path.display()
        )]
    );
    assert!(!server.pid_file().exists());
    assert!(nothing_listens(&server));
}

/// Nothing answers on the server's port.
fn nothing_listens(server: &Server) -> bool {
    std::net::TcpStream::connect_timeout(&server.addr(), Duration::from_secs(1)).is_err()
}

#[test]
fn a_reload_to_a_cluster_block_is_refused_and_the_old_conf_kept() {
    let server = Server::start(&[]);
    let old = server.worker_pids();
    let secret = secret(&server, 0o600);
    let line = append_block(&server, &block(&server, &secret, None));
    server.signal(libc::SIGHUP);
    let want = format!(
        "reload failed, keeping the old conf: conf {}:{line}: {REFUSED}",
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
