# notebook-gitops developer commands. Run them through `hack/just <recipe>` on a machine
# without `just`: it installs just first.

# Arguments reach the commands unchanged ("$@"), quoting preserved: a jsonpath or a JSON patch
# passes through `just kubectl` as it would through kubectl.
set positional-arguments
set shell := ["bash", "-euo", "pipefail", "-c"]

kubeconfig := env_var_or_default("NBG_CLUSTER_DIR", justfile_directory() / "target/local-cluster") / "kubeconfig"

# List the recipes.
default:
    @just --list --justfile {{justfile()}}

# The train -> validate -> reload flow on this machine: a notebook trains a model, its
# validation succeeds, the model server reloads; then a broken commit fails and nothing reloads.
demo *args:
    hack/demo.sh "$@"

# A playground for your own notebooks, in the background: control plane with a real node, the controllers from the chart, a git daemon.
up:
    @hack/playground.sh up

# Stop the playground and the local control plane.
down:
    @hack/playground.sh down

# What of the playground is running.
status:
    @hack/playground.sh status

# All five controllers together under faults (SIGKILLs, API server restarts, etcd pauses, hostile objects) for 30 minutes, then every invariant with its counts: `just chaos --minutes 5 --seed 42`.
chaos *args:
    hack/build-binaries.sh etcd kube-apiserver kube-controller-manager kubectl helm
    cargo build --quiet --workspace --bins
    "${CARGO_TARGET_DIR:-target}/debug/chaos" "$@"

# Everything CI runs: format and lint checks, unit tests, then e2e tests on the local control plane.
test:
    hack/test.sh

# Unit tests only (no control plane needed).
unit:
    cargo test --workspace --exclude nbg-e2e

# Build the pinned Kubernetes, etcd and helm binaries (cached outside the repo).
build-binaries *components:
    hack/build-binaries.sh "$@"

# Start the local control plane (etcd, kube-apiserver, kube-controller-manager) on loopback.
cluster-up:
    hack/local-cluster.sh up

# Stop the local control plane and delete its data.
cluster-down:
    hack/local-cluster.sh down

# Show what of the local control plane is running.
cluster-status:
    hack/local-cluster.sh status

# kubectl of the pinned version against the local control plane.
kubectl *args:
    @"$(hack/build-binaries.sh --path kubectl)" --kubeconfig "{{kubeconfig}}" "$@"

# Run one of our controllers against the local control plane, e.g. `just run wave-marker --namespaces demo`.
run binary *args:
    cargo build --quiet --bin "$1"
    shift; "${CARGO_TARGET_DIR:-target}/debug/{{binary}}" --kubeconfig "{{kubeconfig}}" "$@"

# Regenerate every generated file: CRDs (manifests/crds/, the CRD chart), the Argo CD snippets (manifests/argocd/) and the charts' values.schema.json.
generate:
    UPDATE_GENERATED=1 cargo test --quiet -p nbg-core --test crd_manifests
    UPDATE_GENERATED=1 cargo test --quiet -p nbg-argocd-health --test snippets
    UPDATE_GENERATED=1 cargo test --quiet -p nbg-e2e --test chart_schemas

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmark nvj-validator's overhead per validation and its memory with 5,000 NVJs (release build).
bench-nvj-validator *args:
    cargo build --release --quiet -p nvj-validator -p nbg-e2e --bin nvj-validator --bin bench-nvj-validator
    "${CARGO_TARGET_DIR:-target}/release/bench-nvj-validator" "$@"

# Benchmark trigger-controller with 1,000 NVJs succeeding at once (release build).
bench-trigger-controller *args:
    cargo build --release --quiet -p trigger-controller -p nbg-e2e --bin trigger-controller --bin bench-trigger-controller
    "${CARGO_TARGET_DIR:-target}/release/bench-trigger-controller" "$@"

# Benchmark wave-marker with 1,000 NVJs finishing at once, and `wait` on all of them (release build).
bench-wave-marker *args:
    cargo build --release --quiet -p wave-marker -p nbg-e2e --bin wave-marker --bin bench-wave-marker
    "${CARGO_TARGET_DIR:-target}/release/bench-wave-marker" "$@"

# Benchmark app-status-aggregator: 10,000 NVJs across 100 Applications, 1,000 statuses changing at once (release build).
bench-app-status-aggregator *args:
    cargo build --release --quiet -p app-status-aggregator -p nbg-e2e --bin app-status-aggregator --bin bench-app-status-aggregator
    "${CARGO_TARGET_DIR:-target}/release/bench-app-status-aggregator" "$@"

# Benchmark trigger-controller's syncs waiting behind running Argo CD operations (20 Applications, the real Argo CD; NBG_ARGOCD_CELL picks its configuration; release build).
bench-argocd-sync-wait *args:
    hack/build-binaries.sh etcd kube-apiserver kube-controller-manager kubectl helm argocd argocd-v2
    cargo build --release --quiet -p trigger-controller -p nbg-e2e --bin trigger-controller --bin bench-argocd-sync-wait
    "${CARGO_TARGET_DIR:-target}/release/bench-argocd-sync-wait" "$@"

# Build the container images without a container runtime: one per controller (static binary, non-root, minimal), as OCI archives in target/images/.
images *args:
    hack/images.sh "$@"

# Build the statically linked nvj-validator that release images ship (runs in any Linux notebook image).
runner-static:
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p nvj-validator --bin nvj-validator --target x86_64-unknown-linux-gnu
    @echo "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/nvj-validator"
