"""The one way a text reaches a page: every report and web page escapes through here.

Text from the output directory (a directory, segment or rule name, evidence, a
status field, a problem line) may hold anything a file can: `<script>`, quotes
that end an attribute, `</title>`. The pages' own scripts build their DOM with
`textContent` (`autorec/web/static/*.js`); Python-made HTML uses:

- `text(value)`: for element content and quoted attribute values (`&`, `<`,
  `>`, both quotes escaped; control characters but tab and newline dropped);
- `url_part(value)`: one path segment of a URL (`/segment/NAME`), percent-encoded
  (a `/`, `?` or `#` in a name stays inside it), then escaped for the attribute.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from typing import Any

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def text(value: Any) -> str:
    """`value` as HTML text (see the module docstring)."""
    return html.escape(_CONTROL.sub("", str(value)), quote=True)


def url_part(value: Any) -> str:
    """`value` as one percent-encoded URL path segment, escaped for an attribute."""
    return text(urllib.parse.quote(str(value), safe=""))
