"""Named regions of an image, as options of "where is the difference" questions.

Two wordings of the same 3x3 grid: names ("top left", "middle centre") and coordinates ("row 1,
column 1", all the same length, which the writer switches to when option lengths give the answer
away); plus the four quadrants of a 2x2 grid for differences that straddle 3x3 cells.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROW_NAMES = ("top", "middle", "bottom")
COL_NAMES = ("left", "centre", "right")
QUADRANT_NAMES = ("upper left quadrant", "upper right quadrant", "lower left quadrant", "lower right quadrant")
STYLES = ("names", "coords", "quadrants")


@dataclass(frozen=True)
class Region:
    """One cell of a grid, normalised xyxy."""

    grid: int  # 3 (3x3 cells) or 2 (quadrants)
    row: int
    col: int

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Normalised xyxy of the cell."""
        g = self.grid
        return (self.col / g, self.row / g, (self.col + 1) / g, (self.row + 1) / g)

    @property
    def key(self) -> str:
        """Canonical id ("g3r0c2"), the same whatever the wording."""
        return f"g{self.grid}r{self.row}c{self.col}"


def all_regions(style: str) -> list[Region]:
    """Every region of the grid a style uses, in reading order."""
    g = 2 if style == "quadrants" else 3
    return [Region(g, r, c) for r in range(g) for c in range(g)]


def region_text(region: Region, style: str) -> str:
    """The option text of a region in a style."""
    if style == "quadrants":
        return QUADRANT_NAMES[region.row * 2 + region.col]
    if style == "coords":
        return f"row {region.row + 1}, column {region.col + 1}"
    return f"{ROW_NAMES[region.row]} {COL_NAMES[region.col]}"


def grid_note(style: str, image: str = "the image") -> str:
    """The sentence a question appends so that its region options say which grid they name."""
    if style == "quadrants":
        return f"The options name the four quadrants of {image}."
    if style == "coords":
        return f"The options name cells of a 3 x 3 grid over {image}: row 1 is the top, column 1 the left."
    return f"The options name cells of a 3 x 3 grid over {image} (rows top/middle/bottom, columns left/centre/right)."


_COORDS = re.compile(r"row\s+(\d)\s*,\s*column\s+(\d)", re.IGNORECASE)


def parse_region(text: str) -> Region | None:
    """The region an option text names (any style), or None."""
    t = " ".join(text.lower().split())
    m = _COORDS.search(t)
    if m:
        r, c = int(m.group(1)) - 1, int(m.group(2)) - 1
        return Region(3, r, c) if 0 <= r < 3 and 0 <= c < 3 else None
    if t in QUADRANT_NAMES:
        i = QUADRANT_NAMES.index(t)
        return Region(2, i // 2, i % 2)
    parts = t.split()
    if len(parts) == 2 and parts[0] in ROW_NAMES and parts[1] in COL_NAMES:
        return Region(3, ROW_NAMES.index(parts[0]), COL_NAMES.index(parts[1]))
    return None


def region_containing(box: tuple[float, float, float, float], grid: int, margin: float = 0.0) -> Region | None:
    """The grid cell that wholly contains a normalised box (shrunk by `margin` of a cell), or None."""
    x1, y1, x2, y2 = box
    g = grid
    col, row = int(min(g - 1, (x1 + x2) / 2 * g)), int(min(g - 1, (y1 + y2) / 2 * g))
    cell = Region(g, row, col)
    cx1, cy1, cx2, cy2 = cell.box
    m = margin / g
    if x1 >= cx1 + m - 1e-9 and y1 >= cy1 + m - 1e-9 and x2 <= cx2 - m + 1e-9 and y2 <= cy2 - m + 1e-9:
        return cell
    return None
