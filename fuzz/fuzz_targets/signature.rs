//! The request-signing canonicaliser (`security::sign`): any method, path, query, headers,
//! body, key id, nonce and timestamp canonicalise without a panic; a signature verifies for
//! the request it signed, and not after any one byte of the body changes.
#![no_main]

use libfuzzer_sys::fuzz_target;

use gauntlet_engine::security::sign::{self, Request};

/// Cuts `data` into fields at 0xFF bytes (a byte no UTF-8 text holds).
fn fields(data: &[u8]) -> Vec<String> {
    data.split(|b| *b == 0xFF)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let f = fields(data);
    let get = |i: usize| f.get(i).map(String::as_str).unwrap_or("");
    let mut headers = vec![("content-type", get(5)), ("x-custom", get(6))];
    headers.sort_unstable();
    let body = get(7).as_bytes();
    let timestamp = u64::from_le_bytes(
        data.iter()
            .copied()
            .chain(std::iter::repeat(0))
            .take(8)
            .collect::<Vec<_>>()
            .try_into()
            .unwrap_or([0; 8]),
    );
    let request = Request {
        method: get(0),
        path: get(1),
        query: f.get(2).map(String::as_str),
        headers: &headers,
        body,
        key_id: get(3),
        timestamp,
        nonce: get(4),
    };
    let _ = sign::canonical_query(request.query);
    let _ = sign::canonical_request(&request);
    let secret = b"fuzzing secret, 32 bytes or more";
    let signature = sign::sign(secret, &request);
    assert!(sign::verify(secret, &request, &signature));
    assert!(!sign::verify(secret, &request, get(8)) || get(8).eq_ignore_ascii_case(&signature));
    if let Some((first, rest)) = body.split_first() {
        let mut changed = vec![first.wrapping_add(1)];
        changed.extend_from_slice(rest);
        let swapped = Request {
            body: &changed,
            ..request
        };
        assert!(
            !sign::verify(secret, &swapped, &signature),
            "a swapped body verified"
        );
    }
});
