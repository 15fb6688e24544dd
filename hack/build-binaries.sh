#!/usr/bin/env bash
# Builds the pinned Kubernetes binaries (kube-apiserver, kube-controller-manager, kubectl),
# etcd, helm, CoreDNS, the KServe manager, Argo CD, Flux's source- and kustomize-controller (and
# nbg-kstatus, kstatus as Flux computes it), promtool and crane from their Go modules through the module proxy, and
# caches them outside the repository keyed by version. A cached binary is reused at no cost.
#
# usage: hack/build-binaries.sh [component...]   (default: all)
#        hack/build-binaries.sh --path <component>  prints the cached binary's path
#        hack/build-binaries.sh --source kserve     prints the unpacked KServe module (its config/)
#        hack/build-binaries.sh --source argocd     prints the unpacked Argo CD module (its manifests/)
#        hack/build-binaries.sh --source argocd-v2  the same for Argo CD 2.x
#        hack/build-binaries.sh --source flux-source-controller|flux-kustomize-controller  (config/crd/)
#        hack/build-binaries.sh --source flux-helm-controller  helm-controller's API module, with
#                                   config/crd/bases generated from it by controller-gen
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/versions.sh
source "$here/lib/versions.sh"

all_components=(etcd kube-apiserver kube-controller-manager kubectl kubelet kube-scheduler kube-proxy coredns helm kserve argocd argocd-v2 flux-source-controller flux-kustomize-controller nbg-kstatus controller-gen promtool crane)

version_of() {
  case "$1" in
    etcd) echo "$ETCD_VERSION" ;;
    kube-apiserver|kube-controller-manager|kubectl|kubelet|kube-scheduler|kube-proxy) echo "$KUBERNETES_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    kserve) echo "$KSERVE_VERSION" ;;
    argocd) echo "$ARGOCD_VERSION" ;;
    argocd-v2) echo "$ARGOCD_V2_VERSION" ;;
    promtool) echo "$PROMETHEUS_VERSION" ;;
    crane) echo "$CRANE_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;;
    flux-source-controller) echo "$FLUX_SOURCE_CONTROLLER_VERSION" ;;
    flux-kustomize-controller|nbg-kstatus) echo "$FLUX_KUSTOMIZE_CONTROLLER_VERSION" ;;
    controller-gen) echo "$CONTROLLER_TOOLS_VERSION" ;;
    *) echo "unknown component '$1' (known: ${all_components[*]})" >&2; return 2 ;;
  esac
}

binary_path() { echo "$NBG_BIN_DIR/$1-$(version_of "$1")/$1"; }

# A module (its go.mod and everything it ships: KServe's config/, Argo CD's manifests/),
# unpacked from the module proxy and kept writable beside the binaries. Building inside it
# honours its own replace directives, which a wrapper module would not.
module_copy_dir() {
  local module="$1" version="$2" name="$3"
  local dir="$NBG_CACHE_DIR/src/$name-$version"
  if [ -f "$dir/.ready" ]; then echo "$dir"; return; fi
  need_go
  local from
  from="$(cd "$NBG_CACHE_DIR" && GOFLAGS=-mod=mod go mod download -json "$module@$version" \
    | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  [ -d "$from" ] || { echo "error: could not download $module@$version" >&2; exit 1; }
  rm -rf "$dir"; mkdir -p "$(dirname "$dir")"
  cp -r "$from" "$dir"; chmod -R u+w "$dir"
  touch "$dir/.ready"
  echo "$dir"
}

kserve_module_dir() { module_copy_dir github.com/kserve/kserve "$KSERVE_VERSION" kserve; }
argocd_module_dir() { module_copy_dir github.com/argoproj/argo-cd/v3 "$ARGOCD_VERSION" argo-cd; }
argocd_v2_module_dir() { module_copy_dir github.com/argoproj/argo-cd/v2 "$ARGOCD_V2_VERSION" argo-cd; }
prometheus_module_dir() { module_copy_dir github.com/prometheus/prometheus "$PROMETHEUS_VERSION" prometheus; }

# A Flux controller's module. Its go.mod replaces its own API module with ./api, which the module
# archive leaves out (a module of its own): the published API module at the required version
# serves instead.
flux_module_dir() {
  local name="$1" version="$2" dir
  dir="$(module_copy_dir "github.com/fluxcd/$name" "$version" "$name")"
  if [ ! -f "$dir/.api-replace-dropped" ]; then
    (cd "$dir" && go mod edit -dropreplace "github.com/fluxcd/$name/api") && touch "$dir/.api-replace-dropped"
  fi
  echo "$dir"
}
flux_source_module_dir() { flux_module_dir source-controller "$FLUX_SOURCE_CONTROLLER_VERSION"; }
flux_kustomize_module_dir() { flux_module_dir kustomize-controller "$FLUX_KUSTOMIZE_CONTROLLER_VERSION"; }

# helm-controller's API module with its CRD generated (config/crd/bases), as its Makefile does.
flux_helm_module_dir() {
  local dir
  dir="$(module_copy_dir github.com/fluxcd/helm-controller/api "$FLUX_HELM_CONTROLLER_API_VERSION" helm-controller-api)"
  if [ ! -f "$dir/config/crd/.generated" ]; then
    build_one controller-gen
    (cd "$dir" && GOFLAGS=-mod=mod "$(binary_path controller-gen)" crd paths=./... \
      output:crd:dir="$dir/config/crd/bases" >&2) && touch "$dir/config/crd/.generated" || {
      echo "error: controller-gen could not generate helm-controller's CRDs in $dir" >&2; exit 1; }
  fi
  echo "$dir"
}

# A small module that requires <module>@<version> and imports <package>, so `go build <package>`
# builds that command at exactly that version; kept in the cache, resolved once.
tool_module_dir() {
  local name="$1" version="$2" module="$3" package="$4"
  local dir="$NBG_CACHE_DIR/src/$name-$version"
  mkdir -p "$dir"
  if [ ! -f "$dir/go.mod" ]; then
    need_go
    (cd "$dir" && go mod init "nbg.local/$name-build" >/dev/null 2>&1 \
      && printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$package" >tools.go \
      && go get "$module@$version" >/dev/null 2>"$dir/get.log" \
      && go mod tidy >/dev/null 2>>"$dir/get.log") || {
      rm -f "$dir/go.mod"; echo "error: could not resolve $name $version; see $dir/get.log" >&2; exit 1; }
  fi
  echo "$dir"
}

# A module of our own in <dir> whose main.go (written by the caller) imports <module>@<version>:
# resolved once (go.mod kept in the cache).
resolve_main_module() {
  local dir="$1" name="$2" module="$3" version="$4"
  [ -f "$dir/go.mod" ] && return
  (cd "$dir" && go mod init "nbg.local/$name-build" >/dev/null 2>&1 \
    && go get "$module@$version" >/dev/null 2>"$dir/get.log" \
    && go mod tidy >/dev/null 2>>"$dir/get.log") || {
    rm -f "$dir/go.mod"; echo "error: could not resolve $name $version; see $dir/get.log" >&2; exit 1; }
}

log() { printf '[build-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

need_go() {
  command -v go >/dev/null 2>&1 || {
    echo "error: Go is needed to build the control-plane binaries, and 'go' is not on PATH" >&2
    exit 1
  }
}

# A wrapper module that imports k8s.io/kubernetes: its go.mod points every staging module
# (k8s.io/api => ./staging/...) at the published v0.x release of the same minor.
kubernetes_module_dir() {
  local dir="$NBG_CACHE_DIR/src/kubernetes-$KUBERNETES_VERSION"
  # .ready-node: the module graph covers the node's commands too (kubelet, scheduler, proxy).
  if [ -f "$dir/.ready-node" ]; then echo "$dir"; return; fi
  rm -rf "$dir"; mkdir -p "$dir"
  local staging="v0.${KUBERNETES_VERSION#v1.}"
  log "resolving k8s.io/kubernetes@$KUBERNETES_VERSION (staging modules at $staging)"
  local gomod
  gomod="$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
    | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [ -f "$gomod" ] || { echo "error: could not download k8s.io/kubernetes@$KUBERNETES_VERSION" >&2; exit 1; }
  {
    echo "module nbg.local/kubernetes-build"
    echo
    echo "go $(sed -n 's/^go \(.*\)/\1/p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$gomod"
    echo ")"
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
  log "downloading module graph for Kubernetes $KUBERNETES_VERSION (large; cached afterwards)"
  (cd "$dir" && go mod tidy -e >/dev/null 2>"$dir/tidy.log") || {
    echo "error: go mod tidy failed for the Kubernetes wrapper module; see $dir/tidy.log" >&2; exit 1; }
  touch "$dir/.ready-node"
  echo "$dir"
}

kubernetes_ldflags() {
  local v="$KUBERNETES_VERSION" minor
  minor="$(echo "$v" | cut -d. -f2)"
  local flags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "-s -w$flags"
}

build_one() {
  local name="$1" out
  out="$(binary_path "$name")"
  if [ -x "$out" ]; then log "$name $(version_of "$name"): cached at $out"; return; fi
  need_go
  mkdir -p "$(dirname "$out")"
  local start=$SECONDS tmp="$out.tmp.$$"
  case "$name" in
    kube-apiserver|kube-controller-manager|kubectl|kubelet|kube-scheduler|kube-proxy)
      local dir; dir="$(kubernetes_module_dir)"
      log "building $name $KUBERNETES_VERSION (cold builds take several minutes on 2 cores)"
      (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$(kubernetes_ldflags)" \
        -o "$tmp" "k8s.io/kubernetes/cmd/$name")
      ;;
    etcd)
      local dir="$NBG_CACHE_DIR/src/etcd-$ETCD_VERSION"
      mkdir -p "$dir"
      cat >"$dir/main.go" <<'GO'
// Command etcd runs the etcd server from its Go module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
      resolve_main_module "$dir" etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
      log "building etcd $ETCD_VERSION"
      (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" .)
      ;;
    helm)
      local dir; dir="$(tool_module_dir helm "$HELM_VERSION" helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm)"
      log "building helm $HELM_VERSION"
      (cd "$dir" && CGO_ENABLED=0 go build -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        -o "$tmp" helm.sh/helm/v3/cmd/helm)
      ;;
    kserve)
      # Built inside a copy of its own module: its go.mod has a replace directive (controller-
      # runtime) that a wrapper module would not honour.
      local dir; dir="$(kserve_module_dir)"
      log "building the KServe manager $KSERVE_VERSION (cold builds take about 5 minutes on 2 cores)"
      (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" ./cmd/manager)
      ;;
    argocd)
      # One multi-call binary: the CLI (`argocd admin notifications ...`) and every component.
      local dir; dir="$(argocd_module_dir)"
      log "building Argo CD $ARGOCD_VERSION (cold builds take about 12 minutes and 4.5 GB of Go caches)"
      (cd "$dir" && CGO_ENABLED=0 go build -trimpath \
        -ldflags "-s -w -X github.com/argoproj/argo-cd/v3/common.version=${ARGOCD_VERSION#v}" \
        -o "$tmp" ./cmd)
      ;;
    argocd-v2)
      # Only the components the tests run (application controller, repo-server, notifications
      # and the git askpass helper the repo-server calls): one multi-call binary like the v3
      # build, without the API server, its UI and the CLI - about half the cold build.
      local dir; dir="$(argocd_v2_module_dir)"
      mkdir -p "$dir/cmd/nbg-argocd"
      cat >"$dir/cmd/nbg-argocd/main.go" <<'GO'
// Command nbg-argocd runs the Argo CD components named by ARGOCD_BINARY_NAME that the
// notebook-gitops tests start.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	appcontroller "github.com/argoproj/argo-cd/v2/cmd/argocd-application-controller/commands"
	gitaskpass "github.com/argoproj/argo-cd/v2/cmd/argocd-git-ask-pass/commands"
	notification "github.com/argoproj/argo-cd/v2/cmd/argocd-notification/commands"
	reposerver "github.com/argoproj/argo-cd/v2/cmd/argocd-repo-server/commands"
)

func main() {
	var command *cobra.Command
	switch name := os.Getenv("ARGOCD_BINARY_NAME"); name {
	case "argocd-application-controller":
		command = appcontroller.NewCommand()
	case "argocd-repo-server":
		command = reposerver.NewCommand()
	case "argocd-notifications":
		command = notification.NewCommand()
	case "argocd-git-ask-pass":
		command = gitaskpass.NewCommand()
	default:
		fmt.Fprintf(os.Stderr, "ARGOCD_BINARY_NAME=%q: this build has argocd-application-controller, argocd-repo-server, argocd-notifications and argocd-git-ask-pass\n", name)
		os.Exit(2)
	}
	if err := command.Execute(); err != nil {
		os.Exit(1)
	}
}
GO
      log "building Argo CD $ARGOCD_V2_VERSION's controller, repo-server and notifications (cold builds take several minutes)"
      (cd "$dir" && CGO_ENABLED=0 go build -trimpath \
        -ldflags "-s -w -X github.com/argoproj/argo-cd/v2/common.version=${ARGOCD_V2_VERSION#v}" \
        -o "$tmp" ./cmd/nbg-argocd)
      ;;
    flux-source-controller)
      local dir; dir="$(flux_source_module_dir)"
      log "building Flux's source-controller $FLUX_SOURCE_CONTROLLER_VERSION (cold builds take about 4 minutes on 2 cores)"
      (cd "$dir" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" .)
      ;;
    flux-kustomize-controller)
      local dir; dir="$(flux_kustomize_module_dir)"
      log "building Flux's kustomize-controller $FLUX_KUSTOMIZE_CONTROLLER_VERSION (cold builds take about 4 minutes on 2 cores)"
      (cd "$dir" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" .)
      ;;
    nbg-kstatus)
      # What kstatus - the library kustomize-controller's health checks use, at the version it
      # uses - computes for objects: the tests check the NVJ's status against its rules. Built in
      # kustomize-controller's module, so it shares that build.
      local dir; dir="$(flux_kustomize_module_dir)"
      mkdir -p "$dir/cmd/nbg-kstatus"
      cat >"$dir/cmd/nbg-kstatus/main.go" <<'GO'
// Command nbg-kstatus reads a JSON array of Kubernetes objects on stdin and prints, one JSON
// line per object, the status and message kstatus computes for it.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func main() {
	var objects []json.RawMessage
	if err := json.NewDecoder(os.Stdin).Decode(&objects); err != nil {
		fmt.Fprintln(os.Stderr, "nbg-kstatus: stdin is not a JSON array of objects:", err)
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	for _, raw := range objects {
		line := map[string]string{}
		// UnmarshalJSON keeps integers as int64, as objects read from the API server are.
		object := &unstructured.Unstructured{}
		if err := object.UnmarshalJSON(raw); err != nil {
			line["error"] = err.Error()
		} else if result, err := status.Compute(object); err != nil {
			line["error"] = err.Error()
		} else {
			line["status"] = result.Status.String()
			line["message"] = result.Message
		}
		if err := out.Encode(line); err != nil {
			os.Exit(1)
		}
	}
}
GO
      log "building nbg-kstatus (kstatus of kustomize-controller $FLUX_KUSTOMIZE_CONTROLLER_VERSION)"
      (cd "$dir" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" ./cmd/nbg-kstatus)
      ;;
    controller-gen)
      # Generates helm-controller's HelmRelease CRD from its API module (flux_helm_module_dir).
      local dir; dir="$(tool_module_dir controller-gen "$CONTROLLER_TOOLS_VERSION" sigs.k8s.io/controller-tools sigs.k8s.io/controller-tools/cmd/controller-gen)"
      log "building controller-gen $CONTROLLER_TOOLS_VERSION"
      (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" sigs.k8s.io/controller-tools/cmd/controller-gen)
      ;;
    promtool)
      # Tests the PrometheusRule's alerts (`promtool test rules`).
      local dir; dir="$(prometheus_module_dir)"
      log "building promtool from Prometheus $PROMETHEUS_VERSION (cold builds take a few minutes)"
      # Its go.work names a directory the module archive leaves out: build the module alone.
      (cd "$dir" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" ./cmd/promtool)
      ;;
    coredns)
      # CoreDNS with the plugins the real node's Corefile uses (hack/local-node.sh), as CoreDNS
      # documents for custom builds: its own plugin list in place of core/plugin's (which would
      # pull every cloud provider's SDK into the build).
      local dir="$NBG_CACHE_DIR/src/coredns-$COREDNS_VERSION"
      mkdir -p "$dir"
      cat >"$dir/main.go" <<'GO'
// Command coredns runs CoreDNS from its Go module with the plugins the local node uses.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// In CoreDNS's plugin.cfg order: the order plugins handle a query in.
func init() {
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
      resolve_main_module "$dir" coredns github.com/coredns/coredns "$COREDNS_VERSION"
      log "building CoreDNS $COREDNS_VERSION"
      (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" .)
      ;;
    crane)
      # go-containerregistry's crane: checks the image archives the way registries and
      # `docker load` read them (the images test).
      local dir; dir="$(tool_module_dir crane "$CRANE_VERSION" github.com/google/go-containerregistry github.com/google/go-containerregistry/cmd/crane)"
      log "building crane $CRANE_VERSION"
      (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" github.com/google/go-containerregistry/cmd/crane)
      ;;
  esac
  mv "$tmp" "$out"
  log "$name $(version_of "$name") built in $((SECONDS - start)) s -> $out"
}

main() {
  if [ "${1:-}" = "--source" ]; then
    # The unpacked module of a component (KServe: its config/ holds the CRDs and ConfigMap).
    case "${2:-}" in
      kserve) kserve_module_dir ;;
      argocd) argocd_module_dir ;;
      argocd-v2) argocd_v2_module_dir ;;
      flux-source-controller) flux_source_module_dir ;;
      flux-kustomize-controller) flux_kustomize_module_dir ;;
      flux-helm-controller) flux_helm_module_dir ;;
      *) echo "usage: $0 --source kserve|argocd|argocd-v2|flux-source-controller|flux-kustomize-controller|flux-helm-controller" >&2; exit 2 ;;
    esac
    return
  fi
  if [ "${1:-}" = "--path" ]; then
    [ $# -eq 2 ] || { echo "usage: $0 --path <component>" >&2; exit 2; }
    binary_path "$2"; return
  fi
  local comps=("$@")
  [ ${#comps[@]} -gt 0 ] || comps=("${all_components[@]}")
  for c in "${comps[@]}"; do version_of "$c" >/dev/null; done
  for c in "${comps[@]}"; do build_one "$c"; done
}

main "$@"
