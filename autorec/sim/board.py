"""Electrode board geometry: a grid of cells, each an electrode wired to one pin.

The simulated board is shaped like a misl_v4.1 board's main array: a
rectangular grid of square electrodes whose pin numbers do not follow the
grid order (boards are routed, not numbered row by row), plus a few pins
that sit off the grid (reservoirs). Capacitance scan group 0 is the
reservoirs plus two rows of the grid, where the demo scenario's drops come
and go, so `group_capacitance` steps when a drop enters or leaves it.

Contract: `pin_at(cell)` and `cell_of(pin)` are inverse on the grid; pins are
unique and below `PIN_COUNT`; cells are `(col, row)` with 0 <= col < cols,
0 <= row < rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PIN_COUNT = 128
SCAN_GROUP0_ROWS = (5, 6)  # these grid rows belong to capacitance scan group 0 (misl_v4.1)

Cell = tuple[int, int]


@dataclass(frozen=True)
class Board:
    """A named electrode grid with its pin map."""

    name: str
    cols: int
    rows: int
    pins: dict[Cell, int]
    # Pins in capacitance scan group 0 (as pdserver reports them in electrode_state.scan_groups[0]);
    # group_capacitance.measurements[0] is the capacitance of the drops on them.
    scan_pins: tuple[int, ...] = ()
    _cells: dict[int, Cell] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cells = {pin: cell for cell, pin in self.pins.items()}
        if len(cells) != len(self.pins):
            raise ValueError(f"board {self.name}: two cells share a pin")
        if any(not 0 <= pin < PIN_COUNT for pin in cells):
            raise ValueError(f"board {self.name}: pins must be below {PIN_COUNT}")
        object.__setattr__(self, "_cells", cells)

    def pin_at(self, cell: Cell) -> int:
        return self.pins[cell]

    def cell_of(self, pin: int) -> Cell | None:
        return self._cells.get(pin)

    def contains(self, cell: Cell) -> bool:
        return 0 <= cell[0] < self.cols and 0 <= cell[1] < self.rows

    def neighbours(self, cell: Cell) -> list[Cell]:
        """The up to four cells sharing an edge with `cell` (drops move only along edges)."""
        c, r = cell
        return [n for n in ((c + 1, r), (c - 1, r), (c, r + 1), (c, r - 1)) if self.contains(n)]


def misl_v41() -> Board:
    """A 14 x 8 grid (112 electrode pins) plus off-grid reservoir pins, routed like a real board.

    The pin order is a fixed scramble so that pin numbers are not row-major,
    as on real boards; it is deterministic so logs stay comparable.
    """
    cols, rows = 14, 8
    # 112 grid pins drawn from 0..127 leaving out the reservoir pins, in a
    # stride order (37 is coprime with 128) so neighbours have unrelated pins.
    reservoir = (4, 7, 22, 24, 104, 105)
    order = [p for p in ((i * 37 + 11) % PIN_COUNT for i in range(PIN_COUNT)) if p not in reservoir]
    pins = {(c, r): order[r * cols + c] for r in range(rows) for c in range(cols)}
    # Scan group 0: the reservoirs (as upstream's simulator) and grid rows 5-6. With the reservoirs
    # alone no simulated drop ever reached the group (drops move on the grid) and its capacitance
    # stayed at 0; with these rows the demo scenario's bursts move drops in and out of the group
    # (seed 0: 9 times in the first 200 simulated seconds; every seed tried: at least once).
    group0 = reservoir + tuple(sorted(pins[(c, r)] for r in SCAN_GROUP0_ROWS for c in range(cols)))
    return Board(name="misl_v4.1", cols=cols, rows=rows, pins=pins, scan_pins=group0)


BOARDS = {"misl_v4.1": misl_v41}


def board_named(name: str) -> Board:
    try:
        return BOARDS[name]()
    except KeyError:
        raise ValueError(f"unknown board {name!r} (boards: {', '.join(BOARDS)})") from None
