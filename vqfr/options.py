"""The command line's spelling of a configured thing, shared by ``--method`` and ``--metrics``:
a comma-separated list of ``NAME[:key=value[:key=value]]``, tuples joined by ``+``."""
from __future__ import annotations

from typing import Any

from vqfr.errors import VqfrError

TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def split_list(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"a,b:x=1+2"`` -> ``["a", "b:x=1+2"]``; a list of such strings is flattened."""
    parts = [text] if isinstance(text, str) else list(text)
    return [m.strip() for part in parts for m in part.split(",") if m.strip()]


def key_values(where: str, pairs: list[str]) -> list[tuple[str, str]]:
    """``["a=1", "b=x"]`` -> ``[("a", "1"), ("b", "x")]``; anything else is an error starting
    with ``where``."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise VqfrError(f"{where}: expected key=value after ':', got {pair!r}")
        out.append((key.strip(), value.strip()))
    return out


def parse_value(text: str) -> Any:
    """A value whose type is not known in advance: int, float, true/false, ``a+b`` a tuple,
    else the text."""
    if "+" in text:
        return tuple(parse_value(t) for t in text.split("+") if t)
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def coerce(text: str, default: Any, where: str) -> Any:
    """``text`` as the type of ``default`` (bool, int, float; anything else stays text)."""
    if isinstance(default, bool):
        if text.lower() in TRUE:
            return True
        if text.lower() in FALSE:
            return False
        raise VqfrError(f"{where}: expected true or false, got {text!r}")
    for kind in (int, float):
        if isinstance(default, kind):
            try:
                return kind(text)
            except ValueError:
                raise VqfrError(f"{where}: expected {'an integer' if kind is int else 'a number'}"
                                f", got {text!r}") from None
    return text
