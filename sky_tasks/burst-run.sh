# Burst replica run: llama-server with the base layer's model and flags, on every address (the
# SkyServe load balancer reaches it there), every request asked for the API key.
set -euo pipefail
# Under the replica user's home (the file mounts land in ~/wrinklefree/releases).
BITNET_HOME=$HOME/wrinklefree/bitnet
[[ -n ${BITNET_API_KEY:-} ]] || { echo "burst run: the secret BITNET_API_KEY is empty" >&2; exit 1; }
# The key in a file only this user reads, not on the command line (ps shows that).
keyfile=$BITNET_HOME/api-key
(umask 077 && printf '%s\n' "$BITNET_API_KEY" > "$keyfile")
threads=$(lscpu -p=core,socket | grep -v '^#' | sort -u | wc -l)
# SERVER_ARGS is a list of plain flags (bitnet_server_args), split on purpose.
# shellcheck disable=SC2086
exec "$BITNET_HOME/current/bin/llama-server" -m "$BITNET_HOME/models/$MODEL_NAME.gguf" --host 0.0.0.0 \
  --port "$PORT" -t "$threads" $SERVER_ARGS --api-key-file "$keyfile"
