"""pinclient against curl and plain urllib3, on a real loopback TLS server.

    .venv/bin/python bench/run.py [--size 1G] [--quick] [--repeats N] [--dest-dir DIR]

Starts nginx (or ``openssl s_server -WWW`` without it) on 127.0.0.1 with its own certificates, runs
every variant several times, interleaved, and prints min/median/max and the ratio for each target of
issue 7:

1. ``fetch-update --sha256 H`` vs ``curl -o F URL && sha256sum F``, ``curl -o /dev/null`` and
   hashlib.sha256 over memory;
2. new connections per second: PinningPoolManager vs urllib3 with a shared SSLContext vs urllib3
   with ``ca_certs=`` (certifi's bundle + the test root, reloaded per connection);
3. peak RSS of fetch-update for the big payload vs a 64 MiB one;
4. start-up: ``fetch-update --version`` vs ``python -c "import urllib3, cryptography.x509"``;
5. keep-alive: requests over one connection cost one handshake and one pin check (a count; the
   test suite asserts it in tests/test_pinning.py).

It reports and never asserts a target, so a slow machine does not fail CI; it exits non-zero only
when the bench itself breaks (a server that will not start, a failed or wrong download).

DEST files go to /dev/shm by default (tmpfs): curl does not fsync and fetch-update does, so on a real
disk the comparison would measure the disk's write speed. ``--dest-dir`` measures another folder.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loopback import Server, World, make_payload, make_world, start_server

MiB = 1024 * 1024
GiB = 1024 * MiB


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MiB, "G": GiB}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def human(size: int) -> str:
    return f"{size / GiB:g} GiB" if size >= GiB else f"{size / MiB:g} MiB"


@dataclass
class Samples:
    label: str
    values: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # the client's user + system CPU, seconds
    server_cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def row(self, unit: str, fmt: str = "{:8.3f}", extra: str = "") -> str:
        lo, med, hi = min(self.values), self.median, max(self.values)
        cells = " ".join(fmt.format(v) for v in (lo, med, hi))
        return f"  {self.label:<44} {cells} {unit}{extra}"


@dataclass
class Run:
    seconds: float
    maxrss_kib: int
    cpu: float
    stdout: bytes


def run_timed(argv: Sequence[str], *, cwd: Path | None = None) -> Run:
    """Run ``argv``, returning its wall time and the peak RSS of that child alone (wait4).

    Raises:
        RuntimeError: the command failed.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait4 gives this child's own rusage; RUSAGE_CHILDREN would be the maximum over all of them.
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {proc.returncode}: "
                           f"{err.decode(errors='replace').strip()[-2000:]}")
    return Run(elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, out)


def fetch_update_argv() -> list[str]:
    script = Path(sys.executable).parent / "fetch-update"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pinclient", "fetch"]


def fs_type(path: Path) -> str:
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) >= len(best):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def default_dest_dir(work: Path, size: int) -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        st = os.statvfs(shm)
        if st.f_bavail * st.f_frsize > 3 * size:
            return Path(tempfile.mkdtemp(prefix="pinclient-bench-", dir=shm))
    return work


# ------------------------------------------------------------------------ 1 + 3: download


def bench_download(server: Server, world: World, dest_dir: Path, big: int, small: int,
                   repeats: int) -> tuple[dict[str, Samples], Samples, Samples]:
    """Target 1 (times, interleaved) and target 3 (peak RSS of the same fetch-update runs).

    Each subprocess variant also records its own CPU time (wait4) and the server's, which is what
    explains the results on a machine whose cores the client and the server share.
    """
    hashes = {big: make_payload(world.www / "big.bin", big),
              small: make_payload(world.www / "small.bin", small)}
    url_big, url_small = server.url("big.bin"), server.url("small.bin")
    dest, curl_dest = dest_dir / "fetched.bin", dest_dir / "curl.bin"
    curl = shutil.which("curl")
    fetch = fetch_update_argv()
    buf = bytearray(os.urandom(MiB))

    def fetch_update(url: str, size: int) -> Run:
        run = run_timed([*fetch, url, "--pins", str(world.pins), "--sha256", hashes[size],
                         "-o", str(dest), "-q"])
        got = dest.stat().st_size
        dest.unlink()
        if got != size:
            raise RuntimeError(f"fetch-update saved {got} bytes, expected {size}")
        return run

    def curl_and_sha256sum() -> Run:
        assert curl is not None
        run = run_timed(["sh", "-c", '"$0" -sS --fail --cacert "$1" -o "$2" "$3" && sha256sum "$2"',
                         curl, str(world.root_pem), str(curl_dest), url_big])
        curl_dest.unlink()
        if run.stdout.split()[0].decode() != hashes[big]:
            raise RuntimeError("curl + sha256sum produced a different hash")
        return run

    def curl_null() -> Run:
        assert curl is not None
        return run_timed([curl, "-sS", "--fail", "--cacert", str(world.root_pem), "-o", "/dev/null",
                          url_big])

    def sha256_memory() -> Run:
        digest = hashlib.sha256()
        view = memoryview(buf)
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(big // MiB):
            digest.update(view)
        digest.update(view[: big % MiB])
        return Run(time.perf_counter() - start, 0, time.process_time() - cpu, b"")

    times = {k: Samples(label) for k, label in [
        ("fetch", "fetch-update --sha256 H"), ("curl_sha", "curl -o F URL && sha256sum F"),
        ("curl_null", "curl -o /dev/null URL"), ("sha", "hashlib.sha256 over memory (1 MiB updates)")]}
    rss_big, rss_small = Samples(f"fetch-update, {human(big)}"), Samples(f"fetch-update, {human(small)}")

    def step(key: str, variant: Callable[[], Run]) -> Callable[[], None]:
        def run() -> None:
            before = server.cpu_seconds()
            result = variant()
            samples = times[key]
            samples.values.append(result.seconds)
            samples.cpu.append(result.cpu)
            samples.server_cpu.append(server.cpu_seconds() - before)
            if key == "fetch":
                rss_big.values.append(result.maxrss_kib / 1024)
        return run

    def do_fetch_small() -> None:
        rss_small.values.append(fetch_update(url_small, small).maxrss_kib / 1024)

    steps = [step("fetch", lambda: fetch_update(url_big, big)), do_fetch_small,
             step("sha", sha256_memory)]
    if curl:
        steps += [step("curl_sha", curl_and_sha256sum), step("curl_null", curl_null)]
    do_fetch_small()  # warm the page cache and the .pyc files; not counted
    rss_small.values.clear()
    for i in range(repeats):
        for run in steps[i % len(steps):] + steps[: i % len(steps)]:  # rotate: no fixed order bias
            run()
    return {k: v for k, v in times.items() if v.values}, rss_big, rss_small


# ------------------------------------------------------------------------ peers (issue 18)


@dataclass
class Peer:
    label: str
    run: Callable[[], Run]
    wall: list[float] = field(default_factory=list)  # the whole process (or step), seconds
    cpu: list[float] = field(default_factory=list)  # its user + system CPU, seconds
    xfer_wall: list[float] = field(default_factory=list)  # Python clients: the transfer alone
    xfer_cpu: list[float] = field(default_factory=list)


def bench_peers(server: Server, world: World, dest_dir: Path, size: int,
                repeats: int) -> dict[str, Peer]:
    """Every client downloads, hashes and writes the same payload, interleaved with a rotating
    order, so load that comes and goes hits all of them alike (wall times on a shared machine are
    noisy; CPU seconds much less so). Each download's SHA-256 is checked."""
    digest = make_payload(world.www / "peers.bin", size)
    url = server.url("peers.bin")
    dest = dest_dir / "peer.bin"
    script = str(Path(__file__).resolve().parent / "peers.py")
    buf = bytearray(os.urandom(MiB))

    def python_client(name: str) -> Callable[[], Run]:
        def run() -> Run:
            return run_timed([sys.executable, script, name, url, str(world.root_pem), str(dest),
                              str(world.pins)])
        return run

    def shell(cmd: str, *args: str) -> Callable[[], Run]:
        def run() -> Run:
            out = run_timed(["sh", "-c", cmd, *args])
            if dest.exists():
                dest.unlink()
            return out
        return run

    def sha256_memory() -> Run:
        h = hashlib.sha256()
        view = memoryview(buf)
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(size // MiB):
            h.update(view)
        h.update(view[: size % MiB])
        return Run(time.perf_counter() - start, 0, time.process_time() - cpu, b"")

    def fetch_cli() -> Run:
        out = run_timed([*fetch_update_argv(), url, "--pins", str(world.pins), "--sha256", digest,
                         "-o", str(dest), "-q"])
        dest.unlink()
        return out

    dgst = 'openssl dgst -sha256 -r "$2"'
    peers: dict[str, Peer] = {
        "cli": Peer("fetch-update CLI", fetch_cli),
        "lib": Peer("pinclient.fetch_update() in-process", python_client("pinclient")),
        "lib1": Peer("pinclient.fetch_update(), hashing on the reading thread (1-core mode)",
                     python_client("pinclient-1core")),
        "requests": Peer("requests iter_content(1 MiB) + hashlib", python_client("requests")),
        "urllib3": Peer("urllib3 stream(1 MiB) + hashlib", python_client("urllib3")),
    }
    try:
        import httpx  # noqa: F401

        peers["httpx"] = Peer("httpx iter_bytes + hashlib", python_client("httpx"))
        peers["aio"] = Peer("pinclient.aio.fetch_update() in-process", python_client("pinclient-aio"))
    except ImportError:
        pass
    curl, wget, aria2c = shutil.which("curl"), shutil.which("wget"), shutil.which("aria2c")
    if curl:
        peers["curl_dgst"] = Peer("curl -o F, then openssl dgst -sha256", shell(
            f'"$0" -sS --fail --cacert "$1" -o "$2" "$3" && {dgst}', curl, str(world.root_pem),
            str(dest), url))
        peers["curl_null"] = Peer("curl -o /dev/null (decrypt only)", shell(
            '"$0" -sS --fail --cacert "$1" -o /dev/null "$3"', curl, str(world.root_pem), "", url))
    if wget:
        peers["wget"] = Peer("wget -O F, then openssl dgst -sha256", shell(
            f'"$0" -q --ca-certificate="$1" -O "$2" "$3" && {dgst}', wget, str(world.root_pem),
            str(dest), url))
    if aria2c:
        peers["aria2c"] = Peer("aria2c, then openssl dgst -sha256", shell(
            f'"$0" -q --ca-certificate="$1" -d "$(dirname "$2")" -o "$(basename "$2")" "$3" && {dgst}',
            aria2c, str(world.root_pem), str(dest), url))
    peers["sha"] = Peer("hashlib SHA-256 alone (memory)", sha256_memory)
    peers["write"] = Peer("raw os.write alone (1 MiB writes)", lambda: run_timed(
        [sys.executable, script, "write", str(size), "", str(dest)]))

    def record(peer: Peer) -> None:
        result = peer.run()
        peer.wall.append(result.seconds)
        peer.cpu.append(result.cpu)
        text = result.stdout.decode().strip()
        if text.startswith("{"):
            data = json.loads(text.splitlines()[-1])
            peer.xfer_wall.append(data["wall"])
            peer.xfer_cpu.append(data["cpu"])
            got = data["sha256"]
        else:
            got = text.split()[0] if text else ""
        if got and got != digest:
            raise RuntimeError(f"{peer.label}: wrong SHA-256 {got}")

    record(peers["lib"])  # warm the page cache and the .pyc files; not counted
    for samples in (peers["lib"].wall, peers["lib"].cpu, peers["lib"].xfer_wall, peers["lib"].xfer_cpu):
        samples.clear()
    order = list(peers.values())
    for i in range(repeats):
        for peer in order[i % len(order):] + order[: i % len(order)]:
            record(peer)
    return peers


def report_peers(peers: dict[str, Peer], size: int) -> None:
    per_gib = GiB / size
    med = statistics.median
    base = med(peers["cli"].wall)
    print(f"\npeers: download {human(size)} over HTTPS, verify SHA-256, write; "
          f"{len(peers['cli'].wall)} interleaved rounds")
    print("| job | wall min s | wall median s | wall ÷ fetch-update | client CPU s/GiB | "
          "transfer CPU s/GiB |")
    print("|---|---|---|---|---|---|")
    for p in peers.values():
        xfer = f"{med(p.xfer_cpu) * per_gib:.2f}" if p.xfer_cpu else "—"
        print(f"| {p.label} | {min(p.wall):.3f} | {med(p.wall):.3f} | {med(p.wall) / base:.2f} | "
              f"{med(p.cpu) * per_gib:.2f} | {xfer} |")
    if "curl_null" not in peers:
        print("(no curl: no irreducible sum)")
        return
    floor = (med(peers["curl_null"].cpu) + med(peers["sha"].cpu) + med(peers["write"].xfer_cpu)) * per_gib
    lib = med(peers["lib"].xfer_cpu) * per_gib
    cli = med(peers["cli"].cpu) * per_gib
    rounds = zip(peers["lib"].xfer_wall, peers["requests"].xfer_wall, peers["urllib3"].xfer_wall,
                 strict=True)
    wall = med(a / min(b, c) for a, b, c in rounds)
    goals = [("library transfer CPU / irreducible", lib / floor, 1.10),
             ("CLI CPU (start-up included) / irreducible", cli / floor, 1.20),
             ("library transfer wall / best of requests, urllib3 (per round)", wall, 0.95)]
    if "aio" in peers:
        pairs = zip(peers["aio"].xfer_cpu, peers["lib"].xfer_cpu, strict=True)
        goals.append(("asyncio transfer CPU / sync transfer CPU (per round)",
                      med(a / b for a, b in pairs), 1.20))
    print(f"\nirreducible CPU (curl -o /dev/null + hashlib + raw write): {floor:.2f} s/GiB")
    for name, value, target in goals:
        print(f"  {name:<64} {value:5.2f}   <= {target:.2f}  {verdict(value <= target)}")
    if "lib1" in peers:
        walls = zip(peers["lib"].xfer_wall, peers["lib1"].xfer_wall, strict=True)
        cpus = zip(peers["lib"].xfer_cpu, peers["lib1"].xfer_cpu, strict=True)
        print(f"  the worker thread against hashing on the reading thread (per round): wall "
              f"{med(a / b for a, b in walls):.2f}x, CPU {med(a / b for a, b in cpus):.2f}x")


# ------------------------------------------------------------------------ 2 + 5: connections


def _count_connects(pool: Any) -> list[int]:
    """Count ``connect()`` calls of ``pool``'s connections (urllib3 reconnects a closed connection
    object in place, so its ``num_connections`` counts objects, not handshakes)."""
    counter = [0]
    base = pool.ConnectionCls

    def connect(self: Any) -> None:
        counter[0] += 1
        base.connect(self)

    pool.ConnectionCls = type(f"Counting{base.__name__}", (base,), {"connect": connect})
    return counter


def bench_connections(server: Server, world: World, connections: int,
                      repeats: int) -> tuple[dict[str, Samples], Samples]:
    """New TLS connections per second, one request each (``Connection: close``), and the time
    ``PinGuard.check`` takes on each new connection of the pinning variant (µs: reading the
    verified chain from the TLS object, the policy verdict, the hooks).

    The variants alternate in short batches (25 connections; 5 for the slow ``ca_certs=``), one
    batch of each per round, so that other load on the machine hits all of them alike; each sample
    is one batch's rate, and the ratios are medians of per-round ratios (:func:`paired_ratio`).
    """
    import urllib3
    from urllib3.util.ssl_ import create_urllib3_context

    from pinclient import PinningPoolManager, load_pins

    (world.www / "tiny.txt").write_bytes(b"ok\n")
    url = server.url("tiny.txt")
    ctx = create_urllib3_context()
    ctx.load_verify_locations(cafile=str(world.bundle))
    managers: dict[str, tuple[str, urllib3.PoolManager, int]] = {
        "pinning": ("PinningPoolManager", PinningPoolManager(load_pins(world.pins)), 25),
        "shared": ("urllib3 PoolManager, shared SSLContext", urllib3.PoolManager(ssl_context=ctx), 25),
        "ca_certs": ("urllib3 PoolManager(ca_certs=bundle)",
                     urllib3.PoolManager(ca_certs=str(world.bundle)), 5),
    }
    rates = {k: Samples(label) for k, (label, _, _) in managers.items()}
    checks = Samples("PinGuard.check per new connection")
    guard = managers["pinning"][1].guard  # type: ignore[attr-defined]
    real_check = guard.check

    def timed_check(sock: Any, port: int) -> Any:
        start = time.perf_counter()
        try:
            return real_check(sock, port)
        finally:
            checks.values.append((time.perf_counter() - start) * 1e6)

    guard.check = timed_check
    close = {"Connection": "close"}
    counters = {k: _count_connects(pm.connection_from_url(url)) for k, (_, pm, _) in managers.items()}
    for _, pm, _ in managers.values():
        pm.request("GET", url, headers=close)  # warm-up: imports, first parse
    checks.values.clear()
    keys = list(managers)
    try:
        for i in range(max(1, connections * repeats // 25)):
            for key in keys[i % 3:] + keys[: i % 3]:
                _, pm, n = managers[key]
                before = counters[key][0]
                start = time.perf_counter()
                for _ in range(n):
                    resp = pm.request("GET", url, headers=close)
                    if resp.status != 200 or resp.data != b"ok\n":
                        raise RuntimeError(f"{key}: unexpected answer {resp.status}")
                rates[key].values.append(n / (time.perf_counter() - start))
                if counters[key][0] - before != n:
                    raise RuntimeError(f"{key}: {counters[key][0] - before} connections for {n} "
                                       "requests; the bench must open one per request")
    finally:
        for _, pm, _ in managers.values():
            pm.clear()
    return rates, checks


def paired_ratio(a: Samples, b: Samples) -> float:
    """Median of a/b over the rounds: each round's batches ran back to back, so load that comes
    and goes on a shared machine cancels out of the ratio."""
    return statistics.median(x / y for x, y in zip(a.values, b.values, strict=True))


def keep_alive_count(server: Server, world: World, requests: int) -> tuple[int, int]:
    """(connections, pin checks) for ``requests`` GETs through one PinningPoolManager."""
    from pinclient import PinningPoolManager, load_pins

    url = server.url("tiny.txt")
    with PinningPoolManager(load_pins(world.pins)) as pm:
        counter = _count_connects(pm.connection_from_url(url))
        for _ in range(requests):
            pm.request("GET", url)
        return counter[0], pm.guard.checks


# ------------------------------------------------------------------------ 4: start-up


def bench_startup(repeats: int) -> tuple[Samples, Samples]:
    version = Samples("fetch-update --version")
    imports = Samples('python -c "import urllib3, cryptography.x509"')
    argv_v = [*fetch_update_argv(), "--version"]
    argv_i = [sys.executable, "-c", "import urllib3, cryptography.x509"]
    run_timed(argv_v), run_timed(argv_i)  # warm .pyc and page cache
    for i in range(repeats):
        pair = [(version, argv_v), (imports, argv_i)]
        for samples, argv in pair if i % 2 == 0 else pair[::-1]:
            samples.values.append(run_timed(argv).seconds * 1000)
    return version, imports


# ------------------------------------------------------------------------ report


def versions(server: Server) -> str:
    import ssl

    import cryptography
    import urllib3

    curl = shutil.which("curl")
    curl_v = (subprocess.run([curl, "--version"], capture_output=True, text=True, check=False)
              .stdout.split("\n")[0].split(" ")[1] if curl else "absent")
    urllib3_v = getattr(urllib3, "__version__", "?")
    return (f"python {platform.python_version()}, urllib3 {urllib3_v}, cryptography "
            f"{cryptography.__version__}, {ssl.OPENSSL_VERSION}, curl {curl_v}, "
            f"server {server.kind} ({server.version})")


def precompile() -> None:
    """Compile pinclient's bytecode, as ``pip install`` does for an installed package (and did for
    urllib3, requests and the other peers in site-packages). From a checkout with
    ``PYTHONDONTWRITEBYTECODE=1`` (set on this project's machines) no ``.pyc`` is ever written, and
    every start would compile ~50 modules again: ~50 ms of CPU that no installed copy pays."""
    import pinclient

    compileall.compile_dir(str(Path(pinclient.__file__).parent), quiet=1)


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores ({model or platform.machine()}), {platform.system()} "
            f"{platform.release()}, load average {load}")


def verdict(ok: bool) -> str:
    return "met" if ok else "GAP"


@contextlib.contextmanager
def bench_setting(args: argparse.Namespace, size: int,
                  note: str = "") -> Iterator[tuple[Server, World, Path]]:
    """Both modes' setting: pinclient's bytecode compiled, a temporary folder with the PKI and the
    payloads, the server running, DEST's folder; all of it stopped and removed afterwards, also on
    a SIGTERM (a CI timeout, a kill)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="pinclient-bench-"))
    dest_dir = args.dest_dir or default_dest_dir(work, size)
    precompile()
    print(f"machine: {machine()}", flush=True)
    try:
        world = make_world(work)
        with start_server(world, args.server) as server:
            print(f"versions: {versions(server)}")
            print(f"server: {server.kind} on {server.url('')} ; DEST in {dest_dir} ({fs_type(dest_dir)})"
                  f"{note}", flush=True)
            yield server, world, dest_dir
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if dest_dir != work and dest_dir.parent == Path("/dev/shm"):
            shutil.rmtree(dest_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", default=None, help="big payload (default 1G; --quick: 64M)")
    parser.add_argument("--small", default=None, help="small payload for target 3 (default 64M)")
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (< 1 min)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per variant (default 5)")
    parser.add_argument("--connections", type=int, default=None,
                        help="new connections per variant and repeat, target 2 (default 300)")
    parser.add_argument("--dest-dir", type=Path, default=None,
                        help="where downloads are written (default /dev/shm, a tmpfs)")
    parser.add_argument("--server", choices=["auto", "nginx", "openssl"], default="auto")
    parser.add_argument("--peers", action="store_true",
                        help="only the peers table: pinclient against requests, urllib3, httpx, curl, "
                        "wget, aria2c, hashlib and raw writes (default 1G, 10 rounds)")
    args = parser.parse_args(argv)
    if args.peers:
        return main_peers(args)
    big = parse_size(args.size or ("64M" if args.quick else "1G"))
    small = parse_size(args.small or ("16M" if args.quick else "64M"))
    repeats = args.repeats or (3 if args.quick else 5)
    connections = args.connections or (40 if args.quick else 300)

    started = time.perf_counter()
    with bench_setting(args, big, f"; {repeats} runs per variant, interleaved") as (server, world, dest_dir):
        times, rss_big, rss_small = bench_download(server, world, dest_dir, big, small, repeats)
        rates, checks = bench_connections(server, world, connections, repeats)
        keep_alive = keep_alive_count(server, world, 100) if server.keep_alive else None
        # --quick runs one small round of the peers table too, so that mode cannot rot in CI.
        peers = bench_peers(server, world, dest_dir, small, 1) if args.quick else None
    version, imports = bench_startup(4 * repeats)

    print(f"\n1. download and verify, {human(big):<9}              min   median      max      GB/s"
          "  CPU s: client server")
    for s in times.values():
        cpu = f"{statistics.median(s.cpu):6.2f} {statistics.median(s.server_cpu):6.2f}"
        print(s.row("s", extra=f"   {big / s.median / 1e9:5.2f}         {cpu}"))
    results: list[tuple[str, str, str, bool]] = []
    fetch = times["fetch"].median
    if "curl_sha" in times:
        r = fetch / times["curl_sha"].median
        results.append(("1a fetch-update / (curl -o F && sha256sum F)", f"{r:.2f}", "<= 0.75", r <= 0.75))
        # The lower throughput is the longer time.
        limit = max(times["curl_null"].median, times["sha"].median)
        r = limit / fetch
        results.append(("1b fetch-update / min(curl -o /dev/null, sha256) throughput", f"{r:.2f}",
                        ">= 0.80", r >= 0.8))
    print("\n2. new TLS connections per second (one request each)   min   median      max")
    for s in rates.values():
        print(s.row("/s", fmt="{:8.1f}"))
    r1 = paired_ratio(rates["pinning"], rates["shared"])
    r2 = paired_ratio(rates["pinning"], rates["ca_certs"])
    results.append(("2a PinningPoolManager / urllib3 shared SSLContext", f"{r1:.2f}", ">= 0.95", r1 >= 0.95))
    results.append(("2b PinningPoolManager / urllib3 ca_certs=", f"{r2:.1f}", ">= 10", r2 >= 10))
    print(checks.row("µs", fmt="{:8.1f}"))
    results.append(("2c PinGuard.check per new connection (median)", f"{checks.median:.0f} µs", "<= 60 µs",
                    checks.median <= 60))
    print("\n3. peak RSS                                              min   median      max")
    print(rss_big.row("MiB", fmt="{:8.1f}"))
    print(rss_small.row("MiB", fmt="{:8.1f}"))
    d = max(rss_big.values) - min(rss_small.values)
    results.append((f"3  peak RSS {human(big)} - {human(small)} (worst case)", f"{d:+.1f} MiB",
                    "<= 16 MiB", d <= 16))
    print("\n4. start-up                                              min   median      max")
    print(version.row("ms", fmt="{:8.1f}"))
    print(imports.row("ms", fmt="{:8.1f}"))
    r = version.median / imports.median
    results.append(("4  fetch-update --version / import urllib3, cryptography", f"{r:.2f}", "<= 1.20",
                    r <= 1.2))
    if keep_alive is not None:
        results.append(("5  keep-alive: 100 requests -> connections, pin checks",
                        f"{keep_alive[0]}, {keep_alive[1]}", "1, 1", keep_alive == (1, 1)))
    else:
        print(f"\n5. keep-alive not measured: {server.kind} closes every connection")
    if big < GiB:
        print(f"\n(target 1 is defined for 1 GiB; at {human(big)} fetch-update's ~0.2 s start-up dominates)")
    if peers is not None:
        report_peers(peers, small)
        print("(--quick: one small round; `--peers` measures 1 GiB over 10 rounds)")
    print("\ntarget                                                           measured   target    ")
    for name, value, target, ok in results:
        print(f"  {name:<62} {value:>9}   {target:<9} {verdict(ok)}")
    print(f"\n(ratios of medians; target 2: median of per-round ratios; bench took "
          f"{time.perf_counter() - started:.0f} s; "
          f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    return 0


def main_peers(args: argparse.Namespace) -> int:
    size = parse_size(args.size or ("16M" if args.quick else "1G"))
    repeats = args.repeats or (1 if args.quick else 10)
    started = time.perf_counter()
    with bench_setting(args, size) as (server, world, dest_dir):
        peers = bench_peers(server, world, dest_dir, size, repeats)
    report_peers(peers, size)
    print(f"\n(bench took {time.perf_counter() - started:.0f} s; load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
