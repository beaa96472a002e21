"""Pieces every stage shares: typed configuration loading."""

from common.config import ConfigError, apply_overrides, dump_yaml, from_dict, load_yaml, to_dict

__all__ = ["ConfigError", "apply_overrides", "dump_yaml", "from_dict", "load_yaml", "to_dict"]
