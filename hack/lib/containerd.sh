# What the real node's containerd (hack/local-node.sh) and the image seed's (hack/node-seed.sh)
# share.

# containerd_config_head ROOT STATE SOCKET [PLUGIN...]: the start of a containerd (config version
# 2) of the project's own: its root, state and socket (ttrpc beside it), no debug socket, and
# disabled the snapshotters this machine cannot use and each PLUGIN.
containerd_config_head() {
  local root="$1" state="$2" socket="$3" plugin
  shift 3
  local disabled=""
  for plugin in "$@" io.containerd.snapshotter.v1.aufs io.containerd.snapshotter.v1.btrfs \
    io.containerd.snapshotter.v1.zfs io.containerd.snapshotter.v1.devmapper; do
    disabled+="${disabled:+, }\"$plugin\""
  done
  cat <<TOML
version = 2
root = "$root"
state = "$state"
disabled_plugins = [$disabled]
[grpc]
  address = "$socket"
[ttrpc]
  address = "$socket.ttrpc"
[debug]
  address = ""
TOML
}
