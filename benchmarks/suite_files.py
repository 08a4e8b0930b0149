"""Suites as files (``tlbench run suites/<name>.toml``) and the one matrix a suite directory holds.

A suite file is TOML whose keys are the flags of ``tlbench run`` without the dashes (``image_size = 224``,
``strategies = ["linear_probe", "scratch"]``, ``infer_compile = true``, ``weights = {keras = "w.h5"}``). It is
turned into the same command-line tokens those flags are, so it is validated exactly like them, and flags given
on the command line come after it and win. Paths in it are relative to the directory ``tlbench`` runs in (the
repository root). The suite's name is the file's name unless the file sets ``suite``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from .running.config import SuiteConfig, format_weights_map

#: flags of ``tlbench run`` that describe one invocation, not the suite: never in a suite file
INVOCATION_KEYS = ("help", "out", "verbose", "no_report", "reuse_results", "suite_file")
#: keys that take a list (a TOML array, or the flag's comma-separated text)
LIST_KEYS = ("backends", "models", "strategies", "datasets", "seeds", "train_sizes", "increment_modes", "deploy")
#: key aliases (``--dataset`` and ``--datasets`` are one flag)
ALIASES = {"dataset": "datasets"}


class SuiteFileError(ValueError):
    """A suite file that cannot be read or holds a key or value ``tlbench run`` does not take (one line)."""


def _flags(run_parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The run parser's options by key (the flag's ``dest``), invocation-only flags left out."""
    return {
        action.dest: action
        for action in run_parser._actions
        if action.option_strings and action.dest not in INVOCATION_KEYS
    }


def _long_flag(action: argparse.Action) -> str:
    return max(action.option_strings, key=len)


def _scalar(path: Path, key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SuiteFileError(f"{path}: key {key!r} must be a string or a number, got {value!r}")
    return str(value)


def _value_text(path: Path, key: str, value: Any) -> str:
    """The command-line text of one (non-boolean) key."""
    if key in LIST_KEYS and isinstance(value, list):
        if not value:
            raise SuiteFileError(f"{path}: key {key!r} is an empty list; expected at least one value")
        return ",".join(_scalar(path, key, item) for item in value)
    if key == "weights" and isinstance(value, dict):
        return format_weights_map({str(name): _scalar(path, key, item) for name, item in value.items()})
    return _scalar(path, key, value)


def read_suite_file(path: Path) -> dict[str, Any]:
    """The TOML table of a suite file.

    Raises:
        SuiteFileError: a missing, unreadable or invalid file.
    """
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    if not path.is_file():
        raise SuiteFileError(
            f"suite file {str(path)!r} does not exist; expected a TOML file such as suites/default.toml"
        )
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SuiteFileError(f"{path}: not a valid TOML suite file: {exc}") from None


def suite_file_tokens(path: Path, run_parser: argparse.ArgumentParser) -> list[str]:
    """The ``tlbench run`` flags a suite file stands for (``--suite <file name>`` first unless it names one).

    Raises:
        SuiteFileError: an unknown key, or a value of the wrong kind (one line naming the file and the key).
    """
    path = Path(path)
    table = read_suite_file(path)
    flags = _flags(run_parser)
    tokens = ["--suite", path.stem]
    seen: dict[str, str] = {}
    for raw_key, value in table.items():
        key = ALIASES.get(raw_key, raw_key)
        if key not in flags:
            raise SuiteFileError(
                f"{path}: unknown key {raw_key!r}; expected some of: {', '.join(sorted(flags))} (as for tlbench run)"
            )
        if key in seen:
            raise SuiteFileError(f"{path}: keys {seen[key]!r} and {raw_key!r} set the same flag; keep one")
        seen[key] = raw_key
        action = flags[key]
        if action.nargs == 0:  # an on/off flag
            if not isinstance(value, bool):
                raise SuiteFileError(f"{path}: key {raw_key!r} is on/off; expected true or false, got {value!r}")
            tokens += [_long_flag(action)] if value else []
        else:
            tokens += [_long_flag(action), _value_text(path, key, value)]
    return tokens


# ---- the one matrix of a suite directory ------------------------------------------------------------------------
def recorded_suite(out_dir: Path) -> SuiteConfig | None:
    """The suite a directory was made for (its ``suite.json``), ``None`` when there is none or it is unreadable."""
    try:
        return SuiteConfig.from_dict(json.loads((Path(out_dir) / "suite.json").read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def matrix_differences(old: SuiteConfig, new: SuiteConfig) -> list[str]:
    """What differs between two suites' matrices, in words (``datasets ['digits'] -> ['folder:x']``)."""
    before, after = old.matrix(), new.matrix()
    keys = list(dict.fromkeys([*before, *after]))  # train sizes and draws are in a matrix only when given
    changes = [
        f"{key} {before.get(key)} -> {after.get(key)}"
        for key in keys
        if key != "options" and before.get(key) != after.get(key)
    ]
    if before["options"] != after["options"] and not changes:
        changes.append("run options (epochs, image size, weights, backend options...)")
    return changes


def _name_part(text: str, limit: int = 40) -> str:
    """A short filesystem-safe name of a model or dataset spec (a path's file name without its extension)."""
    spec = text.split(":", 1)[-1] if ":" in text else text
    if "/" in spec or "\\" in spec:
        spec = Path(spec.replace("\\", "/").rstrip("/")).stem or spec
    return (re.sub(r"[^A-Za-z0-9_.+-]+", "-", spec).strip("-.") or "suite")[:limit]


def matrix_dir_name(suite: SuiteConfig) -> str:
    """``<model>-<dataset>-<hash8>``: the directory of a matrix run without ``--suite`` into a directory that holds
    another one (``+N`` counts further models or datasets)."""
    models = _name_part(suite.models[0]) + (f"+{len(suite.models) - 1}" if len(suite.models) > 1 else "")
    datasets = _name_part(suite.datasets[0]) + (f"+{len(suite.datasets) - 1}" if len(suite.datasets) > 1 else "")
    return f"{models}-{datasets}-{suite.matrix_hash()[:8]}"
