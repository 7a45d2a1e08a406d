"""Text normalisation for matching end-user prompts against allowlists and rules.

Users dodge filters with Unicode: full-width letters, zero-width characters inside a word,
Cyrillic or Greek letters that look Latin. Matching runs on a normal form that undoes these:
NFKC, format characters (zero-width space, joiners, soft hyphen, BOM) removed, common
look-alike letters folded to Latin, case folded, whitespace collapsed to single spaces.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize"]

# Cyrillic and Greek letters that render like Latin ones (a subset of Unicode's
# confusables that matters for English keyword evasion), after case folding.
_CONFUSABLES = {
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ё": "e", "ї": "i",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ϲ": "c", "ɑ": "a", "ɡ": "g", "ı": "i",
}  # fmt: skip
_TABLE = str.maketrans(_CONFUSABLES)
_LOOKALIKE = re.compile("[" + "".join(_CONFUSABLES) + "]")
# Invisible format characters used to split words: soft hyphen, Arabic letter mark, Mongolian
# vowel separator, zero-width space/joiners, direction marks and embeddings, word joiner and
# invisible operators, BOM, interlinear annotation marks, and the tag characters.
_FORMAT = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000e0001\U000e0020-\U000e007f]"
)


def normalize(text: str) -> str:
    """The matching form of ``text`` (see the module docstring). Pure ASCII takes a fast path."""
    if text.isascii():
        return " ".join(text.lower().split())
    # invisible characters go first, so that NFKC sees the letters and accents they split;
    # look-alikes folded to Latin may compose with a following accent: NFKC once more
    text = unicodedata.normalize("NFKC", _FORMAT.sub("", text)).casefold()
    if _LOOKALIKE.search(text):  # translate costs ~10 µs per KB: only when there is work
        text = unicodedata.normalize("NFKC", text.translate(_TABLE))
    return " ".join(text.split())
