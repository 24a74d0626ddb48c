"""Checks shared by every mapper: what a checkpoint holds, what a conversion left behind, what a model needs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# The transformer blocks' cross-attention and its pre-norm, in LDM and diffusers names alike.
CROSS_ATTENTION = re.compile(r"(transformer_blocks\.\d+\.)(attn2|norm2)\.")


def unwrap_checkpoint(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A Lightning checkpoint's ``state_dict`` (or the mapping itself when it is already a state dict)."""
    state = obj.get("state_dict", obj)
    if not isinstance(state, Mapping):
        raise ValueError(f"checkpoint['state_dict'] is a {type(state).__name__}, not a mapping of tensors")
    return dict(state)


def select_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Keys under `prefix`, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _root(tensor: Any) -> Any:
    base = getattr(tensor, "_base", None)
    return tensor if base is None else base


def unconsumed(source: Mapping[str, Any], converted: Mapping[str, Any]) -> list[str]:
    """Source keys whose tensor (or a view of it) appears nowhere in `converted`.

    diffusers' LDM converters silently skip keys they do not know; this finds them by tensor identity, so
    the check also works on the meta device.
    """
    used = {id(_root(v)) for v in converted.values()}
    return [k for k, v in source.items() if id(_root(v)) not in used]


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple) else tuple(value.shape)


def check_state(
    expected: Mapping[str, Any], state: Mapping[str, Any], what: str, expected_missing: Iterable[str] = ()
) -> None:
    """Raise a ValueError naming every missing, unexpected or mis-shaped key of `state` against `expected`
    (a model's ``state_dict()`` or a layout of shapes); keys in `expected_missing` may be absent."""
    allowed = set(expected_missing)
    missing = [k for k in expected if k not in state and k not in allowed]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: {_shape(state[k])} vs expected {_shape(expected[k])}"
        for k in state
        if k in expected and _shape(state[k]) != _shape(expected[k])
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            problems.append(f"{len(keys)} {label}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}")
    if problems:
        raise ValueError(f"{what} does not match the configured model; " + "; ".join(problems))
