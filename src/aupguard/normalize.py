"""Text normalisation for prompts: what is sent on (:func:`clean`) and what is matched
against allowlists, rules and the verdict cache (:func:`normalize`).

Users dodge filters with Unicode: full-width letters, invisible characters inside a word
(or a whole hidden instruction in tag characters), accents and strike-through marks over
letters, Cyrillic, Greek or Armenian letters that look Latin, ``nerve-agent`` for
``nerve agent``. :func:`clean` removes the invisible characters, so hidden text never
reaches a moderator or Claude; :func:`normalize` also applies NFKC, drops combining marks,
folds look-alike letters to Latin, folds case, reads ``-``, ``_`` and ``.`` as spaces and
collapses whitespace.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean", "normalize"]

# Letters that render like Latin ones (a subset of Unicode's confusables that matters for
# English keyword evasion), after case folding and with accents already removed.
_CONFUSABLES = {
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l",
    "ԍ": "g", "ɡ": "g", "ɑ": "a", "ı": "i", "ʙ": "b", "ʜ": "h", "ɪ": "i", "ʟ": "l", "ɴ": "n", "ʀ": "r",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ϲ": "c", "ω": "w", "օ": "o", "ս": "u", "ց": "g", "հ": "h", "ո": "n", "ռ": "n",
    "-": " ", "_": " ", ".": " ",
}  # fmt: skip
_TABLE = str.maketrans(_CONFUSABLES)
# Default-ignorable and format characters: soft hyphen, combining grapheme joiner, Arabic
# letter mark, Hangul fillers, Khmer inherent vowels, Mongolian separators and variation
# selectors, zero-width space/joiners, direction marks and isolates, word joiner and invisible
# operators, variation selectors, BOM, half-width filler, interlinear annotation marks,
# musical formatting marks, and the tag characters (which can spell a hidden instruction).
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
_MARKS = re.compile("[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def clean(text: str) -> str:
    """``text`` without invisible characters: what moderators and Claude are given."""
    return text if text.isascii() else _INVISIBLE.sub("", text)


def normalize(text: str) -> str:
    """The matching form of ``text`` (see the module docstring). Pure ASCII takes a fast path."""
    if text.isascii():
        return " ".join(text.lower().replace("-", " ").replace("_", " ").replace(".", " ").split())
    # invisible characters first, so NFKC sees the letters they split; then decompose and
    # drop combining marks (accents, strike-through) before folding look-alikes
    text = unicodedata.normalize("NFKD", _INVISIBLE.sub("", text))
    text = _MARKS.sub("", text).casefold().translate(_TABLE)
    return " ".join(unicodedata.normalize("NFKC", text).split())
