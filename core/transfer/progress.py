"""Progress of a transfer: the service side turns blob events into :class:`Progress` values
(:class:`ProgressTracker`), the client side folds them back into per-blob rows, totals and a
rate for display (:class:`ProgressView`).

Events per blob, by its ref key (``layer-sha256:...``): ``waiting`` when it is first seen,
``downloading``/``uploading`` as bytes move (at most every ``interval`` seconds per blob),
``complete`` or ``already exists``, then ``extracting``/``extracted`` when it is unpacked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import attrs

from pycontainerd.core.content.descriptor import Descriptor
from pycontainerd.core.transfer import Progress, ProgressFunc

log = logging.getLogger(__name__)

WAITING = "waiting"
COMPLETE = "complete"
EXISTS = "already exists"
EXTRACTING = "extracting"
EXTRACTED = "extracted"


@attrs.define(eq=False, kw_only=True)
class _Job:
    desc: Descriptor
    name: str
    parents: tuple[str, ...]
    state: str = WAITING
    offset: int = 0
    sent: int = -1
    started: float = 0.0
    extract: int = 0
    extract_sent: int = -1


@attrs.define(eq=False, kw_only=True)
class ProgressTracker:
    """Blob states of one transfer; sends :class:`Progress` to ``emit`` (which may be None:
    the tracker then only keeps state, for stall detection). ``state`` is the word for moving
    bytes ("downloading" or "uploading")."""

    root: str
    emit: ProgressFunc | None = None
    state: str = "downloading"
    interval: float = 0.2
    jobs: dict[str, _Job] = attrs.Factory(dict)
    parents: dict[str, list[str]] = attrs.Factory(dict)
    #: monotonic time of the last sign of life (bytes moved, a blob started or finished)
    last_activity: float = attrs.Factory(time.monotonic)
    started: float = attrs.Factory(time.monotonic)
    _task: asyncio.Task[None] | None = None

    def _send(self, p: Progress) -> None:
        if self.emit is None:
            return
        try:
            self.emit(p)
        except Exception:  # noqa: BLE001 - a broken progress sink never fails the transfer
            log.warning("progress callback failed", exc_info=True)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def add_children(self, parent: Descriptor, children: Sequence[Descriptor]) -> None:
        from pycontainerd.core.remotes.handlers import ref_key

        pname = ref_key(parent)
        for c in children:
            self.parents.setdefault(c.digest, []).append(pname)

    def _job(self, desc: Descriptor) -> _Job:
        job = self.jobs.get(desc.digest)
        if job is None:
            from pycontainerd.core.remotes.handlers import ref_key

            parents = tuple(self.parents.get(desc.digest) or [self.root])
            job = _Job(desc=desc, name=ref_key(desc), parents=parents)
            self.jobs[desc.digest] = job
            self._send(
                Progress(event=WAITING, name=job.name, parents=parents, total=desc.size, desc=desc)
            )
        return job

    def add(self, desc: Descriptor) -> None:
        self._job(desc)
        self.touch()

    def update(self, desc: Descriptor, offset: int, total: int) -> None:
        """Bytes of ``desc`` so far (the remotes handlers' progress signature)."""
        job = self._job(desc)
        if job.state == WAITING:
            job.state = self.state
            job.started = time.monotonic()
        if offset != job.offset:
            job.offset = offset
            self.touch()

    def mark_exists(self, desc: Descriptor) -> None:
        job = self._job(desc)
        job.state, job.offset = COMPLETE, desc.size
        self.touch()
        self._send(
            Progress(
                event=EXISTS,
                name=job.name,
                parents=job.parents,
                progress=desc.size,
                total=desc.size,
                desc=desc,
            )
        )

    def complete(self, desc: Descriptor) -> None:
        job = self._job(desc)
        if job.state == COMPLETE:
            return
        job.state, job.offset = COMPLETE, desc.size
        self.touch()
        self._send(
            Progress(
                event=COMPLETE,
                name=job.name,
                parents=job.parents,
                progress=desc.size,
                total=desc.size,
                desc=desc,
            )
        )

    def extract_progress(self, desc: Descriptor, applied: int) -> None:
        job = self._job(desc)
        job.state, job.extract = EXTRACTING, applied
        self.touch()

    def extracted(self, desc: Descriptor) -> None:
        job = self._job(desc)
        job.state = EXTRACTED
        self.touch()
        self._send(
            Progress(
                event=EXTRACTED,
                name=job.name,
                parents=job.parents,
                progress=desc.size,
                total=desc.size,
                desc=desc,
            )
        )

    def active(self) -> list[tuple[Descriptor, int]]:
        """Blobs still moving bytes or being extracted: (descriptor, bytes so far)."""
        return [
            (j.desc, j.extract if j.state == EXTRACTING else j.offset)
            for j in self.jobs.values()
            if j.state in (self.state, EXTRACTING)
        ]

    def flush(self) -> None:
        for job in list(self.jobs.values()):
            if job.state == self.state and job.offset != job.sent:
                job.sent = job.offset
                self._send(
                    Progress(
                        event=self.state,
                        name=job.name,
                        parents=job.parents,
                        progress=job.offset,
                        total=job.desc.size,
                        desc=job.desc,
                    )
                )
            elif job.state == EXTRACTING and job.extract != job.extract_sent:
                job.extract_sent = job.extract
                self._send(
                    Progress(
                        event=EXTRACTING,
                        name=job.name,
                        parents=job.parents,
                        progress=job.extract,
                        total=job.desc.size,
                        desc=job.desc,
                    )
                )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.flush()

    def start(self) -> None:
        if self.emit is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()

    @property
    def bytes_done(self) -> int:
        return sum(j.offset for j in self.jobs.values())


@attrs.define(kw_only=True)
class Row:
    name: str
    status: str
    progress: int = 0
    total: int = 0


@attrs.define(eq=False, kw_only=True)
class ProgressView:
    """Client-side fold of :class:`Progress` events: one row per blob in first-seen order,
    the step messages, bytes done/total and a transfer rate."""

    rows: dict[str, Row] = attrs.Factory(dict)
    messages: list[str] = attrs.Factory(list)
    started: float = attrs.Factory(time.monotonic)
    #: (time, bytes done) samples for the rate over the last ``window`` seconds
    samples: list[tuple[float, int]] = attrs.Factory(list)
    window: float = 3.0

    def add(self, p: Progress) -> None:
        if not p.name:
            self.messages.append(p.event)
            return
        if p.event == "saved" or p.event.startswith(("fetching", "pushing", "pushed")):
            self.messages.append(f"{p.event} {p.name}")
            return
        row = self.rows.get(p.name)
        if row is None:
            row = self.rows[p.name] = Row(name=p.name, status=p.event, total=p.total)
        row.status = p.event
        if p.total:
            row.total = p.total
        if p.event in (COMPLETE, EXISTS, EXTRACTED, EXTRACTING):
            row.progress = p.total or row.total
        else:
            row.progress = p.progress
        now = time.monotonic()
        self.samples.append((now, self.done))
        while self.samples and now - self.samples[0][0] > self.window:
            self.samples.pop(0)

    @property
    def done(self) -> int:
        return sum(r.progress for r in self.rows.values())

    @property
    def total(self) -> int:
        return sum(r.total for r in self.rows.values())

    @property
    def rate(self) -> float:
        """Bytes per second over the recent window (0 before two samples)."""
        if len(self.samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"
