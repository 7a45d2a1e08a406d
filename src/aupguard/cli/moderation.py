"""The ``moderation`` commands of the ``aupguard`` CLI: ``moderation eval``.

``eval`` is a dry run by construction: it builds the policy's moderator chain alone, with
no engine, so nothing it judges becomes a strike, an audit record or a review item, and
nothing reaches Claude. What it computes is :mod:`aupguard.moderation.evaluation`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import logging
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ..errors import AupguardError
from ..moderation.chain import ModerationChain
from ..moderation.evaluation import FORMATS, read_lines, render, report
from ..moderation.results import ModerationResult
from ..moderation.setup import build_chain
from .support import LoadPolicy, positive

__all__ = ["add_moderation_commands"]


@contextlib.contextmanager
def _lines(path: Path) -> Iterator[Iterable[str]]:
    """The file's text lines, gunzipped when it is gzip (by its first bytes, not its name)."""
    try:
        with path.open("rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        raw = gzip.open(path, "rt", encoding="utf-8") if gzipped else path.open(encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise AupguardError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        yield raw
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # a truncated .gz, bytes that are not UTF-8
        raise AupguardError(f"cannot read {path}: {exc}") from None
    finally:
        raw.close()


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width if total == 0 else width * done // total
    end = "\n" if done == total else ""
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} moderated", end=end, file=sys.stderr, flush=True)


async def _judge_all(
    chain: ModerationChain, texts: Sequence[str], concurrency: int
) -> list[tuple[ModerationResult, float]]:
    """Each text's outcome and the chain's time on it (ms), ``concurrency`` at once."""
    gate = asyncio.Semaphore(concurrency)
    out: list[tuple[ModerationResult, float] | None] = [None] * len(texts)
    step = max(1, len(texts) // 100)
    done = 0

    async def judge(i: int) -> None:
        nonlocal done
        async with gate:
            started = time.perf_counter()
            result = await chain.arun(texts[i])
            out[i] = (result, (time.perf_counter() - started) * 1000)
        done += 1
        if done % step == 0 or done == len(texts):
            _progress(done, len(texts))

    try:
        await asyncio.gather(*(judge(i) for i in range(len(texts))))
    finally:
        for moderator in chain.moderators:
            aclose = getattr(moderator, "aclose", None)
            if aclose is not None:
                await aclose()
    return [item for item in out if item is not None]


def _eval(args: argparse.Namespace, load_policy: LoadPolicy) -> int:
    policy = load_policy(args.eval_policy or args.policy)
    if policy.moderation.mode == "off":
        raise AupguardError('[moderation] mode is "off": there is no chain to evaluate')
    chain = build_chain(policy.moderation, None, secrets.token_bytes(32))
    if not chain:
        raise AupguardError("the policy configures no moderator: nothing to evaluate")
    with _lines(Path(args.file)) as lines:
        samples, format, skipped = read_lines(lines, args.format, args.limit)
    if skipped:
        print(f"{skipped} sample(s) without any label skipped", file=sys.stderr)
    quiet = logging.getLogger("aupguard.moderation")
    level, quiet.level = quiet.level, logging.ERROR  # failures are summed up below, not logged one by one
    started = time.perf_counter()
    try:
        judged = asyncio.run(_judge_all(chain, [s.text for s in samples], args.concurrency))
    finally:
        quiet.setLevel(level)
    elapsed = time.perf_counter() - started
    errors = Counter(error for result, _ in judged for error in result.errors)
    scored = [
        (sample, result, ms) for sample, (result, ms) in zip(samples, judged, strict=True) if not result.unavailable
    ]
    result = report(
        [sample for sample, _, _ in scored], [r.flagged for _, r, _ in scored], [ms for _, _, ms in scored], format
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(render(result, len(judged) / elapsed if elapsed > 0 else 0.0))
    if errors:
        unscored = len(samples) - len(scored)
        print(f"moderator failures on {sum(1 for _, (r, _) in zip(samples, judged, strict=True) if r.errors)} "
              f"sample(s), {unscored} not scored:", file=sys.stderr)  # fmt: skip
        for error, count in errors.most_common():
            print(f"  {count} × {error}", file=sys.stderr)
        return 1
    return 0


def add_moderation_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], load_policy: LoadPolicy) -> None:
    moderation = sub.add_parser("moderation", help="the moderator chain: eval")
    msub = moderation.add_subparsers(dest="moderation_command", required=True, metavar="ACTION")
    about = "run the policy's moderator chain over a labeled JSONL file (.gz too) and print precision and recall"
    p = msub.add_parser("eval", help=about, description=about + " (a dry run: no strikes, records or review items)")
    p.add_argument("file", metavar="FILE", help="labeled samples, one JSON object a line; gzip-compressed or not")
    p.add_argument("--policy", dest="eval_policy", metavar="P", help="policy TOML file (as the global --policy)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="openai | jsonl (default: by the first record)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--limit", type=positive, metavar="N", help="only the first N samples")
    p.add_argument("--concurrency", type=positive, default=4, metavar="N", help="samples in flight (default 4)")
    p.set_defaults(func=lambda args: _eval(args, load_policy))
