"""The bench's world on loopback: a test PKI, the payload files and a real TLS server.

The server is nginx when installed (``apt-get install nginx-light``), run as the current user with
its own config, pid, logs and temp folders inside the bench's temp folder, bound to 127.0.0.1 only.
Without nginx it falls back to ``openssl s_server -WWW`` (single-threaded, HTTP/1.0 without
Content-Length or keep-alive: enough to run every variant, slower for throughput).
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from pinclient._pki import CA
from pinclient.policy import spki_sha256

HOST = "127.0.0.1"
BLOCK = 16 * 1024 * 1024


@dataclass
class World:
    """Files the variants share: the trust bundles, the pins file and the server's certificates."""

    folder: Path
    root_pem: Path  # the test root alone (curl --cacert)
    bundle: Path  # certifi's bundle + the test root: a realistic size for ca_certs= reloads
    pins: Path
    chain: Path
    key: Path
    leaf: Path
    intermediate: Path
    www: Path


def make_world(folder: Path) -> World:
    """Build root → intermediate → leaf for 127.0.0.1, a pins file pinning the root's key."""
    import base64

    import certifi

    root = CA("pinclient bench root", org="pinclient bench")
    issuing = root.child_ca("pinclient bench issuing CA", org="pinclient bench")
    leaf = issuing.issue_leaf(HOST, "localhost")
    w = World(folder, folder / "root.pem", folder / "bundle.pem", folder / "pins.toml",
              folder / "chain.pem", folder / "key.pem", folder / "leaf.pem", folder / "int.pem",
              folder / "www")
    w.www.mkdir()
    w.root_pem.write_bytes(root.cert_pem())
    w.bundle.write_bytes(Path(certifi.where()).read_bytes().rstrip(b"\n") + b"\n" + root.cert_pem())
    w.chain.write_bytes(leaf.chain_pem())
    w.leaf.write_bytes(leaf.cert.public_bytes(serialization.Encoding.PEM))
    w.intermediate.write_bytes(issuing.cert_pem())
    w.key.write_bytes(leaf.key_pem())
    pin = base64.b64encode(spki_sha256(root.cert)).decode()
    w.pins.write_text(
        "version = 1\n[defaults]\n"
        f'ca_bundle = "{w.bundle}"\n\n'
        '[[pinset]]\nname = "bench"\n'
        f'hosts = ["{HOST}", "localhost"]\n'
        f'issuers = [{{ spki_sha256 = "{pin}", label = "pinclient bench root" }}]\n'
    )
    return w


def make_payload(path: Path, size: int) -> str:
    """Write ``size`` bytes of random data (a random block repeated) and return its SHA-256."""
    block = os.urandom(min(BLOCK, size))
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left:
            part = block[: min(left, len(block))]
            fh.write(part)
            digest.update(part)
            left -= len(part)
    return digest.hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the server did not listen on {HOST}:{port} within 10 s")


class Server:
    """A running loopback HTTPS server serving ``world.www``; a context manager."""

    kind: str
    version: str
    keep_alive = True

    def __init__(self, world: World) -> None:
        self.world = world
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        return f"https://{HOST}:{self.port}/{name}"

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cpu_seconds(self) -> float:
        """User + system CPU the server's processes have used so far (Linux /proc; 0 elsewhere)."""
        if self.proc is None:
            return 0.0
        pids = {self.proc.pid}
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        try:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    # Fields after the parenthesised command: state ppid ... utime(14) stime(15).
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(entry.name) in pids or int(fields[1]) in pids:
                    total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            return 0.0
        return total

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


NGINX_CONF = """\
{user}worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    types {{ }}
    default_type application/octet-stream;
    keepalive_requests 100000;
    server {{
        listen {host}:{port} ssl;
        ssl_certificate {chain};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;  # nginx 1.22 enables only TLSv1.2 by default
        ssl_session_cache off;
        ssl_session_tickets off;
        root {www};
    }}
}}
"""


class Nginx(Server):
    kind = "nginx"

    def __init__(self, world: World, nginx: str) -> None:
        super().__init__(world)
        self.nginx = nginx
        self.dir = world.folder / "nginx"
        self.dir.mkdir()
        out = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
        self.version = (out.stderr or out.stdout).strip().removeprefix("nginx version: ")

    def _config(self) -> Path:
        user = ""
        if os.geteuid() == 0:
            # A root master switches its workers to "nobody", who cannot read our 0700 temp folder.
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
        text = NGINX_CONF.format(user=user, d=self.dir, host=HOST, port=self.port,
                                 chain=self.world.chain, key=self.world.key, www=self.world.www)
        conf = self.dir / "nginx.conf"
        # Builds without some modules reject their temp-path directives: drop those and retry.
        for _ in range(6):
            conf.write_text(text)
            test = subprocess.run([*self._argv(conf), "-t"], capture_output=True, text=True,
                                  check=False)
            if test.returncode == 0:
                return conf
            unknown = re.search(r'unknown directive "(\w+)"', test.stderr)
            if not unknown:
                raise RuntimeError(f"nginx rejects the bench config: {test.stderr.strip()}")
            text = re.sub(rf"^\s*{unknown.group(1)} .*\n", "", text, flags=re.M)
        raise RuntimeError("nginx rejects the bench config")

    def _argv(self, conf: Path) -> list[str]:
        return [self.nginx, "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", str(conf)]

    def __enter__(self) -> Nginx:
        conf = self._config()
        self.proc = subprocess.Popen([*self._argv(conf), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_listening(self.port, self.proc, self.dir / "error.log")
        return self


class OpenSSLServer(Server):
    kind = "openssl s_server -WWW"
    keep_alive = False  # HTTP/1.0, one response per connection

    def __init__(self, world: World, openssl: str) -> None:
        super().__init__(world)
        self.openssl = openssl
        out = subprocess.run([openssl, "version"], capture_output=True, text=True, check=False)
        self.version = out.stdout.strip()
        self.log = world.folder / "s_server.log"

    def __enter__(self) -> OpenSSLServer:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [self.openssl, "s_server", "-quiet", "-WWW", "-accept", f"{HOST}:{self.port}",
                 "-cert", str(self.world.leaf), "-cert_chain", str(self.world.intermediate),
                 "-key", str(self.world.key), "-no_ticket"],
                cwd=self.world.www, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        _wait_listening(self.port, self.proc, self.log)
        return self


def start_server(world: World, prefer: str = "auto") -> Server:
    """nginx if installed (or ``prefer="nginx"``), else openssl s_server; not yet entered.

    Raises:
        RuntimeError: neither is installed, or the preferred one is missing.
    """
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    openssl = shutil.which("openssl")
    if prefer in ("auto", "nginx") and nginx:
        return Nginx(world, nginx)
    if prefer == "nginx":
        raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
    if openssl:
        return OpenSSLServer(world, openssl)
    raise RuntimeError("neither nginx nor openssl is installed")
