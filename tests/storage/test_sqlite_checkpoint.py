"""The write-ahead log is checkpointed beside the writers (storage/sqlite_checkpoint.py): the
database file itself catches up within moments, though no commit checkpoints any more."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from pathlib import Path

from sqlalchemy import text

from broadcaster.settings import DatabaseSettings
from broadcaster.storage.engine import create_engine
from broadcaster.storage.sqlite_checkpoint import (
    BACKSTOP_PAGES,
    CHECKPOINT_EVERY_SECONDS,
    THREAD_NAME,
    WalCheckpointer,
)

PAYLOAD = "x" * 3000  # about a page per row


def _checkpointers(path: Path) -> list[threading.Thread]:
    """The live checkpoint threads of this database (other tests' may still be winding down)."""
    name = f"{THREAD_NAME} {path}"
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def _rows_in_the_file_alone(path: Path, copy: Path) -> int:
    """What a copy of the database file, without its log, holds (a naive backup's view)."""
    shutil.copyfile(path, copy)
    reader = sqlite3.connect(copy)
    try:
        return int(reader.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.OperationalError:  # not even the table yet
        return 0
    except sqlite3.DatabaseError:  # copied half-way through a checkpoint: look again
        return -1
    finally:
        reader.close()


async def test_writes_reach_the_database_file_without_any_commit_checkpointing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "service.db"
    engine = create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}"))
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (n INTEGER, body TEXT)"))
        for batch in range(10):
            async with engine.begin() as connection:
                await connection.execute(
                    text("INSERT INTO t VALUES (:n, :body)"),
                    [{"n": batch * 100 + n, "body": PAYLOAD} for n in range(100)],
                )
        async with engine.connect() as connection:
            backstop = await connection.scalar(text("PRAGMA wal_autocheckpoint"))
        # About a thousand pages were written: SQLite's default would have had a commit copy
        # them back. Here commits leave that to the thread, up to the backstop.
        assert backstop == BACKSTOP_PAGES
        assert len(_checkpointers(path)) == 1
        for _ in range(40):
            in_the_file = _rows_in_the_file_alone(path, tmp_path / "copy.db")
            if in_the_file == 1000:
                break
            await asyncio.sleep(CHECKPOINT_EVERY_SECONDS / 2)
        assert in_the_file == 1000
    finally:
        await engine.dispose()
    # Disposed: the thread and its connection are gone, and the engine's connection, closing
    # last, left the file whole and removed the log, ready to be copied at once.
    assert not _checkpointers(path)
    assert not Path(f"{path}-wal").exists()  # noqa: ASYNC240 (one look, after the engine)
    assert _rows_in_the_file_alone(path, tmp_path / "copy.db") == 1000


def test_a_checkpointer_starts_once_and_stops(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (n INTEGER, body TEXT)")
    writer.executemany("INSERT INTO t VALUES (?, ?)", [(n, PAYLOAD) for n in range(50)])
    checkpointer = WalCheckpointer(str(path), every=0.05)
    checkpointer.start()
    checkpointer.start()
    assert checkpointer.running
    assert len(_checkpointers(path)) == 1
    try:
        for _ in range(100):
            in_the_file = _rows_in_the_file_alone(path, tmp_path / "copy.db")
            if in_the_file == 50:
                break
            threading.Event().wait(0.05)
        assert in_the_file == 50
    finally:
        checkpointer.stop()
        writer.close()
    assert checkpointer.checkpoints > 0  # (counted after each: looked at once it stopped)
    assert not checkpointer.running
    assert not _checkpointers(path)  # stop() waited for it
