"""What each node of the Ray cluster has staged, for builds whose nodes share no disk.

On such a cluster every node has its own staging folder at the same path, so the driver cannot
look into it: `staging_inventory` runs one task pinned to each live node, which removes what an
interrupted run left under `.partial/` there and lists the published trajectories with their
fingerprints. The capture scheduler takes a trajectory's staged copy from this inventory instead
of from the driver's own disk (capture/scheduler.py).
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

from capture.staging import clear_partials, published

#: "scene/trajectory" -> {Ray node id: fingerprint of its staged copy there}
Inventory = Mapping[str, Mapping[str, str]]


def ray_node() -> str:
    """The Ray node this process runs on, or "" outside Ray."""
    try:
        import ray
    except ImportError:
        return ""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def _node_inventory(staging: str) -> tuple[str, dict[str, str], int]:
    root = pathlib.Path(staging)
    cleared = clear_partials(root) if root.is_dir() else 0
    return ray_node(), published(root), cleared


def live_nodes() -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def staging_inventory(staging: str | pathlib.Path, timeout_s: float = 120.0) -> tuple[dict[str, dict[str, str]], int]:
    """Every live node's staged trajectories (key -> {node: fingerprint}) and how many partial
    trajectories were cleared; a node that does not answer within `timeout_s` holds nothing for
    this build (its trajectories are captured again elsewhere)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0)(_node_inventory)
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(str(staging)) for n in live_nodes()]
    inventory: dict[str, dict[str, str]] = {}
    cleared = 0
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    for ref in ready:
        try:
            node, staged, partials = ray.get(ref)
        except Exception:  # noqa: BLE001 - a node that died while answering holds nothing for this build
            continue
        cleared += partials
        for key, fingerprint in staged.items():
            inventory.setdefault(key, {})[node] = fingerprint
    return inventory, cleared
