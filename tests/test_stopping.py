"""common.stopping: a process whose loader workers ignore SIGTERM still exits, and leaves none behind."""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

from common.stopping import end_daemonic_children, ignore_in_worker
from tests.training_helpers import wait_until_group_gone

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _sleep(ignore: bool) -> None:
    if ignore:
        ignore_in_worker()
    else:  # SIGTERM's default action: a forked child inherits its parent's handlers, and while Ray runs in
        # the same pytest worker (another test's session) those are Ray's (sys.exit(signum): exit code 15)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    time.sleep(60)


def test_daemonic_children_end_and_those_ignoring_sigterm_are_killed_after_the_grace():
    context = multiprocessing.get_context("fork")
    stubborn = context.Process(target=_sleep, args=(True,), daemon=True)
    polite = context.Process(target=_sleep, args=(False,), daemon=True)
    kept = context.Process(target=_sleep, args=(True,), daemon=False)  # not daemonic: not this hook's to end
    for p in (stubborn, polite, kept):
        p.start()
    time.sleep(0.5)  # the stubborn child has installed SIG_IGN
    try:
        start = time.monotonic()
        assert end_daemonic_children(grace_s=1.0) == [stubborn.pid]
        assert 0.9 < time.monotonic() - start < 10
        assert not stubborn.is_alive() and stubborn.exitcode == -signal.SIGKILL
        assert not polite.is_alive() and polite.exitcode == -signal.SIGTERM
        assert kept.is_alive()
    finally:
        kept.kill()
        kept.join()


def test_a_script_that_fails_while_its_loader_workers_run_exits_with_its_error(tmp_path):
    """The bug this guards: a trainer raising mid-epoch printed its traceback and then hung forever at
    exit (multiprocessing joined a worker that ignores SIGTERM; the traceback kept the iterator alive)."""
    script = tmp_path / "fail.py"
    script.write_text(textwrap.dedent(f"""
        import pathlib, sys
        sys.path.insert(0, {str(ROOT)!r})
        from datasets.loader import LoaderConfig, make_loader
        from tests.training_helpers import write_tiny_shards
        pattern = write_tiny_shards(pathlib.Path({str(tmp_path / 'shards')!r}), clips=4, frames=5, height=16, width=16)
        config = LoaderConfig(urls=pattern, batch_size=2, shuffle_buffer=0, resampled=True)
        batches = iter(make_loader(config, num_workers=2))
        next(batches)
        raise RuntimeError("the trainer failed mid-epoch")
    """))
    job = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = job.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        raise AssertionError("the failed script hung at exit instead of ending") from None
    assert job.returncode == 1 and "RuntimeError: the trainer failed mid-epoch" in stderr
    wait_until_group_gone(job.pid, 10, "a loader worker of the failed script is still alive")  # none outlives it
