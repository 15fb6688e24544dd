//! End-to-end tests on the real local control plane, and what is built on the same harness:
//!
//! - [`harness`]: the control plane, the kubelet double, the controllers as processes under
//!   their charts' RBAC, and fixtures (git server, KServe, Argo CD); `tests/` uses it;
//! - [`chaos`]: all five controllers under faults (`hack/just chaos`, binary `chaos`);
//! - [`demo`]: the product demo (`hack/just demo`, binary `demo`);
//! - [`bench`]: the benchmark tools (`hack/just bench-*`, binaries in `src/bench/bin/`);
//! - [`chart_schemas`]: the charts' generated `values.schema.json` files.

pub mod bench;
pub mod chaos;
pub mod chart_schemas;
pub mod demo;
pub mod harness;

pub use harness::{Cluster, TestNamespace};
