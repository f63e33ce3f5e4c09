"""Consistency checks of the deployment files that `docker-compose config` cannot see.
Run by .ci/run from the repository root:
    python3 .github/check-deploy.py RESOLVED_COMPOSE_YAML
where RESOLVED_COMPOSE_YAML is `docker-compose ... --profile tailscale --profile backup
config` of compose/docker-compose.yml with compose/.env.example.
"""
import glob
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

import yaml

problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def headings(path):
    """GitHub's anchors for the headings of a Markdown file."""
    found, in_code = set(), False
    for line in read(path).splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            text = re.sub(r"[`*_]", "", line.lstrip("#").strip().lower())
            found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def main(resolved_path):
    config = yaml.safe_load(read(resolved_path))
    services = config["services"]

    # Tailscale: serve.json proxies to an alias of nas-sync that no container uses as
    # its hostname (a container resolves its own hostname through /etc/hosts).
    serve = json.loads(read("compose/tailscale/serve.json"))
    proxies = [h["Proxy"] for site in serve["Web"].values() for h in site["Handlers"].values()]
    check(len(proxies) == 1, f"serve.json: expected one proxy handler, found {proxies}")
    target = re.match(r"http://([^:/]+):(\d+)$", proxies[0]) if proxies else None
    check(target is not None, f"serve.json: proxy {proxies} is not http://HOST:PORT")
    if target:
        host, port = target.group(1), target.group(2)
        aliases = services["nas-sync"]["networks"]["internal"].get("aliases") or []
        check(host in aliases, f"serve.json proxies to {host}, which is not an alias of nas-sync ({aliases})")
        check(port == "8080", f"serve.json proxies to port {port}; nas-sync listens on 8080")
        for name, svc in services.items():
            check(svc.get("hostname") != host, f"service {name} uses {host} as its hostname")
    check("hostname" not in services["tailscale"], "the tailscale service must not set hostname: (TS_HOSTNAME names it)")
    check("TS_HOSTNAME" in services["tailscale"]["environment"], "the tailscale service must pass TS_HOSTNAME")
    # init-secrets.sh writes the same serve.json for installs without a clone.
    script = read("compose/init-secrets.sh")
    embedded = re.search(r"cat > tailscale/serve.json <<'EOF'\n(.*?)\nEOF\n", script, re.S)
    check(embedded is not None, "init-secrets.sh: the serve.json here-document is missing")
    if embedded:
        check(embedded.group(1) + "\n" == read("compose/tailscale/serve.json"),
              "init-secrets.sh writes a serve.json that differs from compose/tailscale/serve.json")

    # nas-sync connects as a role of its own, not as PostgreSQL's superuser: the
    # superuser is POSTGRES_USER, the app's role is made by db-init/10-app-role.sh
    # (which init-secrets.sh writes for installs without a clone).
    db = services["db"]
    superuser = db["environment"].get("POSTGRES_USER")
    app_role = re.search(r'tcp_url="postgres://([^:]+):', script)
    check(app_role is not None, "init-secrets.sh: no DATABASE_URL with a user name")
    check(app_role is None or app_role.group(1) != superuser,
          f"nas-sync connects as the PostgreSQL superuser {superuser}")
    role_script = read("compose/db-init/10-app-role.sh")
    check(app_role is None or f"CREATE ROLE {app_role.group(1)} LOGIN NOSUPERUSER" in role_script,
          "db-init/10-app-role.sh does not create nas-sync's role without superuser")
    embedded = re.search(r"cat > db-init/10-app-role.sh <<'EOF'\n(.*?)\nEOF\n", script, re.S)
    check(embedded is not None and embedded.group(1) + "\n" == role_script,
          "init-secrets.sh writes a 10-app-role.sh that differs from compose/db-init/10-app-role.sh")
    mounts = [v.get("target") if isinstance(v, dict) else v.split(":")[1] for v in db.get("volumes", [])]
    check("/docker-entrypoint-initdb.d" in mounts, "db does not mount db-init/ as its init scripts")
    check("POSTGRES_DB" not in db["environment"],
          "db must not create the nas_sync database as the superuser's (10-app-role.sh does)")

    # Logs rotate on every service.
    for name, svc in services.items():
        opts = (svc.get("logging") or {}).get("options") or {}
        check("max-size" in opts and "max-file" in opts, f"service {name} has no log rotation")

    # The backup container has its own health check, not the image's API check.
    test = (services["backup"].get("healthcheck") or {}).get("test") or []
    check("backup-check" in test, "backup: no health check of its own (nas-sync backup-check)")
    check(services["backup"].get("entrypoint") == ["nas-sync", "backup-loop"],
          "backup: the entrypoint is not `nas-sync backup-loop`")
    backup_deps = services["backup"].get("depends_on") or {}
    check((backup_deps.get("nas-sync") or {}).get("condition") == "service_healthy",
          "backup must wait for nas-sync to be healthy (migrated) before its first dump")

    # Passwords on every PostgreSQL connection, the socket included; health over TCP
    # (the init scripts' temporary server listens on the socket only).
    initdb = db["environment"].get("POSTGRES_INITDB_ARGS", "")
    check("--auth-local=scram-sha-256" in initdb and "--auth-host=scram-sha-256" in initdb,
          "db: POSTGRES_INITDB_ARGS must set --auth-local and --auth-host to scram-sha-256")
    db_test = " ".join((db.get("healthcheck") or {}).get("test") or [])
    check("-h 127.0.0.1" in db_test, "db: the health check must use TCP (pg_isready -h 127.0.0.1)")

    # The PostgreSQL socket is shared with every container that runs nas-sync.
    for name in ("db", "nas-sync", "backup"):
        mounts = [v.get("target") if isinstance(v, dict) else v.split(":")[1] for v in services[name].get("volumes", [])]
        check("/var/run/postgresql" in mounts, f"{name} does not mount the PostgreSQL socket directory")
    check("host=/var/run/postgresql" in script, "init-secrets.sh: DATABASE_URL does not use the socket")

    # One version everywhere; the Dockerfile's Rust is Cargo.toml's rust-version.
    cargo = read("Cargo.toml")
    version = re.search(r'^version = "([^"]+)"', cargo, re.M).group(1)
    rust = re.search(r'^rust-version = "([^"]+)"', cargo, re.M).group(1)
    env_version = re.search(r"^NAS_SYNC_VERSION=(.*)$", read("compose/.env.example"), re.M).group(1)
    compose_versions = set(re.findall(r"NAS_SYNC_VERSION:-([^}]+)\}", read("compose/docker-compose.yml")))
    check(env_version == version, f"compose/.env.example NAS_SYNC_VERSION={env_version}, Cargo.toml version {version}: bump them together (and CHANGELOG.md)")
    check(compose_versions == {version}, f"compose/docker-compose.yml defaults NAS_SYNC_VERSION to {compose_versions}, Cargo.toml says {version}")
    docker_rust = re.search(r"^ARG RUST_VERSION=(.*)$", read("Dockerfile"), re.M).group(1)
    check(docker_rust == rust, f"Dockerfile RUST_VERSION={docker_rust}, Cargo.toml rust-version {rust}")
    check(re.search(rf"^## \[{re.escape(version)}\]", read("CHANGELOG.md"), re.M) is not None,
          f"CHANGELOG.md has no section for {version}")

    # The Unraid template is well-formed and runs the published image.
    template = ET.fromstring(read("nas/unraid/nas-sync.xml"))
    check(template.tag == "Container", "nas/unraid/nas-sync.xml: the root element is not <Container>")
    repo = template.findtext("Repository") or ""
    check(repo == f"ghcr.io/nas-sync/nas-sync:{version}", f"Unraid template runs {repo!r}, not version {version}")

    # Relative links in the owner's guides lead to files and headings that exist.
    for doc in sorted(glob.glob("nas/*.md")) + ["CHANGELOG.md"]:
        for link in re.findall(r"\]\(([^)\s]+)\)", read(doc)):
            if link.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, fragment = link.partition("#")
            target = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
            if not os.path.exists(target):
                problems.append(f"{doc}: link to a missing file: {link}")
            elif fragment and target.endswith(".md") and fragment not in headings(target):
                problems.append(f"{doc}: link to a missing heading: {link}")

    for p in problems:
        print(f"check-deploy: {p}")
    print(f"check-deploy: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
