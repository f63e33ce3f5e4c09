"""The offline-first sync loop, on the client `openapi-python-client` generates from
nas-sync's OpenAPI document (no hand edits to generated code). The Dart in
docs/clients.md is the same algorithm, structure for structure: `Sync`, `log_in`,
`_refresh`, `call`, `sync`, `_pull`, `_push`, `listen`, `backoff`.

What it guarantees, and how:
- one refresh at a time (a refresh token works once; a second refresh with it would
  end every token of the device), and a sign-out on terminal auth errors;
- one sync at a time (pull and push never run in parallel); a poke during a sync runs
  it once more;
- each pulled page and its cursor in one local transaction; unsent edits re-applied
  on top of what is pulled, never lost;
- an outbox whose batches are frozen once their `push_id` is stored, so a retry of a
  push the server already applied gets the same answer and applies nothing twice;
- `RESYNC_REQUIRED` and `INVALID_SYNC_TOKEN` replace the local copy, keeping the outbox;
- `Retry-After` on 429 and 503, jittered backoff on network errors;
- the WebSocket poke, a timer when the socket is down, reconnects with backoff;
- exact decimals: numeric columns as strings (`Nas-Sync-Decimals: string`, with the
  client generated from the document at `?decimals=string`);
- tables named in every pull (an older client never moves its cursor past rows of a
  table it cannot hold), and a schema fingerprint kept with the cursor: a client whose
  generated models changed (an app update) pulls from scratch once.
"""

import asyncio
import datetime
import hashlib
import json
import random
import uuid
from collections.abc import Awaitable, Callable

import attrs
import httpx
import websockets
from nas_sync_client import AuthenticatedClient, Client, models
from nas_sync_client.api.auth import login, refresh
from nas_sync_client.api.sync import pull, push
from nas_sync_client.types import UNSET
from nas_sync_client.models import (
    LoginRequest,
    PullRequest,
    PushRequest,
    RefreshRequest,
    SyncChanges,
    TokenResponse,
)

from .store import Store

#: Codes after which only a new sign-in helps.
TERMINAL = {"UNAUTHORIZED", "USER_DISABLED", "DEVICE_REVOKED"}


class SignedOut(Exception):
    """The server ended this device's session: sign in again (rows and outbox stay)."""


class ApiFailure(Exception):
    """A call the server answered with an error (`ApiError`), or that never reached it."""

    def __init__(self, status: int | None, code: str | None, retry_after: float | None = None):
        super().__init__(f"{status} {code}")
        self.status, self.code, self.retry_after = status, code, retry_after


def known_tables() -> list[str]:
    """The tables the generated client has models for."""
    return [f.name for f in attrs.fields(SyncChanges) if f.name != "additional_properties"]


def schema_fingerprint() -> str:
    """What the generated models know: tables and every row model's columns. A new
    table or column (an app update) changes it."""
    shape = {
        name: sorted(f.name for f in attrs.fields(cls))
        for name, cls in vars(models).items()
        if name.endswith("Row") and attrs.has(cls)
    }
    shape["_tables"] = known_tables()
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def backoff(attempt: int, retry_after: float | None = None, cap: float = 60.0) -> float:
    """`Retry-After` when the server sent it, else exponential backoff with jitter."""
    if retry_after is not None:
        return retry_after
    delay = min(cap, 0.5 * 2**attempt)
    return delay / 2 + random.uniform(0, delay / 2)


def _failure(response) -> ApiFailure:
    code = getattr(response.parsed, "code", None)
    if code is None:
        try:
            code = json.loads(response.content).get("code")
        except (ValueError, AttributeError):
            code = None
    after = response.headers.get("retry-after")
    return ApiFailure(int(response.status_code), code, float(after) if after else None)


class Sync:
    def __init__(self, store: Store, base_url: str, tables: list[str] | None = None, *,
                 fallback_secs: float = 60.0, timeout_secs: float = 120.0,
                 attempts: int = 8, page_limit: int | None = None, on_page=None):
        self.store = store
        self.base_url = base_url
        self.tables = tables or known_tables()
        self.fallback_secs = fallback_secs
        self.attempts = attempts  # per call, network errors and 429/503 included
        self.page_limit = page_limit  # rows per pulled page (the server's default: 500)
        self.on_page = on_page  # called after each stored page (progress)
        self.expired_seen = 0
        # httpx's default (5 s) is shorter than a large page or push takes.
        self.timeout = httpx.Timeout(timeout_secs, connect=10.0)
        # Exact decimals: numeric columns travel as strings of their digits. The
        # generated client must come from the document at `?decimals=string`.
        self.headers = {"Nas-Sync-Decimals": "string"}
        self.conflicts: list = []  # surfaced to the app: who won, and open ones
        self.errors: list = []  # rows the server refused: fix, or drop
        self.refreshes = 0
        self._refreshing: asyncio.Task | None = None
        self._running: asyncio.Task | None = None
        self._again = False
        self._listener: asyncio.Task | None = None
        self._api = self._client(store.get("access_token"))
        # An app update whose models know other tables or columns starts over once.
        if store.get("schema") != schema_fingerprint():
            with store.transaction():
                store.put("cursor", None)
                store.put("schema", schema_fingerprint())

    def _client(self, token: str | None):
        # After a restart the stored token is set again, or every call is UNAUTHORIZED
        # (not TOKEN_EXPIRED) and never refreshes.
        if token is None:
            return Client(base_url=self.base_url, timeout=self.timeout, headers=self.headers)
        return AuthenticatedClient(base_url=self.base_url, token=token, timeout=self.timeout,
                                   headers=self.headers)

    @property
    def device_id(self) -> str:
        """One id per install, made once and kept."""
        device = self.store.get("device_id")
        if device is None:
            device = str(uuid.uuid4())
            with self.store.transaction():
                self.store.put("device_id", device)
        return device

    async def log_in(self, username: str, password: str) -> None:
        r = await login.asyncio_detailed(
            client=self._client(None),
            body=LoginRequest(username=username, password=password, device_id=self.device_id),
        )
        if not isinstance(r.parsed, TokenResponse):
            raise _failure(r)
        self._keep(r.parsed)

    def _keep(self, t: TokenResponse) -> None:
        self.store.save_tokens(t.access_token, t.refresh_token)
        self._api = self._client(t.access_token)

    def sign_out(self) -> None:
        self.store.clear_tokens()  # rows and the outbox stay
        self._api = self._client(None)

    # ---- Tokens: one refresh at a time; terminal answers sign out. ----

    def _refresh(self) -> Awaitable[None]:
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh_once())
        return asyncio.shield(self._refreshing)

    async def _refresh_once(self) -> None:
        try:
            token = self.store.get("refresh_token")
            if token is None:
                raise SignedOut()
            for attempt in range(6):
                try:
                    r = await refresh.asyncio_detailed(
                        client=self._client(None),
                        body=RefreshRequest(refresh_token=token),
                    )
                except httpx.TransportError:
                    await asyncio.sleep(backoff(attempt))
                    continue
                if isinstance(r.parsed, TokenResponse):
                    self.refreshes += 1
                    self._keep(r.parsed)
                    return
                failure = _failure(r)
                if failure.code in TERMINAL:
                    self.sign_out()
                    raise SignedOut()
                if failure.status in (429, 503):
                    await asyncio.sleep(backoff(attempt, failure.retry_after))
                    continue
                raise failure
            raise ApiFailure(None, "NETWORK")
        finally:
            self._refreshing = None

    async def call(self, request: Callable) -> object:
        """Runs `request(client)` (a generated `asyncio_detailed` call) and returns the
        parsed answer; refreshes once on TOKEN_EXPIRED, waits out 429 and 503
        (`Retry-After`) and network errors with jittered backoff."""
        refreshed = False
        last = self.attempts - 1
        for attempt in range(self.attempts):
            sent_with = self.store.get("access_token")
            try:
                r = await request(self._api)
            except httpx.TransportError:
                if attempt == last:
                    raise ApiFailure(None, "NETWORK")
                await asyncio.sleep(backoff(attempt))
                continue
            if 200 <= r.status_code < 300:
                return r.parsed
            failure = _failure(r)
            if failure.code == "TOKEN_EXPIRED" and not refreshed:
                refreshed = True
                self.expired_seen += 1
                # Another call may have refreshed meanwhile: then just send again.
                if self.store.get("access_token") == sent_with:
                    await self._refresh()
            elif failure.code in TERMINAL:
                self.sign_out()
                raise SignedOut()
            elif failure.status in (429, 503) and attempt < last:
                await asyncio.sleep(backoff(attempt, failure.retry_after))
            else:
                raise failure
        raise ApiFailure(None, "GAVE_UP")

    # ---- One sync at a time: pull and push never run in parallel. ----

    def sync(self) -> Awaitable[None]:
        """Pushes the outbox, then pulls until caught up. Called while a sync runs, it
        runs once more after it (a poke may name a change the running pull missed)."""
        if self._running is None:
            self._running = asyncio.ensure_future(self._sync_until_quiet())
        else:
            self._again = True
        return asyncio.shield(self._running)

    async def _sync_until_quiet(self) -> None:
        try:
            while True:
                self._again = False
                while await self._push():
                    pass
                await self._pull()
                if not self._again:
                    return
        finally:
            self._running = None

    async def _pull(self) -> None:
        """Pull until `has_more` is false; each page and its cursor in one local
        transaction."""
        while True:
            body = PullRequest(device_id=self.device_id, tables=self.tables,
                               cursor=self.store.get("cursor"), limit=self.page_limit or UNSET)
            try:
                page = await self.call(lambda c: pull.asyncio_detailed(client=c, body=body))
            except ApiFailure as e:
                if e.code in ("RESYNC_REQUIRED", "INVALID_SYNC_TOKEN"):
                    # History pruned, a restored server, or a cursor not the server's.
                    self.store.clear_rows_and_cursor()
                    continue
                raise
            changes = page.changes.to_dict()
            self.store.apply_pulled(changes, page.cursor)
            if self.on_page:
                self.on_page(changes)
            if page.conflicts:
                self.conflicts.extend(page.conflicts)  # open ones wait for a manager
            if not page.has_more:
                return

    async def _push(self) -> bool:
        """Pushes the outbox's next batch; false when the outbox is empty. The push id
        is stored before the first send and the batch is frozen from then on: the same
        id with other rows would be 409 PUSH_ID_REUSED, forever."""
        batch = self.store.next_batch()
        if batch is None:
            return False
        push_id = batch.push_id or self.store.freeze(batch, str(uuid.uuid4()))
        body = PushRequest(
            device_id=self.device_id,
            push_id=push_id,
            timestamp=datetime.datetime.now(datetime.UTC).isoformat(),
            changes=SyncChanges.from_dict(batch.changes()),
        )
        answer = await self.call(lambda c: push.asyncio_detailed(client=c, body=body))
        self.store.apply_push_answer(batch, answer.applied.to_dict())
        self.conflicts.extend(answer.conflicts)  # winner: server, client, merged
        self.errors.extend(answer.errors)  # code per row
        return True

    # ---- Local edits. ----

    def edit(self, table: str, row: dict) -> None:
        """A whole row as the app holds it (nullable columns included: a None clears),
        stamped with the device clock in UTC."""
        now = datetime.datetime.now(datetime.UTC).isoformat()
        self.store.edit(table, {**row, "id": str(row["id"]), "updated_at": now})

    # ---- Real time: the socket pokes, a timer covers its absence. ----

    def listen(self) -> None:
        if self._listener is None:
            self._listener = asyncio.ensure_future(self._listen())

    async def stop(self) -> None:
        """App paused or closed: no socket, no timer."""
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)

    async def _listen(self) -> None:
        failures = 0
        url = self.base_url.replace("http", "ws", 1) + "/api/v1/sync/ws"
        while True:
            timer = asyncio.ensure_future(self._fallback_timer())
            close_code = None
            try:
                headers = {"Authorization": f"Bearer {self.store.get('access_token')}"}
                async with websockets.connect(url, additional_headers=headers,
                                              open_timeout=10) as ws:
                    failures = 0
                    self._sync_soon()  # pull on every (re)connect
                    async for frame in ws:
                        if json.loads(frame).get("type") in ("changes", "event"):
                            self._sync_soon()
                    close_code = ws.close_code
            except websockets.ConnectionClosed as e:
                close_code = e.rcvd.code if e.rcvd else None
            except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake):
                pass  # a failed connect: reconnect below
            finally:
                timer.cancel()
            if close_code == 4001:  # revoked or signed out
                return
            if close_code == 4002:  # TOKEN_EXPIRED
                try:
                    await self._refresh()
                except (SignedOut, ApiFailure):
                    return
            failures += 1
            await asyncio.sleep(backoff(failures, cap=30.0))

    async def _fallback_timer(self) -> None:
        while True:
            await asyncio.sleep(self.fallback_secs)
            self._sync_soon()

    def _sync_soon(self) -> None:
        task = asyncio.ensure_future(self.sync())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # seen, not raised
