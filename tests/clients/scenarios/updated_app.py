"""The app after an update: a client generated from the server's newer document (it
knows a table added at run time) opening the old app's local database. Its models
differ, so it pulls from scratch once; unsent edits stay. Prints what it holds as JSON
on its last line, and whether that equals what a fresh device pulls.

Usage (PYTHONPATH: the newer generated client, clients/reference): updated_app.py URL DB
"""

import asyncio
import json
import sys
import tempfile

from nas_sync_ref import Store, Sync, known_tables


async def main(url: str, path: str) -> None:
    tables = known_tables()
    app = Sync(Store(path, tables), url, tables)
    await app.sync()
    held = {t: app.store.rows(t) for t in tables}
    with tempfile.NamedTemporaryFile(suffix=".sqlite") as f:
        fresh = Sync(Store(f.name, tables), url, tables)
        await fresh.log_in("scenario-alice", "scenario-pw")
        await fresh.sync()
        server = {t: fresh.store.rows(t) for t in tables}
    counts = {t: len(rows) for t, rows in held.items()}
    print(json.dumps({**counts, "same_as_server": held == server}))


asyncio.run(main(sys.argv[1], sys.argv[2]))
