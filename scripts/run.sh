#!/usr/bin/env bash
# Runs a Consul dev agent and one instance of each service on loopback, in the
# foreground. Ctrl-C (or SIGTERM) stops the services first, so they
# deregister from a Consul that is still there, then Consul.
set -euo pipefail
cd "$(dirname "$0")/.."

pids=()
stop() {
  trap - INT TERM EXIT
  for ((i=${#pids[@]}-1; i>=1; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for ((i=${#pids[@]}-1; i>=1; i--)); do wait "${pids[$i]}" 2>/dev/null || true; done
  if ((${#pids[@]})); then kill -TERM "${pids[0]}" 2>/dev/null || true; wait "${pids[0]}" 2>/dev/null || true; fi
}
trap stop INT TERM EXIT

# setsid: Ctrl-C reaches the whole foreground process group; Consul, in a
# session of its own, must outlive the services so they can deregister.
setsid bin/consul agent -dev -client 127.0.0.1 -bind 127.0.0.1 -log-level warn &
pids+=($!)
export CONSUL_HTTP_ADDR=127.0.0.1:8500
for s in metadata rating movie; do
  "bin/$s" -host 127.0.0.1 &
  pids+=($!)
done
echo "movieapp running: curl 'http://127.0.0.1:8083/movie?id=1'  Consul UI: http://127.0.0.1:8500/ui  (Ctrl-C stops)"
wait -n "${pids[@]}" || true
