#!/usr/bin/env bash
# A containerd root holding every image of hack/node-images.sh, imported and unpacked once per
# machine and cached beside the images (keyed by the archives and containerd's version). Each
# real node's containerd starts from a copy of it made of hard links (hack/local-node.sh) - what
# kind's node images do with their preloaded images - instead of unpacking ~1 GB of layers again:
# 12 s a node on an idle machine, 80-200 s with the test command's lanes beside it.
# The links are safe to share: containerd never writes a committed layer or a blob in place
# (containers write to upper directories of their own); the two bolt databases, which it does
# write, hack/local-node.sh copies.
# Reads hack/node-images.sh's listing on stdin; prints the root's path.
#
# usage: hack/node-images.sh | hack/node-seed.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/versions.sh
source "$here/lib/versions.sh"
# shellcheck source=lib/processes.sh
source "$here/lib/processes.sh"
# shellcheck source=lib/containerd.sh
source "$here/lib/containerd.sh"
log() { printf '[node-seed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

install_missing containerd:containerd runc:runc
images="$(cat)"
[ -n "$images" ] || die "no images listed on stdin (hack/node-images.sh | hack/node-seed.sh)"
key="$({ containerd --version; awk '{n = split($3, p, "/"); print $1, $2, p[n]}' <<<"$images"; } | sha256sum | cut -c1-12)"
seeds="$NBG_CACHE_DIR/node-seed"
seed="$seeds/$key"
mkdir -p "$seeds"
# One import at a time (nodes starting side by side call this together); the others then find it.
exec 8>"$seeds/.lock"
flock 8
if [ ! -d "$seed/root" ]; then
  log "importing the node's images into $seed (once per machine and set of images)"
  tmp="$seed.tmp"
  run="/run/nbg-node-seed-$$"
  rm -rf "$tmp"
  mkdir -p "$tmp" "$run"
  # containerd alone: no CRI (no network, no sandbox image), the node's snapshotter.
  containerd_config_head "$tmp/root" "$run/state" "$run/containerd.sock" io.containerd.grpc.v1.cri \
    >"$tmp/containerd.toml"
  containerd --config "$tmp/containerd.toml" >"$tmp/containerd.log" 2>&1 &
  pid=$!
  trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$run"' EXIT
  ctr_() { ctr --address "$run/containerd.sock" -n k8s.io "$@"; }
  deadline=$((SECONDS + 30))
  until ctr_ version >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "containerd did not start within 30 s: $tmp/containerd.log"
    sleep 0.2
  done
  while read -r name ref archive; do
    ctr_ images import "$archive" >/dev/null || die "importing $archive ($name) failed"
    log "imported $ref"
  done <<<"$images"
  # The notebook runner also by the project's version alone: what the playground's examples name.
  runner_ref="$(awk '$1=="notebook-runner" {print $2}' <<<"$images")"
  ctr_ images tag --force "$runner_ref" "${runner_ref%-*}" >/dev/null
  kill "$pid"
  wait "$pid" || true
  trap - EXIT
  rm -rf "$run"
  mv "$tmp" "$seed"
  # Seeds of other images are not used again.
  find "$seeds" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
fi
echo "$seed/root"
