"""The offline-first loop, proven end to end: reference clients (clients/reference, on
the generated Python client) against the real server, with the network between them
cut and restored by a proxy the scenarios control, the server killed and restored.
At the end every client and the server hold the same rows.

Usage: python3 run.py NAS_SYNC_BINARY ADMIN_DATABASE_URL WORK_DIR
(scripts/clients.sh runs it with the generated client and clients/reference on
PYTHONPATH; openapi-python-client must be on PATH). Exits non-zero on the first failed
check.
"""

import asyncio
import datetime
import json
import os
import sys
import tracemalloc
import uuid

import httpx
from harness import Server
from nas_sync_client.api.sync import list_conflicts
from nas_sync_ref import SignedOut, Store, Sync, known_tables
from proxy import Proxy

BINARY, ADMIN_URL, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
TTL = 2  # access tokens live 2 s (plus the server's 5 s leeway): refreshes happen
passed = 0


def check(what, ok, detail=""):
    global passed
    if not ok:
        print(f"FAILED: {what} {str(detail)[:2000]}")
        print(f"scenarios: {passed} checks passed, then one failed")
        sys.exit(1)
    passed += 1
    print(f"ok: {what}")


class World:
    """The server, the proxy in front of it, and the clients made so far."""

    def __init__(self):
        self.server = Server(BINARY, ADMIN_URL, os.path.join(WORK, "server.log"),
                             NAS_SYNC_ACCESS_TOKEN_TTL_SECS=str(TTL))
        self.proxy = Proxy(self.server.port)
        self.clients: dict[str, Sync] = {}

    async def client(self, name: str, user: str, **options) -> Sync:
        """A device with its own SQLite file, signed in as `user`."""
        tables = options.pop("tables", None) or known_tables()
        store = Store(os.path.join(WORK, f"{name}.sqlite"), tables)
        sync = Sync(store, self.proxy.url, tables, attempts=options.pop("attempts", 12), **options)
        if store.get("refresh_token") is None:
            await sync.log_in(user, "scenario-pw")
        self.clients[name] = sync
        return sync


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def form(title, description=None, id_=None):
    return {"id": str(id_ or uuid.uuid4()), "title": title, "description": description}


def kpi(value, store="s1", id_=None):
    return {"id": str(id_ or uuid.uuid4()), "store_id": store, "metric": "sales",
            "value": str(value), "period": "2026-12"}


async def truth(world: World, tables) -> dict:
    """The server's rows, as a fresh device pulls them."""
    name = f"checker-{uuid.uuid4().hex[:8]}"
    checker = await world.client(name, "scenario-boss", tables=tables)
    await checker.sync()
    rows = {t: checker.store.rows(t) for t in tables}
    del world.clients[name]
    return rows


async def everyone_holds_the_same_rows(world: World, names, tables=("forms", "kpi_data")):
    for name in names:
        await world.clients[name].sync()  # push what is left, then pull
    for name in names:
        await world.clients[name].sync()  # and see what the others pushed last
    server = await truth(world, list(tables))
    for name in names:
        c = world.clients[name]
        check(f"{name}'s outbox is empty", c.store.outbox_size() == 0, c.store.outbox_size())
        for t in (t for t in tables if t in c.tables):
            local = c.store.rows(t)
            check(f"{name} holds the server's {t} ({len(server[t])} rows)", local == server[t],
                  _diff(local, server[t]))


def _diff(a, b):
    only_a = set(a) - set(b)
    only_b = set(b) - set(a)
    changed = [k for k in set(a) & set(b) if a[k] != b[k]][:3]
    return {"client_only": list(only_a)[:3], "server_only": list(only_b)[:3],
            "changed": [(a[k], b[k]) for k in changed]}


# ---- Scenarios. ----

async def three_clients_offline(world: World):
    alice = await world.client("alice", "scenario-alice")
    bob = await world.client("bob", "scenario-bob")
    carol = await world.client("carol", "scenario-carol")
    shared = form("Opening checklist", "v1")
    alice.edit("forms", shared)
    await alice.sync()
    for c in (bob, carol):
        await c.sync()
        check("the shared form reached every client", shared["id"] in c.store.rows("forms"))

    world.proxy.cut()
    alice.edit("forms", {**alice.store.rows("forms")[shared["id"]], "title": "Opening (alice)"})
    bob.edit("forms", {**bob.store.rows("forms")[shared["id"]], "description": "bob's notes"})
    for i in range(20):
        alice.edit("kpi_data", kpi(i, "s1"))
        bob.edit("kpi_data", kpi(i, "s2"))
        carol.edit("forms", form(f"carol's form {i}"))
    carol.edit("forms", {**carol.store.rows("forms")[shared["id"]], "deleted": True})
    check("edits show locally while offline", len(carol.store.rows("forms")) == 20)
    # Every client tries to sync while the network is down, and keeps trying.
    tries = [asyncio.ensure_future(c.sync()) for c in (alice, bob, carol)]
    await asyncio.sleep(1.5)
    check("syncs wait while the network is cut", not any(t.done() for t in tries),
          [t for t in tries if t.done()])
    world.proxy.restore()
    await asyncio.gather(*tries)
    check("the concurrent edits of one form were reported as conflicts",
          any(str(c.record_id) == shared["id"] for x in (alice, bob, carol) for c in x.conflicts),
          [x.conflicts for x in (alice, bob, carol)])
    await everyone_holds_the_same_rows(world, ["alice", "bob", "carol"])


async def pokes_over_the_socket(world: World):
    alice, bob = world.clients["alice"], world.clients["bob"]
    bob.fallback_secs = 3600  # only the socket can bring the change in time
    bob.listen()
    await asyncio.sleep(1.0)
    row = form("poked")
    alice.edit("forms", row)
    await alice.sync()
    for _ in range(200):
        if row["id"] in bob.store.rows("forms"):
            break
        await asyncio.sleep(0.05)
    check("a push reaches a listening client without it asking", row["id"] in bob.store.rows("forms"))
    # The socket is cut and comes back: the client reconnects and catches up.
    world.proxy.cut()
    row2 = form("while bob was cut off")
    alice.edit("forms", row2)
    tries = asyncio.ensure_future(alice.sync())
    await asyncio.sleep(0.5)
    world.proxy.restore()
    await tries
    for _ in range(600):
        if row2["id"] in bob.store.rows("forms"):
            break
        await asyncio.sleep(0.05)
    check("after a cut the socket reconnects and the client catches up",
          row2["id"] in bob.store.rows("forms"))
    await bob.stop()


async def expired_token_met_together(world: World):
    dave = await world.client("dave", "scenario-boss")
    await dave.sync()
    await asyncio.sleep(TTL + 6)  # past the token's life and the server's leeway
    before = dave.refreshes
    dave.edit("forms", form("after expiry"))
    conflicts = dave.call(lambda c: list_conflicts.asyncio_detailed(client=c))
    await asyncio.gather(dave.sync(), conflicts)
    check("two calls met TOKEN_EXPIRED together", dave.expired_seen >= 2, dave.expired_seen)
    check("one refresh served both", dave.refreshes - before == 1, dave.refreshes - before)
    check("the device is still signed in", dave.store.get("refresh_token") is not None)
    await dave.sync()  # the refreshed tokens work


async def first_sync_of_10k_rows(world: World):
    seeder = await world.client("seeder", "scenario-boss", tables=["kpi_data"])
    for i in range(10_000):
        seeder.edit("kpi_data", kpi(i, f"s{i % 7}"))
    await seeder.sync()
    check("10,000 rows pushed", seeder.store.outbox_size() == 0, seeder.store.outbox_size())

    pages = []
    tracemalloc.start()
    tracemalloc.reset_peak()

    def on_page(changes):
        pages.append((sum(len(r) for r in changes.values()), tracemalloc.get_traced_memory()[1]))

    fresh = await world.client("fresh", "scenario-boss", tables=["kpi_data"], on_page=on_page)
    await fresh.sync()
    tracemalloc.stop()
    check("the first sync brought every row", len(fresh.store.rows("kpi_data")) >= 10_000,
          len(fresh.store.rows("kpi_data")))
    rows = 0
    peak_at_2k = None
    for count, peak in pages:
        rows += count
        if peak_at_2k is None and rows >= 2_000:
            peak_at_2k = peak
    final = pages[-1][1]
    print(f"  memory: peak {peak_at_2k / 1e6:.1f} MB after 2,000 rows, "
          f"{final / 1e6:.1f} MB after {rows:,} ({len(pages)} pages)")
    # Holding every row would put the end at five times the peak after 2,000 rows or
    # more; a page at a time keeps it near that peak.
    check("client memory is bounded by a page, not by the data set",
          final < 2 * peak_at_2k, (peak_at_2k, final))


async def token_expires_mid_pull(world: World):
    slow = await world.client("slow", "scenario-boss", tables=["kpi_data"], page_limit=250)
    world.proxy.delay = 0.25  # a slow link: the pull outlives the token
    started = datetime.datetime.now(datetime.UTC)
    await slow.sync()
    world.proxy.restore()
    took = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
    check(f"a pull of {took:.0f} s refreshed its token on the way", slow.refreshes >= 1,
          (took, slow.refreshes))
    check("and brought every row", len(slow.store.rows("kpi_data")) >= 10_000)


async def server_killed_mid_push(world: World):
    erin = await world.client("erin", "scenario-boss", tables=["forms"])
    await erin.sync()
    rows = [form(f"erin {i}") for i in range(50)]
    for r in rows:
        erin.edit("forms", r)
    world.proxy.lose_answers = True
    pushing = asyncio.ensure_future(erin.sync())
    for _ in range(400):
        if world.proxy.answers_lost:
            break
        await asyncio.sleep(0.025)
    check("the push reached the server and its answer was lost", world.proxy.answers_lost >= 1)
    world.server.kill()
    erin.edit("forms", {**rows[0], "title": "edited while the batch was in flight"})
    world.proxy.restore()
    world.server.start()
    await pushing
    await erin.sync()
    ids = ",".join(f"'{r['id']}'" for r in rows)
    applied = world.server.sql(
        f"SELECT count(*) FROM sync_row_history WHERE table_name = 'forms' AND row_id IN ({ids})"
    )
    check("the retried push (same push_id) applied once, the later edit once more",
          applied == "51", applied)
    server_title = world.server.sql(f"SELECT title FROM forms WHERE id = '{rows[0]['id']}'")
    check("the edit made during the cut is on the server",
          server_title == "edited while the batch was in flight", server_title)
    check("no push id was refused", not erin.errors, erin.errors)


async def clearing_a_nullable_field(world: World):
    alice, bob = world.clients["alice"], world.clients["bob"]
    row = form("with a description", "to be cleared")
    alice.edit("forms", row)
    await alice.sync()
    alice.edit("forms", {**alice.store.rows("forms")[row["id"]], "description": None})
    await alice.sync()
    check("the server cleared the column",
          world.server.sql(f"SELECT description IS NULL FROM forms WHERE id = '{row['id']}'") == "t")
    await bob.sync()
    check("another client sees it cleared", bob.store.rows("forms")[row["id"]]["description"] is None)


async def pulls_never_hide_unsent_edits(world: World):
    alice, bob = world.clients["alice"], world.clients["bob"]
    row = form("edited on both sides", "as pushed")
    alice.edit("forms", row)
    await alice.sync()
    await bob.sync()
    bob.edit("forms", {**bob.store.rows("forms")[row["id"]], "description": "bob, unsent"})
    alice.edit("forms", {**alice.store.rows("forms")[row["id"]], "title": "alice's title"})
    await alice.sync()
    await bob._pull()  # a pull while bob's edit waits in the outbox (a poke mid-edit)
    held = bob.store.rows("forms")[row["id"]]
    check("a pulled row does not hide an unsent edit",
          held["description"] == "bob, unsent" and bob.store.outbox_size() == 1, held)
    await bob.sync()
    check("the unsent edit is then pushed", bob.store.outbox_size() == 0)


async def a_cursor_not_the_servers(world: World):
    bob = world.clients["bob"]
    await bob.sync()
    before = bob.store.rows("forms")
    with bob.store.transaction():
        bob.store.put("cursor", "tampered" + (bob.store.get("cursor") or ""))
    await bob.sync()
    check("INVALID_SYNC_TOKEN is recovered from with a full pull",
          bob.store.rows("forms") == before and not bob.store.get("cursor").startswith("tampered"))


async def exact_decimals(world: World):
    alice, bob = world.clients["alice"], world.clients["bob"]
    exact = "12345678901234567890.123456789"  # more digits than a double holds
    row = kpi(exact, "s3")
    alice.edit("kpi_data", row)
    await alice.sync()
    check("the server stored every digit",
          world.server.sql(f"SELECT value::text FROM kpi_data WHERE id = '{row['id']}'") == exact)
    check("the pushing client holds every digit", alice.store.rows("kpi_data")[row["id"]]["value"] == exact)
    await bob.sync()
    check("another client pulls every digit", bob.store.rows("kpi_data")[row["id"]]["value"] == exact,
          bob.store.rows("kpi_data")[row["id"]])


async def restore_from_backup(world: World):
    frank = await world.client("frank", "scenario-boss", tables=["forms"])
    kept = form("in the backup")
    frank.edit("forms", kept)
    await frank.sync()
    backup = os.path.join(WORK, "scenario.dump")
    world.server.cli("backup", "--output", backup)
    lost = form("after the backup")
    frank.edit("forms", lost)
    await frank.sync()
    world.server.stop()
    world.server.cli("restore", "--input", backup, "--replace")
    world.server.start()
    unsent = form("made while the server was restored")
    frank.edit("forms", unsent)
    frank.edit("forms", {**frank.store.rows("forms")[kept["id"]], "description": "edited"})
    await frank.sync()
    local = frank.store.rows("forms")
    check("the restore replaced the local copy (a row the server lost is gone)",
          lost["id"] not in local, sorted(local)[:3])
    check("unsent edits survived the resync and reached the server",
          world.server.sql(f"SELECT count(*) FROM forms WHERE id IN ('{unsent['id']}')") == "1"
          and world.server.sql(f"SELECT description FROM forms WHERE id = '{kept['id']}'") == "edited")


async def table_added_at_run_time(world: World):
    alice = world.clients["alice"]
    world.server.sql("""
        CREATE TABLE scenario_notes (
            id uuid PRIMARY KEY, tenant_id text NOT NULL, version bigint NOT NULL DEFAULT 1,
            updated_at timestamptz NOT NULL DEFAULT now(), deleted boolean NOT NULL DEFAULT false,
            body text);
        SELECT sync_register('scenario_notes', 'latest_wins', '{manager}', '{manager}');
        INSERT INTO server_meta (key, value) VALUES ('registry_version', '1')
            ON CONFLICT (key) DO UPDATE SET value = (server_meta.value::bigint + 1)::text;
        INSERT INTO scenario_notes (id, tenant_id, body) VALUES (gen_random_uuid(), 'default', 'note');
    """)
    alice.edit("forms", form("after the new table"))
    await alice.sync()
    check("a client that does not know the table syncs on", alice.store.outbox_size() == 0)
    # The app is updated: a client generated from the new document, the same local
    # database. Its models know another table, so it pulls from scratch once.
    updated = os.path.join(WORK, "updated")
    os.makedirs(updated, exist_ok=True)
    document = httpx.get(
        f"http://127.0.0.1:{world.server.port}/api/openapi.json?decimals=string").content
    with open(os.path.join(updated, "openapi.json"), "wb") as f:
        f.write(document)
    generate = await asyncio.create_subprocess_exec(
        "openapi-python-client", "generate", "--path", "openapi.json", "--meta", "none",
        "--output-path", "nas_sync_client", "--overwrite", cwd=updated,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    check("the newer client was generated", await generate.wait() == 0)
    check("the new document has the table", b"ScenarioNoteRow" in document or b"scenario_notes" in document)
    reference = os.path.join(os.path.dirname(__file__), "..", "..", "..", "clients", "reference")
    app = await asyncio.create_subprocess_exec(
        sys.executable, os.path.join(os.path.dirname(__file__), "updated_app.py"),
        world.proxy.url, os.path.join(WORK, "alice.sqlite"),
        env={**os.environ, "PYTHONPATH": f"{updated}:{os.path.abspath(reference)}"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(app.communicate(), 300)
    check("the updated app ran", app.returncode == 0, err.decode()[-2000:])
    seen = json.loads(out.decode().strip().splitlines()[-1])
    check("the updated app pulled the new table's rows", seen["scenario_notes"] == 1, seen)
    check("and kept every form", seen["forms"] == len(alice.store.rows("forms")), seen)
    check("and holds the server's rows of every table it knows", seen["same_as_server"], seen)
    del world.clients["alice"]  # the old app is gone; the updated one has its database


async def signed_out_when_revoked(world: World):
    gus = await world.client("gus", "scenario-boss", tables=["forms"])
    await gus.sync()
    world.server.cli("device", "revoke", gus.device_id)
    gus.edit("forms", form("after revocation"))
    try:
        await gus.sync()
        signed_out = False
    except SignedOut:
        signed_out = True
    check("a revoked device is signed out, its edit kept locally",
          signed_out and gus.store.get("access_token") is None and gus.store.outbox_size() == 1)
    del world.clients["gus"]


async def main():
    world = World()
    try:
        for user in ("scenario-alice", "scenario-bob", "scenario-carol", "scenario-boss"):
            world.server.add_user(user)
        world.server.start()
        await world.proxy.start()
        only = os.environ.get("SCENARIOS", "").split(",")  # a comma list, to run a few
        for scenario in (three_clients_offline, pokes_over_the_socket,
                         expired_token_met_together, clearing_a_nullable_field,
                         pulls_never_hide_unsent_edits, a_cursor_not_the_servers, exact_decimals,
                         server_killed_mid_push, first_sync_of_10k_rows, token_expires_mid_pull,
                         restore_from_backup, table_added_at_run_time, signed_out_when_revoked):
            if only != [""] and scenario.__name__ not in only:
                continue
            print(f"== {scenario.__name__}")
            await scenario(world)
        print("== at the end")
        await everyone_holds_the_same_rows(world, [n for n in world.clients])
        for sync in world.clients.values():
            await sync.stop()
    finally:
        await world.proxy.close()
        world.server.close()
    print(f"scenarios: {passed} checks passed")


asyncio.run(main())
