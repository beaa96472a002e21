"""The third-party chatter is silenced at its source and no wider (the demo's console test checks the
whole first run; these check each filter lets everything else through)."""

from __future__ import annotations

import io
import logging

from capture.client import EngineClient, _QuietConnect
from capture.config import ClientConfig
from capture.standin.engine import EngineConfig
from capture.standin.server import StandinServer
from common.raysession import AUTH_LOGGER, _DropNotice


def test_quiet_connect_drops_only_the_socket_notice():
    target = io.StringIO()
    out = _QuietConnect(target)
    for text in ("=>Info: using ip-port socket", "\n", "real problem", "\n", "=>Info: using uds socket", "\n",
                 "\n", "BaseClient: can not receive message from server", "\n"):
        out.write(text)
    assert target.getvalue() == "real problem\n\nBaseClient: can not receive message from server\n"


def test_engine_client_connects_without_printing_or_info_logs(capfd):
    with StandinServer(EngineConfig(scene="room-1", width=32, height=24)) as server:
        client = EngineClient("127.0.0.1", server.port, ClientConfig())
        client.connect()
        client.close()
    captured = capfd.readouterr()  # unrealcv's logger has its own stderr handler and does not propagate
    assert captured.out == "" and captured.err == ""
    assert logging.getLogger("unrealcv").getEffectiveLevel() == logging.WARNING


def test_ray_notice_filter_keeps_the_security_warning():
    notice = _DropNotice("Token authentication is enabled for this Ray cluster.")

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord(AUTH_LOGGER, logging.WARNING, __file__, 1, message, (), None)

    assert not notice.filter(record("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=..."))
    assert notice.filter(record("Token authentication is disabled for this Ray cluster. Anyone with network access"))


def test_a_ctrl_c_that_ray_swallows_still_stops_the_driver_loop():
    """Ray's wait can consume the KeyboardInterrupt of a SIGINT (a build once kept capturing after
    Ctrl-C): the session's handler remembers it, and raise_if_interrupted raises it again; leaving
    the session puts the old handler back and forgets it."""
    import os
    import signal

    import pytest

    from common.raysession import _remember_sigint, raise_if_interrupted

    before = signal.getsignal(signal.SIGINT)
    restore = _remember_sigint()
    try:
        raise_if_interrupted()  # nothing yet
        try:  # a wait that swallows the interrupt, as Ray's C++ signal check can
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs before os.kill returns to Python code
        except KeyboardInterrupt:
            pass
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
    finally:
        restore()
    assert signal.getsignal(signal.SIGINT) is before
    raise_if_interrupted()  # forgotten with the session
