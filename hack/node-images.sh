#!/usr/bin/env bash
# The images the local node runs besides the controllers' (`hack/images.sh`), built without a
# container runtime and cached outside the repository, keyed by their inputs:
#   pause           the pod sandbox (crates/oci-image's `pause`, statically linked)
#   notebook-runner Debian bookworm (mmdebstrap) with python3, git, the pinned papermill,
#                   ipykernel and nbformat of hack/python/requirements.txt and scikit-learn
#                   (hack/python/notebook-image-requirements.txt) in /opt/notebook, running as
#                   uid 1000 - a notebook image for validation pods
#   kserve-sklearnserver
#                   KServe's sklearn model server (python/sklearnserver of the KServe module,
#                   kserve and scikit-learn from PyPI, pinned in
#                   hack/python/sklearnserver-requirements.txt) as kserve/sklearnserver:<version>,
#                   the image of KServe's sklearn ClusterServingRuntime
#   test-user-root, test-user-named-user
#                   the pause binary as images whose user is root, and a name: what the
#                   kubelet's non-root check refuses (the real node's tests)
# Prints one line per image: <name> <reference> <archive>.
#
# usage: hack/node-images.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=lib/versions.sh
source "$here/lib/versions.sh"
# shellcheck source=lib/processes.sh
source "$here/lib/processes.sh"
cd "$repo"

out="$NBG_CACHE_DIR/images"
mkdir -p "$out"
# One build at a time (tests starting nodes side by side call this together); the others then
# find the images built.
exec 9>"$out/.lock"
flock 9
triple=x86_64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
log() { printf '[node-images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cargo build --quiet --release -p nbg-oci-image --bin oci-image
oci_image="$target_dir/release/oci-image"

# The sandbox image: rebuilt when its source changes.
pause_ref="ghcr.io/notebook-gitops/pause:$version"
pause_key="$(cat crates/oci-image/src/bin/pause.rs crates/oci-image/Cargo.toml Cargo.lock | sha256sum | cut -c1-12)"
pause_archive="$out/pause-$pause_key.oci.tar"
# The statically linked pause binary, built (a no-op when current) for any image made from it.
pause_binary() {
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release --target "$triple" -p nbg-oci-image --bin pause
  echo "$target_dir/$triple/release/pause"
}
if [ ! -f "$pause_archive" ]; then
  log "building the pause image"
  "$oci_image" build --binary "$(pause_binary)" --reference "$pause_ref" \
    --output "$pause_archive.tmp" --label "org.opencontainers.image.title=pause" >/dev/null
  mv "$pause_archive.tmp" "$pause_archive"
  # Builds from other inputs are not used again (nor the test images made from them).
  find "$out" -maxdepth 1 \( -name 'pause-*.oci.tar' -o -name 'test-user-*.oci.tar' \) ! -name "*-$pause_key.oci.tar" -delete
fi
echo "pause $pause_ref $pause_archive"

# Two images the real node's tests use to show what the kubelet's non-root check refuses: the
# pause binary as an image that runs as root (0:0), and as one that names its user (nobody).
for variant in root:0:0 named-user:nobody; do
  name="${variant%%:*}" user="${variant#*:}"
  ref="ghcr.io/notebook-gitops/test-user-$name:$version"
  archive="$out/test-user-$name-$pause_key.oci.tar"
  if [ ! -f "$archive" ]; then
    work="$(mktemp -d)"
    mkdir -p "$work/root/usr/local/bin" "$work/root/etc"
    cp "$(pause_binary)" "$work/root/usr/local/bin/pause"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$work/root/etc/passwd"
    tar -C "$work/root" --owner=0 --group=0 --mtime=@0 --sort=name -cf "$work/rootfs.tar" .
    "$oci_image" rootfs --rootfs "$work/rootfs.tar" --reference "$ref" --output "$archive.tmp" \
      --user "$user" --cmd /usr/local/bin/pause >/dev/null
    mv "$archive.tmp" "$archive"
    rm -rf "$work"
  fi
  echo "test-user-$name $ref $archive"
done

# The notebook runner: rebuilt when the Python pins or this recipe change.
install_missing mmdebstrap:mmdebstrap
runner_key="$( (cat hack/python/requirements.txt hack/python/notebook-image-requirements.txt; sed -n '/# notebook-runner recipe/,/# end of the notebook-runner recipe/p' "$0") | sha256sum | cut -c1-12)"
runner_ref="ghcr.io/notebook-gitops/notebook-runner:$version-$runner_key"
runner_archive="$out/notebook-runner-$runner_key.oci.tar"
if [ ! -f "$runner_archive" ]; then
  work="$(mktemp -d "$out/notebook-runner-build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  started=$SECONDS
  # Wheels come through the host's pip (its index and certificates); the image installs them
  # offline. The host's Python and bookworm's are both 3.11.
  log "downloading the notebook runner's wheels"
  python3 -m pip download --quiet --disable-pip-version-check -r hack/python/notebook-image-requirements.txt -d "$work/wheels" >&2
  cp hack/python/requirements.txt hack/python/notebook-image-requirements.txt "$work/"
  # notebook-runner recipe (changing anything below rebuilds the image)
  log "building the notebook runner's root file system (Debian bookworm, mmdebstrap)"
  # The host's pip settings (a wheel directory, its certificates) are not the image's.
  env -u PIP_FIND_LINKS -u PIP_CERT SOURCE_DATE_EPOCH=0 mmdebstrap --quiet --variant=apt --include=python3,python3-venv,git \
    --customize-hook="cp -r '$work/wheels' '$work/requirements.txt' '$work/notebook-image-requirements.txt' \"\$1/tmp/\"" \
    --customize-hook='chroot "$1" python3 -m venv /opt/notebook' \
    --customize-hook='chroot "$1" /opt/notebook/bin/pip install --quiet --no-index --find-links /tmp/wheels --no-cache-dir --disable-pip-version-check -r /tmp/notebook-image-requirements.txt' \
    --customize-hook='chroot "$1" /opt/notebook/bin/python -m ipykernel install --sys-prefix --name python3' \
    --customize-hook='chroot "$1" useradd --uid 1000 --user-group --create-home --home-dir /home/notebook notebook' \
    --customize-hook='rm -rf "$1/tmp/wheels" "$1/tmp/"*requirements.txt "$1/var/cache/apt/"* "$1/var/lib/apt/lists/"*' \
    bookworm "$work/rootfs.tar" http://deb.debian.org/debian >&2
  "$oci_image" rootfs --rootfs "$work/rootfs.tar" --reference "$runner_ref" --output "$work/image.oci.tar" \
    --user 1000:1000 --working-dir /home/notebook --cmd python3 \
    --env PATH=/opt/notebook/bin:/usr/local/bin:/usr/bin:/bin \
    --label "org.opencontainers.image.title=notebook-runner" >/dev/null
  mv "$work/image.oci.tar" "$runner_archive"
  rm -rf "$work"
  # Older builds of it (other inputs) are not used again.
  find "$out" -maxdepth 1 -name 'notebook-runner-*.oci.tar' ! -name "${runner_archive##*/}" -delete
  log "notebook runner built in $((SECONDS - started)) s"
  # end of the notebook-runner recipe
fi
echo "notebook-runner $runner_ref $runner_archive"

# KServe's sklearn runtime (the ClusterServingRuntime kserve-sklearnserver's image, by the name
# KServe's release manifests give it): KServe's own server, python/sklearnserver of the KServe
# module the manager is built from, run as its Dockerfile (python/sklearn.Dockerfile) runs it -
# `python -m sklearnserver` as uid 1000 - on Debian bookworm's Python with the pinned wheels of
# hack/python/sklearnserver-requirements.txt. Rebuilt when the pins, the KServe version or this
# recipe change.
kserve_dir="$("$here/build-binaries.sh" --source kserve)"
sklearn_key="$( (echo "$KSERVE_VERSION"; cat hack/python/sklearnserver-requirements.txt; sed -n '/# sklearnserver recipe/,/# end of the sklearnserver recipe/p' "$0") | sha256sum | cut -c1-12)"
sklearn_ref="docker.io/kserve/sklearnserver:$KSERVE_VERSION"
sklearn_archive="$out/kserve-sklearnserver-$sklearn_key.oci.tar"
if [ ! -f "$sklearn_archive" ]; then
  work="$(mktemp -d "$out/kserve-sklearnserver-build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  started=$SECONDS
  log "downloading the sklearn server's wheels"
  python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    -r hack/python/sklearnserver-requirements.txt -d "$work/wheels" >&2
  cp hack/python/sklearnserver-requirements.txt "$work/requirements.txt"
  cp -r "$kserve_dir/python/sklearnserver/sklearnserver" "$work/sklearnserver"
  rm -rf "$work/sklearnserver/example_models" "$work"/sklearnserver/test_*.py
  # sklearnserver recipe (changing anything below rebuilds the image)
  log "building the sklearn server's root file system (Debian bookworm, mmdebstrap)"
  env -u PIP_FIND_LINKS -u PIP_CERT SOURCE_DATE_EPOCH=0 mmdebstrap --quiet --variant=apt --include=python3,python3-venv \
    --customize-hook="cp -r '$work/wheels' '$work/requirements.txt' \"\$1/tmp/\"" \
    --customize-hook="mkdir -p \"\$1/sklearnserver\" && cp -r '$work/sklearnserver' \"\$1/sklearnserver/\"" \
    --customize-hook='chroot "$1" python3 -m venv /opt/kserve' \
    --customize-hook='chroot "$1" /opt/kserve/bin/pip install --quiet --no-index --find-links /tmp/wheels --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt' \
    --customize-hook='chroot "$1" useradd --uid 1000 --user-group --create-home --home-dir /home/kserve kserve' \
    --customize-hook='rm -rf "$1/tmp/wheels" "$1/tmp/"*requirements.txt "$1/var/cache/apt/"* "$1/var/lib/apt/lists/"*' \
    bookworm "$work/rootfs.tar" http://deb.debian.org/debian >&2
  "$oci_image" rootfs --rootfs "$work/rootfs.tar" --reference "$sklearn_ref" --output "$work/image.oci.tar" \
    --user 1000:1000 --working-dir /home/kserve --entrypoint=python --entrypoint=-m --entrypoint=sklearnserver \
    --env PATH=/opt/kserve/bin:/usr/local/bin:/usr/bin:/bin --env PYTHONPATH=/sklearnserver \
    --label "org.opencontainers.image.title=kserve-sklearnserver" >/dev/null
  mv "$work/image.oci.tar" "$sklearn_archive"
  rm -rf "$work"
  find "$out" -maxdepth 1 -name 'kserve-sklearnserver-*.oci.tar' ! -name "${sklearn_archive##*/}" -delete
  log "sklearn server built in $((SECONDS - started)) s"
  # end of the sklearnserver recipe
fi
echo "kserve-sklearnserver $sklearn_ref $sklearn_archive"
