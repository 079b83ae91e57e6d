"""Configs from untrusted model files: YAML parsed in bounded memory and time, and
OmegaConf-style node references followed without ever running a resolver.

An official ``big-lama/config.yaml`` chains plain references inside its ``generator:``
block (``ratio_gout: ${generator.resnet_conv_kwargs.ratio_gin}``), so those are followed
here: a whole-value ``${a.b.c}`` naming another scalar of the same document, at most
``MAX_REFERENCE_HOPS`` deep, cycles refused. Nothing else is ever resolved: resolvers
(``${oc.env:SECRET}``, ``${oc.decode:...}``), relative references and string
interpolation stay literal strings, which the generator-config checks refuse without
echoing them. ``OmegaConf.create`` is never called on the file's content.

YAML aliases are shared references in ``yaml.safe_load``'s result (cheap to build), but
expand when walked, so the parsed document is walked once with a node budget
(``MAX_CONFIG_NODES``) before anything else touches it; the file size is capped first.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

MAX_CONFIG_BYTES = 64 * 1024
"""Largest ``config.yaml`` read (official big-lama's is a few KB). Parsing the worst case at
this size (all tiny nodes) takes about 15 MB and a second or two before the node count."""
MAX_CONFIG_NODES = 100_000
"""Most values a config may expand to, counting every use of a YAML alias."""
MAX_REFERENCE_HOPS = 16

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*)\}")


class ConfigFileError(ValueError):
    """An untrusted config is malformed, too large, or uses what loaders never resolve."""


def count_nodes(obj: Any, limit: int = MAX_CONFIG_NODES) -> int:
    """Values in ``obj`` counted as a tree walk (a shared sub-tree counts at every use).
    Iterative, so deep nesting costs no recursion; stops with ``ConfigFileError`` past ``limit``."""
    count, stack = 0, [obj]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            raise ConfigFileError(f"it expands to more than {limit:,} values (a YAML alias bomb?)")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return count


def parse_yaml_config(data: bytes) -> dict[str, Any]:
    """Parse an untrusted YAML config: at most ``MAX_CONFIG_BYTES``, safe constructors only
    (no Python objects), at most ``MAX_CONFIG_NODES`` values after alias expansion.
    Returns the top-level mapping; raises ``ConfigFileError`` with a one-line reason."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigFileError(f"it is {len(data):,} bytes, above the limit of {MAX_CONFIG_BYTES:,} for a config")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        parsed = yaml.load(data, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigFileError(f"invalid YAML: {str(problem).splitlines()[0][:80]}{where}") from exc
    except RecursionError as exc:
        raise ConfigFileError("its YAML nests too deeply") from exc
    if not isinstance(parsed, dict):
        raise ConfigFileError("its top level is not a mapping")
    count_nodes(parsed)
    return parsed


def _lookup(root: dict[str, Any], path: str) -> Any:
    node: Any = root
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ConfigFileError(f"a reference names a missing key ({path[:60]})")
    return node


def resolve_references(root: dict[str, Any], section: str) -> Any:
    """A copy of ``root[section]`` (a plain tree, already node-counted) in which every
    string that is exactly ``${a.b.c}`` is replaced by that value of ``root``. Other
    strings, resolvers included, are left as they are. Raises ``ConfigFileError`` for a
    missing target, a cycle or a chain longer than ``MAX_REFERENCE_HOPS``."""

    def follow(value: Any) -> Any:
        seen: list[str] = []
        while isinstance(value, str):
            match = _REFERENCE.fullmatch(value.strip())
            if match is None:
                return value
            path = match.group(1)
            if path in seen:
                raise ConfigFileError(f"a reference cycle through {path[:60]}")
            if len(seen) >= MAX_REFERENCE_HOPS:
                raise ConfigFileError(f"a reference chain longer than {MAX_REFERENCE_HOPS}")
            seen.append(path)
            value = _lookup(root, path)
        return value  # a section stays as it is (already node-counted): the field checks refuse it

    def copy(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: copy(v) for k, v in node.items()}
        if isinstance(node, list):
            return [copy(v) for v in node]
        return follow(node)

    if section not in root:
        raise ConfigFileError(f"it has no '{section}' section")
    return copy(root[section])
