"""Drives a running nas-sync with the Python client generated from its OpenAPI document
(openapi-python-client, no hand edits): log in, push a form, pull it back, meet a
conflict, read an error's code. Run by scripts/clients.sh, which generates the client,
starts the server and creates the users; exits non-zero on the first failed check.

Usage: python3 python_client.py BASE_URL
"""

import datetime
import sys
import time
import uuid

from nas_sync_client import AuthenticatedClient, Client
from nas_sync_client.api.auth import login
from nas_sync_client.api.sync import list_conflicts, pull, push
from nas_sync_client.models import (
    ApiError,
    FormRow,
    LoginRequest,
    PullRequest,
    PullResponse,
    PushRequest,
    PushResponse,
    SyncChanges,
    TokenResponse,
)

BASE = sys.argv[1]
passed = 0


def check(what, ok, detail=""):
    global passed
    if not ok:
        print(f"FAILED: {what} {detail}")
        print(f"python client: {passed} checks passed, then one failed")
        sys.exit(1)
    passed += 1
    print(f"ok: {what}")


def device(username, device_id):
    r = login.sync_detailed(
        client=Client(base_url=BASE),
        body=LoginRequest(username=username, password="client-test-pw", device_id=device_id),
    )
    check(f"{username} logs in", r.status_code == 200 and isinstance(r.parsed, TokenResponse), r.content)
    return AuthenticatedClient(base_url=BASE, token=r.parsed.access_token), device_id


def push_forms(dev, forms):
    client, device_id = dev
    r = push.sync_detailed(
        client=client,
        body=PushRequest(
            device_id=device_id,
            push_id=str(uuid.uuid4()),
            changes=SyncChanges(forms=forms),
        ),
    )
    check("push answers 200", r.status_code == 200 and isinstance(r.parsed, PushResponse), r.content)
    return r.parsed


now = datetime.datetime.now(datetime.timezone.utc)
alice = device("client-alice", "client-alice-1")
bob = device("client-bob", "client-bob-1")

# Push a form, typed as the generated `FormRow` row.
form_id = uuid.uuid4()
answer = push_forms(
    alice, [FormRow(id=form_id, title="Daily check", description="Before", version=0, updated_at=now)]
)
check("the push succeeds", answer.success and answer.errors == [], answer)
stored = answer.applied.forms[0]
check("applied holds the stored row, version 1", stored.id == form_id and stored.version == 1, stored)

# Pull it back as a typed row. A change shows once every older transaction on the
# PostgreSQL server has finished (docs/architecture.md), so pull as an app does: again,
# with the cursor, until it comes.
pulled = {}
cursor = None
for _ in range(60):
    r = pull.sync_detailed(
        client=bob[0], body=PullRequest(device_id=bob[1], tables=["forms"], cursor=cursor)
    )
    check("pull answers 200", r.status_code == 200 and isinstance(r.parsed, PullResponse), r.content)
    cursor = r.parsed.cursor
    pulled.update({f.id: f for f in r.parsed.changes.forms})
    if form_id in pulled:
        break
    time.sleep(0.5)
check("the form comes back", pulled.get(form_id) is not None and pulled[form_id].title == "Daily check", pulled)

# A conflict: Alice edits, then Bob edits from version 1 with an older clock.
# A nullable column is required in the row schema, so the generated client sends
# the null: the description is cleared, not left as it was.
answer = push_forms(alice, [FormRow(id=form_id, title="Morning check", description=None, version=1, updated_at=now)])
check("an explicit null clears the field", answer.applied.forms[0].description is None, answer)
older = now - datetime.timedelta(hours=1)
answer = push_forms(
    bob, [FormRow(id=form_id, title="Evening check", description="Bob's", version=1, updated_at=older)]
)
check("one conflict is reported", len(answer.conflicts) == 1, answer)
conflict = answer.conflicts[0]
check(
    "the conflict names its rule and winner",
    conflict.resolution == "manager_wins" and conflict.winner == "server" and str(conflict.record_id) == str(form_id),
    conflict,
)
r = list_conflicts.sync_detailed(client=bob[0])
check("the conflict inbox answers a typed list", r.status_code == 200 and isinstance(r.parsed, list), r.content)

# An error, read through the generated ApiError model.
r = pull.sync_detailed(client=bob[0], body=PullRequest(device_id=bob[1], tables=["no_such_table"]))
check("an unknown table answers 400", r.status_code == 400, r.content)
check("the error's code is readable", isinstance(r.parsed, ApiError) and r.parsed.code == "UNKNOWN_TABLE", r.parsed)
r = pull.sync_detailed(client=Client(base_url=BASE), body=PullRequest())
check("no token answers 401 with a code", r.status_code == 401 and isinstance(r.parsed, ApiError) and r.parsed.code == "UNAUTHORIZED", r.content)

print(f"python client: {passed} checks passed")
