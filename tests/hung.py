"""A hung endpoint, and a bound on how long a call may take, for the timeout tests.

:class:`HungServer` listens on loopback, accepts every connection and never answers (it
neither reads nor writes; the connections stay open until :meth:`HungServer.close`). A
client without a read timeout waits on it forever.

:func:`outcome_within` runs a call in a daemon thread and waits for it on an
``threading.Event`` up to a generous bound: it fails the test if the call is still running
then (the thread is left behind, so a hang cannot hang the test run), else returns the
exception the call raised (or None). It is a bound, not a timing assertion.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest

BOUND_SECONDS = 60.0


class HungServer:
    def __init__(self):
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.endpoint = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.endpoint}"
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)

    def close(self) -> None:
        self._closed.set()
        self._sock.close()
        for conn in self._held:
            conn.close()

    def __enter__(self) -> HungServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def outcome_within(call: Callable[[], object], bound: float = BOUND_SECONDS):
    """The exception ``call`` raised (None when it returned), failing the test when it has
    not finished within ``bound`` seconds."""
    done = threading.Event()
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, daemon=True).start()
    if not done.wait(bound):
        pytest.fail(f"the call did not return within {bound:g} s: it hangs")
    return box.get("error")
