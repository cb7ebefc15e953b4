"""Where a body's filled buffers are hashed and written: on a second thread (:class:`Pipeline`),
or on the reading thread (:class:`Inline`) when the process can use only one core.
:func:`hash_and_write` chooses.

Decrypting TLS (``ssl``), SHA-256 (``hashlib``) and ``os.write`` all release the GIL on large
buffers, so one thread reading into a buffer while another hashes and writes the previous one run
in parallel: on two cores a download then costs about its slowest stage instead of the sum of all
of them. The buffers are a small fixed pool of large ``bytearray`` objects going round between the
two threads, so memory stays bounded (:data:`BUFFERS` x :data:`BUFFER_SIZE`) whatever the size of
the body, and no read allocates or copies.

Measured on a 2-core machine against nginx on 127.0.0.1 (issue 18, 1 GiB, interleaved rounds, in
separate processes): with the worker thread the sync download took 0.80x the wall time of doing
the same work inline, for the same client CPU per GiB within the noise (1.99 against 2.20 s; an
earlier, slower read path measured +15 %). On one core the thread can only add hand-offs, so
:class:`Inline` does the work there. The asyncio download always uses the thread, to keep SHA-256
off the event loop.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable
from types import TracebackType

__all__ = ["BUFFERS", "BUFFER_SIZE", "Consumer", "Inline", "Pipeline", "hash_and_write", "usable_cpus"]

#: 64 TLS records per hand-off. Larger buffers (2 and 4 MiB, 2 to 4 of them) measured the same.
BUFFER_SIZE = 1024 * 1024
#: One being filled, one being hashed and written, one spare to absorb jitter.
BUFFERS = 3

#: Called on the worker thread with each buffer's filled part, in order. The view is only valid
#: during the call: a consumer must not keep it.
Consumer = Callable[[memoryview], object]


class Inline:
    """:class:`Pipeline`'s interface, without the thread: :meth:`submit` feeds the consumers at
    once, on the caller's thread, and raises what they raise. One buffer, reused."""

    def __init__(self, consumers: Iterable[Consumer], *, size: int = BUFFER_SIZE) -> None:
        self._consumers = tuple(consumers)
        self._buf = bytearray(size)

    def __enter__(self) -> Inline:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def take(self) -> bytearray:
        return self._buf

    def submit(self, buf: bytearray, n: int) -> None:
        view = memoryview(buf)[:n]
        for consume in self._consumers:
            consume(view)


class Pipeline:
    """Feeds filled buffers, in order, to ``consumers`` on a worker thread.

    Use as a context manager: :meth:`take` a free buffer, fill it, :meth:`submit` it, repeat. On
    leaving the block, normally or by an exception, the worker finishes the buffers already
    submitted, stops and is joined. The first error a consumer raised stops the consumers for
    good; it is raised by the next :meth:`take`, or on leaving the block (in preference to the
    block's own :class:`Exception`, which it most likely caused; never over a
    ``KeyboardInterrupt``).
    """

    def __init__(self, consumers: Iterable[Consumer], *, buffers: int = BUFFERS,
                 size: int = BUFFER_SIZE) -> None:
        self._consumers = tuple(consumers)
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        for _ in range(buffers):
            self._free.put(bytearray(size))
        self.error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="pinclient-hash-write", daemon=True)

    def __enter__(self) -> Pipeline:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
        error = self.error
        if error is not None and error is not exc and (exc is None or isinstance(exc, Exception)):
            raise error

    def close(self) -> None:
        """Let the worker feed every buffer submitted so far, stop it and wait for it (an event
        loop calls this in a worker thread before leaving the block). Idempotent."""
        if not self._closing:
            self._closing = True
            self._full.put(None)
        self._thread.join()

    def take(self) -> bytearray:
        """A free buffer, waiting while all of them are in flight.

        Raises:
            BaseException: the error a consumer raised, if one did.
        """
        return self._unless_failed(self._free.get())

    def take_nowait(self) -> bytearray | None:
        """A free buffer if one is free now, else None (an event loop then waits for :meth:`take`
        in a worker thread rather than on itself).

        Raises:
            BaseException: the error a consumer raised, if one did.
        """
        try:
            buf = self._free.get_nowait()
        except queue.Empty:
            return None
        return self._unless_failed(buf)

    def _unless_failed(self, buf: bytearray) -> bytearray:
        """``buf``, or back to the pool and the consumer's error raised, if one failed."""
        if self.error is not None:
            self._free.put(buf)
            raise self.error
        return buf

    def submit(self, buf: bytearray, n: int) -> None:
        """Hand the first ``n`` bytes of ``buf`` (from :meth:`take`) to the consumers."""
        self._full.put((buf, n))

    def _work(self) -> None:
        while True:
            item = self._full.get()
            if item is None:
                return
            buf, n = item
            if self.error is None:
                try:
                    view = memoryview(buf)[:n]
                    for consume in self._consumers:
                        consume(view)
                except BaseException as e:  # handed to the reading thread, never lost
                    self.error = e
            self._free.put(buf)


def usable_cpus() -> int:
    """How many CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def hash_and_write(consumers: Iterable[Consumer]) -> Inline | Pipeline:
    """The sync download's choice: :class:`Pipeline` when a second core can take the hashing and
    writing, else :class:`Inline`."""
    return Pipeline(consumers) if usable_cpus() > 1 else Inline(consumers)
