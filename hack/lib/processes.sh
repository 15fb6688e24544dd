# What hack/test.sh and hack/demo.sh share: their step headings, checking the tools they need,
# and finding the notebook kernels a run of this checkout started (jupyter_client starts kernels
# in sessions of their own, so a process group kill does not reach them; they work inside
# target/).

# step TEXT...: a heading with the time, on stderr.
step() { printf '\n== %s (%s)\n' "$*" "$(date +%H:%M:%S)" >&2; }

# require_tools TOOL...: exits with one line naming every missing tool.
require_tools() {
  local missing="" tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || missing="$missing $tool"
  done
  if [ -n "$missing" ]; then
    echo "error: needed on PATH and missing:$missing (Rust from rustup.rs, Go from go.dev/dl, the rest from your package manager)" >&2
    exit 1
  fi
}

# install_missing TOOL:DEBIAN_PACKAGE...: installs the package of each tool missing from PATH
# with apt-get when this runs as root on Debian or Ubuntu; otherwise exits naming the packages.
install_missing() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  install_packages "${missing[@]}"
}

# install_packages DEBIAN_PACKAGE...: installs them with apt-get (as root on Debian or Ubuntu),
# or exits naming them. Tests side by side may need the same packages at once (on a new machine
# every real node's first start installs containerd): one apt-get at a time (a lock in the
# project's cache; apt-get itself fails at once on a held dpkg lock), and what another installed
# meanwhile is not installed again.
install_packages() {
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    local lock="$NBG_CACHE_DIR/apt.lock" left=() pkg
    mkdir -p "$(dirname "$lock")"
    exec 7>"$lock"
    flock 7
    for pkg in "$@"; do
      dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || left+=("$pkg")
    done
    if [ ${#left[@]} -gt 0 ]; then
      echo "installing ${left[*]} (apt-get)" >&2
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=300 "${left[@]}" >/dev/null
    fi
    flock -u 7
    exec 7>&-
  else
    echo "error: install these packages first (Debian/Ubuntu names): $*" >&2
    exit 1
  fi
}

# checkout_kernels REPO: the pids of notebook kernels working inside REPO/target/.
checkout_kernels() {
  local pid
  for pid in $(pgrep -f ipykernel_launcher || true); do
    case "$(readlink "/proc/$pid/cwd" 2>/dev/null)" in
      "$1"/target/*) echo "$pid" ;;
    esac
  done
}
