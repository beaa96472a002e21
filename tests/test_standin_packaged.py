"""The stand-in laid out and launched like a packaged UE Linux game (`Name.sh`, `Binaries/Linux`),
taking a game's command line: the plugin's port and size overrides with UE's parsing (and its
`=` trap), the map, UE's flags; and told to crash, hang or ignore the port, as real builds do."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import warnings

import pytest
import unrealcv

from capture.standin.packaged import FAULT_ENV, GameCommandLine, fparse_number, port_open, write_packaged_game


@pytest.mark.parametrize("line, match, value", [
    ("-UnrealCVPort 9001", "UnrealCVPort", 9001),
    ("-unrealcvport 9001", "UnrealCVPort", 9001),  # FParse is case-insensitive
    ("-UnrealCVPort=9001", "UnrealCVPort", 0),  # Atoi("=9001"): the trap
    ("-UnrealCVPort 9001", "cvport", 9001),  # cvport is a substring of UnrealCVPort
    ("-UnrealCVFOV 75.5", "UnrealCVFOV", 75.5),
    ("-nosound", "UnrealCVPort", None),
])
def test_fparse_reads_the_characters_after_the_name(line, match, value):
    assert fparse_number(line, match) == value


def test_game_command_line():
    game = GameCommandLine.parse("MyGame", ["MyGame", "/Game/Maps/room_0002", "-UnrealCVPort", "9123",
                                            "-UnrealCVWidth", "96", "-UnrealCVHeight", "54", "-RenderOffScreen",
                                            "-graphicsadapter=1", "-unattended", "-nosound"])
    assert (game.map, game.port, game.width, game.height, game.fov) == ("room_0002", 9123, 96, 54, None)
    assert "-graphicsadapter=1" in game.flags
    assert GameCommandLine.parse("MyGame", ["-cvport", "9200"]).port == 9200
    assert GameCommandLine.parse("MyGame", ["MyGame"]).port == 9000  # unrealcv.ini's default


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(script, *args, fault: str = ""):
    env = {**os.environ, FAULT_ENV: fault}
    return subprocess.Popen([str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)


def _wait_open(port: int, proc: subprocess.Popen, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        if port_open(port):
            return True
        time.sleep(0.1)
    return False


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, 9)
    out, _ = proc.communicate(timeout=10)
    return out


def test_the_packaged_layout_serves_on_the_port_its_command_line_gives(tmp_path):
    script = write_packaged_game(tmp_path / "LinuxNoEditor", "MyGame")
    assert script.name == "MyGame.sh" and (tmp_path / "LinuxNoEditor/MyGame/Binaries/Linux/MyGame").is_file()
    port = _free_port()
    proc = _launch(script, "/Game/Maps/room_0002", f"-UnrealCVPort", str(port), "-UnrealCVWidth", "96",
                   "-UnrealCVHeight", "54", "-RenderOffScreen", "-graphicsadapter=0", "-unattended", "-nosound")
    try:
        assert _wait_open(port, proc, 60), _stop(proc)
        client = unrealcv.Client(("127.0.0.1", port))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The connected UnrealCV server is too old")
            assert client.connect()
        status = client.request("vget /unrealcv/status")
        assert f"Port: {port}" in status and "Width: 96" in status and "Height: 54" in status
        assert client.request("vget /level/name") == "room_0002"
        client.disconnect()
    finally:
        log = _stop(proc)
    assert f"Overriding listening port to {port}" in log


@pytest.mark.parametrize("fault, args", [("crash_at_start", ()), ("hang_at_start", ()), ("ignore_port", ()),
                                         ("", ("-UnrealCVPort=PORT",))])
def test_a_build_that_never_opens_its_port(tmp_path, fault, args):
    script = write_packaged_game(tmp_path, "MyGame")
    port = _free_port()
    given = [a.replace("PORT", str(port)) for a in args] or ["-UnrealCVPort", str(port)]
    proc = _launch(script, "room_0001", *given, fault=fault)
    try:
        assert not _wait_open(port, proc, 2.5)
        if fault == "crash_at_start":
            assert proc.wait(timeout=10) == 1
    finally:
        log = _stop(proc)
    if fault == "crash_at_start":
        assert "injected crash at start" in log
    if not fault:  # UE parsed "=PORT" as 0: the OS picked the port
        assert "Overriding listening port to 0" in log


def test_an_unknown_map_opens_the_default_one(tmp_path):
    script = write_packaged_game(tmp_path, "MyGame")
    port = _free_port()
    proc = _launch(script, "/Game/Maps/NoSuchLevel", "-cvport", str(port))
    try:
        assert _wait_open(port, proc, 60)
    finally:
        log = _stop(proc)
    assert "Failed to load map 'NoSuchLevel'" in log
