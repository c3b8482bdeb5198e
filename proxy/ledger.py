"""The spend ledger: one SQLite row per finished request, written in batches off the event loop.

A `Ledger` is a request sink (see record.py). Calling it turns the RequestRecord into a row
tuple and appends it to an in-memory buffer — nothing else happens on the request's path.
A background task writes the buffer in batches (``batch_size`` rows, or whatever is there
every ``flush_interval_s``) in a dedicated writer thread, each batch one transaction of
multi-row INSERTs: SQLite then works through up to 256 rows per call with the GIL released,
where ``executemany`` hands the GIL to and from the event loop once per row (measured here,
next to a CPU-bound event loop: executemany between 600 and 50,000 rows/s from run to run,
the multi-row INSERT never below 13,000).

- The database is SQLite in WAL mode with ``synchronous=NORMAL``: a committed batch survives
  the process being killed (only a power loss can take the last commits), and readers — the
  ``/v1/spend`` endpoint, ``faregate spend`` — never block the writer.
- Every worker of ``--workers N`` opens the same file; each batch is one ``BEGIN IMMEDIATE``
  transaction and SQLite's busy timeout serialises the writers.
- The buffer is bounded (``queue_max``). When it is full the row is dropped, never waited
  for: the drop is counted (``faregate_ledger_rows_dropped_total{reason="queue_full"}``) and
  logged (the first one at once, then a summary at most every 10 s). A batch that cannot
  be written after three tries is dropped the same way (``reason="write_error"``).
- ``close()`` (app cleanup, which runs after in-flight requests and streams finished) writes
  every buffered row before returning. A ``kill -9`` loses at most the rows not yet flushed:
  those of the last ``flush_interval_s`` (or one batch).
"""
from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Any

import orjson

from .config import LedgerConfig
from .record import RequestRecord

__all__ = ["Ledger", "COLUMNS", "SCHEMA", "connect", "prepare_database", "row_of"]

log = logging.getLogger("faregate.ledger")

SCHEMA_VERSION = 1

# Column order of a row tuple (row_of) and of the INSERT.
COLUMNS = ("ts", "request_id", "key_id", "user", "tags", "endpoint", "route", "provider", "model",
           "stream", "status", "prompt_tokens", "completion_tokens", "cached_tokens",
           "cache_write_tokens", "reasoning_tokens", "usage_estimated", "cost_usd", "saved_usd",
           "latency_ms", "ttft_ms", "attempts", "cache", "error_class", "error")

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    ts                 REAL    NOT NULL,  -- unix seconds, when the request arrived
    request_id         TEXT    NOT NULL,
    key_id             TEXT,              -- the client key's id, never the key
    "user"             TEXT,              -- the request body's `user`
    tags               TEXT,              -- JSON array from x-faregate-tags, NULL when none
    endpoint           TEXT    NOT NULL,  -- chat | embeddings
    route              TEXT,              -- the model name the client asked for
    provider           TEXT,              -- what served it
    model              TEXT,              -- the provider's model id
    stream             INTEGER NOT NULL,
    status             INTEGER NOT NULL,
    prompt_tokens      INTEGER NOT NULL,
    completion_tokens  INTEGER NOT NULL,
    cached_tokens      INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens   INTEGER NOT NULL,
    usage_estimated    INTEGER NOT NULL,  -- 1: counted by the gateway, the provider sent none
    cost_usd           REAL,              -- NULL: not served, or no price known (unpriced)
    saved_usd          REAL    NOT NULL,  -- what a gateway cache hit saved
    latency_ms         REAL    NOT NULL,
    ttft_ms            REAL,              -- streams: time to the first byte sent
    attempts           INTEGER NOT NULL,
    cache              TEXT,              -- cache outcome: off | miss | hit | ...
    error_class        TEXT,
    error              TEXT
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
"""

_INSERT_HEAD = f"INSERT INTO requests ({', '.join(chr(34) + c + chr(34) for c in COLUMNS)}) VALUES "
_ROW = "(" + ",".join("?" * len(COLUMNS)) + ")"

_MAX_TAGS, _MAX_TAG_LEN, _MAX_TEXT = 16, 64, 512


def row_of(rec: RequestRecord) -> tuple:
    """The ledger row of a finished request (cheap: runs on the request's path)."""
    tags = rec.tags
    if tags:
        if len(tags) > _MAX_TAGS or any(len(t) > _MAX_TAG_LEN for t in tags):
            tags = [t[:_MAX_TAG_LEN] for t in tags[:_MAX_TAGS]]
        tags_json: str | None = orjson.dumps(tags).decode()
    else:
        tags_json = None
    user = rec.user
    if user is not None and len(user) > _MAX_TEXT:
        user = user[:_MAX_TEXT]
    error = rec.error
    if error is not None and len(error) > _MAX_TEXT:
        error = error[:_MAX_TEXT]
    return (rec.ts, rec.request_id, rec.key_id, user, tags_json, rec.endpoint, rec.route,
            rec.provider, rec.model, int(rec.stream), rec.status, rec.prompt_tokens,
            rec.completion_tokens, rec.cached_tokens, rec.cache_write_tokens, rec.reasoning_tokens,
            int(rec.usage_estimated), rec.cost_usd, rec.saved_usd, rec.latency_ms, rec.ttft_ms,
            rec.attempts, rec.cache, rec.error_class, error)


def connect(path: str, *, busy_timeout_s: float = 30.0) -> sqlite3.Connection:
    """A writer connection: WAL, synchronous=NORMAL, the schema in place. Safe to call from
    several processes at once (the busy timeout makes them wait for each other)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        deadline = time.monotonic() + busy_timeout_s
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise sqlite3.OperationalError(f"cannot switch {path} to WAL mode (got {mode})")
                conn.execute("PRAGMA synchronous=NORMAL")
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    conn.executescript("BEGIN IMMEDIATE;" + SCHEMA +
                                       f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
                elif version > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(f"{path} has ledger schema {version}; this faregate "
                                                f"knows up to {SCHEMA_VERSION}")
                break
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    except BaseException:
        conn.close()
        raise
    return conn


def prepare_database(path: str) -> None:
    """Creates the ledger file and schema (once, before workers start); raises OSError or
    sqlite3.Error with the reason when the path is unusable."""
    connect(path).close()


class Ledger:
    """The sink; see the module docstring. `metrics` (optional) has `ledger_written(n)` and
    `ledger_dropped(reason, n)`."""

    def __init__(self, cfg: LedgerConfig, metrics: Any = None):
        self.path = cfg.path
        self.batch_size = cfg.batch_size
        self.flush_interval = cfg.flush_interval_s
        self.queue_max = cfg.queue_max
        self.metrics = metrics
        self.written = 0
        self.dropped = 0
        self._buf: list[tuple] = []
        self._wake = asyncio.Event()
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self._closed = False
        self._drops_unlogged: dict[str, int] = {}
        self._drop_logged_at = -1e9
        self._rows_per_insert = 1  # set from the connection's parameter limit in start()
        self._sql: dict[int, str] = {}

    # ---- the request path --------------------------------------------------------------
    def __call__(self, rec: RequestRecord) -> None:
        if self._closed:
            self._drop("closed", 1)
            return
        buf = self._buf
        if len(buf) >= self.queue_max:
            self._drop("queue_full", 1)
            return
        buf.append(row_of(rec))
        if len(buf) >= self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buf)

    _WHY = {"queue_full": "the write queue is full (ledger.queue_max): the disk is slower than "
                          "the request rate",
            "write_error": "writing to the database failed (see the error above)",
            "closed": "the ledger was already closed"}

    def _drop(self, reason: str, n: int) -> None:
        self.dropped += n
        if self.metrics is not None:
            self.metrics.ledger_dropped(reason, n)
        self._drops_unlogged[reason] = self._drops_unlogged.get(reason, 0) + n
        if self._closed or time.monotonic() - self._drop_logged_at >= 10.0:
            self._log_drops()

    def _log_drops(self) -> None:
        """One error line for the drops since the last one (at most every 10 s, and at close)."""
        for reason, n in self._drops_unlogged.items():
            log.error("ledger dropped %d row(s), %d in all: %s", n, self.dropped, self._WHY[reason])
        self._drops_unlogged.clear()
        self._drop_logged_at = time.monotonic()

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="faregate-ledger")
        self._conn = await loop.run_in_executor(self._executor, connect, self.path)
        try:
            max_vars = self._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        except AttributeError:  # Python < 3.11: SQLite's historical default
            max_vars = 999
        n = max(1, min(256, max_vars // len(COLUMNS)))
        self._rows_per_insert = 1 << (n.bit_length() - 1)  # a power of two: few distinct statements
        self._task = loop.create_task(self._run(), name="faregate-ledger-writer")

    async def _run(self) -> None:
        while not self._closing:
            full_only = True  # woken by a full batch: the rest waits for the interval
            if len(self._buf) < self.batch_size:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
                except asyncio.TimeoutError:
                    full_only = False
            self._wake.clear()
            try:
                await self._write_pending(full_only and not self._closing)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the writer die; the rows were counted as dropped
                log.exception("ledger writer failed")
            if self._drops_unlogged and time.monotonic() - self._drop_logged_at >= 10.0:
                self._log_drops()

    async def _write_pending(self, full_only: bool = False) -> None:
        loop = asyncio.get_running_loop()
        while len(self._buf) >= (self.batch_size if full_only else 1):
            batch = self._buf[:self.batch_size]
            del self._buf[:self.batch_size]
            written, error = await loop.run_in_executor(self._executor, self._write, batch)
            if written:
                self.written += written
                if self.metrics is not None:
                    self.metrics.ledger_written(written)
            if error is not None:
                log.error("ledger: could not write %d row(s) to %s: %s", len(batch), self.path, error)
                self._drop("write_error", len(batch))

    def _write(self, rows: list[tuple]) -> tuple[int, BaseException | None]:
        """In the writer thread: one transaction per batch; three tries while the database is
        locked by another writer for longer than the busy timeout."""
        conn = self._conn
        assert conn is not None
        error: BaseException | None = None
        for attempt in range(3):
            try:
                conn.execute("BEGIN IMMEDIATE")
                i, total = 0, len(rows)
                while i < total:  # chunks of 2^k rows: at most log2(rows_per_insert)+1 statements
                    n = min(self._rows_per_insert, total - i)
                    n = 1 << (n.bit_length() - 1)
                    conn.execute(self._insert_sql(n), list(chain.from_iterable(rows[i:i + n])))
                    i += n
                conn.execute("COMMIT")
                return len(rows), None
            except sqlite3.Error as exc:
                error = exc
                try:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if "locked" not in str(exc) and "busy" not in str(exc):
                    break  # only contention is worth another try
                time.sleep(0.1 * (attempt + 1))
        return 0, error

    def _insert_sql(self, n: int) -> str:
        sql = self._sql.get(n)
        if sql is None:
            sql = self._sql[n] = _INSERT_HEAD + ",".join([_ROW] * n)
        return sql

    async def flush(self) -> None:
        """Writes every row buffered so far (and waits for a batch already being written)."""
        if self._executor is None or self._closed:
            return
        await self._write_pending()
        await asyncio.get_running_loop().run_in_executor(self._executor, lambda: None)

    async def close(self) -> None:
        """Stops the writer after writing every buffered row."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("ledger writer failed")
        if self._executor is not None:
            await self._write_pending()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._close_conn)
            self._executor.shutdown(wait=True)
        self._closed = True
        if self._buf:  # only if start() never ran
            self._drop("closed", len(self._buf))
            self._buf.clear()
        if self._drops_unlogged:
            self._log_drops()

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
