# The local cluster's components as background processes, one session each, tracked by pid
# files in $pids and logging to $logs: what hack/local-cluster.sh and hack/local-node.sh share.

pid_of() { [ -f "$pids/$1.pid" ] && cat "$pids/$1.pid" || true; }
alive() { local p; p="$(pid_of "$1")"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

# start NAME COMMAND...: in a session of its own (so its process group can be stopped whole).
start() {
  local name="$1"; shift
  setsid "$@" >"$logs/$name.log" 2>&1 </dev/null &
  echo $! >"$pids/$name.pid"
}

# stop NAME: SIGTERM to its process group, SIGKILL after 5 s.
stop() {
  local p; p="$(pid_of "$1")"
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$p" 2>/dev/null || true
  fi
  rm -f "$pids/$1.pid"
}
