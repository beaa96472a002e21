"""One supervised game instance (capture/game.py) against the stand-in laid out as a packaged UE
Linux build: the command line it is given, ready only when UnrealCV answers on the port it was
given, and every way a build fails to come up named with its log; nothing left running."""

from __future__ import annotations

import os
import pathlib

import psutil
import pytest

from capture.game import GameConfig, GameInstance, GameLaunchError, command_line, probe_status
from capture.standin.packaged import FAULT_ENV, write_packaged_game


@pytest.fixture
def game(tmp_path):
    return write_packaged_game(tmp_path / "LinuxNoEditor", "MyGame")


def test_the_command_line_has_the_port_with_a_space_and_the_gpu():
    words = command_line(GameConfig("/g/MyGame.sh", map="/Game/Maps/X", args=("-log",)), 9001, gpu=2)
    assert words[:2] == ["/g/MyGame.sh", "/Game/Maps/X"]
    assert words[words.index("-UnrealCVPort") + 1] == "9001"  # never -UnrealCVPort=9001: UE4 reads 0
    assert "-RenderOffScreen" in words and "-graphicsadapter=2" in words and words[-1] == "-log"
    assert not any(w.startswith("-UnrealCVPort=") for w in words)


def test_an_instance_comes_up_on_its_port_and_stops_with_its_group(game, tmp_path):
    instance = GameInstance(GameConfig(str(game), map="room_0002", width=96, height=54, startup_deadline_s=60),
                            "engine-0", tmp_path / "logs", gpu=0)
    instance.start()
    try:
        status = probe_status(instance.port)
        assert status is not None and f"Port: {instance.port}" in status and "Width: 96" in status
        pid = instance.process.pid
        assert instance.alive()
    finally:
        instance.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert probe_status(instance.port) is None
    log = instance.log_path.read_text()
    assert "-graphicsadapter=0" in log and f"Overriding listening port to {instance.port}" in log


@pytest.mark.parametrize("fault, message", [
    ("crash_at_start", "exited with code 1 before serving UnrealCV"),
    ("hang_at_start", "did not serve UnrealCV on port"),
    ("ignore_port", "did not serve UnrealCV on port"),
])
def test_a_build_that_does_not_come_up_is_named_with_its_log(game, tmp_path, monkeypatch, fault, message):
    monkeypatch.setenv(FAULT_ENV, fault)
    instance = GameInstance(GameConfig(str(game), startup_deadline_s=2.5), "engine-3", tmp_path / "logs")
    with pytest.raises(GameLaunchError, match=message) as caught:
        instance.start()
    assert "engine-3" in str(caught.value) and str(instance.log_path) in str(caught.value)
    assert instance.process is None  # stopped: its group is gone
    children = [p for p in psutil.Process(os.getpid()).children(recursive=True) if "packaged" in " ".join(p.cmdline())]
    assert children == []


def test_a_missing_or_not_executable_binary(tmp_path):
    with pytest.raises(GameLaunchError, match="does not exist"):
        GameInstance(GameConfig(str(tmp_path / "Nope.sh")), "e", tmp_path).start()
    script = tmp_path / "Game.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(GameLaunchError, match=r"is not executable \(chmod \+x it\)"):
        GameInstance(GameConfig(str(script)), "e", tmp_path).start()


def test_a_relaunch_after_a_crash_serves_again_with_a_fresh_log(game, tmp_path):
    instance = GameInstance(GameConfig(str(game), startup_deadline_s=60), "engine-1", tmp_path / "logs")
    instance.start()
    first_log = instance.log_path
    os.killpg(instance.process.pid, 9)  # the engine dies
    instance.process.wait(timeout=10)
    assert not instance.alive()
    instance.start()
    try:
        assert probe_status(instance.port) is not None
        assert instance.log_path != first_log and pathlib.Path(first_log).is_file()
        assert instance.launches == 2
    finally:
        instance.stop()
