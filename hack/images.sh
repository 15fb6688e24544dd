#!/usr/bin/env bash
# `just images`: one container image per controller, built without a container runtime. Each
# binary is built statically linked (glibc's crt-static) in release mode and packed by
# crates/oci-image into a minimal non-root image, written as an OCI archive that
# `docker load -i`, `podman load -i` and `skopeo copy oci-archive:<file> ...` accept.
# nvj-validator's image is also the validation runner the chart's validation pods copy from.
#
# usage: hack/images.sh [output-dir]     (default: target/images; NBG_IMAGES_INCREMENTAL=1 builds
#        incrementally, as the tests do)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"
# shellcheck source=lib/versions.sh
source "$here/lib/versions.sh"
# shellcheck source=lib/processes.sh
source "$here/lib/processes.sh"
out="${1:-$repo/target/images}"
controllers=(nvj-validator trigger-controller wave-marker app-status-aggregator event-notifier)
triple=x86_64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
registry=ghcr.io/notebook-gitops
# Reproducible: every time stamp is the last commit's (or the epoch outside git).
created="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"

mkdir -p "$out"
# One build at a time (tests starting nodes side by side call this together; cargo would
# serialise the builds, not the archives' writes), and each archive replaced whole: a node
# importing one never reads it half written.
exec 9>"$out/.lock"
flock 9

# The release binaries are a function of their inputs: the workspace's crates, Cargo.toml,
# Cargo.lock, the charts and manifests the crates include, at a commit, the toolchain and the
# flags. Each set built from a clean checkout is kept
# under a key of those in the cache (the last three), so another clone of a commit built before -
# CI's fresh clone - packs the same binaries without a build (cargo would rebuild: a fresh clone's
# files are all newer than its outputs; 350 CPU-seconds for the six). A checkout whose inputs have
# uncommitted changes always builds.
rustflags="-C target-feature=+crt-static"
bins_cache="$NBG_CACHE_DIR/release-bins"
key=""
# The crates include files from charts/ and manifests/ (include_str!): those are inputs too.
inputs=(crates Cargo.toml Cargo.lock charts manifests)
if [ -z "$(git status --porcelain -- "${inputs[@]}" 2>/dev/null || echo unknown)" ]; then
  key="$({ for i in "${inputs[@]}"; do git rev-parse "HEAD:$i"; done && rustc -vV && echo "$triple $rustflags"; } |
    sha256sum | cut -c1-16)"
fi
release="$target_dir/$triple/release"
if [ -n "$key" ] && [ -f "$bins_cache/$key/complete" ]; then
  echo "[images] the binaries of these inputs are cached ($bins_cache/$key)" >&2
  release="$bins_cache/$key"
  oci_image="$bins_cache/$key/oci-image"
else
  packages=()
  for c in "${controllers[@]}"; do packages+=(-p "$c" --bin "$c"); done
  echo "[images] building ${controllers[*]} (release, statically linked, $triple)" >&2
  # Built from a mirror of the checkout at one path ($NBG_CACHE_DIR/release-src): cargo's
  # fingerprints and incremental state name the sources' path, so every fresh clone at a new
  # path (as CI's) rebuilt the whole workspace in release - 6 minutes beside the checks. The
  # mirror rewrites only the files whose content differs (rsync --checksum), so only what
  # changed is rebuilt. One build in the mirror at a time.
  install_missing rsync:rsync
  src="$NBG_RELEASE_SRC"
  mkdir -p "$src"
  exec 8>"$NBG_CACHE_DIR/.release-src.lock"
  flock 8
  rsync -rc --delete --exclude /target/ --exclude /.git/ "$repo/" "$src/"
  # NBG_IMAGES_INCREMENTAL=1 (the test command sets it): the release build reuses its incremental
  # state, so a change rebuilds in seconds rather than minutes (3 min 20 s for a change to
  # nbg-core, on 2 cores). Off by default: incremental code may be optimised a little less.
  (
    cd "$src"
    export CARGO_TARGET_DIR="$target_dir"
    RUSTFLAGS="$rustflags" CARGO_INCREMENTAL="${NBG_IMAGES_INCREMENTAL:-0}" \
      cargo build --quiet --release --target "$triple" "${packages[@]}"
    cargo build --quiet --release -p nbg-oci-image --bin oci-image
  )
  flock -u 8
  oci_image="$target_dir/release/oci-image"
  if [ -n "$key" ]; then
    rm -rf "$bins_cache/$key.tmp"
    mkdir -p "$bins_cache/$key.tmp"
    for c in "${controllers[@]}"; do cp "$release/$c" "$bins_cache/$key.tmp/"; done
    cp "$oci_image" "$bins_cache/$key.tmp/"
    touch "$bins_cache/$key.tmp/complete"
    rm -rf "$bins_cache/$key"
    mv "$bins_cache/$key.tmp" "$bins_cache/$key"
    # The three newest sets stay.
    find "$bins_cache" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' | sort -rn | tail -n +4 |
      cut -d' ' -f2- | xargs -r rm -rf
  fi
fi

# An archive is packed again only when what it is packed from changed: the real-node tests call
# this once per node (17 times in a test run), and packing the five took 1.6 CPU-seconds a time.
packer="$(sha256sum "$oci_image" | cut -c1-64)"
for c in "${controllers[@]}"; do
  stamp="$( { echo "$packer $registry $version $created $revision"; sha256sum "$release/$c" | cut -c1-64; } | sha256sum | cut -c1-64)"
  if [ -f "$out/$c-$version.oci.tar" ] && [ "$(cat "$out/.$c.packed" 2>/dev/null)" = "$stamp" ]; then
    continue
  fi
  "$oci_image" build \
    --binary "$release/$c" \
    --reference "$registry/$c:$version" \
    --output "$out/$c-$version.oci.tar.tmp" \
    --created "$created" \
    --label "org.opencontainers.image.title=$c" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.licenses=Apache-2.0"
  mv "$out/$c-$version.oci.tar.tmp" "$out/$c-$version.oci.tar"
  echo "$stamp" >"$out/.$c.packed"
done
echo "[images] load one with: docker load -i $out/trigger-controller-$version.oci.tar (or podman load -i, or skopeo copy oci-archive:...)" >&2
