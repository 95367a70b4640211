//! `GET /openapi.json` on a live daemon of each mode: the document of `worker/openapi/` byte for
//! byte, `application/json`, behind auth; and the daemon as the document says: every documented
//! operation answers a bare request with one of its documented statuses, and every method the
//! document does not list for a path is a `405` (the unit tests in `worker/src/routes/openapi.rs`
//! hold the document to the route table; this holds it to the running server).

mod common;

use common::{Client, Server};
use serde_json::Value;

const KV: &[u8] = include_bytes!("../worker/openapi/kv.json");
const MQ: &[u8] = include_bytes!("../worker/openapi/mq.json");

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

/// mq mode, with its waits cut to a second (a bare `/do_post` claim parks until a task or
/// `do_post_timeout`).
fn mq_server() -> Server {
    Server::start(&[
        ("mode", "mq"),
        ("do_post_timeout", "1s"),
        ("do_get_timeout", "1s"),
        ("long_polling_timeout", "1s"),
        ("subscribe_timeout", "1s"),
    ])
}

fn check_served(server: &Server, file: &[u8], mode: &str) {
    let mut c = Client::connect(server.addr());
    let r = c.send("GET", "/openapi.json", &[], b"");
    assert_eq!(r.status, 200, "{mode}");
    assert_eq!(r.header("Content-Type"), Some("application/json"), "{mode}");
    assert!(
        r.body == file,
        "{mode}: /openapi.json is not worker/openapi/{mode}.json"
    );
    let doc: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].as_str().unwrap().contains(mode));
    let r = c.send("POST", "/openapi.json", &[], b"");
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET")), "{mode}");
}

/// Every documented path, with each of [`METHODS`]: a documented operation answers a request
/// without parameters with a status its document lists; any other method is a `405`.
fn check_live(server: &Server, file: &[u8], mode: &str) {
    let doc: Value = serde_json::from_slice(file).unwrap();
    let mut c = Client::connect(server.addr());
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() > 20, "{mode}: {} paths", paths.len());
    for (path, item) in paths {
        for method in METHODS {
            let op = &item[method.to_ascii_lowercase()];
            let r = c.send(method, path, &[], b"");
            if op.is_null() {
                assert_eq!(r.status, 405, "{mode} {method} {path}: undocumented method");
            } else {
                let documented = op["responses"].as_object().unwrap();
                assert!(
                    documented.contains_key(&r.status.to_string()),
                    "{mode} {method} {path}: {} is not among {:?}",
                    r.status,
                    documented.keys().collect::<Vec<_>>()
                );
            }
        }
    }
    // And a path the document does not have is not served.
    assert_eq!(c.send("GET", "/openapi.yaml", &[], b"").status, 404);
}

#[test]
fn kv_daemon_serves_its_document_and_answers_as_it_says() {
    let server = Server::start(&[]);
    check_served(&server, KV, "kv");
    check_live(&server, KV, "kv");
}

#[test]
fn mq_daemon_serves_its_document_and_answers_as_it_says() {
    let server = mq_server();
    check_served(&server, MQ, "mq");
    check_live(&server, MQ, "mq");
}

#[test]
fn the_document_is_behind_auth() {
    let dir = common::temp_dir();
    let file = dir.join("htpasswd");
    std::fs::write(&file, "alice:{PLAIN}wonder\n").unwrap();
    let server = Server::start(&[("auth_basic_user_file", file.to_str().unwrap())]);
    let mut c = Client::connect(server.addr());
    let r = c.send("GET", "/openapi.json", &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Basic realm=\"huststore\"")
    );
    // alice:wonder
    let r = c.send(
        "GET",
        "/openapi.json",
        &[("Authorization", "Basic YWxpY2U6d29uZGVy")],
        b"",
    );
    assert_eq!(r.status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}
