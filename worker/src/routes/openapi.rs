//! `GET /openapi.json`: the OpenAPI 3.1 description of the mode's API, one document per mode
//! (`worker/openapi/kv.json`, `worker/openapi/mq.json`; kv and mq share paths such as `/put`
//! with other meanings, which one document cannot hold). The files are the source, written by
//! hand after the specs; the tests below hold them to the route tables both ways, and
//! `.ci/api-check` runs schemathesis against a daemon serving them.

use super::health::Ctx;
use crate::http::{Response, APPLICATION_JSON};
use crate::service::{Pass, Service};

/// The kv mode's document (cluster-only parts marked in it).
pub const KV_DOCUMENT: &str = include_str!("../../openapi/kv.json");
/// The mq mode's document.
pub const MQ_DOCUMENT: &str = include_str!("../../openapi/mq.json");

pub fn kv(_: &Ctx, _: &mut dyn Service, _: &mut Pass) -> Response {
    Response::with_body(200, APPLICATION_JSON, KV_DOCUMENT.as_bytes().to_vec())
}

pub fn mq(_: &Ctx, _: &mut dyn Service, _: &mut Pass) -> Response {
    Response::with_body(200, APPLICATION_JSON, MQ_DOCUMENT.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, Route, KV_ROUTES, MQ_ROUTES};
    use super::{KV_DOCUMENT, MQ_DOCUMENT};
    use crate::http::Method;
    use serde_json::Value;
    use std::collections::{BTreeMap, BTreeSet};

    /// Every key a path item may hold (OpenAPI 3.1): its operations and the rest.
    const OPERATIONS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    const OTHER_KEYS: [&str; 5] = ["summary", "description", "servers", "parameters", "$ref"];

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("the document is JSON")
    }

    /// The methods the table's row takes, in the document's words.
    fn row_methods(route: &Route) -> BTreeSet<&'static str> {
        [
            (Method::Get, "get"),
            (Method::Post, "post"),
            (Method::Put, "put"),
        ]
        .into_iter()
        .filter(|(m, _)| route.methods.allows(*m))
        .map(|(_, name)| name)
        .collect()
    }

    /// Path → methods of the document; panics on a path item key that is neither.
    fn document_methods(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
        let paths = doc["paths"].as_object().expect("paths is an object");
        paths
            .iter()
            .map(|(path, item)| {
                let item = item.as_object().expect("a path item is an object");
                for key in item.keys() {
                    assert!(
                        OPERATIONS.contains(&key.as_str()) || OTHER_KEYS.contains(&key.as_str()),
                        "{path}: unknown path item key {key}"
                    );
                }
                let methods = item
                    .keys()
                    .filter(|k| OPERATIONS.contains(&k.as_str()))
                    .cloned()
                    .collect();
                (path.clone(), methods)
            })
            .collect()
    }

    /// The rows and the document, both ways: what each lacks of the other, as a message.
    fn differences(table: &[Route], doc: &Value) -> Vec<String> {
        let documented = document_methods(doc);
        let mut out = Vec::new();
        let rows: Vec<&Route> = table.iter().filter(|r| r.kind != Kind::Debug).collect();
        for row in &rows {
            let want: BTreeSet<String> = row_methods(row).into_iter().map(String::from).collect();
            match documented.get(row.path) {
                None => out.push(format!("{}: a route the document lacks", row.path)),
                Some(have) if *have != want => out.push(format!(
                    "{}: the route takes {want:?}, the document says {have:?}",
                    row.path
                )),
                Some(_) => {}
            }
        }
        for path in documented.keys() {
            if !rows.iter().any(|r| r.path == path) {
                out.push(format!("{path}: documented but not a route"));
            }
        }
        out
    }

    #[test]
    fn every_route_is_documented_with_its_methods_and_every_documented_path_is_a_route() {
        for (mode, table, text) in [
            ("kv", KV_ROUTES, KV_DOCUMENT),
            ("mq", MQ_ROUTES, MQ_DOCUMENT),
        ] {
            let diff = differences(table, &parse(text));
            assert!(diff.is_empty(), "{mode} mode:\n{}", diff.join("\n"));
        }
    }

    #[test]
    fn a_path_gained_on_either_side_fails() {
        let mut doc = parse(KV_DOCUMENT);
        assert!(differences(KV_ROUTES, &doc).is_empty());
        // The document gains a path, or a method on a path.
        doc["paths"]["/nope"] = serde_json::json!({"get": {"responses": {}}});
        doc["paths"]["/get"]["put"] = serde_json::json!({"responses": {}});
        let diff = differences(KV_ROUTES, &doc);
        assert_eq!(diff.len(), 2, "{diff:?}");
        assert!(diff.iter().any(|d| d.starts_with("/nope: documented")));
        assert!(diff.iter().any(|d| d.starts_with("/get: the route takes")));
        // The table gains a row the document lacks (the mq table against the kv document
        // has several: `/ack`, `/lock`...).
        let diff = differences(MQ_ROUTES, &parse(KV_DOCUMENT));
        assert!(
            diff.iter().any(|d| d == "/ack: a route the document lacks"),
            "{diff:?}"
        );
    }

    /// Every `$ref` of `v` resolves inside `doc`.
    fn check_refs(doc: &Value, v: &Value, unresolved: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let found = r.strip_prefix('#').and_then(|p| doc.pointer(p));
                    if found.is_none() {
                        unresolved.push(r.clone());
                    }
                }
                map.values().for_each(|x| check_refs(doc, x, unresolved));
            }
            Value::Array(items) => items.iter().for_each(|x| check_refs(doc, x, unresolved)),
            _ => {}
        }
    }

    #[test]
    fn documents_are_openapi_3_1_with_resolving_refs_and_the_http_layer_statuses() {
        for (mode, text) in [("kv", KV_DOCUMENT), ("mq", MQ_DOCUMENT)] {
            let doc = parse(text);
            assert_eq!(doc["openapi"], "3.1.0", "{mode}");
            let mut unresolved = Vec::new();
            check_refs(&doc, &doc, &mut unresolved);
            assert!(unresolved.is_empty(), "{mode}: {unresolved:?}");
            let mut ids = BTreeSet::new();
            for (path, item) in doc["paths"].as_object().unwrap() {
                for (method, op) in item.as_object().unwrap() {
                    let id = op["operationId"].as_str().expect("an operationId");
                    assert!(ids.insert(id.to_string()), "{mode}: {id} twice");
                    let responses = op["responses"].as_object().unwrap();
                    // ops.md, the HTTP layer: any request may meet these.
                    for code in ["414", "431"] {
                        assert!(
                            responses.contains_key(code),
                            "{mode} {method} {path}: {code}"
                        );
                    }
                    let open = matches!(path.as_str(), "/version" | "/status.html");
                    assert_eq!(!open, responses.contains_key("401"), "{mode} {path}: 401");
                }
            }
        }
    }
}
