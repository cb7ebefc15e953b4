"""One fetch's fixed inputs and the state its attempts share: the size limit that applies to a host,
the time left before the deadline, and the wait before a retry. No I/O of its own.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from urllib3 import Timeout

from ..config import PinConfig
from ..errors import NetworkError, PinclientError, PinViolation, RevocationError
from .options import DEFAULT_MAX_SIZE, FetchOptions
from .partfile import PartFile
from .rate import TransferBudget
from .retry import retry_delay

log = logging.getLogger("pinclient")

__all__ = [
    "MIRROR_FAILOVER",
    "Job",
    "Restart",
    "deadline_error",
    "prepare_retry",
    "restart_once",
    "signature_possible",
    "start_over",
    "start_part",
]

#: The failures after which fetch_update tries the next mirror (a network, TLS or HTTP error, a pin
#: violation, a revoked certificate); integrity failures (size, hash, signature) end the fetch.
MIRROR_FAILOVER = (NetworkError, PinViolation, RevocationError)


@dataclass
class Job:
    """Everything one fetch_update call fixed up front, and the state its attempts share."""

    url: str  # normalised
    target: Path  # DEST
    config: PinConfig
    pm: Any  # the PinningPoolManager every request goes through
    options: FetchOptions
    headers: dict[str, str]  # request headers: pinclient's and the caller's
    expected: str | None = None  # SHA-256, 64 hex digits
    size: int | None = None  # exact bytes
    progress: Any = None  # progress(done, total) or None
    mirrors: tuple[str, ...] = ()  # url first, then the other mirrors (normalised); url is the current one
    # Mutable state across attempts:
    budget: TransferBudget = field(init=False)
    offset: int = 0  # bytes of the part to keep and ask the rest of
    digest: Any = None  # SHA-256 of those bytes
    validator: str | None = None  # If-Range value for them
    part_source: str | None = None  # the mirror those bytes came from (None: none kept)
    attempts: int = 0
    # Body checks beside the SHA-256 (a signature: .signature.SignatureCheck): update(chunk) for every
    # body chunk, restart(offset) when the part restarts from byte offset, finish(path) before the move.
    sinks: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mirrors = self.mirrors or (self.url,)
        self.start_clock()

    def start_clock(self) -> None:
        """Start the deadline now (called once the lock is held: waiting for it does not count)."""
        o = self.options
        self.budget = TransferBudget(now=time.monotonic(), deadline=o.deadline, min_rate=o.min_rate,
                                     window=o.rate_window)

    def limit_for(self, host: str) -> tuple[int, str]:
        """The size limit for a body served by ``host``, and where it comes from."""
        pinset = self.config.pinset_for(host)
        cap, why = DEFAULT_MAX_SIZE, "the default max_size"
        if self.options.max_size is not None:
            cap, why = self.options.max_size, "max_size"
        elif pinset is not None and pinset.max_size is not None:
            cap, why = pinset.max_size, f'max_size of pinset "{pinset.name}"'
        elif self.config.defaults.max_size is not None:
            cap, why = self.config.defaults.max_size, "max_size in [defaults]"
        if self.size is not None and self.size <= cap:
            return self.size, "the expected size"
        return cap, why

    def timeout(self) -> Timeout:
        """Connect and read-gap timeouts for the next request, shortened to fit the deadline.

        Raises:
            NetworkError: the deadline has passed.
        """
        left = self.budget.remaining(time.monotonic())
        if left is not None and left <= 0:
            raise deadline_error(self)
        cap = float("inf") if left is None else left
        return Timeout(connect=min(self.options.connect_timeout, cap),
                       read=min(self.options.read_timeout, cap))

    def exchange_bound(self) -> float:
        """Seconds one small exchange may take as a whole, however steadily the server drips: a
        connection and a response head (revocation checks included), a redirect, a signature.
        A read timeout alone restarts at every byte (issue 14); the deadline, when there is one,
        still applies on top."""
        return self.options.connect_timeout + self.options.read_timeout

    def backoff(self, failures: int, err: PinclientError, rng: random.Random) -> float:
        """The delay before retrying after ``err`` (the ``failures``-th so far).

        Raises:
            PinclientError: ``err`` itself when it must not be retried or the retries are used up,
                or a deadline error when the wait would run past ``deadline``.
        """
        delay = retry_delay(self.options.retry_policy, failures, err, rng)
        if delay is None:
            raise err
        left = self.budget.remaining(time.monotonic())
        if left is not None and delay >= left:
            raise deadline_error(self) from err
        return delay


def deadline_error(job: Job) -> NetworkError:
    deadline = job.options.deadline
    assert deadline is not None
    return NetworkError(f"fetching {job.url} did not finish within the deadline of {deadline:g} s "
                        f"({job.attempts} attempt(s)).", url=job.url, transient=False)


class Restart(Exception):
    """The server's answer to a Range request cannot be appended: ask again from byte 0."""


def restart_once(job: Job, part: PartFile, restarted: bool) -> bool:
    """After a :class:`Restart`: start the part over once; a second one gives up (both attempt
    loops, sync and async).

    Raises:
        NetworkError: the server answered range requests badly twice.
    """
    if restarted:
        raise NetworkError(f"{job.url} keeps answering range requests with bytes that do not "
                           "continue the file; giving up.", url=job.url, transient=False) from None
    start_over(job, part)
    return True


def prepare_retry(job: Job, part: PartFile, err: PinclientError, failures: int,
                   rng: random.Random) -> float:
    """After the ``failures``-th failed attempt: the wait before the next one, with the part set to
    resume (or start over) and the retry logged (both attempt loops, sync and async).

    Raises:
        PinclientError: ``err`` when it is not retried, or a deadline error (see ``Job.backoff``).
    """
    delay = job.backoff(failures, err, rng)
    if not (job.options.resume and job.validator):
        start_over(job, part)
    else:
        job.offset = part.written  # the digest has seen exactly these bytes
    log.warning("%s. Retrying in %.1f s (retry %d of %d%s).", err.message.rstrip("."), delay,
                failures + 1, job.options.retry_policy.retries,
                f", from byte {job.offset}" if job.offset else "")
    return delay


def start_over(job: Job, part: PartFile) -> None:
    job.offset, job.validator = 0, None
    start_part(job, part, 0)


def start_part(job: Job, part: PartFile, offset: int) -> None:
    """Keep ``offset`` bytes of the part; the digest and the sinks go on from there."""
    job.digest = part.start(offset)
    for sink in job.sinks:
        sink.restart(offset)


def signature_possible(job: Job, signature: object, signing_keys: object) -> bool:
    """False when no signature can apply (none asked for, no keys anywhere): then minisign is not
    even imported (~12 ms of every unsigned fetch's start-up, issue 18)."""
    if signature is not None or signing_keys is not None:
        return signature is not False
    pinset = job.config.pinset_for(urlsplit(job.url).hostname or "")
    return pinset is not None and bool(pinset.signing_keys)
