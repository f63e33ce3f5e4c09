"""What Compose v2 refuses and docker-compose 1.x lets through: every secret, named
volume, network and config a service uses must be declared at the top level, and
every service it depends on must exist and be started with it. Checked for every
combination of profiles and of the compose files given (the main file alone, then
with each override), from the files themselves, not from `docker-compose config`.
Run by .ci/run from the repository root:
    python3 .github/check-compose.py compose/docker-compose.yml [OVERRIDE.yml ...]
"""
import itertools
import sys

import yaml


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def merge(base, override):
    """Compose's merge, for what this check reads: services' keys are replaced."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in override.items():
        if key == "services":
            services = {n: dict(s) for n, s in (out.get("services") or {}).items()}
            for name, svc in (value or {}).items():
                services.setdefault(name, {}).update(svc or {})
            out["services"] = services
        elif isinstance(value, dict):
            out[key] = {**(out.get(key) or {}), **value}
        else:
            out[key] = value
    return out


def names(entries, key="source"):
    """Names from a list of strings or {source: ...} maps, or a map's keys."""
    if isinstance(entries, dict):
        return list(entries)
    return [e if isinstance(e, str) else e.get(key) for e in entries or []]


def named_volumes(svc):
    """Sources of a service's volumes that are named volumes, not bind mounts."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            if v.get("type", "volume") == "volume" and v.get("source"):
                out.append(v["source"])
            continue
        parts = v.split(":")
        if len(parts) < 2:
            continue  # an anonymous volume
        source = parts[0]
        if not source.startswith((".", "/", "~", "$")):
            out.append(source)
    return out


def problems_of(config, profiles, label):
    found = []
    services = config.get("services") or {}
    enabled = {n for n, s in services.items()
               if not s.get("profiles") or set(s["profiles"]) & set(profiles)}
    declared = {kind: set(config.get(kind) or {}) for kind in ("secrets", "volumes", "networks", "configs")}
    for name in sorted(enabled):
        svc = services[name]
        used = {
            "secrets": names(svc.get("secrets")),
            "configs": names(svc.get("configs")),
            "volumes": named_volumes(svc),
            "networks": [n for n in names(svc.get("networks")) if n != "default"],
        }
        for kind, items in used.items():
            for item in items:
                if item not in declared[kind]:
                    found.append(f"{label}: service {name} uses an undefined {kind[:-1]} {item!r}")
        for dep in names(svc.get("depends_on")):
            if dep not in services:
                found.append(f"{label}: service {name} depends on an undefined service {dep!r}")
            elif dep not in enabled:
                found.append(f"{label}: service {name} depends on {dep!r}, which these profiles do not start")
    return found


def main(paths):
    main_file, overrides = paths[0], paths[1:]
    problems = []
    combos = [[main_file]] + [[main_file, o] for o in overrides]
    for files in combos:
        config = {}
        for path in files:
            config = merge(config, load(path))
        all_profiles = sorted({p for s in (config.get("services") or {}).values() for p in s.get("profiles") or []})
        for n in range(len(all_profiles) + 1):
            for profiles in itertools.combinations(all_profiles, n):
                label = " + ".join(files) + (f" [profiles: {', '.join(profiles)}]" if profiles else " [no profile]")
                problems += problems_of(config, profiles, label)
    for p in problems:
        print(f"check-compose: {p}")
    print(f"check-compose: {len(problems)} problem(s) in {len(combos)} file combination(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
