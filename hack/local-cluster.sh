#!/usr/bin/env bash
# A real local control plane on loopback: etcd, kube-apiserver (TLS, RBAC, token-authenticated
# admin, ServiceAccount token issuing) and kube-controller-manager with the built-in
# controllers our tests rely on. With NBG_NODE=real, also a real node (hack/local-node.sh:
# containerd, kubelet, kube-proxy in a network namespace of its own) and kube-scheduler, and the
# controllers a node needs (node lifecycle, Endpoints and EndpointSlices); otherwise no node: pods are run by
# the e2e tests' kubelet double.
#
# usage: hack/local-cluster.sh up|down|status|env
#   up      build missing binaries, start the components, wait until ready, install our CRDs
#           (idempotent)
#   down    stop every component this script started and delete the cluster's data
#   status  say what is running
#   env     print `export KUBECONFIG=...` for the shell
#
# Environment: NBG_CLUSTER_DIR (state, default target/local-cluster), NBG_ETCD_PORT,
# NBG_ETCD_PEER_PORT, NBG_APISERVER_PORT, NBG_APISERVER_EXTRA_ARGS (more kube-apiserver flags,
# space-separated, e.g. --min-request-timeout=10), so tests can run a control plane of their own;
# NBG_NODE=real for a real node.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=lib/versions.sh
source "$here/lib/versions.sh"
# shellcheck source=lib/kubeconfig.sh
source "$here/lib/kubeconfig.sh"
# shellcheck source=lib/components.sh
source "$here/lib/components.sh"

state="${NBG_CLUSTER_DIR:-$repo/target/local-cluster}"
pki="$state/pki"
logs="$state/logs"
pids="$state/pids"
kubeconfig="$state/kubeconfig"
etcd_port="${NBG_ETCD_PORT:-23790}"
etcd_peer_port="${NBG_ETCD_PEER_PORT:-23800}"
apiserver_port="${NBG_APISERVER_PORT:-16443}"
components=(etcd kube-apiserver kube-controller-manager)
real_node=""
if [ "${NBG_NODE:-}" = real ]; then
  real_node=1
  components+=(kube-scheduler)
fi

say() { printf '[local-cluster] %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

bin() { "$here/build-binaries.sh" --path "$1"; }

port_in_use() { ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }
port_owner() { ss -Htlnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*",pid=[0-9]*\).*/\1/p' | head -n1; }

# Certificates, keys and tokens are made once and kept, so a warm start does no crypto work.
ensure_pki() {
  mkdir -p "$pki"
  [ -f "$pki/ca.crt" ] && [ -f "$pki/apiserver.crt" ] && [ -f "$pki/sa.key" ] && [ -f "$pki/tokens.csv" ] && return
  say "creating certificates and tokens in $pki"
  command -v openssl >/dev/null || die "openssl is needed to create the cluster's certificates"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=notebook-gitops-local-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt \
      -days 3650 -extfile apiserver.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    admin="$(openssl rand -hex 24)"; kcm="$(openssl rand -hex 24)"
    printf '%s,admin,admin-uid,system:masters\n%s,system:kube-controller-manager,kcm-uid,system:masters\n' "$admin" "$kcm" >tokens.csv
    chmod 600 ./*.key tokens.csv
  )
}

token_of() { awk -F, -v u="$1" '$2==u {print $1}' "$pki/tokens.csv"; }

# The users of a real node's components (added to tokens.csv once) and the API server's client
# certificate for the kubelet (logs, exec, port-forward).
ensure_node_credentials() {
  local user group pair
  for pair in "system:node:${NBG_NODE_NAME:-nbg-node}|system:nodes" "system:kube-proxy|" "system:kube-scheduler|" "system:coredns|"; do
    group="${pair#*|}"; user="${pair%|*}"
    [ -n "$(token_of "$user")" ] && continue
    printf '%s,%s,%s-uid%s\n' "$(openssl rand -hex 24)" "$user" "${user//:/-}" "${group:+,$group}" >>"$pki/tokens.csv"
  done
  [ -f "$pki/kubelet-client.crt" ] && return
  (
    cd "$pki"
    openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out kubelet-client.csr \
      -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >kubelet-client.ext
    openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out kubelet-client.crt -days 3650 -extfile kubelet-client.ext 2>/dev/null
    chmod 600 kubelet-client.key
  )
}


wait_ready() { # name check-command... ; fails fast when the process dies
  local name="$1"; shift
  local deadline=$((SECONDS + ${NBG_CLUSTER_START_TIMEOUT:-90}))
  until "$@" >/dev/null 2>&1; do
    if ! alive "$name"; then
      say "$name exited during start-up; last lines of $logs/$name.log:"
      tail -n 15 "$logs/$name.log" >&2 || true
      stop_all
      die "$name crashed; its log is $logs/$name.log"
    fi
    [ $SECONDS -lt $deadline ] || { stop_all; die "$name not ready after ${NBG_CLUSTER_START_TIMEOUT:-90}s; its log is $logs/$name.log"; }
    sleep 0.2
  done
}

apiserver_ready() {
  curl -sf --cacert "$pki/ca.crt" -H "Authorization: Bearer $(token_of admin)" \
    "https://127.0.0.1:$apiserver_port/readyz" | grep -q ok
}

# `kubectl wait --for=condition=Established` fails at once, instead of waiting, while a new CRD has
# no conditions yet; poll the condition instead.
wait_crds_established() {
  local deadline=$((SECONDS + 30)) states
  while [ $SECONDS -lt $deadline ]; do
    states="$("$(bin kubectl)" --kubeconfig "$kubeconfig" get crd \
      -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Established")].status}{"\n"}{end}' 2>/dev/null || true)"
    if [ -n "$states" ] && ! grep -qv '^True$' <<<"$states"; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

stop_all() {
  local c
  if [ -f "$state/node/id" ]; then "$here/local-node.sh" down || true; fi
  for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$c"; done
}

cmd_up() {
  local started=$SECONDS
  mkdir -p "$logs" "$pids"
  local all_alive=1 c
  for c in "${components[@]}"; do alive "$c" || all_alive=""; done
  if [ -n "$real_node" ] && ! "$here/local-node.sh" status 2>/dev/null | grep -q '^kubelet: running'; then all_alive=""; fi
  if [ -n "$all_alive" ] && apiserver_ready; then
    say "already running; KUBECONFIG=$kubeconfig"
    return
  fi
  # A partial cluster (a component crashed since) is restarted whole.
  stop_all
  "$here/build-binaries.sh" etcd kube-apiserver kube-controller-manager kubectl ${real_node:+kube-scheduler kubelet kube-proxy coredns} \
    || die "building the control-plane binaries failed (see the output above)"
  for c in "${components[@]}"; do [ -x "$(bin "$c")" ] || die "missing build of $c at $(bin "$c")"; done
  for port in "$etcd_port" "$etcd_peer_port" "$apiserver_port"; do
    if port_in_use "$port"; then
      die "port $port is in use by another process ($(port_owner "$port")); stop it or set NBG_ETCD_PORT / NBG_ETCD_PEER_PORT / NBG_APISERVER_PORT"
    fi
  done
  ensure_pki
  rm -rf "$state/etcd-data"
  write_kubeconfig "$kubeconfig" admin "https://127.0.0.1:$apiserver_port"
  write_kubeconfig "$state/kube-controller-manager.kubeconfig" system:kube-controller-manager "https://127.0.0.1:$apiserver_port"
  # A real node: its network first (the API server advertises the host end of its link), the
  # kubelet's and kube-proxy's users, and what the API server needs to reach the kubelet.
  local node_args="" node_controllers=""
  if [ -n "$real_node" ]; then
    ensure_node_credentials
    write_kubeconfig "$state/kube-scheduler.kubeconfig" system:kube-scheduler "https://127.0.0.1:$apiserver_port"
    "$here/local-node.sh" link
    local host_ip; host_ip="10.201.$(cat "$state/node/id").1"
    node_args="--bind-address 0.0.0.0 --advertise-address $host_ip --endpoint-reconciler-type lease"
    node_args+=" --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction"
    node_args+=" --kubelet-client-certificate $pki/kubelet-client.crt --kubelet-client-key $pki/kubelet-client.key"
    node_args+=" --kubelet-preferred-address-types InternalIP"
    # The Endpoints controller too: the API server's service proxy (`kubectl proxy` to a Service,
    # trigger-controller's check of a served model) still routes by Endpoints, not EndpointSlices.
    node_controllers=",node-lifecycle-controller,endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller,ttl-after-finished-controller"
  fi

  say "starting etcd on 127.0.0.1:$etcd_port"
  start etcd "$(bin etcd)" --name local --data-dir "$state/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "local=http://127.0.0.1:$etcd_peer_port" --unsafe-no-fsync --log-level warn
  wait_ready etcd curl -sf "http://127.0.0.1:$etcd_port/health"

  say "starting kube-apiserver on https://127.0.0.1:$apiserver_port"
  # shellcheck disable=SC2086 # node_args are separate flags
  start kube-apiserver "$(bin kube-apiserver)" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    ${node_args:---bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none --authorization-mode RBAC} \
    --secure-port "$apiserver_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --token-auth-file "$pki/tokens.csv" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --api-audiences https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range 10.0.0.0/24 \
    --enable-priority-and-fairness=false \
    --profiling=false \
    ${NBG_APISERVER_EXTRA_ARGS:-}
  wait_ready kube-apiserver apiserver_ready

  say "starting kube-controller-manager"
  start kube-controller-manager "$(bin kube-controller-manager)" \
    --kubeconfig "$state/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$state/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$state/kube-controller-manager.kubeconfig" \
    --controllers namespace-controller,garbage-collector-controller,deployment-controller,replicaset-controller,job-controller,serviceaccount-controller,root-ca-certificate-publisher-controller,statefulset-controller,daemonset-controller,disruption-controller,persistentvolumeclaim-protection-controller,persistentvolume-binder-controller$node_controllers \
    --root-ca-file "$pki/ca.crt" \
    --service-account-private-key-file "$pki/sa.key" \
    --leader-elect=false --secure-port 0 \
    --concurrent-gc-syncs 5
  # Ready once it has created the default ServiceAccount (serviceaccount controller running).
  wait_ready kube-controller-manager "$(bin kubectl)" --kubeconfig "$kubeconfig" -n default get serviceaccount default

  if [ -n "$real_node" ]; then
    say "starting kube-scheduler"
    start kube-scheduler "$(bin kube-scheduler)" --kubeconfig "$state/kube-scheduler.kubeconfig" \
      --authentication-kubeconfig "$state/kube-scheduler.kubeconfig" \
      --authorization-kubeconfig "$state/kube-scheduler.kubeconfig" \
      --leader-elect=false --secure-port 0
    "$here/local-node.sh" up || { stop_all; die "the real node did not start (its logs: $logs/)"; }
  fi

  # The project's own API, so the cluster is ready for NotebookValidationJobs at once.
  "$(bin kubectl)" --kubeconfig "$kubeconfig" apply --server-side --force-conflicts -f "$repo/manifests/crds" >/dev/null \
    || die "installing the CRDs from manifests/crds failed"
  wait_crds_established || die "the CRDs from manifests/crds were not established within 30 s"

  say "ready in $((SECONDS - started)) s (NotebookValidationJob CRD installed)"
  cat >&2 <<MSG
[local-cluster] kubeconfig: $kubeconfig
[local-cluster] use it:     export KUBECONFIG=$kubeconfig   (or: hack/just kubectl get ns)
[local-cluster] logs:       $logs/
[local-cluster] stop it:    hack/just cluster-down
MSG
}

cmd_down() {
  stop_all
  rm -rf "$state/etcd-data"
  say "stopped"
}

cmd_status() {
  local c
  for c in "${components[@]}"; do
    if alive "$c"; then echo "$c: running (pid $(pid_of "$c"))"; else echo "$c: stopped"; fi
  done
  if [ -f "$state/node/id" ]; then "$here/local-node.sh" status; fi
  if alive kube-apiserver && apiserver_ready; then echo "api: ready at https://127.0.0.1:$apiserver_port (KUBECONFIG=$kubeconfig)"; fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) echo "export KUBECONFIG=$kubeconfig" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
