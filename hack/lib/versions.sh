# Pinned versions of the tools the local control plane and the tests are built from.
# Sourced by the hack/ scripts; change a version here and the cache key changes with it.
KUBERNETES_VERSION="v1.35.4"
ETCD_VERSION="v3.6.16"
HELM_VERSION="v3.21.4"
# KServe (its manager, run in Standard mode by the e2e tests of InferenceService restarts).
KSERVE_VERSION="v0.16.0"
# Argo CD (its notifications engine evaluates our triggers in the e2e tests). v3.2.12 as stored
# by the module proxy does not compile; v3.2.11 does.
ARGOCD_VERSION="v3.2.11"
# Argo CD 2.14 (the last 2.x minor; label tracking and persisted resource health by default):
# the compatibility matrix runs our Argo CD tests against it too.
ARGOCD_V2_VERSION="v2.14.21"
# Prometheus's module (v0.316.0 is Prometheus 3.x): promtool tests the chart's alerting rules.
PROMETHEUS_VERSION="v0.316.0"
# go-containerregistry's crane checks the image archives (`hack/just images`) as registries read them.
CRANE_VERSION="v0.22.1"
# CoreDNS: the real node's cluster DNS (built with the plugins a kubeadm cluster's Corefile uses
# for cluster names; the node has no upstream to forward to).
COREDNS_VERSION="v1.14.7"
# Flux's source-controller and kustomize-controller (the Flux e2e tests). v1.10 needs Go 1.27;
# source-controller v1.9.4-v1.9.6 need a github.com/fluxcd/pkg/artifact version the module proxy
# refuses. kustomize-controller's module also builds nbg-kstatus, kstatus as Flux computes it.
FLUX_SOURCE_CONTROLLER_VERSION="v1.9.3"
FLUX_KUSTOMIZE_CONTROLLER_VERSION="v1.9.6"
# helm-controller cannot be built here (the module proxy serves only its API module): its
# HelmRelease CRD is generated from that module's types with controller-gen, as helm-controller's
# own build generates it. v1.6.4 is the API of the Flux release these controllers belong to
# (flux2 v2.9); v1.7 needs Go 1.27.
FLUX_HELM_CONTROLLER_API_VERSION="v1.6.4"
CONTROLLER_TOOLS_VERSION="v0.23.0"
# just is installed from crates.io when it is missing.
JUST_VERSION="1.59.0"

# Binaries are cached outside the repository, keyed by version, so a fresh clone reuses them.
NBG_CACHE_DIR="${NBG_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/notebook-gitops}"
NBG_BIN_DIR="$NBG_CACHE_DIR/bin"
# The mirror of the checkout the images' release build runs in (hack/images.sh); it exists once
# the images were built on this machine.
NBG_RELEASE_SRC="$NBG_CACHE_DIR/release-src"
