"""What a request's pieces of text are judged as: units (pure functions, no I/O).

Neighbouring pieces are gathered into a unit until it holds ``UNIT`` characters (a piece
longer than that is a unit of its own), and each unit is judged with the end of the text
before it (``CONTEXT`` characters, from a word boundary). So a phrase cut across two blocks,
two turns or a system prompt and a turn is seen whole; a body of thousands of one-word turns
costs a remote moderator one call per ``UNIT`` characters, not one per turn; and since a
unit's bounds depend only on what comes before it, the units of earlier turns are the same
on every turn of a conversation and hit the verdict cache: a new turn costs the unit it
lands in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ..engine.pieces import Piece

__all__ = ["CONTEXT", "UNIT", "Unit", "screening_units"]

#: Characters of the text before a unit that it is judged with.
CONTEXT = 240
#: Characters of new text a unit gathers before the next one starts.
UNIT = 2000


class Unit(NamedTuple):
    """Pieces judged together, and the text they are judged as (context first)."""

    pieces: tuple[Piece, ...]
    text: str

    @property
    def places(self) -> tuple[str, ...]:
        return tuple(p.where for p in self.pieces)


def screening_units(pieces: Sequence[Piece]) -> list[Unit]:
    """The units of a request's pieces, in order (see the module docstring)."""
    units: list[Unit] = []
    before = ""
    group: list[Piece] = []
    size = 0
    for i, piece in enumerate(pieces):
        group.append(piece)
        size += len(piece.text)
        if size < UNIT and i + 1 < len(pieces):
            continue
        text = "\n".join(p.text for p in group)
        whole = f"{before}\n{text}" if before else text
        units.append(Unit(tuple(group), whole))
        before = tail(whole)
        group, size = [], 0
    return units


def tail(text: str) -> str:
    """The last ``CONTEXT`` characters of ``text``, from the first character that is not a
    letter or digit (a cut word does not pass for a whole one); all of them when there is no
    such character."""
    if len(text) <= CONTEXT:
        return text
    end = text[-CONTEXT:]
    cut = next((i for i, ch in enumerate(end) if not ch.isalnum()), None)
    return end if cut is None else end[cut:]
