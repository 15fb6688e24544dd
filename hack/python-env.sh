#!/usr/bin/env bash
# Creates (once) the virtualenv that executes notebooks on this machine, from PyPI, pinned by
# hack/python/local-requirements.txt (requirements.txt and scrapbook), and prints its bin
# directory. Cached outside the repo, keyed by the requirements' hash, so a second run costs
# nothing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/versions.sh
source "$here/lib/versions.sh"
req="$here/python/local-requirements.txt"
python="${NBG_PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "error: $python is needed to create the notebook environment" >&2; exit 1; }
key="$( (cat "$req" "$here/python/requirements.txt"; "$python" --version) | sha256sum | cut -c1-12)"
venv="$NBG_CACHE_DIR/python-$key"
# One creator at a time: tests starting side by side on a new machine all ask for it at once
# (without the lock, each removed what another was creating).
mkdir -p "$NBG_CACHE_DIR"
exec 9>"$NBG_CACHE_DIR/.python-env.lock"
flock 9
if [ ! -x "$venv/bin/papermill" ] || [ ! -f "$venv/.ready" ]; then
  echo "[python-env] creating $venv from PyPI (once)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2 \
    || { echo "error: installing $req into $venv failed" >&2; exit 1; }
  "$venv/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null 2>&1 || true
  touch "$venv/.ready"
fi
echo "$venv/bin"
