//! Edges of the infer request: requested outputs, nested data, number ranges and the size of
//! the sanitiser report.

use super::*;

/// Regression: `"outputs": [{"name": "no_such_output"}]` got a 200.
#[tokio::test]
async fn unknown_requested_output_is_a_400_naming_it() {
    let app = engine(&[linear("lin", "1", ImputePolicy::Median)]);
    let mut body = rows(json!([1.0, 2.0]), json!([1, 2]));
    body["outputs"] = json!([{"name": "prediction"}, {"name": "no_such_output"}]);
    post(&app, "/v2/models/lin/infer", body.clone())
        .await
        .error(
            StatusCode::BAD_REQUEST,
            &["outputs[1].name", "\"no_such_output\"", "\"prediction\""],
        );
    body["outputs"] = json!([{"name": "prediction", "parameters": {"binary_data": false}}]);
    let reply = post(&app, "/v2/models/lin/infer", body).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["outputs"][0]["data"], json!([0.5]));
}

/// Regression: data in its natural multi-dimensional form (`[[1, 2]]` for shape `[1, 2]`)
/// was a 400, though the protocol allows it.
#[tokio::test]
async fn nested_data_is_served_like_flat_data() {
    let app = engine(&[linear("lin", "1", ImputePolicy::Median)]);
    let nested = post(
        &app,
        "/v2/models/lin/infer",
        rows(json!([[1.0, 2.0], [0.0, null]]), json!([2, 2])),
    )
    .await;
    let flat = post(
        &app,
        "/v2/models/lin/infer",
        rows(json!([1.0, 2.0, 0.0, null]), json!([2, 2])),
    )
    .await;
    assert_eq!(nested.status, StatusCode::OK);
    assert_eq!(nested.json(), flat.json());
    post(
        &app,
        "/v2/models/lin/infer",
        rows(json!([[1.0, 2.0], [0.0]]), json!([2, 2])),
    )
    .await
    .error(StatusCode::BAD_REQUEST, &["inputs[0].data", "rectangular"]);
}

/// Regression: INT64 `9007199254740993` was served as 9007199254740992.
#[tokio::test]
async fn int64_beyond_2_pow_53_is_a_400() {
    let app = engine(&[linear("lin", "1", ImputePolicy::Median)]);
    let body = r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1, 9007199254740993]}]}"#;
    post_raw(&app, "/v2/models/lin/infer", body).await.error(
        StatusCode::BAD_REQUEST,
        &["inputs[0].data[1]", "INT64 limit of ±9007199254740991"],
    );
    let body = r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1, 9007199254740991]}]}"#;
    assert_eq!(
        post_raw(&app, "/v2/models/lin/infer", body).await.status,
        StatusCode::OK
    );
}

/// Regression: FP32 `3.4028235e38` (f32::MAX as written) was a 400.
#[tokio::test]
async fn fp32_max_as_written_is_accepted() {
    let app = engine(&[linear("lin", "1", ImputePolicy::Median)]);
    let body = r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [3.4028235e38, -3.4028235e38]}]}"#;
    let reply = post_raw(&app, "/v2/models/lin/infer", body).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

/// Regression: 10,000 × 8 nulls got an 8 MB response to a 480 KB request.
#[tokio::test]
async fn sanitiser_report_is_capped_but_counts_and_metrics_are_whole() {
    let app = engine(&[linear("lin", "1", ImputePolicy::Median)]);
    let reply = post(
        &app,
        "/v2/models/lin/infer",
        rows(json!(vec![Value::Null; 3_000]), json!([1_500, 2])),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let response: InferResponse = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(response.parameters.sanitiser_changes.len(), 1_000);
    assert_eq!(response.parameters.sanitiser_changes_total, 3_000);
    let last = response.parameters.sanitiser_changes.last().unwrap();
    assert_eq!((last.row, last.feature.as_str()), (499, "b"));
    let small = post(
        &app,
        "/v2/models/lin/infer",
        rows(json!([null, 1.0]), json!([1, 2])),
    )
    .await
    .json();
    assert_eq!(small["parameters"]["sanitiser_changes_total"], 1);
    let text = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
    assert!(
        text.contains(
            "gauntlet_sanitiser_changes_total{action=\"imputed\",feature=\"b\",model=\"lin\"} 1500"
        ),
        "{text}"
    );
}
