use super::super::tests::Rng;
use super::super::{load, parse_str, DIRECTIVES};
use super::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;

const FILE: &str = "/etc/huststore/huststore.conf";

/// A temp folder for secret files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("conf-cluster-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `name` with `content` and permission bits `mode`; gives its path.
    fn file(&self, name: &str, content: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn secret(&self) -> PathBuf {
        self.file("cluster.secret", "0123456789abcdef\n", 0o600)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A good conf with every directive of the block; lines as numbered.
const FULL: &str = "listen 127.0.0.1:8082;
cluster {
    name prod;
    node_id n1;
    node n1 127.0.0.1:8082 127.0.0.1:9082;
    node n2 10.0.0.2:8082 10.0.0.2:9082;
    node n3 10.0.0.3:8082 10.0.0.3:9082;
    groups 16;
    replicas 3;
    secret SECRET;
    timeout 5s;
    election_timeout 1s;
    reads linearizable;
}
";

/// `FULL` with each line that starts (after its indent) with an edit's key replaced by the
/// edit's text, so that every other line keeps its number; `SECRET` becomes `secret`.
fn edited(secret: &Path, edits: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for line in FULL.lines() {
        let trimmed = line.trim_start();
        match edits.iter().find(|(key, _)| trimmed.starts_with(key)) {
            Some((_, text)) => out.push_str(text),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out.replace("SECRET", &secret.display().to_string())
}

fn parse(text: &str) -> Result<Conf, ConfError> {
    parse_str(text, Path::new(FILE))
}

fn ok(text: &str) -> Conf {
    match parse(text) {
        Ok(conf) => conf,
        Err(e) => panic!("{text}\nshould parse: {e}"),
    }
}

fn cluster(text: &str) -> ClusterConf {
    ok(text).cluster.expect("a cluster block")
}

/// The one-line message of a conf that must not parse.
fn err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("{text}\nshould not parse"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "not one line: {msg:?}");
            msg
        }
    }
}

fn node(name: &str, client: &str, peer: &str) -> ClusterNode {
    ClusterNode {
        name: name.into(),
        client: client.parse().unwrap(),
        client_text: client.into(),
        peer: peer.parse().unwrap(),
        peer_text: peer.into(),
    }
}

#[test]
fn a_good_block_gives_every_value() {
    let dir = TempDir::new("good");
    let secret = dir.secret();
    let text = edited(
        &secret,
        &[
            ("groups", "groups 1024;"),
            ("replicas", "replicas 2;"),
            ("timeout", "timeout 1500ms;"),
            ("election_timeout", "election_timeout 10ms;"),
            ("reads", "reads local;"),
            ("node_id", "node_id n2;"),
            ("listen", "listen 10.0.0.2:8082;"),
        ],
    );
    let want = ClusterConf {
        line: 2,
        name: "prod".into(),
        node_id: "n2".into(),
        this: 1,
        nodes: vec![
            node("n1", "127.0.0.1:8082", "127.0.0.1:9082"),
            node("n2", "10.0.0.2:8082", "10.0.0.2:9082"),
            node("n3", "10.0.0.3:8082", "10.0.0.3:9082"),
        ],
        groups: 1024,
        replicas: 2,
        secret_path: secret.clone(),
        secret: Secret::trimmed(b"0123456789abcdef".to_vec()),
        timeout: Duration::from_millis(1500),
        election_timeout: Duration::from_millis(10),
        reads: Reads::Local,
    };
    let got = cluster(&text);
    assert_eq!(got, want);
    assert_eq!(got.this_node().name, "n2");
    assert_eq!(got.secret.bytes(), b"0123456789abcdef");
    // The rest of the conf is what it would be without the block.
    let mut c = ok(&text);
    c.cluster = None;
    assert_eq!(c, ok("listen 10.0.0.2:8082;"));
}

#[test]
fn the_defaults_and_the_table_agree() {
    let dir = TempDir::new("defaults");
    let secret = dir.secret();
    let optional = [
        ("groups", ""),
        ("replicas", ""),
        ("timeout", ""),
        ("election_timeout", ""),
        ("reads", ""),
    ];
    let minimal = edited(&secret, &optional);
    let c = cluster(&minimal);
    assert_eq!(c.groups, 16);
    assert_eq!(c.groups, DEFAULT_GROUPS);
    assert_eq!(c.replicas, 3);
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert_eq!(c.election_timeout, Duration::from_secs(1));
    assert_eq!(c.reads, Reads::Linearizable);
    assert_eq!(c, cluster(&edited(&secret, &[])));
    for d in CLUSTER_DIRECTIVES.iter().filter(|d| !d.default.is_empty()) {
        let text = minimal.replace(
            "    name prod;",
            &format!("    name prod; {} {};", d.name, d.default),
        );
        assert_eq!(cluster(&text), c, "{} {}", d.name, d.default);
    }
    // Fewer than 3 nodes: every node holds every group.
    let two = edited(&secret, &[("node n3", ""), ("replicas", "")]);
    assert_eq!(cluster(&two).replicas, 2);
    let one = edited(
        &secret,
        &[("node n3", ""), ("node n2", ""), ("replicas", "")],
    );
    assert_eq!(cluster(&one).replicas, 1);
    assert_eq!(
        cluster(&edited(&secret, &[("replicas", "replicas 1;")])).replicas,
        1
    );
}

#[test]
fn the_cluster_table_is_sane() {
    for (i, d) in CLUSTER_DIRECTIVES.iter().enumerate() {
        assert!(d.min_args >= 1 && d.min_args <= d.max_args, "{}", d.name);
        assert!(!d.help.is_empty() && !d.help.contains('\n'), "{}", d.name);
        assert!(!d.syntax.is_empty(), "{}", d.name);
        assert_eq!(d.context, Context::Cluster, "{}", d.name);
        assert_eq!(d.multi, d.name == "node", "{}", d.name);
        assert!(
            CLUSTER_DIRECTIVES[..i].iter().all(|o| o.name != d.name),
            "{} twice",
            d.name
        );
        // One name means one thing wherever it is written.
        assert!(DIRECTIVES.iter().all(|o| o.name != d.name), "{}", d.name);
        assert_ne!(d.name, NAME);
    }
    for required in REQUIRED {
        let d = CLUSTER_DIRECTIVES.iter().find(|d| d.name == required);
        assert!(d.is_some_and(|d| d.default.is_empty()), "{required}");
    }
}

#[test]
fn the_secret_is_trimmed_and_never_shown() {
    let dir = TempDir::new("trim");
    let secret = dir.file("s", "  sixteen bytes!!\t\r\n \n", 0o640);
    let c = cluster(&edited(&secret, &[]));
    assert_eq!(c.secret.bytes(), b"  sixteen bytes!!");
    let shown = format!("{c:?}");
    assert!(!shown.contains("sixteen"), "{shown}");
    assert!(shown.contains("Secret(17 bytes)"), "{shown}");
    // Relative to the conf's folder, like every path.
    let conf = dir.0.join("huststore.conf");
    fs::write(&conf, edited(Path::new("s"), &[])).unwrap();
    let c = load(&conf).unwrap().cluster.unwrap();
    assert_eq!(c.secret_path, secret);
}

/// Every check of the block, each with its exact message.
#[test]
fn every_check_has_its_exact_message() {
    let dir = TempDir::new("checks");
    let s = dir.secret();
    let d = dir.0.display().to_string();
    let cases: Vec<(String, String)> = vec![
        // The table's generic checks, inside the block.
        (
            edited(&s, &[("groups", "    nodes 3;")]),
            format!("{FILE}:8: unknown directive \"nodes\""),
        ),
        (
            edited(&s, &[("node n2", "    node n2 10.0.0.2:8082;")]),
            format!("{FILE}:6: invalid number of arguments in \"node\" directive"),
        ),
        (
            edited(&s, &[("groups", "    name prod;")]),
            format!("{FILE}:8: \"name\" directive is duplicate"),
        ),
        // Directives in the wrong place.
        (
            edited(&s, &[("groups", "    listen 9000;")]),
            format!("{FILE}:8: \"listen\" directive is not allowed here"),
        ),
        (
            edited(&s, &[("listen", "node_id n1;")]),
            format!("{FILE}:1: \"node_id\" directive is not allowed here"),
        ),
        (
            edited(&s, &[("groups", "    cluster {")]),
            format!("{FILE}:8: \"cluster\" directive is not allowed here"),
        ),
        (
            edited(&s, &[("groups", "    cluster;")]),
            format!("{FILE}:8: \"cluster\" directive is not allowed here"),
        ),
        // How the block opens and closes.
        (
            "daemon off;\ncluster;\n".into(),
            format!("{FILE}:2: \"cluster\" directive has no opening \"{{\""),
        ),
        (
            "cluster prod {\n}\n".into(),
            format!("{FILE}:1: invalid number of arguments in \"cluster\" directive"),
        ),
        (
            format!("{}cluster {{\n}}\n", edited(&s, &[])),
            format!("{FILE}:15: \"cluster\" directive is duplicate"),
        ),
        (
            edited(&s, &[("}", "")]),
            format!("{FILE}:2: unexpected end of file, expecting \"}}\" to close \"cluster\""),
        ),
        (
            edited(&s, &[("reads", "    reads local")]),
            format!("{FILE}:14: unexpected \"}}\""),
        ),
        (
            format!("{}}}\n", edited(&s, &[])),
            format!("{FILE}:15: unexpected \"}}\""),
        ),
        (
            edited(&s, &[("groups", "    node {")]),
            format!("{FILE}:8: unexpected \"{{\""),
        ),
        (
            "daemon off {\n}\n".into(),
            format!("{FILE}:1: unexpected \"{{\""),
        ),
        // Required directives.
        (
            edited(&s, &[("name", "")]),
            format!("{FILE}:2: no \"name\" directive in the \"cluster\" block"),
        ),
        (
            edited(&s, &[("node_id", "")]),
            format!("{FILE}:2: no \"node_id\" directive in the \"cluster\" block"),
        ),
        (
            edited(&s, &[("node ", "")]),
            format!("{FILE}:2: no \"node\" directive in the \"cluster\" block"),
        ),
        (
            edited(&s, &[("secret", "")]),
            format!("{FILE}:2: no \"secret\" directive in the \"cluster\" block"),
        ),
        // node_id, names and addresses.
        (
            edited(&s, &[("node_id", "    node_id n4;")]),
            format!("{FILE}:4: \"node_id\" \"n4\" is not the name of a \"node\" line"),
        ),
        (
            edited(
                &s,
                &[("node n3", "    node n1 10.0.0.3:8082 10.0.0.3:9082;")],
            ),
            format!("{FILE}:7: duplicate node name \"n1\" in \"node\""),
        ),
        (
            edited(
                &s,
                &[("node n3", "    node n3 10.0.0.2:8082 10.0.0.3:9082;")],
            ),
            format!("{FILE}:7: duplicate address \"10.0.0.2:8082\" in \"node\""),
        ),
        (
            edited(
                &s,
                &[("node n3", "    node n3 10.0.0.3:8082 10.0.0.2:8082;")],
            ),
            format!("{FILE}:7: duplicate address \"10.0.0.2:8082\" in \"node\""),
        ),
        (
            edited(
                &s,
                &[("node n3", "    node n3 10.0.0.2:9082 10.0.0.3:9082;")],
            ),
            format!("{FILE}:7: duplicate address \"10.0.0.2:9082\" in \"node\""),
        ),
        (
            edited(
                &s,
                &[("node n3", "    node n3 10.0.0.3:8082 10.0.0.3:8082;")],
            ),
            format!("{FILE}:7: duplicate address \"10.0.0.3:8082\" in \"node\""),
        ),
        (
            edited(
                &s,
                &[("node n3", "    node n3\n 10.0.0.3:8082 10.0.0.2:9082;")],
            ),
            format!("{FILE}:8: duplicate address \"10.0.0.2:9082\" in \"node\""),
        ),
        // Placement numbers.
        (
            edited(&s, &[("replicas", "    replicas 4;")]),
            format!(
                "{FILE}:9: invalid value \"4\" in \"replicas\" \
                 (expected at most the number of nodes, 3)"
            ),
        ),
        (
            edited(&s, &[("replicas", "    replicas 0;")]),
            format!(
                "{FILE}:9: invalid value \"0\" in \"replicas\" (expected a number of at least 1)"
            ),
        ),
        (
            edited(&s, &[("groups", "    groups 0;")]),
            format!(
                "{FILE}:8: invalid value \"0\" in \"groups\" (expected a number from 1 to 1024)"
            ),
        ),
        (
            edited(&s, &[("groups", "    groups 1025;")]),
            format!(
                "{FILE}:8: invalid value \"1025\" in \"groups\" (expected a number from 1 to 1024)"
            ),
        ),
        // The secret file.
        (
            edited(&dir.0.join("none"), &[]),
            format!(
                "{FILE}:10: could not read the secret file \"{d}/none\": No such file or directory"
            ),
        ),
        (
            edited(&dir.0, &[]),
            format!("{FILE}:10: could not read the secret file \"{d}\": not a regular file"),
        ),
        (
            edited(&dir.file("open", "0123456789abcdef", 0o644), &[]),
            format!(
                "{FILE}:10: the secret file \"{d}/open\" is readable by everyone (mode 0644): \
                 run chmod o-r on it"
            ),
        ),
        (
            edited(&dir.file("short", "0123456789abcde \n\t\n", 0o600), &[]),
            format!(
                "{FILE}:10: the secret file \"{d}/short\" holds 15 bytes, at least 16 are needed \
                 (trailing white space does not count)"
            ),
        ),
        (
            edited(&dir.file("huge", &"x".repeat(65 << 10), 0o600), &[]),
            format!("{FILE}:10: could not read the secret file \"{d}/huge\": larger than 64 KiB"),
        ),
        // This node's client address and listen.
        (
            edited(&s, &[("listen", "listen 127.0.0.1:9000;")]),
            format!(
                "{FILE}:5: the client address \"127.0.0.1:8082\" of this node (\"n1\") \
                 is not a \"listen\" address"
            ),
        ),
        (
            edited(&s, &[("listen", "listen [::]:8082;")]),
            format!(
                "{FILE}:5: the client address \"127.0.0.1:8082\" of this node (\"n1\") \
                 is not a \"listen\" address"
            ),
        ),
        (
            format!("{}listen 8083;\n", edited(&s, &[("listen", "")])),
            format!(
                "{FILE}:5: the client address \"127.0.0.1:8082\" of this node (\"n1\") \
                 is not a \"listen\" address"
            ),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(err(&text), want, "\n{text}");
    }
}

#[test]
fn a_wildcard_or_later_listen_covers_this_node() {
    let dir = TempDir::new("listen");
    let s = dir.secret();
    for listen in ["*:8082", "8082", "127.0.0.1:8082"] {
        let text = format!("{}listen {listen};\n", edited(&s, &[("listen", "")]));
        assert_eq!(cluster(&text).this, 0, "{listen}");
    }
    // No listen line: the default 127.0.0.1:8082 is n1's client address.
    cluster(&edited(&s, &[("listen", "")]));
    let v6 = edited(
        &s,
        &[
            ("listen", "listen [::]:8082;"),
            ("node n1", "    node n1 [::1]:8082 [::1]:9082;"),
        ],
    );
    assert_eq!(cluster(&v6).this_node().client_text, "[::1]:8082");
}

#[test]
fn every_directive_rejects_bad_values() {
    let dir = TempDir::new("values");
    let s = dir.secret();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "name",
            "    name",
            &["\"\"", "\"a b\"", "pr/od", "é", &"x".repeat(65)],
        ),
        ("node_id", "    node_id", &["\"\"", "\"n;1\""]),
        (
            "node n2",
            "    node n2 10.0.0.2:8082",
            &[
                "*:9082",
                "9082",
                "0.0.0.0:9082",
                "[::]:9082",
                "x:1",
                "10.0.0.2:0",
                "10.0.0.2",
            ],
        ),
        ("node n3", "    node", &["\"n 3\" 10.0.0.3:1 10.0.0.3:2"]),
        ("groups", "    groups", &["x", "-1", "16k"]),
        ("replicas", "    replicas", &["three", "0"]),
        ("secret", "    secret", &["\"\""]),
        ("timeout", "    timeout", &["0", "0ms", "x"]),
        (
            "election_timeout",
            "    election_timeout",
            &["0", "9ms", "1x"],
        ),
        ("reads", "    reads", &["stale", "Local", "\"\""]),
    ];
    for d in CLUSTER_DIRECTIVES {
        assert!(
            cases.iter().any(|(key, _, _)| key.starts_with(d.name)),
            "no bad values tested for {}",
            d.name
        );
    }
    for (key, head, values) in cases {
        for value in *values {
            let line = format!("{head} {value};");
            let text = edited(&s, &[(key, &line)]);
            let msg = err(&text);
            let name = head.split_whitespace().next().unwrap();
            assert!(msg.contains(": invalid value \""), "{line}: {msg}");
            assert!(
                msg.contains(&format!("\" in \"{name}\" (expected ")),
                "{line}: {msg}"
            );
        }
    }
}

#[test]
fn garbage_blocks_never_panic_and_errors_stay_one_line() {
    let dir = TempDir::new("garbage");
    let s = dir.secret().display().to_string();
    let pieces = [
        "cluster",
        "{",
        "}",
        ";",
        ";",
        "name",
        "node_id",
        "node",
        "n1",
        "n2",
        "secret",
        &s,
        "replicas",
        "groups",
        "3",
        "0",
        "127.0.0.1:8082",
        "10.0.0.2:9082",
        "[::1]:1",
        "*:1",
        "timeout",
        "reads",
        "local",
        "listen",
        "8082",
        "\n",
        " ",
        "\"",
        "#",
    ];
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..20000 {
        let n = (rng.next() % 16) as usize;
        let mut text = String::new();
        for _ in 0..n {
            text.push_str(pieces[(rng.next() % pieces.len() as u64) as usize]);
            text.push(' ');
        }
        if let Err(e) = parse(&text) {
            let msg = e.to_string();
            assert!(!msg.contains('\n') && !msg.contains('\r'), "{msg:?}");
        }
    }
}
