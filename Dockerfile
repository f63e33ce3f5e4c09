# nas-sync's image: the server compiled in a build stage (thin LTO, no symbols), then
# only what runs, on an empty base: nas-sync, PostgreSQL's pg_dump, pg_restore and
# psql (for `nas-sync backup` / `restore` and the compose `backup` service) with the
# libraries they load, CA certificates, and a non-root user (uid and gid 10001; any
# other uid works too: the server writes no files). No shell and no package manager.
# A HEALTHCHECK asks /ready. Pure-Rust TLS (rustls + ring): no OpenSSL in nas-sync.
#
# BuildKit is required: the default builder of Docker 23 and later, of buildx and of
# `docker compose build`. Elsewhere set DOCKER_BUILDKIT=1 (Docker 20.10; with
# docker-compose 1.x also COMPOSE_DOCKER_CLI_BUILD=1). The legacy builder knows
# neither the platform arguments nor cache mounts, and stops with
# `failed to parse platform ""`. There is no `# syntax=` line on purpose: the
# builder's own Dockerfile frontend is used, so building needs no frontend image
# from Docker Hub (only the three base images below, or mirrors of them).
#
#   DOCKER_BUILDKIT=1 docker build -t nas-sync:local .                       # this machine's platform
#   docker buildx build --platform linux/arm64 -t nas-sync:arm64 --load .   # one other platform, loaded
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 \
#     -t REGISTRY/nas-sync:TAG --push .                                     # all three, to a registry
#
# Rust is cross-compiled on the build machine (fast, no emulation). The `runtime`
# stage's RUN executes the target's own Debian binaries, so building for another
# architecture needs QEMU registered with binfmt_misc (Docker Desktop has it; on Linux:
# `docker run --privileged --rm tonistiigi/binfmt --install arm64,arm`). With Docker's
# classic image store, `--load` takes one platform at a time; a list of platforms must
# be pushed (or use the containerd image store).
# BUILD_JOBS limits parallel compile jobs (e.g. 1 or 2 on a NAS with 2 GB of RAM).

# The Rust version follows `rust-version` in Cargo.toml (CI checks that they agree).
ARG RUST_VERSION=1.94

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-slim-bookworm AS build
ARG TARGETPLATFORM
ARG BUILD_JOBS=
# A C cross-compiler and the target's C library headers and start files (stdlib.h,
# crt1.o): ring and mimalloc compile C. `--no-install-recommends` would skip the
# libc6-dev-*-cross packages (only recommended by the gcc-* packages), so they are
# named. Building for the build machine's own architecture uses its native gcc.
RUN set -eux; \
    case "$TARGETPLATFORM" in \
      linux/amd64)  target=x86_64-unknown-linux-gnu;      arch=amd64; cross="gcc-x86-64-linux-gnu libc6-dev-amd64-cross" ;; \
      linux/arm64)  target=aarch64-unknown-linux-gnu;     arch=arm64; cross="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;; \
      linux/arm/v7) target=armv7-unknown-linux-gnueabihf; arch=armhf; cross="gcc-arm-linux-gnueabihf libc6-dev-armhf-cross" ;; \
      *) echo "unsupported platform '$TARGETPLATFORM': use linux/amd64, linux/arm64 or linux/arm/v7 (and BuildKit)" >&2; exit 1 ;; \
    esac; \
    if [ "$arch" = "$(dpkg --print-architecture)" ]; then pkgs="gcc libc6-dev"; else pkgs="$cross"; fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends $pkgs; \
    rm -rf /var/lib/apt/lists/*; \
    rustup target add "$target"; \
    echo "$target" > /target
# Linker, C compiler and archiver per target. Debian's native gcc also installs these
# triplet-prefixed names, so the same settings serve native and cross builds.
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc \
    AR_x86_64_unknown_linux_gnu=x86_64-linux-gnu-ar \
    AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
    AR_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-ar
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the manifests or Cargo.lock change.
# crates/ holds the workspace's test-only crate (the fake Odoo): Cargo needs its
# manifest to load the workspace, though this build never compiles it. Downloaded
# crates stay in a cache mount, so a rebuild on the same machine fetches nothing.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN --mount=type=cache,id=nas-sync-cargo-registry,target=/usr/local/cargo/registry \
    mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --profile dist --locked --target "$(cat /target)" ${BUILD_JOBS:+--jobs "$BUILD_JOBS"} \
    && rm -rf src
COPY build.rs ./
COPY src ./src
COPY migrations ./migrations
RUN --mount=type=cache,id=nas-sync-cargo-registry,target=/usr/local/cargo/registry \
    touch src/main.rs src/lib.rs \
    && cargo build --profile dist --locked --target "$(cat /target)" ${BUILD_JOBS:+--jobs "$BUILD_JOBS"} --bin nas-sync \
    && cp "target/$(cat /target)/dist/nas-sync" /nas-sync

# The target's Debian, only to gather the final image's files (docker/runtime-root.sh).
# ca-certificates: HTTPS to Odoo. postgresql-client-15: pg_dump, pg_restore and psql,
# the same major version as compose's PostgreSQL. libatomic1: mimalloc asks the
# linker for libatomic on 32-bit ARM.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libatomic1 postgresql-client-15 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /nas-sync /usr/local/bin/nas-sync
COPY docker/runtime-root.sh /runtime-root.sh
RUN sh /runtime-root.sh /rootfs

FROM scratch
COPY --from=runtime /rootfs /
USER 10001:10001
ENV PATH=/usr/local/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    NAS_SYNC_BIND=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s CMD ["nas-sync", "healthcheck"]
ENTRYPOINT ["nas-sync"]
CMD ["serve"]
