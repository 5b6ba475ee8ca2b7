# One image per service, chosen with a build argument:
#
#   docker build --build-arg SERVICE=rating -t movieapp/rating .
#       compiles inside the golang image (the default; needs to pull it)
#   make images
#       copies static binaries built on this machine (--target prebuilt) and
#       pulls nothing: for machines that cannot reach a registry
#
# Both give the same image: the binary alone on scratch, run as an
# unprivileged user, with a writable /data and a healthcheck that needs no
# shell. It works with BuildKit and with the classic builder.

ARG SERVICE=movie
ARG GO_VERSION=1.26

# runtime is what every service image has besides its binary.
FROM scratch AS runtime
# /data (the service's files; compose mounts a volume there, which starts as
# a copy of this directory and so is writable by the user too) and /tmp.
COPY --chown=65532:65532 docker/rootfs/ /
USER 65532:65532
# The binary probes its own /ready on 127.0.0.1:$PORT (registered in Consul,
# upstreams discovered) and exits non-zero if the instance is not ready.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/service", "-healthcheck"]
# Exec form: the service is PID 1 and receives SIGTERM itself, so `docker
# stop` deregisters it from Consul, drains and exits 0.
ENTRYPOINT ["/service"]

# prebuilt takes the binary that `make images` staged as
# docker/prebuilt/<service>/service (CGO_ENABLED=0 go build on the host).
# The directory is in every clone, empty until staged, because the classic
# builder runs every stage before the one it builds: the default build below
# passes through here too and must not fail on a fresh clone.
FROM runtime AS prebuilt
ARG SERVICE
ARG VERSION=dev
LABEL org.opencontainers.image.title="movieapp-${SERVICE}" \
      org.opencontainers.image.version="${VERSION}"
COPY docker/prebuilt/${SERVICE}/ /

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG SERVICE
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
    -ldflags="-s -w -X movieexample.com/pkg/ops.Version=${VERSION}" \
    -o /out/service ./${SERVICE}/cmd

# The default target: the binary compiled above.
FROM runtime
ARG SERVICE
ARG VERSION=dev
LABEL org.opencontainers.image.title="movieapp-${SERVICE}" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/service /service
