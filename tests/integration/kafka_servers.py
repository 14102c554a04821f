"""Real servers in front of tansu for the Kafka edge tests: a TLS-terminating proxy (socat,
with client-certificate checks) and tansu's own Kafka-protocol proxy (to cut clients off
from the broker and bring them back without losing topics).

Certificates are made with the ``openssl`` command line: a CA, a server certificate for
127.0.0.1/localhost and a client certificate whose key is encrypted with a password.
``deploy/ci-install.sh`` installs socat and openssl where they are missing.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from causalwatch.tooling.embedded import (
    _die_with_parent,
    _terminate,
    _wait_port,
    free_port,
    tansu_binary,
)

KEY_PASSWORD = "client-key-pw-7b1e"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with KEY_PASSWORD
    other_ca: Path  # a CA that signed nothing here


def make_certs(folder: Path) -> Certs:
    """A CA, a server certificate (SAN 127.0.0.1, localhost) and a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "other-ca"):
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN=causalwatch test {name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.pem",
            cwd=folder,
        )
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, key_args in (("server", ["-nodes"]), ("client", ["-nodes"])):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            *key_args,
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=folder,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            f"{name}.pem",
            cwd=folder,
        )
    _openssl(
        "pkey",
        "-in",
        "client.key",
        "-aes256",
        "-passout",
        f"pass:{KEY_PASSWORD}",
        "-out",
        "client.enc.key",
        cwd=folder,
    )
    return Certs(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.enc.key",
        other_ca=folder / "other-ca.pem",
    )


def start_tansu(listen_port: int, advertised_port: int) -> subprocess.Popen[bytes]:
    """A tansu broker (memory storage) that tells clients to connect to ``advertised_port``
    (a proxy in front of it), listening on ``listen_port``."""
    proc = subprocess.Popen(
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{listen_port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{advertised_port}",
            "--storage-engine",
            "memory://tansu/",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    _wait_port(listen_port, proc, "kafka", 15)
    return proc


def tls_tools_available() -> bool:
    return shutil.which("socat") is not None and shutil.which("openssl") is not None


@dataclass
class TlsBroker:
    """tansu behind socat: clients speak TLS (with a client certificate) to ``bootstrap``.

    tansu advertises the TLS port, so every connection after bootstrap goes through the
    proxy too.
    """

    certs: Certs
    tls_port: int = field(default_factory=free_port)
    broker_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.tls_port}"

    def start(self) -> TlsBroker:
        self.procs.append(start_tansu(self.broker_port, self.tls_port))
        c = self.certs
        proxy = subprocess.Popen(
            [
                "socat",
                f"OPENSSL-LISTEN:{self.tls_port},bind=127.0.0.1,reuseaddr,fork,"
                f"cert={c.server_cert},key={c.server_key},cafile={c.ca},verify=1",
                f"TCP:127.0.0.1:{self.broker_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        self.procs.append(proxy)
        _wait_port(self.tls_port, proxy, "socat", 15)
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _terminate(proc)
        self.procs.clear()


@dataclass
class ProxiedBroker:
    """A broker reached through ``tansu proxy``: :meth:`cut` and :meth:`restore` it.

    The broker advertises the proxy's port, so clients only ever talk through the proxy.
    """

    broker_port: int = field(default_factory=free_port)
    proxy_port: int = field(default_factory=free_port)
    proxy: subprocess.Popen[bytes] | None = None
    _broker_proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy_port}"

    def start(self) -> ProxiedBroker:
        self._broker_proc = start_tansu(self.broker_port, self.proxy_port)
        self.restore()
        return self

    def restore(self) -> None:
        self.proxy = subprocess.Popen(
            [
                tansu_binary(),
                "proxy",
                "--listener-url",
                f"tcp://127.0.0.1:{self.proxy_port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.proxy_port}",
                "--origin-url",
                f"tcp://127.0.0.1:{self.broker_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        _wait_port(self.proxy_port, self.proxy, "tansu proxy", 15)

    def cut(self) -> None:
        if self.proxy is not None:
            self.proxy.kill()
            self.proxy.wait(5)
            self.proxy = None

    def stop(self) -> None:
        self.cut()
        _terminate(self._broker_proc)
        self._broker_proc = None
