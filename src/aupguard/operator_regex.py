"""The operator's regular expressions (``[[moderation.rules]] patterns``, ``[prompts]
allowlist_patterns``, template variables' ``pattern``), compiled once, matched in linear time.

Why: Python's ``re`` backtracks, so a pattern like ``(a+)+$`` took 31 s on a 29-character
prompt, inline on the event loop. Patterns run on RE2 (``google-re2``), whose time grows
with the text, never exponentially. They are written in Python's syntax and mean what they
mean in Python; the few spellings RE2 reads differently are translated first:

* ``\\w \\d \\s`` (and ``\\W \\D \\S``) are Unicode classes, as in Python (RE2's are ASCII);
* ``\\Z`` is the end of the text, ``{,n}`` is ``{0,n}``, ``\\uXXXX`` and ``\\N{name}`` are
  characters, a ``[`` inside a class is a plain ``[``; the inline flags ``i m s`` stay, ``u``
  (a no-op for text) goes.

``\\b`` and ``\\B`` are the one difference left: RE2 sees a word boundary only between an
ASCII word character and anything else. On ASCII text that is Python's boundary exactly;
beside letters of other scripts it is not. So a pattern with ``\\b`` runs on RE2 for ASCII
text and on ``re`` for any other (rules and allowlists match the normal form of the text,
where accented Latin letters are plain ones, so that is text in other scripts).

A pattern RE2 cannot run as Python means it (a backreference, lookaround, ``(?x)``, a
repeat over 1000) runs on a backtracking engine: the ``regex`` module in its ``re``-
compatible version 0, so that each search is bounded by ``TIMEOUT`` (a polynomial shape such
as ``\bmake\b.*\bbomb\b`` over a long text, or ``(?=a)a*a*a*b``, is quadratic or worse, and
the attacker chooses the text). Past it the search raises :class:`PatternTimeout`. Whenever
it may run a pattern, the pattern is also refused at load if it has the shape that
backtracks exponentially: a repeated group that holds a repetition or an alternation
(``(a+)+``, ``(a|a)*``).
"""

from __future__ import annotations

import functools
import importlib
import re
import unicodedata
from typing import Any

import re2
import regex

from .errors import AupguardError

__all__ = ["TIMEOUT", "OperatorRegex", "PatternTimeout", "compile_operator_regex", "fullmatch"]

# Python's Unicode classes, spelled for RE2 (inside a [...] class: without the brackets)
_WORD = r"\p{L}\p{N}_"
_DIGIT = r"\p{Nd}"
_SPACE = r"\s\x{0B}\x{1C}-\x{1F}\x{85}\p{Z}"
_OUTSIDE = {"w": f"[{_WORD}]", "W": f"[^{_WORD}]", "d": _DIGIT, "D": r"\P{Nd}", "s": f"[{_SPACE}]",
            "S": f"[^{_SPACE}]", "Z": r"\z"}  # fmt: skip
_INSIDE = {"w": _WORD, "d": _DIGIT, "s": _SPACE}
_FLAGS = re.compile(r"\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])")
_MIN_OMITTED = re.compile(r"\{,(\d*)\}")


#: Seconds a search on the backtracking engine may take before it gives up.
TIMEOUT = 0.01


class PatternTimeout(AupguardError):
    """A search on the backtracking engine ran past ``TIMEOUT``: the text was made to make
    the pattern backtrack. The rules moderator fails (``[moderation] fail`` applies); the
    prompt policy refuses the prompt."""

    def __init__(self, pattern: str) -> None:
        super().__init__(f"a pattern ran past {TIMEOUT} s on the backtracking engine")
        self.pattern = pattern


class _Unsupported(Exception):
    """The pattern uses something this translation does not give RE2: ``re`` runs it."""


class OperatorRegex:
    """One compiled operator pattern. ``engine`` is ``"re2"`` or ``"re"`` (the fallback);
    ``unicode`` is the ``re`` twin of an RE2 pattern with ``\\b``, for text beyond ASCII."""

    __slots__ = ("compiled", "engine", "pattern", "unicode")

    @property
    def backtracks(self) -> bool:
        """Whether some text runs this pattern on the backtracking engine."""
        return self.engine != "re2" or self.unicode is not None

    def __init__(self, pattern: str, compiled: Any, engine: str, unicode: re.Pattern[str] | None = None) -> None:
        self.pattern = pattern
        self.compiled = compiled
        self.engine = engine
        self.unicode = unicode

    def _for(self, text: str) -> tuple[Any, bool]:
        """The compiled pattern for ``text``, and whether it backtracks (then it runs with a time bound)."""
        if self.unicode is None or text.isascii():
            return self.compiled, self.engine != "re2"
        return self.unicode, True

    def search(self, text: str) -> bool:
        """Whether the pattern is found in ``text``. On the backtracking engine a search is
        bounded by ``TIMEOUT`` seconds: past it, :class:`PatternTimeout` (a text built to make
        the pattern backtrack must not hold the thread, or the event loop, for minutes)."""
        compiled, bounded = self._for(text)
        if not bounded:
            return compiled.search(text) is not None
        try:
            return compiled.search(text, timeout=TIMEOUT) is not None
        except TimeoutError:
            raise PatternTimeout(self.pattern) from None

    def fullmatch(self, text: str) -> bool:
        compiled, bounded = self._for(text)
        if not bounded:
            return compiled.fullmatch(text) is not None
        try:
            return compiled.fullmatch(text, timeout=TIMEOUT) is not None
        except TimeoutError:
            raise PatternTimeout(self.pattern) from None


@functools.lru_cache(maxsize=4096)
def compile_operator_regex(pattern: str, *, ignore_case: bool) -> OperatorRegex:
    """Compile ``pattern`` (Python syntax) for matching; ``ValueError`` saying why when it is
    not a valid Python regex or may run on ``re`` with a catastrophic shape. Cached: the
    loader's check compiles what the moderator and prompt policy then use."""
    flags = re.IGNORECASE if ignore_case else 0
    try:
        re.compile(pattern, flags)  # Python must read it as a regex: the operator writes Python syntax
    except (re.error, OverflowError, RecursionError):
        raise ValueError("not a valid regular expression") from None
    try:
        translated, boundary = _translate(pattern)
        options = re2.Options()
        options.case_sensitive = not ignore_case
        options.log_errors = False  # RE2 prints refusals to stderr otherwise
        fast = re2.compile(translated, options)
    except (_Unsupported, re2.error):
        fast, boundary = None, False
    if fast is None or boundary:  # re runs it, on all text or on text beyond ASCII
        problem = _catastrophic(pattern, flags)
        if problem:
            needs = "a word boundary \\b" if fast is not None else "a backreference or lookaround"
            raise ValueError(f"{problem} in a pattern with {needs}, which runs on the backtracking engine")
    slow = _backtracking(pattern, ignore_case) if fast is None or boundary else None
    if fast is None:
        return OperatorRegex(pattern, slow, "re")
    return OperatorRegex(pattern, fast, "re2", slow)


def _backtracking(pattern: str, ignore_case: bool) -> Any:
    """``pattern`` on the ``regex`` module: Python's syntax and meaning (its version 0 is
    ``re``'s), with a time bound on each search."""
    return regex.compile(pattern, (regex.IGNORECASE if ignore_case else 0) | regex.VERSION0)


def fullmatch(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    """Whether ``pattern`` (validated at load) matches the whole of ``text``; compiled once."""
    return compile_operator_regex(pattern, ignore_case=ignore_case).fullmatch(text)


def _translate(pattern: str) -> tuple[str, bool]:
    """``pattern`` in RE2's spelling with Python's meaning (see the module docstring), and
    whether it tests word boundaries."""
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    boundary = False
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            i += 2
            if nxt in "bB" and not in_class:
                boundary = True
                out.append("\\" + nxt)
            elif nxt in "uU":
                width = 4 if nxt == "u" else 8
                out.append(f"\\x{{{pattern[i : i + width]}}}")
                i += width
            elif nxt == "N":
                end = pattern.index("}", i)
                out.append(re2.escape(unicodedata.lookup(pattern[i + 1 : end])))
                i = end + 1
            elif in_class:
                if nxt in "WDS":
                    raise _Unsupported
                out.append(_INSIDE.get(nxt, "\\" + nxt))
            else:
                out.append(_OUTSIDE.get(nxt, "\\" + nxt))
            continue
        if in_class:
            if ch == "]" and not _class_start(out):
                in_class = False
            elif ch == "[":
                ch = "\\["  # Python reads a literal [, RE2 a [:alpha:] class
            out.append(ch)
        elif ch == "[":
            in_class = True
            out.append(ch)
        elif ch == "(" and pattern.startswith("(?", i):
            flags = _FLAGS.match(pattern, i)
            if flags is None:
                out.append(ch)
            else:
                out.append(_flag_group(*flags.groups()))
                i = flags.end()
                continue
        elif ch == "{" and (omitted := _MIN_OMITTED.match(pattern, i)) is not None:
            out.append(f"{{0,{omitted.group(1)}}}")
            i = omitted.end()
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out), boundary


def _class_start(out: list[str]) -> bool:
    """Whether a ``]`` now would be the first character of the class (so a literal)."""
    return bool(out) and (out[-1] == "[" or (out[-1] == "^" and len(out) > 1 and out[-2] == "["))


def _flag_group(on: str, off: str | None, end: str) -> str:
    if set(on + (off or "")) - set("imsu"):
        raise _Unsupported  # (?x), (?a), (?L): re runs the pattern as written
    on, off = on.replace("u", ""), (off or "").replace("u", "")
    spelled = on + (f"-{off}" if off else "")
    if end == ")":
        return f"(?{spelled})" if spelled else ""
    return f"(?{spelled}:" if spelled else "(?:"


# -- the catastrophic shapes, read off Python's own parse of the pattern ----------------------

_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT}


def _catastrophic(pattern: str, flags: int) -> str | None:
    """What makes ``pattern`` backtrack exponentially, or None."""
    return _walk(_parser.parse(pattern, flags), inside=False)


def _walk(items: Any, inside: bool) -> str | None:
    for op, av in items:
        found: str | None = None
        if op in _REPEATS:
            low, high, sub = av
            repeats = high == _c.MAXREPEAT or high > 1
            if inside and low != high:
                return "a repetition inside a repeated group (like (a+)+)"
            found = _walk(sub, inside or repeats)
        elif op is _c.BRANCH:
            if inside:
                return "an alternation inside a repeated group (like (a|b)*)"
            found = _first(_walk(branch, inside) for branch in av[1])
        elif op is _c.SUBPATTERN:
            found = _walk(av[3], inside)
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            found = _walk(av[1], inside)
        elif op is _c.ATOMIC_GROUP:
            found = _walk(av, inside)
        elif op is _c.GROUPREF_EXISTS:
            found = _first(_walk(branch, inside) for branch in av[1:] if branch is not None)
        if found:
            return found
    return None


def _first(problems: Any) -> str | None:
    return next((p for p in problems if p), None)
