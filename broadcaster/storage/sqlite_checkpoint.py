"""Checkpointing an SQLite database's write-ahead log beside the writers, not in their commits.

In WAL mode SQLite copies the log back into the database file (a checkpoint, two fsyncs) in the
commit that takes the log past `wal_autocheckpoint` pages (1,000 by default). That commit then
holds the connection for tens of milliseconds, up to a quarter of a second on this machine's
disk; with one connection per process, the claims that feed the dispatcher's lanes queued behind
it, and a lane of a big list stood empty meanwhile.

So each engine on a database file has a thread of its own, with a connection of its own, that
runs a PASSIVE checkpoint every CHECKPOINT_EVERY_SECONDS: it copies what no reader still needs,
never waits for readers or writers, and runs in SQLite's C code, off the interpreter's lock. The
pooled connections checkpoint themselves only past BACKSTOP_PAGES (about 40 MB), should this
thread ever fall behind. The thread runs while the engine has a connection open and stops when
the pool closes its connections (engine.dispose()), which waits for it to close its own.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "BACKSTOP_PAGES",
    "CHECKPOINT_EVERY_SECONDS",
    "THREAD_NAME",
    "WalCheckpointer",
    "checkpoint_beside",
]

log = logging.getLogger(__name__)

CHECKPOINT_EVERY_SECONDS: Final = 0.5
THREAD_NAME: Final = "sqlite-checkpoint"  # and the database's path
STOP_WITHIN_SECONDS: Final = 10.0  # a checkpoint under way is waited for this long at most
BACKSTOP_PAGES: Final = 10_000


class WalCheckpointer:
    """A thread that checkpoints one database's log while started."""

    def __init__(self, path: str, every: float = CHECKPOINT_EVERY_SECONDS) -> None:
        self.path = path
        self.every = every
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  # completed PASSIVE checkpoints (for tests and curiosity)

    @property
    def running(self) -> bool:
        return self._stop is not None

    def start(self) -> None:
        with self._lock:
            if self._stop is not None:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run,
                args=(self._stop,),
                name=f"{THREAD_NAME} {self.path}",
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        """End the thread and wait for it: its connection is closed on return, so the
        engine's own, closing last, leaves the database file whole and the log removed (as
        SQLite does when the last connection closes), for a copy or a backup made next. The
        thread is either waiting (it ends at once) or in a checkpoint, which it finishes."""
        with self._lock:
            stop, thread = self._stop, self._thread
            self._stop = self._thread = None
        if stop is not None:
            stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_WITHIN_SECONDS)

    def _run(self, stop: threading.Event) -> None:
        try:
            connection = sqlite3.connect(self.path, timeout=0, check_same_thread=False)
        except sqlite3.Error as error:
            log.warning("cannot checkpoint %s: %s; commits will", self.path, error)
            return
        try:
            while not stop.wait(self.every):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as error:  # busy (another checkpoint), or the file went
                    log.debug("checkpoint of %s skipped: %s", self.path, error)
        finally:
            connection.close()


def checkpoint_beside(engine: AsyncEngine, path: str) -> WalCheckpointer:
    """Give `engine` (on the SQLite file `path`) a checkpointing thread, and its connections
    the backstop; returns the checkpointer."""
    checkpointer = WalCheckpointer(path)

    def connected(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        cursor.close()
        checkpointer.start()

    def closed(_dbapi_connection: Any, _record: Any) -> None:
        checkpointer.stop()

    event.listen(engine.sync_engine, "connect", connected)
    event.listen(engine.sync_engine, "close", closed)
    event.listen(engine.sync_engine, "close_detached", closed)
    return checkpointer
