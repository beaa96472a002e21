"""Run `python ...` command lines as fresh processes forked from a warm one.

A documented command's `--dry-run` spends most of its ~3 s importing torch, pandas and friends; run
through multiprocessing's forkserver with those preloaded, each command is still its own process
(own cwd, environment, argv, `__main__`, exit code, stdout and stderr), started in a fraction of a
second. What runs is what `python -m MODULE ARGS` or `python SCRIPT ARGS` runs: runpy, as the
interpreter itself does it.
"""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import runpy
import subprocess
import sys
import tempfile
import traceback

#: imported once in the fork server: what the project's entry points import at the top
PRELOAD = ["numpy", "torch", "pandas", "pyarrow.parquet", "scipy.optimize", "scipy.spatial.transform", "cv2", "yaml",
           "matplotlib"]

_context: multiprocessing.context.ForkServerContext | None = None


def _server() -> multiprocessing.context.ForkServerContext:
    global _context  # one fork server per test process, started on first use
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _main(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    """The child: become `python argv...` in `cwd` with `env`, then exit with its status."""
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115 (the process's own fds)
    sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    code: int = 0
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path[0:0] = [cwd]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            script = str(pathlib.Path(cwd, argv[0]))
            sys.argv = [argv[0], *argv[1:]]
            sys.path[0:0] = [str(pathlib.Path(script).parent)]
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:  # as the interpreter does with a non-integer exit argument
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 (the interpreter prints any uncaught exception and exits 1)
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_python(argv: list[str], cwd: pathlib.Path, env: dict[str, str], timeout: float = 300
               ) -> subprocess.CompletedProcess:
    """`python *argv` (argv without the interpreter: ["-m", "pkg.mod", ...] or ["script.py", ...])
    as a forked process; returns what subprocess.run(..., capture_output=True, text=True) would."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        for path in (out, err):
            open(path, "w").close()
        process = _server().Process(target=_main, args=(list(argv), str(cwd), env, out, err))
        process.start()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired([sys.executable, *argv], timeout)
        with open(out) as f_out, open(err) as f_err:
            return subprocess.CompletedProcess([sys.executable, *argv], process.exitcode, f_out.read(), f_err.read())
