#!/usr/bin/env bash
# Runs a Consul dev agent and one instance of each service on loopback, in the
# foreground. The services start once Consul has elected itself leader, so a
# clean start logs no "registry not reachable, retrying". Ctrl-C (or SIGTERM)
# stops the services first, so they deregister from a Consul that is still
# there, then Consul.
set -euo pipefail
cd "$(dirname "$0")/.."

# CONSUL_START: how long to wait for Consul's leader, in seconds.
CONSUL_START=${CONSUL_START:-30}

# A port already taken means another `make run` or `make up` is running: the
# services would register in that stack's Consul, or fail to listen.
for port in 8500 8081 8082 8083; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run: 127.0.0.1:$port is already in use (another make run or make up?); stop that first (ss -ltnp shows who holds it)" >&2
    exit 1
  fi
done

pids=()
stop() {
  trap - INT TERM EXIT
  for ((i=${#pids[@]}-1; i>=1; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for ((i=${#pids[@]}-1; i>=1; i--)); do wait "${pids[$i]}" 2>/dev/null || true; done
  if ((${#pids[@]})) && kill -0 "${pids[0]}" 2>/dev/null; then
    echo "run: services stopped and deregistered; stopping Consul, whose dev agent logs a few ERRORs as it shuts down (context canceled, client connection is closing): expected"
    kill -TERM "${pids[0]}" 2>/dev/null || true
    wait "${pids[0]}" 2>/dev/null || true
  fi
}
trap stop INT TERM EXIT

# leader prints the body of Consul's /v1/status/leader: `""` until the dev
# agent has elected itself, then `"127.0.0.1:8300"`. Bash's /dev/tcp, because
# curl is not on every machine.
leader() {
  (
    exec 3<>/dev/tcp/127.0.0.1/8500 || exit 1
    printf 'GET /v1/status/leader HTTP/1.0\r\nHost: 127.0.0.1:8500\r\n\r\n' >&3
    IFS= read -r -t 2 -d '' response <&3 || true
    printf '%s' "${response##*$'\r\n\r\n'}"
  ) 2>/dev/null
}

# setsid: Ctrl-C reaches the whole foreground process group; Consul, in a
# session of its own, must outlive the services so they can deregister.
# -log-level error: at warn, a dev agent logs a WARN as it elects itself
# ("heartbeat timeout reached, starting election") and a dozen more as it
# shuts down ("Shutdown without a Leave", watches canceled), all expected.
setsid bin/consul agent -dev -client 127.0.0.1 -bind 127.0.0.1 -log-level error &
pids+=($!)
deadline=$((SECONDS + CONSUL_START))
until [[ $(leader) == \"?*\" ]]; do
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "run: Consul exited at start (its output is above)" >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "run: Consul on 127.0.0.1:8500 had no leader within ${CONSUL_START}s; not starting the services" >&2
    exit 1
  fi
  sleep 0.1
done

export CONSUL_HTTP_ADDR=127.0.0.1:8500
for s in metadata rating movie; do
  "bin/$s" -host 127.0.0.1 &
  pids+=($!)
done
echo "movieapp running: curl 'http://127.0.0.1:8083/movie?id=1'  Consul UI: http://127.0.0.1:8500/ui  (Ctrl-C stops)"
wait -n "${pids[@]}" || true
