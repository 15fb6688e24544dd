//! The test harness: the real local control plane (`hack/local-cluster.sh`), the kubelet double,
//! and our binaries as processes under their charts' RBAC.
//!
//! - [`argocd`]: the real Argo CD's notifications controller;
//! - [`flux`]: the real Flux source-controller and kustomize-controller;
//! - [`cluster`]: boots the control plane once per test run, or reuses a running one; installs
//!   our CRDs, KServe's own CRDs and the test-only CRDs of `e2e/crds/` (Argo CD's Application
//!   and AppProject, Argo Rollouts, Argo Workflows' WorkflowTemplate, Tekton's Task).
//! - [`control_plane`]: a control plane of one test's own, whose API server it may restart;
//! - [`namespace`]: a fresh namespace per test, deleted afterwards.
//! - [`kserve`]: the real KServe manager in Standard mode, on a control plane of a test's own;
//! - [`kubelet`]: the kubelet double, for the tests not yet on the real node: makes pods
//!   Running/Ready, or runs a pod's containers as local processes and writes their real exit
//!   codes and termination messages back.
//! - [`controller`]: a controller binary as a local process under its chart's RBAC and with
//!   its chart's environment;
//! - [`nvj`]: NVJs for tests, and runs marked Succeeded as nvj-validator writes them;
//! - [`real_node`]: a control plane of a test's own with a real node (containerd, kubelet,
//!   kube-proxy, kube-scheduler) running the images built here;
//! - [`waiter`]: `wave-marker wait` as a hook runs it;
//! - [`process`]: runs our binaries (and kubectl) as local processes, optionally under a
//!   ServiceAccount token with exactly the RBAC a chart grants; killed when dropped.

pub mod argocd;
pub mod cluster;
pub mod control_plane;
pub mod controller;
pub mod flux;
pub mod git_server;
pub mod kserve;
pub mod kubelet;
pub mod namespace;
pub mod nvj;
pub mod process;
pub mod real_node;
pub mod waiter;

pub use cluster::Cluster;
pub use namespace::TestNamespace;
