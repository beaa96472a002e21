"""Does every node of the Ray cluster see the build's folders as the driver does?

In `storage: shared` mode (formats.md 2.1) the build's capture actors write staged trajectories
under the staging folder on whichever node they run, and the filter/clip tasks Ray schedules
elsewhere read them back by path; the driver writes shards from the clip caches the tasks wrote.
That is only correct when OUT (and a separate `staging` folder) is one shared filesystem mounted at
the same path on every node (NFS, Lustre). `check_shared` tells, before any capture: the driver
writes a token into each folder, one task pinned to each live node reads it and writes its own
token back, and the driver reads those. A node that cannot see the driver's token, or whose token
the driver cannot see, is named: `shared` stops the build, `auto` switches to `node_local`.
"""

from __future__ import annotations

import pathlib
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from capture.nodes import live_nodes

PROBE_DIR = ".probe"


@dataclass(frozen=True)
class NodeView:
    node: str  # Ray node id
    address: str  # its IP as Ray reports it
    saw: tuple[bool, ...]  # per folder: the node read the driver's token
    error: str = ""


def _node_side(folders: Sequence[str], token: str, node: str) -> tuple[tuple[bool, ...], str]:
    """Runs on one node: read the driver's token in each folder, write this node's own next to it."""
    saw, errors = [], []
    for folder in folders:
        probe = pathlib.Path(folder) / PROBE_DIR
        try:
            saw.append((probe / "driver").read_text() == token)
        except OSError as exc:
            saw.append(False)
            errors.append(f"{probe / 'driver'}: {exc.strerror or exc}")
        try:
            probe.mkdir(parents=True, exist_ok=True)
            (probe / node).write_text(token)
        except OSError as exc:
            errors.append(f"{probe}: cannot write ({exc.strerror or exc})")
    return tuple(saw), "; ".join(errors)


def check_shared(folders: Sequence[pathlib.Path]) -> list[str]:
    """Problems (empty when every live node sees every folder as the driver does); Ray must be
    initialised. The probe files are removed afterwards."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = secrets.token_hex(16)
    paths = [str(pathlib.Path(f).resolve()) for f in folders]
    for path in paths:
        (pathlib.Path(path) / PROBE_DIR).mkdir(parents=True, exist_ok=True)
        (pathlib.Path(path) / PROBE_DIR / "driver").write_text(token)
    nodes = live_nodes()
    task = ray.remote(num_cpus=0)(_node_side)
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(paths, token, n["NodeID"]) for n in nodes]
    problems = []
    try:
        for node, ref in zip(nodes, refs):
            where = f"node {node.get('NodeManagerAddress', '?')} (Ray node {node['NodeID'][:12]})"
            try:
                saw, error = ray.get(ref, timeout=120)
            except Exception as exc:  # noqa: BLE001 - a node that cannot run the probe is named, whatever broke
                problems.append(f"{where}: the probe task did not run ({type(exc).__name__}: {exc})")
                continue
            for path, seen in zip(paths, saw):
                back = pathlib.Path(path) / PROBE_DIR / node["NodeID"]
                mine = back.is_file() and back.read_text() == token
                if not (seen and mine):
                    half = ("does not see what this machine wrote there" if not seen else
                            "wrote there, but this machine does not see it")
                    problems.append(f"{where}: {path} {half}" + (f" ({error})" if error else ""))
    finally:
        for path in paths:
            shutil.rmtree(pathlib.Path(path) / PROBE_DIR, ignore_errors=True)
    return problems


def shared_storage_message(problems: Sequence[str]) -> str:
    return ("the build's folders are not shared storage on every node of the Ray cluster, so staged "
            "trajectories and clip caches written on one node could not be read on another: "
            + "; ".join(problems) + ". Put OUT (and capture.staging, when set) on a filesystem every node "
            "mounts at the same path (NFS, Lustre), or set storage: node_local (data then moves through Ray)")
