"""How one setting is described, parsed and checked: :class:`Option`, and :func:`option`, which makes a
:class:`~mnist_folders.settings.Setting` field of one. The flags, the validation, the TOML file and the
generated docs all read these descriptions."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import SettingError


@dataclass(frozen=True)
class Option:
    """How one setting is described, parsed and checked.

    Attributes:
        help: one line for ``--help`` and the generated tables.
        group: one of :data:`GROUPS`.
        kind: ``int``, ``float``, ``str``, ``bool`` or ``names`` (a list of strings).
        choices: the allowed strings (or a function returning them); for an
            ``int`` kind, words accepted besides integers (``epochs = "auto"``).
        low, high: inclusive bounds of a number, or exclusive where
            ``low_open`` / ``high_open``.
        model_default: ``None`` means "the chosen model's own default" (from
            its :data:`~mnist_folders.registry.MODELS` entry).
        default_text: how the default reads in the docs when it is not the
            field's literal default.
        aliases: extra flag names.
        fixed_on_resume: the setting defines the model, its inputs or its
            data: ``--resume`` refuses a new value (the others apply to the
            remaining epochs).
        defines_model: the setting says what a trained model is: a model
            directory refuses a different value for predict, evaluate, ...
            (see :meth:`Setting.for_model`).
    """

    help: str
    group: str
    kind: str
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    model_default: bool = False
    default_text: str | None = None
    aliases: tuple[str, ...] = ()
    fixed_on_resume: bool = False
    defines_model: bool = False

    def allowed(self) -> tuple[str, ...]:
        return self.choices() if callable(self.choices) else self.choices

    def range_text(self) -> str:
        """``[0, 1)``-style text of the bounds; ``""`` when unbounded."""
        if self.low is None and self.high is None:
            return ""
        if self.high is None:
            return f"> {_num(self.low)}" if self.low_open else f">= {_num(self.low)}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"{left}{_num(self.low)}, {_num(self.high)}{right}"

    def range_phrase(self) -> str:
        """The bounds as words: ``at least 1``, ``greater than 0``, ``in (0, 1)``."""
        if self.high is None:
            return f"greater than {_num(self.low)}" if self.low_open else f"at least {_num(self.low)}"
        return f"in {self.range_text()}"

    def check(self, name: str, value: Any) -> None:
        """Raise :class:`SettingError` naming ``name`` when ``value`` breaks this description."""
        allowed = self.allowed()
        if isinstance(value, str) and self.kind == "int" and value in allowed:
            return
        if not _has_kind(value, self.kind):
            words = f" or one of {', '.join(allowed)}" if self.kind == "int" and allowed else ""
            raise SettingError(f"{name} must be of type {self.kind}{words}. Received: {name}={value!r}")
        if self.kind == "str" and allowed and value not in allowed:
            raise SettingError(f"{name} must be one of {', '.join(allowed)}. Received: {name}={value!r}")
        if self.kind in ("int", "float") and not self._in_range(value):
            raise SettingError(f"{name} must be {self.range_phrase()}. Received: {name}={value!r}")

    def _in_range(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _has_kind(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "names":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, str)


def option(default: Any, help: str, group: str, kind: str | None = None, **rules: Any) -> Any:
    """A dataclass field described by an :class:`Option` (``kind`` inferred from ``default``)."""
    kind = kind or {bool: "bool", int: "int", float: "float", str: "str"}[type(default)]
    return dataclasses.field(default=default, metadata={"option": Option(help, group, kind, **rules)})
