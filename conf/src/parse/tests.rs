use super::values::{parse_listen, parse_size, parse_time};
use super::*;
use crate::{Listen, LogLevel, LogTarget, Mode, MqConf, WorkerCount};
use std::path::PathBuf;
use std::time::Duration;

const FILE: &str = "/etc/huststore/huststore.conf";

fn parse(text: &str) -> Result<Conf, ConfError> {
    parse_str(text, Path::new(FILE))
}

fn ok(text: &str) -> Conf {
    match parse(text) {
        Ok(conf) => conf,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

/// The error's one-line message.
fn err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("{text:?} should not parse"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "not one line: {msg:?}");
            msg
        }
    }
}

fn defaults() -> Conf {
    Conf::defaults(PathBuf::from(FILE))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn empty_and_comment_only_files_give_the_defaults() {
    assert_eq!(ok(""), defaults());
    assert_eq!(
        ok("# nothing\n\n   \t\r\n# more # comments ; { }\n"),
        defaults()
    );
}

#[test]
fn every_default_in_the_table_is_the_default_of_conf() {
    for d in DIRECTIVES {
        if d.default.is_empty() {
            continue;
        }
        let text = format!("{} {};", d.name, d.default);
        assert_eq!(ok(&text), defaults(), "{text}");
    }
}

#[test]
fn the_table_is_sane() {
    for (i, d) in DIRECTIVES.iter().enumerate() {
        assert!(d.min_args >= 1 && d.min_args <= d.max_args, "{}", d.name);
        assert!(!d.help.is_empty() && !d.help.contains('\n'), "{}", d.name);
        assert!(!d.syntax.is_empty(), "{}", d.name);
        assert!(
            DIRECTIVES[..i].iter().all(|o| o.name != d.name),
            "{} twice",
            d.name
        );
        assert_eq!(d.multi, d.name == "listen", "{}", d.name);
    }
}

#[test]
fn every_directive_parses_a_good_value() {
    let c = ok("
        daemon off;
        mode mq;
        worker_processes 4;
        user huststore;
        pid /run/x/x.pid;
        error_log /var/log/x/error.log info;
        access_log /var/log/x/access.log;
        listen 127.0.0.1:9000;
        data_dir /srv/data;
        map_size 1g;
        worker_connections 100;
        worker_rlimit_nofile 65536;
        keepalive_timeout 5s;
        client_max_body_size 1k;
        shutdown_timeout 0;
        client_header_timeout 1500ms;
        sync_writes off;
        sync_interval 2m;
        cache_size 16m;
        auth_basic_user_file /etc/huststore/htpasswd;
        debug_endpoints on;
        long_polling_timeout 1s;
        subscribe_timeout 2s;
        do_get_timeout 3s;
        do_post_timeout 4s;
        do_get_cache_size 10;
        do_post_cache_size 11;
        max_do_task_body_size 1m;
        max_queue_size 12;
        max_timer_count 13;
        mq_redelivery_timeout 255;
        mq_ttl_maximum 1h;
        mq_timeout_unit 100ms;
    ");
    let want = Conf {
        path: PathBuf::from(FILE),
        daemon: false,
        mode: Mode::Mq,
        worker_processes: WorkerCount::Fixed(4),
        user: "huststore".into(),
        pid: "/run/x/x.pid".into(),
        error_log: LogTarget::File("/var/log/x/error.log".into()),
        error_log_level: LogLevel::Info,
        access_log: Some("/var/log/x/access.log".into()),
        listen: vec![Listen {
            addr: "127.0.0.1:9000".parse().unwrap(),
            text: "127.0.0.1:9000".into(),
        }],
        data_dir: "/srv/data".into(),
        map_size: 1 << 30,
        worker_connections: 100,
        worker_rlimit_nofile: Some(65536),
        keepalive_timeout: secs(5),
        client_max_body_size: 1024,
        shutdown_timeout: Duration::ZERO,
        client_header_timeout: Duration::from_millis(1500),
        sync_writes: false,
        sync_interval: secs(120),
        cache_size: 16 << 20,
        auth_basic_user_file: Some("/etc/huststore/htpasswd".into()),
        debug_endpoints: true,
        debug_fail_flush: 0,
        debug_fail_checkpoint: 0,
        mq: MqConf {
            long_polling_timeout: secs(1),
            subscribe_timeout: secs(2),
            do_get_timeout: secs(3),
            do_post_timeout: secs(4),
            do_get_cache_size: 10,
            do_post_cache_size: 11,
            max_do_task_body_size: 1 << 20,
            max_queue_size: 12,
            max_timer_count: 13,
            mq_redelivery_timeout: 255,
            mq_ttl_maximum: secs(3600),
            mq_timeout_unit: Duration::from_millis(100),
        },
        cluster: None,
    };
    assert_eq!(c, want);
}

#[test]
fn every_directive_rejects_bad_values() {
    let cases: &[(&str, &[&str])] = &[
        ("daemon", &["yes", "ON", "1", "\"\""]),
        ("mode", &["KV", "redis", "\"\""]),
        (
            "worker_processes",
            &["0", "1025", "-1", "+2", "2x", "AUTO", "1.5"],
        ),
        ("user", &["\"\"", "\"a\tb\""]),
        ("pid", &["\"\""]),
        (
            "error_log",
            &["\"\"", "stderr loud", "stderr NOTICE", "/x warning"],
        ),
        ("access_log", &["\"\""]),
        (
            "listen",
            &[
                "127.0.0.1",
                "127.0.0.1:0",
                "1.2.3.4:65536",
                "example.com:80",
                "::1:80",
            ],
        ),
        ("data_dir", &["\"\""]),
        (
            "map_size",
            &[
                "abc",
                "1023k",
                "0",
                "1t",
                "1.5g",
                "-1m",
                "64mb",
                "99999999999g",
            ],
        ),
        ("worker_connections", &["0", "-1", "1k", "9999999"]),
        ("worker_rlimit_nofile", &["0", "x", "99999999999"]),
        (
            "keepalive_timeout",
            &["abc", "-1s", "1S", "1.5s", "1y", "99999999999999d"],
        ),
        ("client_max_body_size", &["0", "k", "\"1 k\""]),
        ("shutdown_timeout", &["10x", "s", "ms"]),
        ("client_header_timeout", &["0", "0s", "0ms", "x"]),
        ("sync_writes", &["true", "yes"]),
        ("sync_interval", &["0", "0ms", "1w"]),
        ("cache_size", &["1k", "0", "big"]),
        ("auth_basic_user_file", &["\"\"", "\"a\\\\\0b\""]),
        ("debug_endpoints", &["1", "enabled"]),
        // Without `debug_endpoints on` before it, only 0 is accepted.
        ("debug_fail_flush", &["x", "-1", "1"]),
        ("debug_fail_checkpoint", &["1k", "3"]),
        ("long_polling_timeout", &["0", "x"]),
        ("subscribe_timeout", &["0s", "1x"]),
        ("do_get_timeout", &["0", "-5"]),
        ("do_post_timeout", &["0ms", "\"5 s\""]),
        (
            "do_get_cache_size",
            &["0", "1k", "-1", "+1", "10x", "99999999999999999999999"],
        ),
        ("do_post_cache_size", &["0", "1_000", "0x10"]),
        ("max_do_task_body_size", &["0", "\"8 m\""]),
        ("max_queue_size", &["0", "1e3", "\" 5\""]),
        ("max_timer_count", &["0", "many"]),
        ("mq_redelivery_timeout", &["0", "256", "5m", "1000"]),
        ("mq_ttl_maximum", &["0", "999ms", "x"]),
        ("mq_timeout_unit", &["0", "0s", "1q"]),
    ];
    for d in DIRECTIVES {
        assert!(
            cases.iter().any(|(n, _)| *n == d.name),
            "no bad values tested for {}",
            d.name
        );
    }
    for (name, values) in cases {
        for value in *values {
            // On line 2, so the test sees the line number is not just 1.
            let text = format!("# line 1\n{name} {value};\n");
            let msg = err(&text);
            let prefix = format!("{FILE}:2: invalid value \"");
            assert!(msg.starts_with(&prefix), "{text:?}: {msg}");
            assert!(
                msg.contains(&format!("\" in \"{name}\" (expected ")),
                "{text:?}: {msg}"
            );
        }
    }
}

#[test]
fn fault_switches_need_debug_endpoints_before_them() {
    if !cfg!(debug_assertions) {
        // A release build refuses the fault switches whatever comes before them.
        let switched = "debug_endpoints on;\ndebug_fail_flush 3;";
        assert!(err(switched).contains("release build"));
        return;
    }
    let c = ok("debug_endpoints on;\ndebug_fail_flush 3;\ndebug_fail_checkpoint 2;");
    assert_eq!((c.debug_fail_flush, c.debug_fail_checkpoint), (3, 2));
    assert!(err("debug_fail_flush 3;\ndebug_endpoints on;").contains("debug_endpoints on"));
    assert_eq!(ok("debug_fail_checkpoint 0;").debug_fail_checkpoint, 0);
}

#[test]
fn error_messages_are_exact() {
    assert_eq!(
        err("daemon off;\nlisen 8082;"),
        format!("{FILE}:2: unknown directive \"lisen\"")
    );
    assert_eq!(
        err("\n\nmap_size abc;"),
        format!("{FILE}:3: invalid value \"abc\" in \"map_size\" (expected a size like 64m)")
    );
    assert_eq!(
        err("map_size 1k;"),
        format!("{FILE}:1: invalid value \"1k\" in \"map_size\" (expected a size of at least 1m)")
    );
    assert_eq!(
        err("daemon on;\n\n\n\n\n\ndaemon off;"),
        format!("{FILE}:7: \"daemon\" directive is duplicate")
    );
    assert_eq!(
        err("daemon on;\n#\n#\n#\n#\n#\n#\n#\nmode kv"),
        format!("{FILE}:9: unexpected end of file, expecting \";\"")
    );
    assert_eq!(
        err("daemon;"),
        format!("{FILE}:1: invalid number of arguments in \"daemon\" directive")
    );
    assert_eq!(
        err("error_log a b c;"),
        format!("{FILE}:1: invalid number of arguments in \"error_log\" directive")
    );
    assert_eq!(
        err("daemon off\nmode kv;"),
        format!("{FILE}:1: \"daemon\" directive is not terminated by \";\"")
    );
    assert_eq!(
        err("listen 8082;\nlisten *:8082;"),
        format!("{FILE}:2: duplicate address \"*:8082\" in \"listen\"")
    );
    assert_eq!(err("events {"), format!("{FILE}:1: unexpected \"{{\""));
    assert_eq!(err("daemon on; }"), format!("{FILE}:1: unexpected \"}}\""));
    assert_eq!(err("daemon on;\n;"), format!("{FILE}:2: unexpected \";\""));
    assert_eq!(
        err("worker_processes 0;"),
        format!(
            "{FILE}:1: invalid value \"0\" in \"worker_processes\" \
             (expected a number from 1 to 1024 or auto)"
        )
    );
}

#[test]
fn error_lines_point_at_the_bad_word() {
    // A statement over several lines: the bad value's own line is named.
    assert!(err("error_log\n  stderr\n  loud;").starts_with(&format!("{FILE}:3: ")));
    assert!(err("\n\nmode\n mq\n extra;").starts_with(&format!("{FILE}:3: invalid number")));
    let e = parse("a;").err().unwrap();
    assert_eq!(e.line(), Some(1));
}

#[test]
fn messages_quote_hostile_values_on_one_line() {
    let msg = err("mode \"a\nb\\\"c\";");
    assert!(
        msg.ends_with("invalid value \"a\\nb\\\"c\" in \"mode\" (expected kv or mq)"),
        "{msg}"
    );
    let long = "x".repeat(1000);
    let msg = err(&format!("{long};"));
    assert!(msg.len() < 200 && msg.ends_with("...\""), "{msg}");
}

#[test]
fn sizes() {
    for (text, want) in [
        ("1048576", 1u64 << 20),
        ("1024k", 1 << 20),
        ("1024K", 1 << 20),
        ("64m", 64 << 20),
        ("64M", 64 << 20),
        ("2g", 2 << 30),
        ("2G", 2 << 30),
        ("64g", 64 << 30),
    ] {
        assert_eq!(ok(&format!("map_size {text};")).map_size, want, "{text}");
    }
    assert_eq!(ok("client_max_body_size 1;").client_max_body_size, 1);
    assert_eq!(ok("client_max_body_size 1k;").client_max_body_size, 1024);
    for bad in [
        "",
        "k",
        "m",
        "1kk",
        "1b",
        "1 m",
        "+1m",
        "1.0m",
        "18446744073709551616",
    ] {
        assert_eq!(parse_size(bad), None, "{bad:?}");
    }
    assert_eq!(parse_size("18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_size("17179869184g"), None);
}

#[test]
fn times() {
    for (text, want) in [
        ("1500ms", Duration::from_millis(1500)),
        ("30", secs(30)),
        ("30s", secs(30)),
        ("2m", secs(120)),
        ("1h", secs(3600)),
        ("1d", secs(86400)),
        ("0", Duration::ZERO),
        ("2147483647", secs(2147483647)),
    ] {
        assert_eq!(parse_time(text), Some(want), "{text}");
    }
    assert_eq!(ok("keepalive_timeout 2m;").keepalive_timeout, secs(120));
    assert_eq!(
        ok("client_header_timeout 1500ms;").client_header_timeout,
        Duration::from_millis(1500)
    );
    for bad in [
        "",
        "s",
        "ms",
        "1M",
        "1S",
        "1H",
        "1sec",
        "1 s",
        "-1",
        "1.5",
        "1y",
        "1w",
        "2147483648",
        "24856d",
        "1mss",
    ] {
        assert_eq!(parse_time(bad), None, "{bad:?}");
    }
}

#[test]
fn listen_forms() {
    let forms = [
        ("127.0.0.1:8082", "127.0.0.1:8082"),
        ("[::1]:8082", "[::1]:8082"),
        ("[::]:80", "[::]:80"),
        ("0.0.0.0:80", "0.0.0.0:80"),
        ("*:8082", "0.0.0.0:8082"),
        ("localhost:8082", "127.0.0.1:8082"),
        ("8082", "0.0.0.0:8082"),
        ("10.1.2.3:65535", "10.1.2.3:65535"),
    ];
    for (text, addr) in forms {
        let c = ok(&format!("listen {text};"));
        assert_eq!(
            c.listen,
            vec![Listen {
                addr: addr.parse().unwrap(),
                text: text.to_string()
            }],
            "{text}"
        );
    }
    for bad in [
        "",
        "127.0.0.1",
        "[::1]",
        "::1",
        "::1:80",
        "[::1]:",
        "[::1]80",
        "*",
        "*:",
        ":80",
        "x:80",
        "1.2.3:80",
        "1.2.3.4:80:80",
        "1.2.3.4:0",
        "0",
        "65536",
        "1.2.3.4:+80",
        "[1.2.3.4]:80",
        "[::1]:80x",
        "01.2.3.4:80",
    ] {
        assert_eq!(parse_listen(bad), None, "{bad:?}");
    }
}

#[test]
fn listen_lines_replace_the_default_and_keep_their_order() {
    let c = ok("listen 8082;\nlisten [::1]:8082;\nlisten 127.0.0.1:9000;");
    let texts: Vec<&str> = c.listen.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["8082", "[::1]:8082", "127.0.0.1:9000"]);
    // The default address given explicitly is not a duplicate of the default.
    let c = ok("listen 127.0.0.1:8082;");
    assert_eq!(c.listen.len(), 1);
    assert!(err("listen 127.0.0.1:80;\nlisten localhost:80;").contains(":2: duplicate address"));
    assert!(err("listen 0.0.0.0:80;\nlisten 80;").contains(":2: duplicate address \"80\""));
    // Other directives in between do not reset the list.
    let c = ok("listen 1;\ndaemon off;\nlisten 2;");
    assert_eq!(c.listen.len(), 2);
}

#[test]
fn relative_paths_are_relative_to_the_conf_folder() {
    let c = ok("
        pid run/x.pid;
        error_log ./logs/./error.log;
        access_log ../run//access.log;
        data_dir data/;
        auth_basic_user_file /abs/./htpasswd;
    ");
    assert_eq!(c.pid, PathBuf::from("/etc/huststore/run/x.pid"));
    assert_eq!(
        c.error_log,
        LogTarget::File("/etc/huststore/logs/error.log".into())
    );
    assert_eq!(
        c.access_log,
        Some(PathBuf::from("/etc/huststore/../run/access.log"))
    );
    assert_eq!(c.data_dir, PathBuf::from("/etc/huststore/data"));
    assert_eq!(c.auth_basic_user_file, Some("/abs/htpasswd".into()));
    assert_eq!(ok("error_log stderr;").error_log, LogTarget::Stderr);
    assert_eq!(
        ok("error_log \"stderr\" debug;").error_log_level,
        LogLevel::Debug
    );
    assert_eq!(ok("access_log off;").access_log, None);
}

#[test]
fn a_relative_conf_path_is_made_absolute_against_the_cwd() {
    let c = match parse_str("pid x.pid;", Path::new("conf/huststore.conf")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(c.path, cwd.join("conf/huststore.conf"));
    assert_eq!(c.pid, cwd.join("conf/x.pid"));
    // Messages name the file as it was given.
    let e = parse_str("lisen 1;", Path::new("conf/huststore.conf"))
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "conf/huststore.conf:1: unknown directive \"lisen\""
    );
}

#[test]
fn quoting() {
    assert_eq!(
        ok("pid \"/tmp/a b.pid\";").pid,
        PathBuf::from("/tmp/a b.pid")
    );
    assert_eq!(ok("pid '/tmp/a b.pid';").pid, PathBuf::from("/tmp/a b.pid"));
    assert_eq!(ok("pid \"/tmp/a;b{}\";").pid, PathBuf::from("/tmp/a;b{}"));
    assert_eq!(ok("pid \"/tmp/#a\";").pid, PathBuf::from("/tmp/#a"));
    assert_eq!(
        ok(r#"user "a\"b\\c\'d\n";"#).user,
        "a\"b\\c'd\\n".to_string()
    );
    assert_eq!(ok(r#"user 'it\'s';"#).user, "it's");
    assert_eq!(ok(r#"user "it's";"#).user, "it's");
    // A multi-line quoted value counts its lines.
    assert!(err("pid \"a\nb\"; mode x;").starts_with(&format!("{FILE}:2: ")));
    // Quoted names and values work like bare ones.
    assert!(!ok("\"daemon\" 'off';").daemon);
    assert_eq!(ok("listen \"[::1]:8082\";").listen[0].text, "[::1]:8082");
    // Quotes inside a word are plain characters.
    assert_eq!(ok("user a\"b;").user, "a\"b");
    assert_eq!(
        err("daemon on;\nuser \"abc;"),
        format!("{FILE}:2: unexpected end of file, expecting '\"'")
    );
    assert_eq!(
        err("user 'abc;"),
        format!("{FILE}:1: unexpected end of file, expecting \"'\"")
    );
    assert_eq!(
        err("user \"abc\"def;"),
        format!("{FILE}:1: unexpected \"d\"")
    );
    assert!(ok("user \"abc\";").user == "abc");
    assert!(ok("user \"abc\"\n;").user == "abc");
}

#[test]
fn comments_and_layout() {
    let c = ok("# a comment ; daemon on;\n\
        daemon off; # trailing comment\n\
        mode\n  mq\n  ;\n\
        \tuser\tx;access_log y2#notacomment;# comment right after ;\r\n");
    assert!(!c.daemon);
    assert_eq!(c.mode, Mode::Mq);
    assert_eq!(c.user, "x");
    assert_eq!(c.access_log, Some("/etc/huststore/y2#notacomment".into()));
    // `user` given twice on one line: the second is a duplicate.
    assert!(err("user a; user b;").contains("\"user\" directive is duplicate"));
    let c = ok("pid /tmp/a#b;");
    assert_eq!(c.pid, PathBuf::from("/tmp/a#b"));
    // A comment does not end a statement.
    assert!(!ok("daemon # the value follows\n off;").daemon);
    assert!(err("daemon off # no semicolon").contains("expecting \";\""));
}

#[test]
fn duplicates_are_errors_for_everything_but_listen() {
    for d in DIRECTIVES
        .iter()
        .filter(|d| !d.multi && !d.default.is_empty())
    {
        let text = format!("{} {};\n{} {};", d.name, d.default, d.name, d.default);
        assert_eq!(
            err(&text),
            format!("{FILE}:2: \"{}\" directive is duplicate", d.name)
        );
    }
    assert!(err("auth_basic_user_file a;\nauth_basic_user_file a;").contains("duplicate"));
}

#[test]
fn load_reads_files_and_reports_open_errors() {
    let e = load(Path::new("/nonexistent/huststore.conf"))
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "could not open conf /nonexistent/huststore.conf: No such file or directory"
    );
    let e = load(Path::new("/")).err().unwrap();
    assert_eq!(e.to_string(), "could not open conf /: Is a directory");

    let dir = std::env::temp_dir().join(format!("conf-test-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.conf");
    std::fs::write(&good, "daemon off;\npid x.pid;\n").unwrap();
    let c = load(&good).unwrap();
    assert_eq!(c.path, good);
    assert_eq!(c.pid, dir.join("x.pid"));
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, b"daemon off;\n# caf\xe9\n").unwrap();
    assert_eq!(
        load(&bad).err().unwrap().to_string(),
        format!("{}:2: invalid UTF-8", bad.display())
    );
    let wrong = dir.join("wrong.conf");
    std::fs::write(&wrong, "daemon off;\nlisen 80;\n").unwrap();
    assert_eq!(
        load(&wrong).err().unwrap().to_string(),
        format!("{}:2: unknown directive \"lisen\"", wrong.display())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// xorshift64*: a fixed, dependency-free stream of pseudo-random numbers.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn garbage_never_panics_and_errors_stay_one_line() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let check = |text: &str| {
        if let Err(e) = parse(text) {
            let msg = e.to_string();
            assert!(!msg.contains('\n') && !msg.contains('\r'), "{msg:?}");
        }
    };
    // Random bytes.
    for _ in 0..3000 {
        let len = (rng.next() % 200) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check(&String::from_utf8_lossy(&bytes));
    }
    // Random statements built from conf-like pieces, so the parser gets past the first word.
    let pieces = [
        "daemon",
        "listen",
        "map_size",
        "error_log",
        "pid",
        "user",
        "mode",
        "mq_ttl_maximum",
        "worker_processes",
        "on",
        "off",
        "auto",
        "64m",
        "1500ms",
        "99999999999999999999g",
        "[::1]:80",
        "*:8082",
        "8082",
        ";",
        ";",
        "{",
        "}",
        "#",
        "\"",
        "'",
        "\\",
        "\n",
        " ",
        "\t",
        "stderr",
        "debug",
        "../x",
        "",
        "\u{0}",
        "é",
        "\u{202e}",
    ];
    for _ in 0..20000 {
        let n = (rng.next() % 12) as usize;
        let mut text = String::new();
        for _ in 0..n {
            text.push_str(pieces[(rng.next() % pieces.len() as u64) as usize]);
            if rng.next() & 1 == 0 {
                text.push(' ');
            }
        }
        check(&text);
    }
}

#[test]
fn the_shipped_confs_parse() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/huststore.conf"));
    let c = match load(path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let conf_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = conf_dir.join("../run");
    assert!(!c.daemon);
    assert_eq!(c.mode, Mode::Kv);
    assert_eq!(c.worker_processes, WorkerCount::Auto);
    assert_eq!(c.listen[0].addr, "127.0.0.1:8082".parse().unwrap());
    assert_eq!(c.listen.len(), 1);
    assert_eq!(c.pid, run.join("huststore.pid"));
    assert_eq!(c.error_log, LogTarget::File(run.join("error.log")));
    assert_eq!(c.error_log_level, LogLevel::Notice);
    assert_eq!(c.data_dir, run.join("data"));
    assert_eq!(c.auth_basic_user_file, None);
    assert!(!c.debug_endpoints);

    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hustmq.conf"));
    let m = match load(path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(m.mode, Mode::Mq);
    assert_eq!(m.worker_count(), 1);
    assert_eq!(m.listen[0].addr, "127.0.0.1:8083".parse().unwrap());
    assert_eq!(m.pid, run.join("hustmq.pid"));
    assert_eq!(m.error_log, LogTarget::File(run.join("hustmq-error.log")));
    assert_eq!(m.data_dir, run.join("mq-data"));
    assert_eq!(m.mq, MqConf::default());
}

/// The directives the shipped confs list commented out are the defaults: uncommenting them
/// changes nothing.
#[test]
fn the_shipped_confs_comment_out_the_defaults() {
    for text in [
        include_str!("../../huststore.conf"),
        include_str!("../../hustmq.conf"),
    ] {
        let mut uncommented = String::new();
        let mut count = 0;
        for line in text.lines() {
            let rest = line.strip_prefix('#').unwrap_or("");
            let name = rest.split_whitespace().next().unwrap_or("");
            // A directive without a default (an optional file or limit) is shown with an example.
            if DIRECTIVES
                .iter()
                .any(|d| d.name == name && !d.default.is_empty())
            {
                uncommented.push_str(rest);
                count += 1;
            } else {
                uncommented.push_str(line);
            }
            uncommented.push('\n');
        }
        assert!(count >= 5);
        let before = parse_str(text, Path::new(FILE)).unwrap();
        let after = match parse_str(&uncommented, Path::new(FILE)) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(before, after);
    }
    // Between them they mention every directive.
    let both = format!(
        "{}{}",
        include_str!("../../huststore.conf"),
        include_str!("../../hustmq.conf")
    );
    for d in DIRECTIVES {
        assert!(both.contains(&format!("{} ", d.name)), "{}", d.name);
    }
}

#[test]
fn the_man_page_describes_every_directive() {
    let man = include_str!("../../../man/huststore.conf.5");
    the_man_page_describes(man, DIRECTIVES);
    // The block's own directives are described in its section, after the block itself.
    let cluster = &man[man.find("\n.SH CLUSTER\n").expect("a CLUSTER section")..];
    let cluster = &cluster[..cluster.find("\n.SH EXAMPLES\n").unwrap_or(cluster.len())];
    assert!(
        cluster.contains("\n.SS cluster\n"),
        "the CLUSTER section lacks .SS cluster"
    );
    the_man_page_describes(cluster, CLUSTER_DIRECTIVES);
}

/// Each directive of `table` has its `.SS` heading in `man`, with its default and context.
fn the_man_page_describes<T>(man: &str, table: &[Directive<T>]) {
    for d in table {
        let heading = format!("\n.SS {}\n", d.name);
        assert!(
            man.contains(&heading),
            "man/huststore.conf.5 lacks {heading:?}"
        );
        // The section's default line agrees with the table.
        let section = &man[man.find(&heading).unwrap() + heading.len()..];
        let section = &section[..section.find("\n.SS ").unwrap_or(section.len())];
        let default = if d.default.is_empty() {
            "Default: none".to_string()
        } else {
            format!("Default: \\fB{}\\fR", d.default.replace('-', "\\-"))
        };
        assert!(
            section.contains(&default),
            "{}: man page lacks {default:?}",
            d.name
        );
        assert!(
            section.contains(&format!("Context: {}", d.context.name())),
            "{}: man page context is not {}",
            d.name,
            d.context.name()
        );
    }
}

#[test]
fn log_levels_round_trip() {
    for level in LogLevel::ALL {
        assert_eq!(LogLevel::from_name(level.name()), Some(level));
        assert_eq!(level.to_string(), level.name());
    }
    assert!(LogLevel::ALL.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(LogLevel::from_name("warning"), None);
}

#[test]
fn the_man_page_examples_parse() {
    let man = include_str!("../../../man/huststore.conf.5");
    let examples = &man[man.find("\n.SH EXAMPLES\n").unwrap()..man.find("\n.SH FILES\n").unwrap()];
    let mut count = 0;
    for block in examples.split("\n.nf\n").skip(1) {
        let block = &block[..block.find("\n.fi\n").unwrap()];
        let text = block.replace("\\-", "-");
        if let Err(e) = parse(&text) {
            panic!("man page example does not parse: {e}\n{text}");
        }
        count += 1;
    }
    assert_eq!(count, 2);
}
