//! The admin HTTP API (Toxiproxy-like), on its own loopback port:
//!
//! - `GET /toxics`: the toxics in force, as JSON (kebab-case keys);
//! - `PUT /toxics`: replaces them all (keys left out take their defaults); a bad value is a
//!   400 `{"error": "..."}` naming the key and the limit, and nothing changes;
//! - `POST /reset`: every toxic off;
//! - `GET /stats`: connections and bytes;
//! - `GET /health`: 200 once the proxy listens.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::proxy::Control;
use crate::toxics::Toxics;

/// The admin router over a proxy's [`Control`].
pub fn router(control: Control) -> Router {
    Router::new()
        .route("/toxics", get(toxics).put(set_toxics))
        .route("/reset", post(reset))
        .route("/stats", get(stats))
        .route("/health", get(|| async { StatusCode::OK }))
        .with_state(control)
}

async fn toxics(State(control): State<Control>) -> Json<Toxics> {
    Json(control.toxics())
}

fn error(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn set_toxics(State(control): State<Control>, body: Bytes) -> Response {
    let toxics: Toxics = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => return error(format!("invalid toxics: {e}")),
    };
    match control.set(toxics) {
        Ok(()) => Json(toxics).into_response(),
        Err(e) => error(format!("invalid toxics: {e}")),
    }
}

async fn reset(State(control): State<Control>) -> Response {
    match control.set(Toxics::default()) {
        Ok(()) => Json(Toxics::default()).into_response(),
        Err(e) => error(e.to_string()),
    }
}

async fn stats(State(control): State<Control>) -> Response {
    Json(control.stats()).into_response()
}
