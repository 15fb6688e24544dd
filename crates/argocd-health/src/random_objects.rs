//! Random objects for property tests of the health checks: nested JSON built from the field
//! names and values the checks read, so most objects reach deep into a check. Used by this
//! crate's sandbox tests and by the end-to-end tests that put the same objects to Argo CD itself.

use proptest::prelude::*;
use serde_json::{Value, json};

/// Any JSON value up to three levels deep, keys and leaves drawn from what the checks read.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "Succeeded",
            "Failed",
            "Pending",
            "Bound",
            "Lost",
            "Running",
            "Healthy",
            "",
            "x"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "status",
                    "phase",
                    "message",
                    "observedGeneration",
                    "retryCount",
                    "metadata",
                    "generation",
                    "annotations",
                    "health",
                    "operationState",
                    "operation",
                    "sync",
                    "spec",
                    "volumeName",
                ]),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}
