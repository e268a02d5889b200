# syntax=docker/dockerfile:1
# The blox daemon image. Build from the repository root:
#   docker build -t blox:local .
# Stage 1 compiles the `blox-daemon` binary in release; stage 2 is a small
# Debian runtime with the binary, CA certificates (AWS APIs over TLS) and curl
# (the health check), running as an unprivileged user.
#
# The production image has no test code: it builds the binary target (an
# example would pull in the dev-dependencies' test kits) with no features.
# `--simulate` needs the simulator, which only an image built with
#   docker build --build-arg FEATURES=simulator -t blox:local-simulate .
# carries (deploy/local/compose.simulate.yaml does this).

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cargo features of blox-examples to build in; empty for production.
ARG FEATURES=""
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p blox-examples --bin blox-daemon --features "$FEATURES" \
 && install -D -m 0755 target/release/blox-daemon /out/blox-daemon

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 blox \
 && useradd --system --uid 10001 --gid blox --no-create-home --shell /usr/sbin/nologin blox
COPY --from=build /out/blox-daemon /usr/local/bin/blox-daemon
USER 10001:10001
# Listen on every interface inside the container; override with BLOX_BIND or --bind.
ENV BLOX_BIND=0.0.0.0:2000
EXPOSE 2000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:2000/v1/ping"]
ENTRYPOINT ["/usr/local/bin/blox-daemon"]
