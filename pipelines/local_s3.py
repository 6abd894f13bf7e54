"""A throwaway S3 API endpoint on loopback (moto's server), for the tests and ``make demo``.

Not shipped in any image (images copy ``components/`` only) and imported only where an
endpoint is started: moto is a dev dependency (tests/requirements.in), and the MinIO
client is imported when a client is asked for. On a cluster the object store is MinIO.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from components.lib.storage import S3_SECRET_KEYS

ACCESS_KEY_ENV, SECRET_KEY_ENV = S3_SECRET_KEYS["accesskey"], S3_SECRET_KEYS["secretkey"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on at the moment of asking."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class LocalObjectStore:
    """A running endpoint: ``endpoint`` is ``host:port``; ``credentials`` the env it accepts."""

    server: object
    endpoint: str
    credentials: dict[str, str] = field(default_factory=dict)

    def client(self):
        """A MinIO client for this endpoint (plain HTTP)."""
        from minio import Minio

        return Minio(
            self.endpoint,
            access_key=self.credentials[ACCESS_KEY_ENV],
            secret_key=self.credentials[SECRET_KEY_ENV],
            secure=False,
        )

    def stop(self) -> None:
        self.server.stop()


def start(
    credentials: Mapping[str, str], host: str = "127.0.0.1", port: int | None = None
) -> LocalObjectStore:
    """Starts moto's S3 server on a free port of ``host`` (or on ``port``).

    Args:
        credentials: ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` that clients will
            use (moto accepts any; the caller puts them where its clients read them).
        host: The address to listen on (loopback: nothing outside this machine reaches it).
        port: A fixed port, e.g. to start a server again where a stopped one listened (the
            servers of one process share moto's in-memory buckets).
    """
    from moto.server import ThreadedMotoServer

    missing = [k for k in (ACCESS_KEY_ENV, SECRET_KEY_ENV) if not credentials.get(k)]
    if missing:
        raise ValueError(f"credentials lack {', '.join(missing)}")
    port = port or free_port(host)
    server = ThreadedMotoServer(ip_address=host, port=port)
    server.start()
    return LocalObjectStore(server, f"{host}:{port}", dict(credentials))
