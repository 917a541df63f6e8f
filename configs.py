"""One config style for every frozen dataclass config of cavnet (store, fusion, training, fine-tuning).

``Config`` gives a frozen dataclass ``to_dict`` (plain JSON types, nested configs included) and
``from_dict``, which rebuilds nested configs and tuples and refuses keys the class does not have with a
``CavnetError`` naming them: a config written by another version is never half-read in silence. Missing
keys take the field's default, so a config written before a field was added still loads.

Validation helpers raise ``CavnetError`` too, so a bad value from the command line or from a file ends as
one line and exit code 2.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

from cavnet.errors import CavnetError

C = TypeVar("C", bound="Config")


class Config:
    """Mixin for ``@dataclass(frozen=True)`` configs: ``to_dict`` / ``from_dict`` / ``to_json`` / ``from_json``."""

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON types (tuples become lists, nested configs dicts)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str = "") -> C:
        """Inverse of ``to_dict``; unknown keys are refused naming them (``source`` says where they came from)."""
        if not isinstance(data, dict):
            raise CavnetError(f"{source or cls.__name__}: expected a mapping of {cls.__name__} fields, "
                              f"got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise CavnetError(f"{source or cls.__name__}: unknown field(s) {', '.join(unknown)} of "
                              f"{cls.__name__} (written by another cavnet version?)")
        hints = typing.get_type_hints(cls)
        values = {name: _coerce(hints[name], value, f"{source or cls.__name__}.{name}")
                  for name, value in data.items()}
        return cls(**values)

    @classmethod
    def from_json(cls: type[C], text: str, source: str = "") -> C:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise CavnetError(f"{source or cls.__name__}: not a JSON config ({exc})") from None
        return cls.from_dict(data, source)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Nested configs from dicts, tuples from lists; everything else as it is (the class validates it)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or len(options) != 1:
            return value
        hint = options[0]
    if isinstance(hint, type) and issubclass(hint, Config) and isinstance(value, dict):
        return hint.from_dict(value, where)
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        return tuple(value)
    return value


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise CavnetError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise CavnetError(f"{name} must be an integer >= {minimum}, not {value!r}")


def check_number(name: str, value: Any, minimum: float, positive: bool = False, below: float | None = None) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum
    ok = ok and (not positive or value > 0) and (below is None or value < below)
    if not ok:
        bounds = f"> {minimum}" if positive else f">= {minimum}"
        bounds += f" and < {below}" if below is not None else ""
        raise CavnetError(f"{name} must be a number {bounds}, not {value!r}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise CavnetError(f"{name} must be true or false, not {value!r}")
