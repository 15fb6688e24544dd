#!/usr/bin/env bash
# A real node beside the local control plane (hack/local-cluster.sh starts it with NBG_NODE=real):
# containerd + runc + the CNI bridge, the kubelet and kube-proxy, in a network namespace of
# the node's own, so two planes' nodes on one machine share no address, port or iptables rule;
# and cluster DNS: CoreDNS on the host end of the link behind the Service kube-system/kube-dns
# (10.0.0.10), which the kubelet gives pods as their nameserver.
#
#   host                                   netns nbg-node-<k>
#   10.201.<k>.1/30 (nbg-h<k>) ---- veth ---- 10.201.<k>.2/30: node IP (kubelet :10250)
#   route 10.202.<k>.0/24 via .2              cni0 10.202.<k>.1/24: pods; kube-proxy's rules
#
# The API server listens on every host address; the node and its pods reach it at
# 10.201.<k>.1 (the `kubernetes` Service's endpoint), the host reaches pods through the route.
# Everything the node changes on the host - the network namespace and its link, the route,
# /var/lib/nbg-node/<k>, /run/nbg-node/<k>, the pods' logs in /var/log/nbg-node/<k> and the
# kubelet's links to them in /var/log/containers, the mounts below them, the cgroups
# /nbg-node-<k>, the pod network namespaces - is undone by `down`.
#
# usage: hack/local-node.sh link|up|down|status    (the environment of hack/local-cluster.sh;
#        NBG_NODE_IMAGE_DIR: a directory of more image archives to import, the controllers')
#   link  allocate the node's number and network (before the API server starts: it advertises
#         the host end of the link)
#   up    start containerd with hack/node-images.sh's images (hack/node-seed.sh) and import the
#         controllers', start CoreDNS, the kubelet and kube-proxy; wait
#         until the node is Ready and cluster names resolve
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=lib/versions.sh
source "$here/lib/versions.sh"
# shellcheck source=lib/processes.sh
source "$here/lib/processes.sh"
# shellcheck source=lib/kubeconfig.sh
source "$here/lib/kubeconfig.sh"
# shellcheck source=lib/components.sh
source "$here/lib/components.sh"
# shellcheck source=lib/containerd.sh
source "$here/lib/containerd.sh"

state="${NBG_CLUSTER_DIR:-$repo/target/local-cluster}"
# The kube-dns Service's address in the API server's Service range (10.0.0.0/24).
cluster_dns_ip=10.0.0.10
node_state="$state/node"
pki="$state/pki"
logs="$state/logs"
pids="$state/pids"
apiserver_port="${NBG_APISERVER_PORT:-16443}"
node_name="${NBG_NODE_NAME:-nbg-node}"

say() { printf '[local-node] %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
bin() { "$here/build-binaries.sh" --path "$1"; }

node_id() { [ -f "$node_state/id" ] && cat "$node_state/id" || true; }
netns_of() { echo "nbg-node-$1"; }
in_node() { nsenter --net="/run/netns/$(netns_of "$(node_id)")" "$@"; }
# In the node's network namespace (the host's mount namespace: the kubelet's volume mounts must
# be the ones containerd sees, which `ip netns exec` would not give).
start_in_node() { # name command...
  local name="$1"; shift
  start "$name" nsenter --net="/run/netns/$(netns_of "$(node_id)")" "$@"
}

# The node's number k: the first free network namespace nbg-node-<k> (`ip netns add` is the lock).
cmd_link() {
  install_missing ip:iproute2 nsenter:util-linux
  mkdir -p "$node_state"
  local k; k="$(node_id)"
  if [ -n "$k" ] && [ -e "/run/netns/$(netns_of "$k")" ]; then return; fi
  for k in $(seq 1 200); do
    ip netns add "$(netns_of "$k")" 2>/dev/null && break
    k=""
  done
  [ -n "$k" ] || die "no free node network: nbg-node-1 ... nbg-node-200 all exist (ip netns list; hack/local-cluster.sh down stops the nodes it started)"
  echo "$k" >"$node_state/id"
  local ns; ns="$(netns_of "$k")"
  ip link add "nbg-h$k" type veth peer name eth0 netns "$ns"
  ip addr add "10.201.$k.1/30" dev "nbg-h$k"
  ip link set "nbg-h$k" up
  ip -n "$ns" addr add "10.201.$k.2/30" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" route add default via "10.201.$k.1"
  ip route add "10.202.$k.0/24" via "10.201.$k.2"
  in_node sysctl -qw net.ipv4.ip_forward=1
  say "node network nbg-node-$k: node IP 10.201.$k.2, pods 10.202.$k.0/24, the API server at 10.201.$k.1:$apiserver_port"
}

host_ip() { echo "10.201.$(node_id).1"; }
node_ip() { echo "10.201.$(node_id).2"; }

# The node's components reach the API server at the host end of the link, which its
# certificate does not name: they verify it as "kubernetes".
node_kubeconfig() { write_kubeconfig "$1" "$2" "https://$(host_ip):$apiserver_port" kubernetes; }

write_configs() {
  local k; k="$(node_id)"
  local lib="/var/lib/nbg-node/$k" run="/run/nbg-node/$k"
  mkdir -p "$lib/cni" "$run" "$node_state"
  containerd_config_head "$lib/containerd" "$run/containerd" "$run/containerd.sock" >"$node_state/containerd.toml"
  cat >>"$node_state/containerd.toml" <<TOML
[plugins."io.containerd.internal.v1.opt"]
  path = "$lib/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_ref"
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails to start.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$run/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$lib/cni"
TOML
  cat >"$lib/cni/10-nbg.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "nbg-pods", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$run/ipam", "ranges": [[{"subnet": "10.202.$k.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
JSON
  node_kubeconfig "$node_state/kubelet.kubeconfig" "system:node:$node_name"
  node_kubeconfig "$node_state/kube-proxy.kubeconfig" system:kube-proxy
  cat >"$node_state/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $(node_ip)
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$run/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /nbg-node-$k
# This machine has the cgroup v1 hierarchy (and no systemd).
failCgroupV1: false
failSwapOn: false
resolvConf: /etc/resolv.conf
clusterDNS: [$cluster_dns_ip]
clusterDomain: cluster.local
serializeImagePulls: false
# Images are imported, never pulled: garbage collection must not remove them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
nodeStatusReportFrequency: 10s
# The node's own: a kubelet removes every pod log directory of pods it does not run, so nodes
# side by side on one host must not share the default /var/log/pods.
podLogsDir: /var/log/nbg-node/$k/pods
YAML
  cat >"$node_state/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $node_state/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: 10.202.$k.0/24
hostnameOverride: $node_name
bindAddress: $(node_ip)
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Pods reach Services on the same bridge without br_netfilter.
iptables: {masqueradeAll: true}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
}

# CoreDNS serves the cluster's names as a kubeadm cluster's does; it runs on the host (no image
# to build) and listens only on the host end of this node's link, so two nodes' DNS servers
# share no address. Names outside the cluster are refused: the node has no upstream.
write_dns_config() {
  local ip; ip="$(host_ip)"
  write_kubeconfig "$node_state/coredns.kubeconfig" system:coredns "https://127.0.0.1:$apiserver_port"
  cat >"$node_state/Corefile" <<COREFILE
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $ip
    errors
    health $ip:8080
    ready $ip:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $node_state/coredns.kubeconfig local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    loadbalance
    cache 30
}
COREFILE
  # What a cluster's DNS add-on installs: CoreDNS's read access and the kube-dns Service, here
  # without a selector (CoreDNS is no pod) and with this node's address as its endpoint.
  kubectl_ apply --server-side --field-manager nbg-local-node -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $cluster_dns_ip
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: nbg-local-node}
addressType: IPv4
endpoints: [{addresses: ["$ip"], conditions: {ready: true}}]
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
YAML
}

kubectl_() { "$(bin kubectl)" --kubeconfig "$state/kubeconfig" "$@"; }

wait_for() { # what seconds check-command...
  local what="$1" seconds="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what not within ${seconds}s; logs in $logs/"
    sleep 0.2
  done
}

cmd_up() {
  local started=$SECONDS
  [ -n "$(node_id)" ] || die "no node network: run hack/local-node.sh link before the API server starts"
  install_missing containerd:containerd runc:runc iptables:iptables conntrack:conntrack
  [ -x /usr/lib/cni/bridge ] || install_packages containernetworking-plugins
  mkdir -p "$logs" "$pids"
  "$here/build-binaries.sh" kubelet kube-proxy coredns >/dev/null
  local images; images="$("$here/node-images.sh")" || die "building the node's images failed"
  pause_ref="$(awk '$1=="pause" {print $2}' <<<"$images")"
  local seed; seed="$("$here/node-seed.sh" <<<"$images")" || die "importing the node's images (hack/node-seed.sh) failed"
  write_configs
  local k; k="$(node_id)"
  local run="/run/nbg-node/$k"
  # The node's images: its containerd root starts as the seed's, layers and blobs as hard links
  # (a full copy where the seed is on another file system), the databases containerd writes copied.
  local root="/var/lib/nbg-node/$k/containerd" db
  rm -rf "$root"
  cp -al "$seed" "$root" 2>/dev/null || { rm -rf "$root"; cp -a "$seed" "$root"; }
  for db in io.containerd.metadata.v1.bolt/meta.db io.containerd.snapshotter.v1.overlayfs/metadata.db; do
    cp --remove-destination "$seed/$db" "$root/$db"
  done

  say "starting containerd"
  start_in_node containerd containerd --config "$node_state/containerd.toml"
  wait_for "containerd" 30 ctr --address "$run/containerd.sock" version
  # The controllers' images, from NBG_NODE_IMAGE_DIR: a few MB each, rebuilt with the code.
  local archive
  for archive in ${NBG_NODE_IMAGE_DIR:+"$NBG_NODE_IMAGE_DIR"/*.oci.tar}; do
    [ -f "$archive" ] || continue
    ctr --address "$run/containerd.sock" -n k8s.io images import "$archive" >/dev/null \
      || die "importing $archive into the node failed"
  done
  say "images on the node: $(ctr --address "$run/containerd.sock" -n k8s.io images ls -q | grep -v '^sha256:' | tr '\n' ' ')"

  # The kubelet's cgroup root exists in every hierarchy (cgroup v1, cgroupfs driver).
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/; do
    mkdir -p "$hierarchy/nbg-node-$k"
    if [ -f "$hierarchy/cpuset.cpus" ]; then
      cat "$hierarchy/cpuset.cpus" >"$hierarchy/nbg-node-$k/cpuset.cpus"
      cat "$hierarchy/cpuset.mems" >"$hierarchy/nbg-node-$k/cpuset.mems"
    fi
  done
  say "starting CoreDNS ($(host_ip):53, Service kube-system/kube-dns $cluster_dns_ip)"
  write_dns_config || die "creating the cluster DNS objects failed"
  start coredns "$(bin coredns)" -conf "$node_state/Corefile"
  wait_for "CoreDNS ready" 30 curl -sf "http://$(host_ip):8181/ready"
  say "starting the kubelet (node $node_name, $(node_ip))"
  start_in_node kubelet "$(bin kubelet)" --config "$node_state/kubelet.yaml" \
    --kubeconfig "$node_state/kubelet.kubeconfig" --root-dir "/var/lib/nbg-node/$k/kubelet" \
    --cert-dir "/var/lib/nbg-node/$k/kubelet-pki" \
    --hostname-override "$node_name" --node-ip "$(node_ip)"
  say "starting kube-proxy"
  start_in_node kube-proxy "$(bin kube-proxy)" --config "$node_state/kube-proxy.yaml"
  wait_for "node $node_name Ready" 90 kubectl_ wait --for=condition=Ready "node/$node_name" --timeout=1s
  say "node $node_name Ready in $((SECONDS - started)) s"
}

# Every process of the node: the components, the shims and the pods' processes.
node_processes() {
  local k="$1" c
  for c in memory pids cpu; do
    [ -d "/sys/fs/cgroup/$c/nbg-node-$k" ] && find "/sys/fs/cgroup/$c/nbg-node-$k" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
  pgrep -f "containerd-shim-runc-v2 .*-address /run/nbg-node/$k/containerd.sock" || true
}

cmd_down() {
  local k; k="$(node_id)"
  [ -n "$k" ] || return 0
  stop kube-proxy
  stop kubelet
  stop coredns
  local p
  for p in $(node_processes "$k" | sort -u); do kill -KILL "$p" 2>/dev/null || true; done
  stop containerd
  sleep 0.2
  for p in $(node_processes "$k" | sort -u); do kill -KILL "$p" 2>/dev/null || true; done
  # Mounts below the node's directories (overlay roots, volumes, pod network namespaces).
  local m
  for m in $(findmnt -rn -o TARGET | grep -E "^/(var/lib|run)/nbg-node/$k(/|$)" | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  # Its cgroups, deepest first.
  local c
  for c in /sys/fs/cgroup/*/nbg-node-"$k"; do
    [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  ip link del "nbg-h$k" 2>/dev/null || true
  # The kubelet's links to its pods' logs (/var/log/containers is the kubelet's, not a setting).
  find /var/log/containers -maxdepth 1 -lname "/var/log/nbg-node/$k/*" -delete 2>/dev/null || true
  rm -rf "/var/lib/nbg-node/$k" "/run/nbg-node/$k" "/var/log/nbg-node/$k"
  # Parents that only held this node's (rmdir leaves them when another node uses them); the
  # runc shims' socket directory.
  rmdir /var/lib/nbg-node /run/nbg-node /var/log/nbg-node /var/log/containers /run/containerd/s /run/containerd 2>/dev/null || true
  # Last: the namespace is the lock on the number k (cmd_link); released earlier, another plane
  # would take k and start in the directories being removed here.
  ip netns del "$(netns_of "$k")" 2>/dev/null || true
  rm -rf "$node_state"
  say "node nbg-node-$k stopped and removed"
}

cmd_status() {
  local k; k="$(node_id)"
  [ -n "$k" ] || { echo "node: none"; return; }
  local c
  for c in containerd kubelet kube-proxy coredns; do
    if alive "$c"; then echo "$c: running (pid $(pid_of "$c"))"; else echo "$c: stopped"; fi
  done
  echo "node network: nbg-node-$k (node IP $(node_ip))"
}

case "${1:-}" in
  link) cmd_link ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 link|up|down|status" >&2; exit 2 ;;
esac
