"""The folder tree is the layer diagram: each package of `autorec/` imports only from layers below it.

Every `import autorec.X` and `from autorec.X import ...` counts, at the top of a module or inside a
function alike (a deferred import is still a dependency). A package may import itself; anything
else must stand lower in `LAYERS`. The order, bottom first:

- the vocabulary every layer shares (protocol, units, dates, events, the output directory's names
  and records, the optional extras, frame decoding);
- `triggers` (the Trigger API and the built-in triggers), then `core` (the sans-I/O pipeline);
- `io` (files and sockets), then `media` (frames to thumbnails and video) and `sim` (the simulated rig);
- `services` (what attaches to a run), `rules` (the rule-file loader, which checks hook commands
  against `services.hooks`), then `runs` (the wiring of a run) and `calibration` (`autorec calibrate`'s
  phases and proposal);
- `report` (an output directory read back for people), `web` (the web UI), `commands`, `cli`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "autorec"

LAYERS: list[set[str]] = [
    {"proto", "dates", "extras", "frames", "rig", "__version__"},
    {"units"},
    {"events", "outdir", "readable"},
    {"triggers"},
    {"core"},
    {"io"},
    {"media", "sim"},
    {"services"},
    {"rules"},
    {"runs", "calibration"},
    {"report"},
    {"web"},
    {"commands"},
    {"cli"},
    {"__main__", "__init__"},  # the package's public face (`autorec.EventRecorder`, ...) and `python -m autorec`
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _unit(path: Path) -> str:
    """The layer unit of a module: its top-level package, or the module's own name at the top."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[str, int]]:
    """The `autorec` units `path` imports, with line numbers."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "autorec":
                continue
            if len(parts) > 1:
                out.append((parts[1], node.lineno))
            else:  # from autorec import X: X is a unit (a module or a package) or a name of the package's face
                out += [(a.name if a.name in RANK else "__init__", node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name.split(".")[1], node.lineno) for a in node.names if a.name.startswith("autorec.")]
    return out


def test_every_unit_has_a_layer() -> None:
    units = {_unit(p) for p in PACKAGE.rglob("*.py")}
    assert not units - set(RANK), f"give these a layer in LAYERS: {sorted(units - set(RANK))}"


def test_packages_import_only_downward() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(path)
        for target, line in _imports(path):
            if target != unit and RANK.get(target, -1) >= RANK[unit]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {unit} imports {target}")
    assert not wrong, "imports against the layer order (see this file's docstring):\n" + "\n".join(wrong)


def test_the_check_finds_an_upward_import(tmp_path: Path) -> None:
    """The parser sees deferred and `from autorec import` imports (so the test above can fail)."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from autorec.web.server import WebUI\n\nfrom autorec import outdir, rules\n")
    assert sorted(_imports(src), key=lambda i: i[1]) == [("web", 2), ("outdir", 4), ("rules", 4)]


def test_the_web_ui_uses_only_the_reports_public_names() -> None:
    """`from autorec.report... import _private` in web/ would tie the UI to the report's internals."""
    private = []
    for path in sorted((PACKAGE / "web").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autorec.report"):
                private += [f"{path.name}:{node.lineno}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert not private, private
