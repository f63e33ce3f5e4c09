"""The device's local database (SQLite): a table per row type, the outbox, the cursor
and the tokens. What a Flutter app keeps in drift; `Store` in docs/clients.md.

Rows are kept as the generated models serialize them (`to_dict()`), so a column the
models know is kept exactly as the server sent it. Every method that changes more than
one thing runs in one transaction: a page and its cursor, a push answer and the outbox.
"""

import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Batch:
    """Outbox entries pushed together. `push_id` is set (and stored) before the first
    send; from then on the batch is frozen: new edits go to the next batch."""

    push_id: str | None
    entries: list  # (seq, table, id, base_version, data)

    def changes(self) -> dict:
        """The push's `changes`: rows whole, with the version each edit was based on."""
        out: dict = {}
        for _seq, table, _id, base, data in self.entries:
            out.setdefault(table, []).append({**data, "version": base})
        return out


class Store:
    def __init__(self, path: str, tables: list[str]):
        self.db = sqlite3.connect(path, isolation_level=None)  # transactions are explicit
        self.tables = tables
        self.db.execute("PRAGMA journal_mode=WAL")
        with self.transaction():
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " tbl TEXT NOT NULL, id TEXT NOT NULL, base_version INTEGER NOT NULL,"
                " data TEXT NOT NULL, push_id TEXT)"
            )
            self.db.execute("CREATE INDEX IF NOT EXISTS outbox_row ON outbox (tbl, id)")
            for table in tables:
                self.db.execute(
                    f'CREATE TABLE IF NOT EXISTS "row_{table}" (id TEXT PRIMARY KEY,'
                    " version INTEGER NOT NULL, data TEXT NOT NULL)"
                )

    @contextmanager
    def transaction(self):
        if self.db.in_transaction:  # nested: part of the caller's transaction
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- Settings: device id, tokens, cursor. ----

    def get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, value: str | None) -> None:
        if value is None:
            self.db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def save_tokens(self, access: str, refresh: str) -> None:
        with self.transaction():
            self.put("access_token", access)
            self.put("refresh_token", refresh)

    def clear_tokens(self) -> None:
        with self.transaction():
            self.put("access_token", None)
            self.put("refresh_token", None)

    # ---- Rows. ----

    def rows(self, table: str) -> dict:
        """id -> row as the app sees it (unsent edits included)."""
        return {
            id_: json.loads(data)
            for id_, data in self.db.execute(f'SELECT id, data FROM "row_{table}"')
        }

    def version(self, table: str, id_: str) -> int:
        row = self.db.execute(f'SELECT version FROM "row_{table}" WHERE id = ?', (id_,)).fetchone()
        return row[0] if row else 0

    def _upsert(self, table: str, row: dict) -> None:
        self.db.execute(
            f'INSERT OR REPLACE INTO "row_{table}" (id, version, data) VALUES (?, ?, ?)',
            (row["id"], row.get("version") or 0, json.dumps(row, sort_keys=True)),
        )

    def apply_pulled(self, changes: dict, cursor: str) -> None:
        """One page: its rows (tombstones delete) and its cursor, in one transaction.
        Unsent edits are put back on top: a pulled row never hides one."""
        with self.transaction():
            for table, rows in changes.items():
                for row in rows:
                    if row.get("deleted"):
                        self.db.execute(f'DELETE FROM "row_{table}" WHERE id = ?', (row["id"],))
                    else:
                        self._upsert(table, row)
            self._reapply_outbox([(t, str(r["id"])) for t, rows in changes.items() for r in rows])
            self.put("cursor", cursor)

    def clear_rows_and_cursor(self) -> None:
        """RESYNC_REQUIRED or INVALID_SYNC_TOKEN: the local copy is replaced from
        scratch (rows deleted on the server must go too); the outbox stays."""
        with self.transaction():
            for table in self.tables:
                self.db.execute(f'DELETE FROM "row_{table}"')
            self.put("cursor", None)
            self._reapply_outbox()

    def _reapply_outbox(self, touched: list | None = None) -> None:
        """Puts unsent edits back on top of the rows `touched` ((table, id) pairs), or
        of every row when None."""
        if touched is None:
            queued = self.db.execute("SELECT tbl, id, data FROM outbox ORDER BY seq").fetchall()
        else:
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS touched (tbl TEXT, id TEXT)")
            self.db.execute("DELETE FROM touched")
            self.db.executemany("INSERT INTO touched VALUES (?, ?)", touched)
            queued = self.db.execute(
                "SELECT o.tbl, o.id, o.data FROM outbox o JOIN touched t USING (tbl, id)"
                " ORDER BY o.seq"
            ).fetchall()
        for table, id_, data in queued:
            row = json.loads(data)
            if row.get("deleted"):  # a deletion not yet sent: already gone here
                self.db.execute(f'DELETE FROM "row_{table}" WHERE id = ?', (id_,))
                continue
            self.db.execute(
                f'INSERT INTO "row_{table}" (id, version, data) VALUES (?, 0, ?)'
                " ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                (id_, json.dumps(row, sort_keys=True)),
            )

    # ---- The outbox. ----

    def edit(self, table: str, row: dict) -> None:
        """A local edit (a whole row, `deleted: True` to delete): shown at once, queued
        for the next push. An edit of a row already queued and not yet frozen replaces
        that entry, keeping the version it was based on."""
        with self.transaction():
            id_ = str(row["id"])
            queued = self.db.execute(
                "SELECT seq FROM outbox WHERE tbl = ? AND id = ? AND push_id IS NULL",
                (table, id_),
            ).fetchone()
            data = json.dumps(row, sort_keys=True)
            if queued:
                self.db.execute("UPDATE outbox SET data = ? WHERE seq = ?", (data, queued[0]))
            else:
                self.db.execute(
                    "INSERT INTO outbox (tbl, id, base_version, data) VALUES (?, ?, ?, ?)",
                    (table, id_, self.version(table, id_), data),
                )
            self._reapply_outbox([(table, id_)])

    def outbox_size(self) -> int:
        return self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def next_batch(self, limit: int = 1000) -> Batch | None:
        """The frozen batch not yet answered, else the oldest unsent edits."""
        frozen = self.db.execute(
            "SELECT push_id FROM outbox WHERE push_id IS NOT NULL ORDER BY seq LIMIT 1"
        ).fetchone()
        if frozen:
            rows = self.db.execute(
                "SELECT seq, tbl, id, base_version, data FROM outbox WHERE push_id = ? ORDER BY seq",
                frozen,
            ).fetchall()
            return Batch(frozen[0], [(s, t, i, b, json.loads(d)) for s, t, i, b, d in rows])
        rows = self.db.execute(
            "SELECT seq, tbl, id, base_version, data FROM outbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        if not rows:
            return None
        return Batch(None, [(s, t, i, b, json.loads(d)) for s, t, i, b, d in rows])

    def freeze(self, batch: Batch, push_id: str) -> str:
        """Stores the push id with the batch before its first send."""
        with self.transaction():
            self.db.executemany(
                "UPDATE outbox SET push_id = ? WHERE seq = ?",
                [(push_id, e[0]) for e in batch.entries],
            )
        batch.push_id = push_id
        return push_id

    def apply_push_answer(self, batch: Batch, applied: dict) -> None:
        """The rows as the server stored them (new versions, or the server's row where
        it won), and the batch leaves the outbox, in one transaction. A row edited
        again since the batch froze keeps that edit, now based on the stored version."""
        with self.transaction():
            self.db.executemany("DELETE FROM outbox WHERE seq = ?", [(e[0],) for e in batch.entries])
            for table, rows in applied.items():
                for row in rows:
                    self.db.execute(
                        "UPDATE outbox SET base_version = ? WHERE tbl = ? AND id = ?",
                        (row.get("version") or 0, table, str(row["id"])),
                    )
                    if row.get("deleted"):
                        self.db.execute(f'DELETE FROM "row_{table}" WHERE id = ?', (str(row["id"]),))
                    else:
                        self._upsert(table, row)
            self._reapply_outbox([(t, str(r["id"])) for t, rows in applied.items() for r in rows])
