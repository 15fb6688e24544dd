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

packages=()
for c in "${controllers[@]}"; do packages+=(-p "$c" --bin "$c"); done
echo "[images] building ${controllers[*]} (release, statically linked, $triple)" >&2
# NBG_IMAGES_INCREMENTAL=1 (the test command sets it): the release build reuses its incremental
# state, so a change rebuilds in seconds rather than minutes (3 min 20 s for a change to
# nbg-core, on 2 cores). Off by default: incremental code may be optimised a little less.
RUSTFLAGS="-C target-feature=+crt-static" CARGO_INCREMENTAL="${NBG_IMAGES_INCREMENTAL:-0}" \
  cargo build --quiet --release --target "$triple" "${packages[@]}"
cargo build --quiet --release -p nbg-oci-image --bin oci-image

for c in "${controllers[@]}"; do
  "$target_dir/release/oci-image" build \
    --binary "$target_dir/$triple/release/$c" \
    --reference "$registry/$c:$version" \
    --output "$out/$c-$version.oci.tar.tmp" \
    --created "$created" \
    --label "org.opencontainers.image.title=$c" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.licenses=Apache-2.0"
  mv "$out/$c-$version.oci.tar.tmp" "$out/$c-$version.oci.tar"
done
echo "[images] load one with: docker load -i $out/trigger-controller-$version.oci.tar (or podman load -i, or skopeo copy oci-archive:...)" >&2
