#!/usr/bin/env bash
# Usage: scripts/stack.sh up [DOCKER-COMPOSE-UP-FLAG...]   (make up)
#        scripts/stack.sh down                            (make down)
#
# up runs docker-compose.yml in the background, with or without a registry:
# the official Consul, Prometheus and Jaeger images when they are on this
# machine or can be pulled, else images built here from bin/consul,
# bin/prometheus and bin/jaeger (make images; pulls nothing). It says which in one line. The services'
# images are always built here from this checkout's code (the same images the
# Dockerfile's golang stage makes, without pulling golang), and compose is
# told not to build. It waits until movie answers /ready.
#
# An up that fails (or is interrupted) takes down what it created: the
# containers and network, and the volumes that did not exist before it. A
# volume that was already there may hold a user's data (ratings written
# through an earlier stack) and is never removed; nor is a stack that was
# already there before this up.
#
# down stops the stack and removes its containers and network; the volumes,
# and so the data, stay (docker-compose down -v removes them).
#
# The project is the one a plain docker-compose command in this directory
# uses, so docker-compose ps, logs and --scale see the same stack.
set -euo pipefail
cd "$(dirname "$0")/.."

MAKE=${MAKE:-make}
export MOVIEAPP_TAG=${MOVIEAPP_TAG:-latest}
# PROBE_TIMEOUT: seconds to wait for a registry to answer, per image.
PROBE_TIMEOUT=${PROBE_TIMEOUT:-10}
# READY_TIMEOUT: seconds to wait for movie's /ready after docker-compose up.
READY_TIMEOUT=${READY_TIMEOUT:-120}

if command -v docker-compose >/dev/null; then
  compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  echo "stack: neither docker-compose nor the docker compose plugin is installed" >&2
  exit 1
fi

# project: the name compose gives the project, passed on explicitly so that
# the volumes this script lists are the ones compose creates.
# COMPOSE_PROJECT_NAME (environment, then .env), else the directory's name,
# lowercased, keeping [a-z0-9_-].
project=${COMPOSE_PROJECT_NAME:-}
if [[ -z "$project" && -f .env ]]; then
  project=$(sed -n 's/^COMPOSE_PROJECT_NAME=//p' .env | tail -n 1)
fi
project=${project:-$(basename "$PWD")}
project=$(printf '%s' "$project" | tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9_-' | sed 's/^[-_]*//')
compose+=(-p "$project")
label=com.docker.compose.project=$project

# with_timeout SECONDS COMMAND...: COMMAND, killed after SECONDS (timeout(1)
# is not on every machine).
with_timeout() {
  local secs=$1 pid watchdog rc=0
  shift
  "$@" &
  pid=$!
  (
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    sleep "$secs" &
    sleeper=$!
    wait "$sleeper"
    kill -KILL "$pid" 2>/dev/null # docker ignores a first SIGTERM while it dials
  ) &
  watchdog=$!
  wait "$pid" || rc=$?
  kill "$watchdog" 2>/dev/null || true
  wait "$watchdog" 2>/dev/null || true
  return "$rc"
}

# http_status HOST:PORT PATH prints the HTTP status code of GET PATH, or
# nothing. Bash's /dev/tcp, because curl is not on every machine.
http_status() {
  (
    exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$2" "$1" >&3
    read -r -t 5 _ code _ <&3 && printf '%s' "$code"
  ) 2>/dev/null || true
}

# image SERVICE prints the image compose runs for SERVICE, as it resolves it
# now (CONSUL_IMAGE, PROMETHEUS_IMAGE and JAEGER_IMAGE from the environment or .env, else
# docker-compose.yml's defaults).
image() {
  "${compose[@]}" config | awk -v svc="  $1:" '/^  [^ ]/ { in_svc = ($0 == svc) } in_svc && /^    image: / { print $2; exit }'
}

# published SERVICE PORT prints the host address SERVICE's PORT is
# published on, with 0.0.0.0 and :: read as loopback.
published() {
  local addr
  addr=$("${compose[@]}" port "$1" "$2" 2>/dev/null | head -n 1)
  addr=${addr/#0.0.0.0:/127.0.0.1:}
  addr=${addr/#\[::\]:/127.0.0.1:}
  addr=${addr/#:::/127.0.0.1:}
  printf '%s' "$addr"
}

# choose_images decides between the official images and the local ones,
# sets build (the make target that builds what compose will run), and says
# which in one line.
choose_images() {
  local official img missing=() reason
  official=("$(image consul)" "$(image prometheus)" "$(image jaeger)")
  for img in "${official[@]}"; do
    docker image inspect "$img" >/dev/null 2>&1 || missing+=("$img")
  done
  for img in ${missing[@]+"${missing[@]}"}; do
    # A manifest is a few kB: it tells whether the registry answers without
    # pulling the image. Without a network it fails in milliseconds (DNS);
    # the timeout is for networks that drop packets.
    if ! reason=$(with_timeout "$PROBE_TIMEOUT" docker manifest inspect "$img" 2>&1 >/dev/null); then
      reason=$(printf '%s' "${reason:-no answer within ${PROBE_TIMEOUT}s}" | tail -n 1 | sed 's/^.*dial tcp: //')
      export CONSUL_IMAGE=movieapp/consul:$MOVIEAPP_TAG PROMETHEUS_IMAGE=movieapp/prometheus:$MOVIEAPP_TAG JAEGER_IMAGE=movieapp/jaeger:$MOVIEAPP_TAG
      build=images
      echo "make up: $img cannot be pulled ($reason): using images built here, CONSUL_IMAGE=$CONSUL_IMAGE PROMETHEUS_IMAGE=$PROMETHEUS_IMAGE JAEGER_IMAGE=$JAEGER_IMAGE (make images; the first time builds bin/consul, bin/prometheus and bin/jaeger, several minutes)"
      return
    fi
  done
  build=service-images
  if ((${#missing[@]})); then
    reason="docker-compose pulls them"
  else
    reason="already on this machine"
  fi
  echo "make up: using the official images ${official[0]}, ${official[1]} and ${official[2]} ($reason); the services' images are built here"
}

# Set by up for undo: what the project had before this up.
containers_before='' volumes_before=''

# undo removes what a failed up created: the containers and network, and the
# volumes that were not there before it. A project that had containers
# before is left alone: it is the user's stack, not this up's.
undo() {
  trap - INT TERM
  if [[ -n "$containers_before" ]]; then
    echo "make up failed; project $project had containers before it: left as they are (make down stops them)" >&2
    return
  fi
  echo "make up failed or was interrupted: removing what it created (containers, network, the volumes it created)" >&2
  "${compose[@]}" down --remove-orphans >&2 || true
  local v
  for v in $(docker volume ls -q --filter "label=$label"); do
    grep -qxF "$v" <<<"$volumes_before" || docker volume rm "$v" >/dev/null || true
  done
}

up() {
  docker info >/dev/null 2>&1 || { echo "make up: no Docker engine answers (docker info)" >&2; exit 1; }
  choose_images
  "$MAKE" --no-print-directory "$build" MOVIEAPP_TAG="$MOVIEAPP_TAG"

  containers_before=$(docker ps -aq --filter "label=$label")
  volumes_before=$(docker volume ls -q --filter "label=$label")
  trap 'undo; exit 130' INT
  trap 'undo; exit 143' TERM
  # --no-build: the images were just built; compose must not fall back to
  # building in the golang image.
  if ! "${compose[@]}" up -d --no-build "$@"; then
    undo
    exit 1
  fi

  local movie consul prometheus jaeger deadline=$((SECONDS + READY_TIMEOUT))
  movie=$(published movie 8083)
  consul=$(published consul 8500)
  prometheus=$(published prometheus 9090)
  jaeger=$(published jaeger 16686)
  until [[ "$(http_status "$movie" /ready)" == 200 ]]; do
    if ((SECONDS >= deadline)); then
      echo "make up: movie on $movie was not ready within ${READY_TIMEOUT}s; the containers and their last logs:" >&2
      "${compose[@]}" ps >&2 || true
      "${compose[@]}" logs --no-color --tail 20 >&2 || true
      undo
      exit 1
    fi
    sleep 0.5
  done
  trap - INT TERM
  if [[ "$build" == images ]]; then
    echo "movieapp up: curl 'http://$movie/movie?id=1'  Consul UI: http://$consul/ui  Prometheus API: http://$prometheus/api/v1/targets  Jaeger API: http://$jaeger/api/traces/<trace-id> (no Prometheus or Jaeger UI in the images built here)  (make down stops it)"
    echo "other docker-compose commands on this stack need the same images: CONSUL_IMAGE=$CONSUL_IMAGE PROMETHEUS_IMAGE=$PROMETHEUS_IMAGE JAEGER_IMAGE=$JAEGER_IMAGE docker-compose ..."
  else
    echo "movieapp up: curl 'http://$movie/movie?id=1'  Consul UI: http://$consul/ui  Prometheus: http://$prometheus  Jaeger: http://$jaeger  (make down stops it)"
  fi
}

# down stops the stack. It runs compose with the images the project's
# Consul, Prometheus and Jaeger containers came from, so that compose
# resolves the stack as the up that started it did.
down() {
  local svc id var
  for svc in consul prometheus jaeger; do
    id=$(docker ps -aq --filter "label=$label" --filter "label=com.docker.compose.service=$svc" | head -n 1)
    [[ -z "$id" ]] && continue
    var=${svc^^}_IMAGE
    export "$var=$(docker inspect -f '{{.Config.Image}}' "$id")"
  done
  "${compose[@]}" down --remove-orphans
  echo "movieapp down: the volumes (the services' data) stay; docker-compose -p $project down -v removes them"
}

case "${1:-}" in
up) shift; up "$@" ;;
down) down ;;
*) echo "usage: $0 up [docker-compose up flag...] | down" >&2; exit 2 ;;
esac
