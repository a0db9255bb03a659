"""Copy the browser tests' screenshots into the docs (`docs/assets/screenshots/`).

The pages' pictures are never drawn by hand: the tests that drive the report and the web UI in a
real headless Chromium save them to `test-artifacts/`. Run the suite (or the browser tests), then
`python docs/screenshots.py`, and commit what changed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "test-artifacts"
TARGET = REPO / "docs" / "assets" / "screenshots"
SHOTS = (
    "report-top.png",
    "report-card.png",
    "web-live.png",
    "web-night.png",
    "web-segment.png",
    "review-filter-by-url.png",
    "review-export-done.png",
    "review-electrode-search.png",
    "lab-directories.png",
    "lab-store-night.png",
)


def main() -> int:
    missing = [name for name in SHOTS if not (SOURCE / name).is_file()]
    if missing:
        print(f"not in {SOURCE}: {', '.join(missing)} (run the browser tests first)", file=sys.stderr)
        return 1
    TARGET.mkdir(parents=True, exist_ok=True)
    for name in SHOTS:
        shutil.copyfile(SOURCE / name, TARGET / name)
        print(f"{TARGET.relative_to(REPO) / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
