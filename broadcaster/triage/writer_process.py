"""The ingestion writer in a process of its own, so a flood of reports uses a second core.

One web process was bound by its CPU at about 2,100 reports a second, a third of it in the
writer (dedupe, clustering, scoring, the insert, turning each report into the live queue's
JSON) while the machine's second core idled. `WriterProcess` stands in for the `Pipeline`
(the same calls: `pipeline.ReportWriter`): the web process keeps HTTP, the signature checks,
normalising, the ingestion queue, /metrics and the live queue, and a child process runs the
real Pipeline on its own engine, with its own cluster index and its own copy of the alerts in
force (read from the database every few seconds, as in one process; reporters' history is
read per batch), and the rules the web process loaded, handed over once at start.

The two talk over a socketpair, asyncio streams at both ends (the web process's event loop is
never blocked): length-prefixed pickles of plain tuples, between two processes of ours. A
batch goes as tuples of a NewReport's fields; its answer is, per item, (report id, created),
and per report to show, the live queue's JSON already encoded plus the few plain fields its
filters read (live.EncodedReport).

Nothing is lost. A batch is answered only after its transaction committed, and the webhooks
that brought it are answered 200 only then. If the child dies, every call waiting on it fails
(WriterDied); the ingestion queue keeps the batch and retries it, which starts a new child
(counted in /metrics as broadcaster_triage_writer_restarts_total, and logged); what the dead
child had stored already is found by the (source, external id) key and not stored twice. Its
last reports may have been stored but never shown, so live-queue subscribers are told to
reload (a resync event). The child exits when its socket closes: when the service stops (after
the last batch) or when the web process dies in any way, SIGKILL included.

`spawn`, not fork: the web process runs an event loop and threads (and holds database
connections), which a forked child would inherit half-way.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import multiprocessing
import multiprocessing.util  # registers its exit function before ours: see _close_at_exit
import operator
import pickle
import signal
import socket
import struct
import traceback
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from multiprocessing.process import BaseProcess
from typing import Any

from sqlalchemy.engine import URL

from broadcaster.process_cpu import cpu_seconds
from broadcaster.triage.live import EncodedReport, LiveReport
from broadcaster.triage.metrics import TriageMetrics
from broadcaster.triage.normalise import NewReport
from broadcaster.triage.pipeline import Ingested
from broadcaster.triage.rules import TriageRules
from broadcaster.triage.states import ReportState

__all__ = ["WriterDied", "WriterError", "WriterProcess", "can_run_apart"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")
_READ_LIMIT = 1 << 20  # a batch of 1,000 reports is a few hundred kilobytes
_STOP_SECONDS = 10.0  # for the child to finish its batch and let its connection go
# A NewReport as a tuple of its fields, in the order its constructor takes them: a tuple
# pickles several times faster than a dataclass (no class reference, no field names).
_pack: Callable[[NewReport], tuple[Any, ...]] = operator.attrgetter(
    *(field.name for field in fields(NewReport))
)


# Every writer running, for _close_at_exit.
_running: weakref.WeakSet[WriterProcess] = weakref.WeakSet()


class WriterDied(Exception):
    """The writer process ended with this batch in flight: the batch stays queued."""


class WriterError(Exception):
    """The writer process could not write the batch (the database refused it); the message
    carries its traceback."""


def can_run_apart(url: URL) -> bool:
    """Whether another process can open the same database (an in-memory SQLite cannot)."""
    if url.get_backend_name() != "sqlite":
        return True
    database = url.database or ""
    return database not in ("", ":memory:") and "mode=memory" not in str(url)


@dataclass(frozen=True)
class _ChildConfig:
    database_url: str
    rules: TriageRules
    log_format: str
    log_level: int


class WriterProcess:
    """The Pipeline's calls, carried out by a child process (see the module's docstring)."""

    def __init__(
        self,
        database_url: URL,
        rules: TriageRules,
        metrics: TriageMetrics,
        *,
        log_format: str = "json",
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self._url = database_url.render_as_string(hide_password=False)
        self._rules = rules
        self._metrics = metrics
        self._log_format = log_format
        self.on_lost = on_lost  # called when a child died: what it stored may not have been shown
        self._process: BaseProcess | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._socket: socket.socket | None = None  # our end, shut at exit (_close_at_exit)
        self._listener: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._requests = itertools.count(1)
        self._starting = asyncio.Lock()
        self._hold = False
        self._died = False  # the last child died unexpectedly: the next start is a restart

    @property
    def pid(self) -> int | None:
        """The running child's process id (tests, the benchmark)."""
        return self._process.pid if self._process is not None else None

    @property
    def in_flight(self) -> int:
        """Calls sent to the child and not yet answered (tests)."""
        return len(self._waiting)

    def cpu_seconds(self) -> float:
        """CPU time the running child has used so far (Linux; 0 elsewhere or if none runs)."""
        pid = self.pid
        return 0.0 if pid is None else cpu_seconds(pid)

    # --- the Pipeline's calls -----------------------------------------------------------------

    async def warm(self, now: datetime) -> None:
        """Start the child and have it build its cluster index. Not waited for: the service
        starts serving meanwhile, and the first batch queues behind it (the child logs a
        failure itself, and then builds the index with the first batch)."""
        await self._start()
        self._send(("warm", 0, now))

    def invalidate(self) -> None:
        # A child that is not running starts with no index, built at its first batch.
        if self._writer is not None:
            self._send(("invalidate",))

    def hold_connection(self) -> None:
        self._hold = True
        if self._writer is not None:
            self._send(("hold",))

    def prune(self, now: datetime) -> int:
        """Drop expired clusters in the child; how many it dropped stays there (0 here)."""
        if self._writer is not None:
            self._send(("prune", now))
        return 0

    async def write(
        self, batch: Sequence[NewReport], now: datetime, *, show: bool = True
    ) -> tuple[list[Ingested], Sequence[LiveReport]]:
        results, changed = await self._call("write", [_pack(report) for report in batch], now, show)
        states = ReportState
        return (
            [Ingested(report_id, created) for report_id, created in results],
            [
                EncodedReport(id_, source, states(state), priority, incident, lat, lon, encoded)
                for id_, source, state, priority, incident, lat, lon, encoded in changed
            ],
        )

    async def release(self) -> None:
        """Stop the child: it finishes the batch in hand, lets its connection go and exits
        when its socket closes; one that does not within a few seconds is killed."""
        process, writer, listener = self._process, self._writer, self._listener
        self._process = self._writer = self._listener = self._socket = None  # no death
        _running.discard(self)
        self._hold = False
        if writer is not None:
            writer.close()
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        self._fail_waiting("the writer process was stopped")
        if process is None:
            return
        await asyncio.to_thread(process.join, _STOP_SECONDS)
        if process.is_alive():
            log.warning(
                "triage: the writer process %s did not stop within %s s; killing it",
                process.pid,
                _STOP_SECONDS,
            )
            process.kill()
            await asyncio.to_thread(process.join, _STOP_SECONDS)
        process.close()

    # --- the child's life ---------------------------------------------------------------------

    async def _start(self) -> None:
        async with self._starting:
            if self._writer is not None:
                return
            ours, theirs = socket.socketpair()
            config = _ChildConfig(
                self._url, self._rules, self._log_format, logging.getLogger().getEffectiveLevel()
            )
            process = multiprocessing.get_context("spawn").Process(
                target=child_main,
                args=(theirs, config),
                name="broadcaster triage writer",
                daemon=True,  # also ended by multiprocessing if this process exits without release
            )
            try:
                # In a thread: starting writes the child's arguments into a pipe, which waits
                # if the child is slow to read them.
                await asyncio.to_thread(process.start)
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()  # the child has its own copy; ours would keep its socket open
            reader, writer = await asyncio.open_connection(sock=ours, limit=_READ_LIMIT)
            self._process, self._writer, self._socket = process, writer, ours
            _running.add(self)
            self._listener = asyncio.create_task(
                self._listen(process, reader), name="triage writer process"
            )
            if self._died:
                self._died = False
                self._metrics.writer_restarts.inc()
                log.warning("triage: started a new writer process (%s)", process.pid)
            if self._hold:
                self._send(("hold",))

    async def _call(self, kind: str, *arguments: Any) -> Any:
        await self._start()
        writer = self._writer
        if writer is None:  # released while starting
            raise WriterDied("the writer process was stopped")
        request = next(self._requests)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request] = answer
        try:
            self._send((kind, request, *arguments))
            await writer.drain()
            return await answer
        finally:
            self._waiting.pop(request, None)
            if answer.done() and not answer.cancelled():
                answer.exception()  # a death noticed while sending was raised from drain()

    def _send(self, message: tuple[Any, ...]) -> None:
        assert self._writer is not None
        _write(self._writer, message)

    async def _listen(self, process: BaseProcess, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                request, ok, payload = await _read(reader)
                answer = self._waiting.get(request)
                if answer is None or answer.done():
                    continue  # a warm-up, or a call given up on (the service is stopping)
                if ok:
                    answer.set_result(payload)
                else:
                    answer.set_exception(WriterError(payload))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the child's end closed: it exited or was killed
        except Exception:
            # An answer we cannot read: what follows it cannot be trusted either. Treated as
            # a death, so the batch is written again (the key keeps it stored once).
            log.exception("triage: unreadable answer from the writer process %s", process.pid)
            with contextlib.suppress(ValueError):
                process.kill()
        if process is not self._process:
            return  # stopped on purpose (release)
        if self._writer is not None:
            self._writer.close()  # our end: the stream keeps it open after the end of input
        self._process = self._writer = self._listener = self._socket = None
        _running.discard(self)
        self._died = True
        self._fail_waiting("the writer process died")
        # Before anything the new process shows, so subscribers reload first.
        if self.on_lost is not None:
            self.on_lost()
        await asyncio.to_thread(process.join, _STOP_SECONDS)
        log.error(
            "triage: the writer process %s died (exit status %s); its batch in flight stays "
            "queued and a new process writes it",
            process.pid,
            process.exitcode,
        )

    def _fail_waiting(self, why: str) -> None:
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(WriterDied(why))
        self._waiting.clear()


@atexit.register
def _close_at_exit() -> None:
    """A web process that exits without stopping its writer (release) still lets it go.

    multiprocessing joins its children at exit (after asking them to stop with SIGTERM, which
    the writer ignores: see child_main); the writer ends when its socket closes, which at
    that point it would not yet have, and the exit would wait for ever. Registered after
    multiprocessing's own exit function, this runs before it."""
    for writer in list(_running):
        if writer._socket is not None:
            with contextlib.suppress(OSError):
                writer._socket.shutdown(socket.SHUT_RDWR)


# --- framing -----------------------------------------------------------------------------------


def _write(writer: asyncio.StreamWriter, message: tuple[Any, ...]) -> None:
    # Pickle is safe here: both ends are this code, over a socketpair nobody else holds.
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.writelines((_HEADER.pack(len(data)), data))


async def _read(reader: asyncio.StreamReader) -> Any:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return pickle.loads(await reader.readexactly(size))  # noqa: S301 (our own child, see _write)


# --- the child -----------------------------------------------------------------------------------


def child_main(sock: socket.socket, config: _ChildConfig) -> None:
    """The writer process (multiprocessing's target, in a freshly spawned interpreter)."""
    from broadcaster import event_loop
    from broadcaster.logs import configure_logging
    from broadcaster.settings import LoggingSettings

    # Ctrl-C in a terminal signals the whole process group, and a supervisor's SIGTERM may
    # too: the web process decides when its writer stops (it closes the socket after the last
    # batch), so neither may cut a batch short here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(LoggingSettings(format="json" if config.log_format == "json" else "text"))
    logging.getLogger().setLevel(config.log_level)
    event_loop.run(_serve(sock, config))


async def _serve(sock: socket.socket, config: _ChildConfig) -> None:
    from broadcaster.settings import DatabaseSettings
    from broadcaster.storage.engine import create_engine
    from broadcaster.triage.context import AlertContext
    from broadcaster.triage.normalise import Normaliser
    from broadcaster.triage.pipeline import Pipeline

    # Two connections at most: the writer's (held on PostgreSQL) and the warm-up's.
    engine = create_engine(DatabaseSettings(url=config.database_url, pool_size=2))
    # The normaliser only finds stored reports' words here (never a pseudonym): no key.
    pipeline = Pipeline(engine, config.rules, Normaliser(config.rules, b""), AlertContext())
    reader, writer = await asyncio.open_connection(sock=sock, limit=_READ_LIMIT)
    try:
        while True:
            try:
                message = await _read(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break  # the web process stopped us, or died
            kind = message[0]
            if kind == "write":
                _, request, packed, now, show = message
                try:
                    results, changed = await pipeline.write(
                        [NewReport(*values) for values in packed], now, show=show
                    )
                except Exception as error:
                    _write(writer, (request, False, "".join(traceback.format_exception(error))))
                else:
                    answer = (
                        [(result.report_id, result.created) for result in results],
                        [
                            (
                                report.id,
                                report.source,
                                report.state.value,
                                report.priority,
                                report.incident_id,
                                report.latitude,
                                report.longitude,
                                report.model_dump_json(),
                            )
                            for report in changed
                        ],
                    )
                    _write(writer, (request, True, answer))
                await writer.drain()
            elif kind == "warm":
                try:
                    await pipeline.warm(message[2])
                except Exception as error:
                    log.warning(
                        "triage: cannot read recent reports to group new ones with (%s); "
                        "trying again with the first report",
                        type(error).__name__,
                    )
                    pipeline.invalidate()
            elif kind == "invalidate":
                pipeline.invalidate()
            elif kind == "prune":
                pipeline.prune(message[1])
            elif kind == "hold":
                pipeline.hold_connection()
    except ConnectionError:
        pass  # the web process went away while we answered
    finally:
        writer.close()
        await pipeline.release()
        await engine.dispose()
