#!/usr/bin/env bash
# TEST FIXTURE: makes sure the base images that the project's Dockerfile and compose
# file name exist on this Docker engine. An image already present, or pulled from a
# registry, is used as it is; when no registry answers (these CI machines), a
# stand-in is built from Debian packages and tagged with the official name:
#   debian:bookworm-slim          mmdebstrap (minbase) of bookworm, imported
#   rust:<ver>-slim-bookworm      Dockerfile.rust: gcc + rustup's toolchain <ver>
#   postgres:15-alpine            Dockerfile.postgres: Debian's PostgreSQL 15 with an
#                                 entrypoint that behaves as the official one does
# Stand-ins carry the label org.nas-sync.stand-in=true. The published files keep the
# official images; only this test uses stand-ins.
set -euo pipefail
# Debian's docker.io CLI (20.10, BuildKit built in) before any other docker on the PATH:
# a newer CLI without the buildx plugin refuses DOCKER_BUILDKIT=1.
export PATH="/usr/bin:$PATH"
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

rust_version=$(sed -n 's/^ARG RUST_VERSION=//p' "$root/Dockerfile")
pg_image=$(sed -n 's/^ *image: \(postgres:.*\)$/\1/p' "$root/compose/docker-compose.yml")

present_or_pulled() {
  docker image inspect "$1" >/dev/null 2>&1 && return 0
  timeout 60 docker pull -q "$1" >/dev/null 2>&1
}

note() { echo "stand-ins: $*" >&2; }
log=$(mktemp)
trap 'rm -f "$log" "${extra_cas:-}"' EXIT
# Builds quietly; prints the build's log when it fails.
build() {
  DOCKER_BUILDKIT=1 docker build --progress=plain --label org.nas-sync.stand-in=true "$@" >"$log" 2>&1 \
    || { tail -n 60 "$log" >&2; echo "stand-ins: docker build $* failed" >&2; exit 1; }
}

# This machine's own certificate authorities (a TLS-inspecting egress proxy, say):
# those in the host's bundle that Debian's ca-certificates does not ship. The
# stand-ins trust them, so HTTPS from inside builds (crates.io, rustup) works here as
# it does on the host; a later `apt-get install ca-certificates` keeps them.
extra_cas=$(mktemp --suffix=.crt)
python3 - "$extra_cas" <<'PY'
import glob, re, sys
pem = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
norm = lambda c: "".join(c.split())
try:
    host = pem.findall(open("/etc/ssl/certs/ca-certificates.crt").read())
except OSError:
    host = []
known = {norm(c) for f in glob.glob("/usr/share/ca-certificates/**/*.crt", recursive=True)
         for c in pem.findall(open(f).read())}
open(sys.argv[1], "w").write("".join(c + "\n" for c in host if norm(c) not in known))
PY

if ! present_or_pulled debian:bookworm-slim; then
  note "building debian:bookworm-slim from Debian packages (mmdebstrap)"
  tar=$(mktemp --suffix=.tar)
  mmdebstrap --quiet --variant=minbase \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"' \
    --customize-hook="copy-in $extra_cas /usr/local/share/ca-certificates/" \
    --customize-hook="chroot \"\$1\" sh -c 'mv /usr/local/share/ca-certificates/*.crt /usr/local/share/ca-certificates/this-machine.crt'" \
    bookworm "$tar" http://deb.debian.org/debian >&2
  docker import --change 'CMD ["bash"]' --change 'LABEL org.nas-sync.stand-in=true' \
    "$tar" debian:bookworm-slim >/dev/null
  rm -f "$tar"
fi

if ! present_or_pulled "rust:${rust_version}-slim-bookworm"; then
  note "building rust:${rust_version}-slim-bookworm (rustup on the Debian stand-in)"
  build --build-arg RUST_VERSION="$rust_version" -t "rust:${rust_version}-slim-bookworm" \
    -f "$here/standins/Dockerfile.rust" "$here/standins"
fi

if ! present_or_pulled "$pg_image"; then
  note "building $pg_image (Debian's PostgreSQL 15)"
  build -t "$pg_image" -f "$here/standins/Dockerfile.postgres" "$here/standins"
fi
note "ready: debian:bookworm-slim rust:${rust_version}-slim-bookworm $pg_image"
