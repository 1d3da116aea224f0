//! `/v2/openapi.json` is served and names exactly the router's routes.

use std::collections::BTreeSet;

use gauntlet_engine::http::OPENAPI;
use http::StatusCode;
use serde_json::Value;

use super::{engine, get, send};

/// (METHOD, path template) of every operation in the checked-in document.
fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    out
}

/// (METHOD, path template) of every `.route(…)` in the router's source, resolving the route
/// constants it uses, so that a route added there and not documented fails this test.
fn routed() -> BTreeSet<(String, String)> {
    let full = include_str!("../../src/http/mod.rs");
    // The unit tests below the router build routers of their own.
    let source = &full[..full.find("#[cfg(test)]").unwrap_or(full.len())];
    let constant = |name: &str| -> String {
        let at = source
            .find(&format!("const {name}: &str = \""))
            .unwrap_or_else(|| panic!("route constant {name}"));
        let rest = &source[at..];
        let start = rest.find('"').unwrap() + 1;
        let end = start + rest[start..].find('"').unwrap();
        rest[start..end].to_owned()
    };
    let mut out = BTreeSet::new();
    for chunk in source.split(".route(").skip(1) {
        let chunk = chunk.trim_start();
        let (path, rest) = if let Some(literal) = chunk.strip_prefix('"') {
            let end = literal.find('"').unwrap();
            (literal[..end].to_owned(), &literal[end + 1..])
        } else {
            let end = chunk.find(',').unwrap();
            (constant(chunk[..end].trim()), &chunk[end..])
        };
        let rest = rest.trim_start_matches([',', ' ', '\n']);
        for method in method_router(rest) {
            assert!(method == "GET" || method == "POST", "{method} {path}");
            out.insert((method, path.clone()));
        }
    }
    out
}

/// The methods of a method-router expression such as `get(a).post(b)`, read up to the comma
/// or parenthesis that ends it.
fn method_router(expr: &str) -> Vec<String> {
    let mut methods = Vec::new();
    let mut depth = 0usize;
    let mut word = String::new();
    for c in expr.chars() {
        match c {
            '(' => {
                if depth == 0 {
                    methods.push(word.trim().trim_start_matches('.').to_ascii_uppercase());
                }
                depth += 1;
                word.clear();
            }
            ')' if depth == 0 => break,
            ')' => {
                depth -= 1;
                word.clear();
            }
            ',' if depth == 0 => break,
            _ if depth == 0 => word.push(c),
            _ => {}
        }
    }
    methods
}

#[test]
fn the_document_lists_exactly_the_routes() {
    let documented = documented();
    let routed = routed();
    assert!(routed.len() >= 16, "{routed:?}");
    assert!(
        routed.contains(&("POST".to_owned(), "/v2/audit/checkpoint".to_owned())),
        "a chained method is read: {routed:?}"
    );
    assert_eq!(documented, routed);
}

/// Each documented operation reaches a handler: neither the 404 fallback nor a 405.
#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = engine(&[]);
    for (method, path) in documented() {
        let uri = path.replace("{m}", "nosuch").replace("{v}", "1");
        let request = http::Request::builder()
            .method(method.as_str())
            .uri(&uri)
            .body(axum::body::Body::empty())
            .unwrap();
        let reply = send(&app, request).await;
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}"
        );
        let body = String::from_utf8_lossy(&reply.body);
        assert!(!body.contains("no route for"), "{method} {uri}: {body}");
    }
    let served = get(&app, "/v2/openapi.json").await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, OPENAPI.as_bytes());
}
