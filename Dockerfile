# Multi-stage build: a static-ish release binary on a slim Debian base.
# Pure-Rust TLS (rustls), so amd64 and arm64 build the same way:
#   docker buildx build --platform linux/amd64,linux/arm64 -t nas-sync .
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked --bin nas-sync

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 nas-sync
COPY --from=build /src/target/release/nas-sync /usr/local/bin/nas-sync
USER nas-sync
ENV NAS_SYNC_BIND=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD curl -fsS http://127.0.0.1:8080/ready || exit 1
ENTRYPOINT ["nas-sync"]
CMD ["serve"]
