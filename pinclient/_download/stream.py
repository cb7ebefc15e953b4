"""The body loop: read a response body into the part file, hashing it on a second thread, with the
size cap checked at every TLS record and the deadline and minimum rate kept (TUF's endless-data and
slow-retrieval attacks).
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import NetworkError, SizeError
from .body import body_reader
from .job import Job, deadline_error
from .partfile import PartFile
from .pipeline import Pipeline

__all__ = ["HANDOFF_INTERVAL", "PROGRESS_INTERVAL", "stream_body"]

#: Longest a partly filled buffer waits before it goes to be hashed and written (slow bodies).
HANDOFF_INTERVAL = 0.25  # seconds
PROGRESS_INTERVAL = 0.1  # seconds between progress callbacks


def stream_body(resp: Any, part: PartFile, job: Job, *, url: str, received: int, total: int | None,
            limit: tuple[int, str]) -> int:
    """The hot loop. This thread reads straight into large reused buffers, at most one TLS record
    per call (so that a trickle cannot hide in one long read), and checks size, deadline, rate and
    progress after every record; a second thread hashes and writes each filled buffer
    (:mod:`.pipeline`), so decryption and SHA-256 overlap on two cores. Whatever was read before a
    failure is still hashed and written (a resume relies on the digest and the part agreeing).
    Bounded memory: the buffer pool plus the part file's buffer."""
    cap, why = limit
    readinto1 = body_reader(resp)
    progress, clock = job.progress, time.monotonic
    gap = job.options.read_timeout
    now = clock()
    job.budget.start_body(now, received)
    next_report = now
    if progress is not None:
        progress(received, total)
    with Pipeline((job.digest.update, *(sink.update for sink in job.sinks), part.write)) as pipe:
        buf, pos, handoff = pipe.take(), 0, now + HANDOFF_INTERVAL
        view = memoryview(buf)
        try:
            while True:
                # Never ask for more than one byte past the cap: an endless body stops right there.
                n = readinto1(view[pos:min(len(view), pos + max(1, cap - received + 1))])
                if not n:
                    break
                received += n
                if received > cap:
                    raise SizeError(f"{url} sent more than {cap} bytes ({why}). Download stopped.")
                pos += n
                now = clock()
                gap = _pace(resp, job, url, now, received, gap)
                if progress is not None and now >= next_report:
                    progress(received, total)
                    next_report = now + PROGRESS_INTERVAL
                if pos == len(view) or now >= handoff:
                    pipe.submit(buf, pos)
                    pos = 0
                    buf = pipe.take()
                    view = memoryview(buf)
                    handoff = now + HANDOFF_INTERVAL
        finally:
            if pos:
                pipe.submit(buf, pos)
    if progress is not None:
        progress(received, total)
    return received


def _pace(resp: Any, job: Job, url: str, now: float, received: int, gap: float) -> float:
    """After each record: the deadline (see :func:`_near_deadline`) and the minimum rate. Returns
    the read timeout now in force."""
    budget = job.budget
    if budget.deadline_at is not None:
        gap = _near_deadline(resp, job, now, gap)
    slow = budget.too_slow(now, received)
    if slow is not None:
        raise NetworkError(f"{url} sent {slow:.0f} bytes/s over the last {budget.window:g} s, below "
                           f"the minimum of {budget.min_rate:g} bytes/s (--min-rate).", url=url)
    return gap


def _near_deadline(resp: Any, job: Job, now: float, gap: float) -> float:
    """Shorten the socket's read timeout as the deadline nears, so a stall cannot outlast it."""
    left = job.budget.remaining(now)
    assert left is not None
    if left <= 0:
        raise deadline_error(job)
    if left < gap:
        sock = getattr(getattr(resp, "connection", None), "sock", None)
        if sock is not None:
            sock.settimeout(left)
        return left
    return gap
