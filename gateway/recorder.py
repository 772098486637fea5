"""The usage side stream: requests hand records to memory; one writer flushes them in batches.

Nothing on the request path touches the disk. A flush is one transaction, so a failed flush
(locked, full or read-only database) changes nothing and its records are retried whole: each
is written exactly once when the database recovers. Memory is bounded: past `max_pending`
records, new ones are dropped and counted, never silently.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

import aiosqlite

from gateway import queries
from gateway.records import RequestRecord, fold_hourly, iso_ts

log = logging.getLogger("gateway.usage")


@dataclass(slots=True)
class RecorderStats:
    recorded: int = 0
    written: int = 0
    dropped: int = 0
    flush_failures: int = 0
    last_error: str | None = None


class UsageRecorder:
    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        flush_interval_s: float = 1.0,
        max_pending: int = 200_000,
        on_record: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        self._conn = conn
        self._interval_s = flush_interval_s
        self._max_pending = max_pending
        self._pending: list[RequestRecord] = []
        self._retry: list[RequestRecord] = []  # a batch whose write failed, kept in order
        self._writing = 0  # records of the flush in progress: not written until it commits
        self._lock = asyncio.Lock()
        self._on_record = on_record
        self.stats = RecorderStats()

    @property
    def backlog(self) -> int:
        return len(self._pending) + len(self._retry) + self._writing

    def record(self, rec: RequestRecord) -> None:
        """Called on the request path: O(1), no I/O."""
        if self.backlog >= self._max_pending:
            self.stats.dropped += 1
            return
        self._pending.append(rec)
        self.stats.recorded += 1
        if self._on_record is not None:
            self._on_record(rec)

    async def flush(self) -> bool:
        """Write everything pending in one transaction. False when the database refused it."""
        async with self._lock:
            batch = self._retry + self._pending
            self._retry, self._pending = [], []
            if not batch:
                return True
            last_used: dict[str, str] = {}
            for rec in batch:
                if rec.api_key:
                    ts = iso_ts(rec.wall_ts)
                    if ts > last_used.get(rec.api_key, ""):
                        last_used[rec.api_key] = ts
            self._writing = len(batch)
            try:
                await queries.write_usage(self._conn, fold_hourly(batch), batch, last_used)
            except (sqlite3.Error, OSError) as e:
                self._retry = batch
                self.stats.flush_failures += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"
                log.warning("usage flush failed (%d records kept for retry): %s", len(batch), self.stats.last_error)
                return False
            finally:
                self._writing = 0
            self.stats.written += len(batch)
            self.stats.last_error = None
            return True

    async def run(self) -> None:
        """Flush every interval until cancelled; the caller flushes once more on shutdown."""
        while True:
            await asyncio.sleep(self._interval_s)
            # Shielded: a shutdown that cancels this loop must not cut a write half-way, which
            # would lose its batch and could leave the connection inside a transaction. The
            # final flush waits for this one on the lock.
            await asyncio.shield(self.flush())
