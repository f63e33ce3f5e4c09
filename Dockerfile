# nas-sync: multi-stage, dependencies cached in their own layer, a non-root user on
# a slim runtime image, HEALTHCHECK against /ready. Pure-Rust TLS (rustls + ring), so
# no OpenSSL. Cross-compiled by buildx (the build stage runs on the build machine):
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 -t nas-sync .
FROM --platform=$BUILDPLATFORM rust:1-slim-bookworm AS build
ARG TARGETPLATFORM
RUN set -eux; \
    case "$TARGETPLATFORM" in \
      linux/amd64) echo x86_64-unknown-linux-gnu > /target; pkgs=gcc-x86-64-linux-gnu ;; \
      linux/arm64) echo aarch64-unknown-linux-gnu > /target; pkgs=gcc-aarch64-linux-gnu ;; \
      linux/arm/v7) echo armv7-unknown-linux-gnueabihf > /target; pkgs=gcc-arm-linux-gnueabihf ;; \
      *) echo "unsupported platform $TARGETPLATFORM" >&2; exit 1 ;; \
    esac; \
    apt-get update; apt-get install -y --no-install-recommends $pkgs libc6-dev; \
    rm -rf /var/lib/apt/lists/*; \
    rustup target add "$(cat /target)"
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the manifests or Cargo.lock change.
# crates/ holds the workspace's test-only crate (the fake Odoo): Cargo needs its
# manifest to load the workspace, though a release build never compiles it.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --target "$(cat /target)" \
    && rm -rf src
COPY build.rs ./
COPY src ./src
COPY migrations ./migrations
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --target "$(cat /target)" --bin nas-sync \
    && cp "target/$(cat /target)/release/nas-sync" /nas-sync

FROM debian:bookworm-slim
# ca-certificates: HTTPS to Odoo; postgresql-client: `nas-sync backup` / `restore`.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-client-15 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin nas-sync
COPY --from=build /nas-sync /usr/local/bin/nas-sync
COPY docker/backup-loop.sh /usr/local/bin/nas-sync-backup-loop
USER nas-sync
ENV NAS_SYNC_BIND=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s CMD ["nas-sync", "healthcheck"]
ENTRYPOINT ["nas-sync"]
CMD ["serve"]
