"""Model folders on disk: finding them (hub), reading weight files, loading and saving (pretrained), and
the one guarded reader / atomic writer every file goes through (files)."""

from .files import atomic_write, parse_json, read_json, read_text, write_json
from .hub import hub_cache_dir, is_offline, resolve
from .pretrained import Checkpoint, load_model, locate, read_config, save_pretrained
from .weights import read_weights, weight_files

__all__ = ["atomic_write", "parse_json", "read_json", "read_text", "write_json", "hub_cache_dir", "is_offline",
           "resolve", "Checkpoint", "load_model", "locate", "read_config", "save_pretrained", "read_weights",
           "weight_files"]
