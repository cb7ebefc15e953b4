"""The body loop: read a response body into the part file, hashing it as it goes, with the size cap
checked at every TLS record and the deadline, minimum rate, rate limit and progress kept (TUF's
endless-data and slow-retrieval attacks).

Per record the loop does only what must be done per record: read, count, compare with the size cap,
read the clock. Everything timed (deadline, minimum rate, progress, the hand-off of a partly filled
buffer) is checked by :class:`_Checks` only once it is due, so the loop costs a few Python
operations per 16 KiB record (issue 18: profile recipe in docs/architecture.md).
"""

from __future__ import annotations

import math
import time
from typing import Any

from ..errors import NetworkError, SizeError
from . import pipeline
from .body import body_reader
from .job import Job, deadline_error
from .partfile import PartFile
from .rate import rate_limit_pause

__all__ = ["HANDOFF_INTERVAL", "PROGRESS_INTERVAL", "stream_body"]

#: Longest a partly filled buffer waits before it goes to be hashed and written (slow bodies).
HANDOFF_INTERVAL = 0.25  # seconds
PROGRESS_INTERVAL = 0.1  # seconds between progress callbacks


def stream_body(resp: Any, part: PartFile, job: Job, *, url: str, received: int, total: int | None,
                limit: tuple[int, str]) -> int:
    """The hot loop. This thread reads straight into large reused buffers, at most one TLS record
    per call (so that a trickle cannot hide in one long read), checks the size cap after every
    record and the timed limits when they are due; each filled buffer is then hashed and written
    on a worker thread while the next one fills (:func:`.pipeline.hash_and_write`; on this thread
    when the process has one core). Whatever was read before a failure is still hashed and written
    (a resume relies on the digest and the part agreeing). Bounded memory: three 1 MiB buffers.

    Raises:
        SizeError: more than the cap arrived.
        NetworkError: the deadline passed, or the rate fell below the minimum.
    """
    cap, why = limit
    readinto1 = body_reader(resp)
    clock = time.monotonic
    now = clock()
    checks = _Checks(resp, job, url, now, received, total)
    due = checks.run(now, received)
    with pipeline.hash_and_write((job.digest.update, *(sink.update for sink in job.sinks),
                                  part.write)) as pipe:
        buf, pos, handoff = pipe.take(), 0, now + HANDOFF_INTERVAL
        view = memoryview(buf)
        end = len(view)
        try:
            while True:
                # Never ask for more than one byte past the cap: an endless body stops right there.
                stop = pos + cap - received + 1
                n = readinto1(view[pos:stop if stop < end else end])
                if not n:
                    break
                received += n
                if received > cap:
                    raise SizeError(f"{url} sent more than {cap} bytes ({why}). Download stopped.")
                pos += n
                now = clock()
                if now >= due:
                    due = checks.run(now, received)
                    now = clock()  # a rate limit may have slept
                if pos == end or now >= handoff:
                    filled, pos = pos, 0  # before submit: a consumer's error must not feed it twice
                    pipe.submit(buf, filled)
                    buf = pipe.take()
                    view = memoryview(buf)
                    handoff = now + HANDOFF_INTERVAL
        finally:
            if pos:
                pipe.submit(buf, pos)
    checks.report(received)
    return received


class _Checks:
    """The timed limits of one body; :meth:`run` checks those that are due and says when to call
    it next."""

    def __init__(self, resp: Any, job: Job, url: str, now: float, received: int,
                 total: int | None) -> None:
        self.resp, self.job, self.url, self.total = resp, job, url, total
        self.budget = job.budget
        self.budget.start_body(now, received)
        self.gap = job.options.read_timeout  # the socket's read timeout now in force
        self.max_rate = job.options.max_rate
        self.start, self.start_bytes = now, received
        self.next_report = now

    def report(self, received: int) -> None:
        if self.job.progress is not None:
            self.job.progress(received, self.total)

    def run(self, now: float, received: int) -> float:
        """Check the deadline, the minimum rate, the rate limit and the progress callback, each if it
        is due; return the time at which the next one is due."""
        budget = self.budget
        due = math.inf
        if budget.deadline_at is not None:
            due = self._near_deadline(now)
        slow = budget.too_slow(now, received)
        if slow is not None:
            raise NetworkError(f"{self.url} sent {slow:.0f} bytes/s over the last {budget.window:g} s, "
                               f"below the minimum of {budget.min_rate:g} bytes/s (--min-rate).",
                               url=self.url)
        due = min(due, budget.next_check())
        if self.max_rate:
            self._limit(now, received)
            due = now  # every record: the pause depends on its bytes
        if self.job.progress is not None:
            if now >= self.next_report:
                self.report(received)
                self.next_report = now + PROGRESS_INTERVAL
            due = min(due, self.next_report)
        return due

    def _near_deadline(self, now: float) -> float:
        """Shorten the socket's read timeout as the deadline nears, so a stall cannot outlast it.
        Due again at once in the last read timeout before the deadline, else when that begins."""
        left = self.budget.remaining(now)
        assert left is not None
        if left <= 0:
            raise deadline_error(self.job)
        if left < self.gap:
            sock = getattr(getattr(self.resp, "connection", None), "sock", None)
            if sock is not None:
                sock.settimeout(left)
            self.gap = left
            return now
        return now + left - self.gap

    def _limit(self, now: float, received: int) -> None:
        """``max_rate`` (``--limit-rate``): sleep until the bytes so far are no ahead of the rate,
        never past the deadline."""
        assert self.max_rate
        pause, past_deadline = rate_limit_pause(now=now, start=self.start, start_bytes=self.start_bytes,
                                                received=received, max_rate=self.max_rate,
                                                left=self.budget.remaining(now))
        if pause:
            time.sleep(pause)
        if past_deadline:
            raise deadline_error(self.job)
