# write_kubeconfig PATH USER SERVER [TLS_SERVER_NAME]: a kubeconfig for USER's token (from
# $pki/tokens.csv) against SERVER, trusting the local CA ($pki/ca.crt); TLS_SERVER_NAME when
# SERVER's address is not in the API server's certificate (the real node's link).
write_kubeconfig() {
  local path="$1" user="$2" server="$3" server_name="${4:-}"
  local ca token
  ca="$(base64 -w0 <"$pki/ca.crt")"
  token="$(awk -F, -v u="$user" '$2==u {print $1}' "$pki/tokens.csv")"
  [ -n "$token" ] || { echo "error: no token for $user in $pki/tokens.csv" >&2; exit 1; }
  cat >"$path" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: $server
    certificate-authority-data: $ca${server_name:+
    tls-server-name: $server_name}
users:
- name: $user
  user:
    token: $token
contexts:
- name: local
  context: {cluster: local, user: $user}
current-context: local
KCFG
  chmod 600 "$path"
}
