"""Every command line in a ```bash block of README.md and docs/*.md works as written.

Commands run in a tree laid out like the checkout (tests/conftest.user_tree). Quick ones run for
real: the demo build (README's command 1, conftest.demo_build), `python -m annotate` on the test
fixtures, the stand-in server (until it prints its `listening on` line). Every other one runs with
`--dry-run` appended, which each entry point has: the arguments are parsed and the configuration
resolved (defaults, --config, --set, dedicated flags) as the real run would, then it stops (each as
its own process, forked from one that has imported torch and friends already: tests/forked.py). So a
flag, a choice, a `--set` key or a config file that the docs show and the code refuses fails here.
`pip install -e ".[extras]"` lines are checked against pyproject's extras. Every ```yaml block must
load into one of the project's configuration classes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
import re
import select
import shlex
import subprocess
import sys
import time
import tomllib

import pytest
import yaml

from common.config import ConfigError, from_dict
from tests.conftest import ROOT
from tests.forked import run_python

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclasses.dataclass(frozen=True)
class Command:
    where: str  # file:line
    argv: tuple[str, ...]

    @property
    def text(self) -> str:
        return shlex.join(self.argv)


def blocks(path: pathlib.Path, language: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each fenced block in that language."""
    out, current, start, lang = [], None, 0, None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = FENCE.match(line)
        if fence and current is None:
            current, start, lang = [], number + 1, fence.group(1)
        elif fence:
            if lang == language:
                out.append((start, current))
            current = None
        elif current is not None:
            current.append(line)
    assert current is None, f"{path}: unclosed code fence opened at line {start - 1}"
    return out


def commands(paths=DOCS) -> list[Command]:
    """Each command of each bash block: continuation lines joined, comments dropped, `a && b` split."""
    found = []
    for path in paths:
        for start, lines in blocks(path, "bash"):
            joined, first = "", 0
            for offset, line in enumerate(lines):
                text = line.strip()
                if not joined:
                    first = start + offset
                joined += " " + text.removesuffix("\\")
                if text.endswith("\\"):
                    continue
                for part in joined.split(" && "):
                    argv = tuple(shlex.split(part, comments=True))
                    if argv:
                        found.append(Command(f"{path.relative_to(ROOT)}:{first}", argv))
                joined = ""
    return found


ALL = commands()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def user_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}


def python_argv(command: Command) -> list[str]:
    argv = list(command.argv)
    assert argv[0] == "python", f"{command.where}: commands start with `python` (or pip): {command.text}"
    return [sys.executable, *argv[1:]]


def dry_run(command: Command, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    """The command with `--dry-run`, as its own process forked from a warm one (tests/forked.py)."""
    return run_python([*python_argv(command)[1:], "--dry-run"], cwd, user_env())


def check(command: Command, cwd: pathlib.Path, demo_build=None) -> None:
    """Run one documented command the way this module's docstring says; fail naming it."""
    argv = list(command.argv)
    if argv[:3] == ["pip", "install", "-e"]:
        extras = re.fullmatch(r"\.(?:\[([\w,]+)\])?", argv[3])
        assert extras and len(argv) == 4, f"{command.where}: unexpected install line {command.text}"
        declared = PYPROJECT["project"]["optional-dependencies"]
        missing = [e for e in (extras.group(1) or "").split(",") if e and e not in declared]
        assert not missing, f"{command.where}: extras {missing} are not in pyproject.toml"
        return
    if argv[:3] == ["python", "-m", "pytest"]:
        assert (ROOT / "tests").is_dir()
        if "-n" in argv[3:]:  # pytest-xdist: installed by the dev extra
            dev = PYPROJECT["project"]["optional-dependencies"]["dev"]
            assert any(d.startswith("pytest-xdist") for d in dev), f"{command.where}: -n needs pytest-xdist in dev"
            assert importlib.util.find_spec("xdist"), f"{command.where}: -n needs pytest-xdist installed"
        if "-m" in argv[3:]:  # every marker the expression names is declared (--strict-markers)
            declared = {m.split(":")[0] for m in PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]}
            named = set(re.findall(r"\w+", argv[argv.index("-m", 3) + 1])) - {"not", "and", "or"}
            assert named <= declared, f"{command.where}: markers {sorted(named - declared)} are not declared"
        return
    if argv == ["python", "pipelines/build_dataset.py"] and demo_build is not None:
        _, done = demo_build  # README's command 1, run for real once per session
        assert done.returncode == 0, f"{command.where}: {command.text}\n{done.stderr[-3000:]}"
        return
    if argv[:3] == ["python", "-m", "annotate"]:
        done = subprocess.run(python_argv(command), cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command.where}: {command.text}\n{done.stderr[-3000:]}"
        assert "wrote " in done.stdout
        return
    if argv[:3] == ["python", "-m", "capture.standin"]:
        serve(command, cwd)
        return
    done = dry_run(command, cwd)
    assert done.returncode == 0, f"{command.where}: {command.text}\n{done.stdout[-2000:]}{done.stderr[-3000:]}"


def serve(command: Command, cwd: pathlib.Path) -> None:
    """Start the documented server; it must print `listening on` (then it is stopped)."""
    proc = subprocess.Popen(python_argv(command), cwd=cwd, env=user_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                line = proc.stdout.readline()
                assert line.startswith("listening on "), f"{command.where}: {command.text}: {line!r}"
                return
        pytest.fail(f"{command.where}: {command.text}: no `listening on` line (exit {proc.poll()}): "
                    f"{proc.stderr.read() if proc.poll() is not None else ''}")
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize("command", ALL, ids=[f"{c.where} {c.text[:60]}" for c in ALL])
def test_documented_command_works(command, user_tree, request):
    demo = request.getfixturevalue("demo_build") if command.argv == ("python", "pipelines/build_dataset.py") else None
    check(command, user_tree, demo)


def test_the_readme_commands_are_found():
    readme = [c.argv for c in ALL if c.where.startswith("README.md")]
    for needed in ("pip install -e .", "python pipelines/build_dataset.py", 'pip install -e ".[train,dev]"',
                   'python -m pytest -n 2 -m "not serial"', "python -m pytest -m serial",
                   "python -m capture.standin --port 0 --scene 7"):
        assert tuple(shlex.split(needed)) in readme, needed
    assert len(ALL) >= 30


def test_a_broken_flag_or_key_fails(user_tree):
    """The checker itself: what the code refuses fails it, whichever way it is broken."""
    for text in ("python pipelines/build_dataset.py --no-such-flag",
                 "python pipelines/build_dataset.py --set clips.window.frame=65",
                 "python -m capture.standin --port 0 --scene bogus-3 --dry-run",
                 "python -m training.teacher --out runs/x --preset huge",
                 "python -m training.eval --checkpoint a.pt --out b --frames many"):
        with pytest.raises(AssertionError):
            check(Command("test", tuple(shlex.split(text))), user_tree)


def config_classes():
    from annotate.config import AnnotateConfig
    from capture.run import CaptureRunConfig
    from capture.standin.engine import EngineConfig
    from filter.config import FilterConfig
    from pipelines.config import BuildConfig
    from training.config import TrainConfig
    from training.student_train import StudentTrainConfig

    return (BuildConfig, CaptureRunConfig, AnnotateConfig, FilterConfig, EngineConfig, TrainConfig, StudentTrainConfig)


YAML_BLOCKS = [(f"{p.relative_to(ROOT)}:{start}", "\n".join(lines)) for p in DOCS for start, lines in blocks(p, "yaml")]
CONFIG_FILES = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("where,text", YAML_BLOCKS + [(str(p.relative_to(ROOT)), p.read_text()) for p in CONFIG_FILES],
                         ids=[w for w, _ in YAML_BLOCKS] + [p.name for p in CONFIG_FILES])
def test_documented_config_loads(where, text):
    data = yaml.safe_load(text)
    errors = []
    for cls in config_classes():
        try:
            from_dict(cls, data, source=where)
            return
        except ConfigError as exc:
            errors.append(f"{cls.__name__}: {exc}")
    pytest.fail(f"{where}: no configuration class takes this YAML:\n" + "\n".join(errors))


def test_modules_that_use_machine_wide_state_are_marked_serial():
    """README's test command runs `serial` tests alone, the rest two at a time: a module that starts a
    Ray cluster (which any other test's ray.init() would join) or counts every engine process on the
    machine (another test's engines among them) must carry the mark."""
    machine_wide = re.compile(r"standin_pids\(|ray_cli|\"start\", \"--head\"|cluster_utils|process_iter\(")
    unmarked = [p.name for p in sorted((ROOT / "tests").glob("test_*.py"))
                if machine_wide.search(p.read_text()) and "pytestmark = pytest.mark.serial" not in p.read_text()]
    assert not unmarked, f"mark these serial (pytestmark = pytest.mark.serial): {unmarked}"
