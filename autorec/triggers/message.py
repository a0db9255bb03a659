"""`message`: a message of some kind arrived, optionally only when fields match.

```yaml
- {name: board-lost, trigger: message, kind: device_info, where: {connected: false}}
- {name: board-lost, trigger: message, where: {device_info.connected: false}}
```
`where` keys are field paths, with or without the kind prefix (the kind may be
given by `kind`, or by the prefix of the `where` keys); values are compared for
equality (numbers numerically). Every matching message fires.
"""

from __future__ import annotations

from typing import Any, ClassVar

from autorec.events import KINDS
from autorec.proto import PurpleDropEvent
from autorec.triggers.base import FiringResult, Option, StateView, Trigger
from autorec.triggers.fields import FieldPath, check_value, parse_path


class MessageTrigger(Trigger):
    name: ClassVar[str] = "message"
    description: ClassVar[str] = "a message of a kind arrived, optionally where fields equal given values"
    options: ClassVar[tuple[Option, ...]] = (
        Option("kind", "str", default=None, choices=KINDS, help="event kind (or give it as where-key prefix)"),
        Option("where", "dict", default={}, help="field: value pairs that must all match"),
    )
    kinds: ClassVar[frozenset[str] | None] = None  # set per instance

    def __init__(self, rule: str, **options: Any) -> None:
        super().__init__(rule, **options)
        kind = self.kind
        if kind is None:
            prefixes = {str(k).split(".")[0] for k in self.where} & set(KINDS)
            if len(prefixes) == 1:
                kind = next(iter(prefixes))
            else:
                raise ValueError(f"kind: missing (one of: {', '.join(KINDS)}; or prefix the where keys with it)")
        self._kind = kind
        self._where: list[tuple[FieldPath, Any]] = []
        for key, value in self.where.items():
            try:
                path = parse_path(str(key), kind)
                if path.kind != kind:
                    raise ValueError(f"{key!r} is a field of {path.kind}, not of {kind}")
                self._where.append((path, check_value(path, value)))
            except ValueError as exc:
                raise ValueError(f"where: {exc}") from None
        self.kinds = frozenset({kind})

    def feed(self, time: float, event: PurpleDropEvent, state: StateView) -> FiringResult:
        matched = {}
        for path, want in self._where:
            got = path.get(event)
            if got is None or got != want:
                return None
            matched[path.text] = got
        return self.fire(time, kind=self._kind, **({"where": matched} if matched else {}))
