"""Text normalisation for prompts: what is sent on (:func:`clean`) and what is matched
against allowlists and rules (:func:`normalize`).

Users dodge filters with Unicode: full-width or mathematical letters, invisible characters
inside a word (or a whole hidden instruction in tag characters), accents and strike-through
marks over letters, Cyrillic, Greek, Armenian, Cherokee or Lisu letters and small capitals
that look Latin, ``nerve-agent`` or ``nerve/agent`` for ``nerve agent``. The classes are
Unicode properties (the ``regex`` module's tables), not fixed ranges, so characters added to
a property later are covered too:

- :func:`clean` removes every default-ignorable and format character (``Cf``): zero-width
  spaces and joiners, direction marks, variation selectors, tag characters. Hidden text never
  reaches a moderator or Claude.
- :func:`normalize` also decomposes (NFKD, which folds full-width and mathematical letters),
  removes every combining mark (``M``), folds case and look-alike letters to Latin, reads
  punctuation (``P``), symbols (``S``) and control characters (``Cc``) as spaces,
  recomposes (NFKC) and collapses whitespace. Fillers that render as a blank (Hangul
  fillers, the Braille blank) are spaces, in :func:`clean` too: what a reader sees.

What keyword rules cannot catch (leetspeak, letters spaced out, encodings such as base64 or
rot13, another language) is for the model moderators: see docs/moderation.md.
"""

from __future__ import annotations

import string
import unicodedata

import regex

__all__ = ["clean", "normalize"]

# Letters that render like Latin ones (the part of Unicode's confusables that matters for
# English keyword evasion), after case folding and with accents already removed.
_CONFUSABLES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l",
    "ԍ": "g", "ɡ": "g", "ɑ": "a", "ı": "i", "ѡ": "w", "ү": "y", "ҽ": "e",
    # small capitals and other Latin look-alikes (IPA, phonetic extensions)
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ꜰ": "f", "ɢ": "g", "ʜ": "h", "ɪ": "i",
    "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ǫ": "q", "ʀ": "r",
    "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z", "ɩ": "i", "ʋ": "u",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ϲ": "c", "ω": "w", "ϳ": "j", "ζ": "z",
    # Armenian
    "օ": "o", "ս": "u", "ց": "g", "հ": "h", "ո": "n", "ռ": "n", "ք": "p", "զ": "q",
    # Cherokee (case folding keeps the capital letters)
    "Ꭰ": "d", "Ꭱ": "r", "Ꭲ": "t", "Ꭵ": "i", "Ꭹ": "y", "Ꭺ": "a", "Ꭻ": "j",
    "Ꭼ": "e", "Ꮃ": "w", "Ꮇ": "m", "Ꮋ": "h", "Ꮍ": "y", "Ꮐ": "g", "Ꮒ": "h",
    "Ꮓ": "z", "Ꮟ": "b", "Ꮢ": "r", "Ꮤ": "w", "Ꮥ": "s", "Ꮩ": "v", "Ꮪ": "s",
    "Ꮮ": "l", "Ꮯ": "c", "Ꮲ": "p", "Ꮶ": "k", "Ᏼ": "b",
    # Lisu (no case)
    "ꓮ": "a", "ꓐ": "b", "ꓚ": "c", "ꓓ": "d", "ꓰ": "e", "ꓝ": "f", "ꓖ": "g", "ꓧ": "h", "ꓲ": "i",
    "ꓙ": "j", "ꓗ": "k", "ꓡ": "l", "ꓟ": "m", "ꓠ": "n", "ꓳ": "o", "ꓑ": "p", "ꓣ": "r", "ꓢ": "s",
    "ꓔ": "t", "ꓴ": "u", "ꓦ": "v", "ꓪ": "w", "ꓫ": "x", "ꓬ": "y", "ꓜ": "z",
}  # fmt: skip
_TABLE = str.maketrans(_CONFUSABLES)
# Capitals that look like another Latin letter than their small letter does (Greek Ν is N,
# ν is v): folded before case folding
_CAPITALS = str.maketrans({
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o",
    "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x", "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h",
    "О": "o", "Р": "p", "С": "c", "Т": "t", "Х": "x", "У": "y",
})  # fmt: skip
# Fillers that render as a blank are what they look like, a space (removed, ``nerveㅤagent``
# would read as one word to the rules, and as two to a person)
_BLANKS = regex.compile("[\u115f\u1160\u3164\uffa0\u2800]")
_INVISIBLE = regex.compile(r"[\p{Default_Ignorable_Code_Point}\p{Cf}]")
_MARKS = regex.compile(r"\p{M}")
_SEPARATORS = regex.compile(r"[\p{P}\p{S}\p{Cc}]")
# ASCII punctuation and symbols, and control characters, read as spaces
_ASCII = str.maketrans({c: " " for c in string.punctuation} | {chr(c): " " for c in (*range(32), 127)})

_LIGHT = str.maketrans({"-": " ", "_": " ", ".": " "})


def clean(text: str) -> str:
    """``text`` without invisible characters (a filler that renders as a blank becomes a
    space): what moderators and Claude are given."""
    return text if text.isascii() else _INVISIBLE.sub("", _BLANKS.sub(" ", text))


def normalize(text: str, *, punctuation: bool = True) -> str:
    """The matching form of ``text`` (see the module docstring). Pure ASCII takes a fast path.

    ``punctuation=False`` keeps punctuation but ``-``, ``_`` and ``.`` (the allowlist's form:
    an allowed pattern must not match once quotes, brackets or semicolons are read away)."""
    if text.isascii():
        return " ".join(text.lower().translate(_ASCII if punctuation else _LIGHT).split())
    # invisible characters first, so the decomposition sees the letters they split; then
    # drop combining marks (accents, strike-through) before folding look-alikes
    text = unicodedata.normalize("NFKD", _INVISIBLE.sub("", _BLANKS.sub(" ", text)))
    text = unicodedata.normalize("NFKC", _MARKS.sub("", text).translate(_CAPITALS).casefold().translate(_TABLE))
    text = _SEPARATORS.sub(" ", text) if punctuation else text.translate(_LIGHT)
    return " ".join(text.split())
