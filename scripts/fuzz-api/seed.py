"""Seeds the fuzzed server (scripts/fuzz-api.sh): logs in the manager and a store
device, pushes rows into every Insight table, and leaves a `manual` conflict open on
kpi_data (the store device's stale write), and with a fake Odoo's URL connects it (the fake's
default credentials, crates/fake-odoo). Writes the ids Schemathesis offers to `{id}`
parameters (the conflict, the connection, rows) to the file named second, as a
libFuzzer dictionary (one quoted value a line), and prints the manager's access token.

Usage: seed.py BASE_URL IDS_FILE [FAKE_ODOO_URL]
"""

import json
import os
import sys
import urllib.request
import uuid
from datetime import datetime, timezone


def call(base, path, body, token=None):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def login(base, username, password, device_id):
    body = {"username": username, "password": password, "device_id": device_id}
    return call(base, "/api/v1/auth/login", body)


def push(base, token, device_id, changes):
    now = datetime.now(timezone.utc).isoformat()
    body = {"device_id": device_id, "push_id": str(uuid.uuid4()), "timestamp": now, "changes": changes}
    answer = call(base, "/api/v1/sync/push", body, token)
    if answer.get("errors"):
        raise SystemExit(f"seed push refused rows: {answer['errors']}")
    return answer


def main():
    base, ids_file = sys.argv[1], sys.argv[2]
    signed_in = login(base, "fuzz-manager", "fuzz-manager-pw", "fuzz-manager-device")
    manager = signed_in["access_token"]
    store = login(base, "fuzz-store", "fuzz-store-pw", "fuzz-store-device")["access_token"]
    # The manager's user id, for the `user_id` parameters (beside the ids file).
    with open(os.path.join(os.path.dirname(ids_file), "user.dict"), "w", encoding="utf-8") as f:
        f.write(f'"{signed_in["user"]["id"]}"\n"fuzz-manager"\n')
    form, section, field, sub, kpi = (str(uuid.uuid4()) for _ in range(5))
    rows = {
        "forms": [{"id": form, "version": 0, "title": "Opening checklist", "description": "Daily"}],
        "form_sections": [{"id": section, "version": 0, "form_id": form, "title": "Front", "position": 1}],
        "fields": [{"id": field, "version": 0, "form_id": form, "section_id": section,
                    "label": "Doors open", "field_type": "bool", "required": True, "position": 1}],
        "form_templates": [{"id": str(uuid.uuid4()), "version": 0, "name": "Default",
                            "definition": {"sections": []}}],
        "settings": [{"id": str(uuid.uuid4()), "version": 0, "key": "theme", "value": {"dark": True}}],
        "team": [{"id": str(uuid.uuid4()), "version": 0, "store_id": "s1", "name": "Ana", "role": "lead"}],
    }
    push(base, manager, "fuzz-manager-device", rows)
    push(base, store, "fuzz-store-device", {
        "submissions": [{"id": sub, "version": 0, "store_id": "s1", "form_id": form}],
        "submission_answers": [{"id": str(uuid.uuid4()), "version": 0, "store_id": "s1",
                                "submission_id": sub, "field_id": field, "value": True}],
        "kpi_data": [{"id": kpi, "version": 0, "store_id": "s1", "metric": "sales",
                      "value": 10, "period": "2026-11"}],
    })
    # kpi_data is `manual` here: the manager's write moves the row to version 2, the
    # store device's write from version 1 opens a conflict.
    push(base, manager, "fuzz-manager-device", {"kpi_data": [{"id": kpi, "version": 1, "value": 11}]})
    answer = push(base, store, "fuzz-store-device", {"kpi_data": [{"id": kpi, "version": 1, "value": 12}]})
    conflicts = [c["conflict_id"] for c in answer["conflicts"] if c.get("conflict_id")]
    if not conflicts:
        raise SystemExit(f"the seed opened no conflict: {answer}")
    connections = []
    if len(sys.argv) > 3:
        body = {"url": sys.argv[3], "database": "odoo", "username": "bot", "api_key": "bot-api-key",
                "models": ["res.partner", "product.product"], "batch_size": 50}
        connections.append(call(base, "/api/v1/odoo/connections", body, manager)["id"])
    with open(ids_file, "w", encoding="utf-8") as f:
        for i in conflicts + connections + [kpi, form, sub]:
            f.write(f'"{i}"\n')
    print(manager)


if __name__ == "__main__":
    main()
