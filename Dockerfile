# forge-sidecar image: build with the locked dependency set, run as non-root.
#   docker build -t forge-sidecar .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The sidecar and the host tool, each package built on its own (the script
# the end-to-end tests run too): no other workspace member's features are
# unified into either binary.
RUN tests/build-shipped.sh --release

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin forge \
 && mkdir -p /run/forge/queue \
 && chown -R forge:forge /run/forge
COPY --from=build /src/target/shipped/release/forge-sidecar /src/target/shipped/release/forge-queue /usr/local/bin/
USER forge
ENV FORGE_SOCKET=/run/forge/forge.sock \
    FORGE_QUEUE_DIR=/run/forge/queue
# The socket directory is shared with the agent, the queue with the host.
VOLUME ["/run/forge", "/run/forge/queue"]
HEALTHCHECK --interval=10s --timeout=3s CMD ["forge-sidecar", "health"]
ENTRYPOINT ["forge-sidecar", "serve"]
