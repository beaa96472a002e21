"""Typed configuration: YAML -> frozen dataclasses, unknown keys rejected, overrides."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Literal

import pytest

from annotate.config import AnnotateConfig
from annotate.resample import Interpolation
from common.config import ConfigError, apply_overrides, dump_yaml, from_dict, load_yaml, to_dict


class Mode(str, enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@dataclass(frozen=True)
class Inner:
    rate: float = 1.0
    names: tuple[str, ...] = ("a",)


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    count: int = 3
    mode: Mode = Mode.FAST
    kind: Literal["x", "y"] = "x"
    limit: float | None = None
    flag: bool = False
    pair: tuple[int, float] = (1, 2.0)
    table: dict[str, int] = field(default_factory=dict)


def test_defaults_and_nested_values():
    cfg = from_dict(Outer, {"inner": {"rate": 2}, "mode": "slow", "limit": 5, "pair": [3, 4], "table": {"k": 1}})
    assert cfg == Outer(inner=Inner(rate=2.0), mode=Mode.SLOW, limit=5.0, pair=(3, 4.0), table={"k": 1})
    assert isinstance(cfg.inner.rate, float)
    assert from_dict(Outer, None) == Outer()


@pytest.mark.parametrize(
    "data,message",
    [
        ({"inner": {"rat": 1}}, r"unknown key\(s\) inner.rat; allowed here: names, rate"),
        ({"cont": 1}, r"unknown key\(s\) cont"),
        ({"count": "3"}, r"count: expected an integer, got '3'"),
        ({"count": True}, r"count: expected an integer"),
        ({"inner": {"rate": "fast"}}, r"inner.rate: expected a number"),
        ({"mode": "medium"}, r"mode: 'medium' is not one of \['fast', 'slow'\]"),
        ({"kind": "z"}, r"kind: 'z' is not one of \['x', 'y'\]"),
        ({"flag": "yes"}, r"flag: expected true/false"),
        ({"pair": [1]}, r"pair: expected 2 items, got 1"),
        ({"inner": {"names": [1]}}, r"inner.names\[0\]: expected a string"),
        ({"inner": 5}, r"inner: expected a mapping"),
    ],
)
def test_errors_name_the_dotted_key(data, message):
    with pytest.raises(ConfigError, match=r"^test.yaml: .*" + message):
        from_dict(Outer, data, source="test.yaml")


def test_validation_in_post_init_is_reported_with_the_section():
    with pytest.raises(ConfigError, match=r"cfg: actions.rotation: bins must satisfy"):
        from_dict(AnnotateConfig, {"actions": {"rotation": {"dead_zone": 50.0}}}, source="cfg")


def test_yaml_file_with_overrides(tmp_path):
    path = tmp_path / "annotate.yaml"
    path.write_text("resample:\n  fps: 15\nactions:\n  translation:\n    dead_zone: 0.1\n")
    cfg = load_yaml(AnnotateConfig, path, ["resample.method=cubic", "actions.rotation.centers=[5, 30, 70]"])
    assert cfg.resample.fps == 15.0 and cfg.resample.method is Interpolation.CUBIC
    assert cfg.actions.translation.dead_zone == 0.1 and cfg.actions.rotation.centers == (5.0, 30.0, 70.0)
    path.write_text("resample:\n  fsp: 15\n")
    with pytest.raises(ConfigError, match=rf"{path}: unknown key\(s\) resample.fsp"):
        load_yaml(AnnotateConfig, path)
    path.write_text("- a\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(AnnotateConfig, path)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_yaml(AnnotateConfig, tmp_path / "missing.yaml")


def test_round_trip_through_yaml(tmp_path):
    cfg = from_dict(AnnotateConfig, {"resample": {"fps": 12.5, "method": "cubic"}})
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_yaml(AnnotateConfig, path) == cfg
    assert to_dict(cfg)["resample"] == {"fps": 12.5, "method": "cubic"}


def test_overrides():
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2", "d=x y", "e=[1, 2]"]) == {"a": {"b": 1, "c": 2}, "d": "x y", "e": [1, 2]}
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match="'a' is not a section"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        AnnotateConfig().resample.fps = 3  # type: ignore[misc]


def test_partial_section_keeps_the_parents_defaults():
    """ActionSpec's default bins come from its default_factory; overriding one key keeps the rest."""
    cfg = from_dict(AnnotateConfig, {"actions": {"translation": {"dead_zone": 0.02}}})
    assert cfg.actions.translation.dead_zone == 0.02
    assert cfg.actions.translation.edges == AnnotateConfig().actions.translation.edges
    assert cfg.actions.rotation == AnnotateConfig().actions.rotation


def test_exponent_floats_that_yaml_reads_as_strings():
    # PyYAML follows YAML 1.1: "1e-4" (no dot) is a string, "1.0e-4" a float
    data = apply_overrides({}, ["inner.rate=1e-4", "limit=2E3"])
    assert data["inner"]["rate"] == "1e-4"
    config = from_dict(Outer, data)
    assert config.inner.rate == 1e-4 and config.limit == 2000.0
    with pytest.raises(ConfigError, match="expected a number"):
        from_dict(Outer, {"inner": {"rate": "fast"}})
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(Outer, {"count": "1e3"})
