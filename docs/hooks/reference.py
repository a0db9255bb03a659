"""MkDocs hook: the generated reference pages, made from the code at build time so they cannot drift.

A page that holds a marker line gets it replaced: `<!-- autorec:cli -->` by every command and option
(from `autorec.cli.build_parser`), `<!-- autorec:rule-keys -->` by every rule-file key (from
`autorec.core.rulekeys`) and `<!-- autorec:triggers -->` by every built-in trigger's options (from
the triggers' `Option` declarations). `tests/test_docs.py` imports the same functions and checks
that nothing the code accepts is missing from them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _option_text(action: argparse.Action) -> str:
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.option_strings and action.nargs != 0:
        metavar = action.metavar or action.dest.upper()
        names += f" `{metavar if isinstance(metavar, str) else ' '.join(metavar)}`"
    return names


def cli_reference() -> str:
    """Markdown: one section per command, a table of its arguments and options."""
    from autorec.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for name, p in sub.choices.items():
        out.append(f"## `autorec {name}`\n")
        if p.description:
            out.append(_escape(p.description) + "\n")
        out.append("| argument | meaning | default |\n|---|---|---|")
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            default = action.default
            shown = "" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 else f"`{default}`"
            help_text = (action.help or "").replace("%(default)s", str(default)).replace("%%", "%")
            out.append(f"| {_option_text(action)} | {_escape(help_text)} | {shown} |")
        out.append("")
    return "\n".join(out)


def cli_options() -> set[str]:
    """Every `autorec VERB --option` the parser accepts (for the docs test)."""
    from autorec.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        f"autorec {name} {opt}"
        for name, p in sub.choices.items()
        for action in p._actions
        if not isinstance(action, argparse._HelpAction)
        for opt in action.option_strings
    }


def rule_keys_reference() -> str:
    from autorec.core import rulekeys

    out = ["Values: " + "; ".join(f"**{k}**: {v}" for k, v in rulekeys.KINDS.items()) + ".\n"]
    for section, title in rulekeys.SECTIONS:
        out.append(f"## {title}\n")
        out.append("| key | value | default | limits | meaning |\n|---|---|---|---|---|")
        for k in rulekeys.KEYS:
            if k.section == section:
                limits = "; ".join(k.limits())
                out.append(
                    f"| `{k.path}` | {k.kind} | `{_escape(k.default())}` | {_escape(limits)} | {_escape(k.help)} |"
                )
        out.append("")
    return "\n".join(out)


def triggers_reference() -> str:
    from autorec.triggers import registry

    out = []
    for name in sorted(registry.BUILTINS):
        cls = registry.resolve(name)
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        out.append(f"## `{name}`\n\n{_escape(doc)}\n")
        out.append("| option | type | default | limits | meaning |\n|---|---|---|---|---|")
        for o in cls.options:
            limits = ", ".join(o.limits())
            default = "required" if o.required else f"`{o.default!r}`"
            out.append(f"| `{o.name}` | {o.type} | {_escape(default)} | {_escape(limits)} | {_escape(o.help)} |")
        out.append("")
    return "\n".join(out)


MARKERS = {
    "<!-- autorec:cli -->": cli_reference,
    "<!-- autorec:rule-keys -->": rule_keys_reference,
    "<!-- autorec:triggers -->": triggers_reference,
}


def on_page_markdown(markdown: str, **kwargs) -> str:
    for marker, make in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
