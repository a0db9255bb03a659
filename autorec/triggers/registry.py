"""Finding trigger classes by the name a rule file gives.

A rule's `trigger:` is one of
- a built-in name (`electrodes`, `movement`, `threshold`, `message`, `interval`, `motion`,
  `missed-move`);
- a name registered by an installed package in the `autorec.triggers` entry-point group;
- `package.module:Class` (a module importable from the environment, or a `.py` file in the
  rule file's directory).

Built-in modules are imported lazily, one at a time, so a built-in whose module or
dependencies are missing (e.g. the camera trigger) only fails the rules that use it.
Every failure is a `TriggerLookupError` whose message says what is wrong and what is
known, ready for a `file:line:` prefix.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from autorec.triggers.base import Trigger
from autorec.triggers.fields import suggest

ENTRY_POINT_GROUP = "autorec.triggers"

# name -> "module:Class" for the built-in triggers.
BUILTINS: dict[str, str] = {
    "electrodes": "autorec.triggers.electrodes:ElectrodesTrigger",
    "movement": "autorec.triggers.movement:MovementTrigger",
    "threshold": "autorec.triggers.threshold:ThresholdTrigger",
    "message": "autorec.triggers.message:MessageTrigger",
    "interval": "autorec.triggers.interval:IntervalTrigger",
    "motion": "autorec.triggers.motion:MotionTrigger",
    "missed-move": "autorec.triggers.missedmove:MissedMoveTrigger",
}


class TriggerLookupError(LookupError):
    """A trigger name could not be resolved to a Trigger class."""


@dataclass(frozen=True)
class TriggerInfo:
    """What `autorec plugins` shows for one trigger name."""

    name: str
    origin: str  # "built-in" or "plugin <distribution>"
    target: str  # module:Class
    cls: type[Trigger] | None
    error: str | None = None


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def known_names() -> list[str]:
    """Built-in names plus installed entry-point names, sorted, without importing anything."""
    return sorted(set(BUILTINS) | {ep.name for ep in _entry_points()})


def _check_class(obj: object, where: str) -> type[Trigger]:
    if not (isinstance(obj, type) and issubclass(obj, Trigger)):
        raise TriggerLookupError(f"{where} is not a Trigger subclass (see autorec.triggers.base)")
    return obj


def _import_target(target: str, search_dir: Path | None = None) -> type[Trigger]:
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # A module not installed may be a .py file beside the rule file.
        if exc.name == module_name.split(".")[0] and search_dir is not None and _module_file(module_name, search_dir):
            sys.path.insert(0, str(search_dir))
            try:
                module = importlib.import_module(module_name)
            except Exception as inner:
                raise TriggerLookupError(f"cannot import {module_name}: {type(inner).__name__}: {inner}") from None
        else:
            raise TriggerLookupError(f"cannot import {module_name}: {exc}") from None
    except Exception as exc:  # a plugin module that raises on import
        raise TriggerLookupError(f"cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    obj = getattr(module, class_name, None)
    if obj is None:
        classes = [
            n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Trigger) and v is not Trigger
        ]
        hint = suggest(class_name, classes)
        raise TriggerLookupError(
            f"module {module_name} has no {class_name!r}{hint} (Trigger classes there: {', '.join(classes) or 'none'})"
        )
    return _check_class(obj, target)


def _module_file(module_name: str, search_dir: Path) -> bool:
    first = module_name.split(".")[0]
    return (search_dir / f"{first}.py").is_file() or (search_dir / first / "__init__.py").is_file()


def resolve(name: str, search_dir: Path | None = None) -> type[Trigger]:
    """The Trigger class for a rule's `trigger:` value. Raises TriggerLookupError."""
    if ":" in name:
        module_name, _, class_name = name.partition(":")
        if not module_name or not class_name.isidentifier():
            raise TriggerLookupError(f"expected package.module:Class, got {name!r}")
        return _import_target(name, search_dir)
    if name in BUILTINS:
        try:
            return _import_target(BUILTINS[name])
        except TriggerLookupError as exc:
            raise TriggerLookupError(f"built-in trigger {name!r} is not available here: {exc}") from None
    for ep in _entry_points():
        if ep.name == name:
            try:
                obj = ep.load()
            except Exception as exc:
                raise TriggerLookupError(
                    f"plugin {name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
                ) from None
            return _check_class(obj, f"plugin {name!r} ({ep.value})")
    known = known_names()
    raise TriggerLookupError(
        f"unknown trigger {name!r}{suggest(name, known)} (known: {', '.join(known)}; or package.module:Class)"
    )


def available() -> Iterator[TriggerInfo]:
    """Every built-in and installed plugin trigger, loaded (with the error if one fails to load)."""
    for name, target in BUILTINS.items():
        try:
            yield TriggerInfo(name, "built-in", target, _import_target(target))
        except TriggerLookupError as exc:
            yield TriggerInfo(name, "built-in", target, None, str(exc))
    for ep in sorted(_entry_points(), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        origin = f"plugin {dist.name} {dist.version}" if dist is not None else "plugin"
        try:
            cls = _check_class(ep.load(), f"plugin {ep.name!r}")
            yield TriggerInfo(ep.name, origin, ep.value, cls)
        except Exception as exc:
            yield TriggerInfo(ep.name, origin, ep.value, None, f"{type(exc).__name__}: {exc}")
