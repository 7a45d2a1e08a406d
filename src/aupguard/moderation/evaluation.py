"""What ``aupguard moderation eval`` computes (pure): labeled samples from JSONL lines, the
confusion counts per label and overall, and the report (as JSON and as text).

Two layouts are read. ``openai``: OpenAI's moderation-api-release, ``{"prompt": ...}`` with
0/1 keys ``S H V HR SH S3 H2 V2`` (a missing or null key: unlabeled for that label).
``jsonl``: ``{"text": ..., "flagged": bool, "categories": [...]}``, each category seen in
the file a label (absent: 0). A sample is positive overall when any label is 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import AupguardError

__all__ = [
    "OPENAI_LABELS",
    "Counts",
    "Sample",
    "detect_format",
    "parse_sample",
    "percentile",
    "read_lines",
    "render",
    "report",
]

#: OpenAI's moderation-api-release labels: sexual, hate, violence, harassment, self-harm,
#: sexual/minors, hate/threatening, violence/graphic
OPENAI_LABELS = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")
FORMATS = ("auto", "openai", "jsonl")


@dataclass(frozen=True, slots=True)
class Sample:
    """One labeled text. ``labels`` holds only the labels the sample is labeled for (a
    ``jsonl`` sample: its categories; absent labels count as 0 there, see ``report``)."""

    text: str
    positive: bool
    labels: Mapping[str, bool] = field(default_factory=dict)


@dataclass(slots=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, truth: bool, predicted: bool) -> None:
        if truth and predicted:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif truth:
            self.fn += 1
        else:
            self.tn += 1

    def as_dict(self) -> dict[str, int | float | None]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "precision": _ratio(self.tp, self.tp + self.fp),
            "recall": _ratio(self.tp, self.tp + self.fn),
            "f1": _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn),  # the harmonic mean, from the counts
            "fpr": _ratio(self.fp, self.fp + self.tn),
        }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def detect_format(record: Mapping[str, Any]) -> str:
    if "prompt" in record:
        return "openai"
    if "text" in record:
        return "jsonl"
    raise AupguardError('cannot tell the format: the first record has neither "prompt" (openai) nor "text" (jsonl)')


def parse_sample(line_number: int, record: object, format: str) -> Sample | None:
    """The sample of one decoded line; None for an ``openai`` sample with no label at all.
    A malformed record raises :class:`AupguardError` naming its line."""
    where = f"line {line_number}"
    if not isinstance(record, dict):
        raise AupguardError(f"{where}: not a JSON object")
    if format == "openai":
        text = record.get("prompt")
        if not isinstance(text, str):
            raise AupguardError(f'{where}: "prompt" must be a string')
        labels: dict[str, bool] = {}
        for label in OPENAI_LABELS:
            value = record.get(label)
            if value is None:
                continue
            if isinstance(value, bool) or value not in (0, 1):
                raise AupguardError(f"{where}: {label} must be 0 or 1, got {value!r}")
            labels[label] = value == 1
        if not labels:
            return None
        return Sample(text, any(labels.values()), labels)
    text, flagged, categories = record.get("text"), record.get("flagged"), record.get("categories", [])
    if not isinstance(text, str):
        raise AupguardError(f'{where}: "text" must be a string')
    if not isinstance(flagged, bool):
        raise AupguardError(f'{where}: "flagged" must be true or false')
    if not isinstance(categories, list) or not all(isinstance(c, str) and c for c in categories):
        raise AupguardError(f'{where}: "categories" must be a list of names')
    if categories and not flagged:
        raise AupguardError(f'{where}: "categories" given for a sample that is not flagged')
    return Sample(text, flagged, dict.fromkeys(categories, True))


def read_lines(lines: Iterable[str], format: str, limit: int | None) -> tuple[list[Sample], str, int]:
    """The samples of JSONL ``lines`` (blank lines skipped), the format used, and how many
    were skipped for having no label."""
    samples: list[Sample] = []
    skipped = 0
    for number, line in enumerate(lines, 1):
        if limit is not None and len(samples) >= limit:
            break
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AupguardError(f"line {number}: not JSON") from None
        if format == "auto":
            format = detect_format(record) if isinstance(record, dict) else "jsonl"
        sample = parse_sample(number, record, format)
        if sample is None:
            skipped += 1
        else:
            samples.append(sample)
    return samples, format, skipped


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile ``p`` (0-100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def report(
    samples: Sequence[Sample], predicted: Sequence[bool], latencies_ms: Sequence[float], format: str
) -> dict[str, Any]:
    """The ``--json`` object: ``samples``, ``overall``, ``labels`` and ``latency_ms``."""
    overall = Counts()
    names = list(OPENAI_LABELS) if format == "openai" else sorted({n for s in samples for n in s.labels})
    per_label = {name: Counts() for name in names}
    for sample, flagged in zip(samples, predicted, strict=True):
        overall.add(sample.positive, flagged)
        for name, counts in per_label.items():
            if format == "openai" and name not in sample.labels:
                continue  # unlabeled for this label
            counts.add(sample.labels.get(name, False), flagged)
    p50, p99 = percentile(latencies_ms, 50), percentile(latencies_ms, 99)
    return {
        "samples": len(samples),
        "overall": overall.as_dict(),
        "labels": {name: counts.as_dict() for name, counts in per_label.items()},
        "latency_ms": {"p50": None if p50 is None else round(p50, 2), "p99": None if p99 is None else round(p99, 2)},
    }


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def render(result: Mapping[str, Any], samples_per_second: float) -> str:
    """The report as a table for a terminal."""
    columns = ("tp", "fp", "fn", "tn", "precision", "recall", "f1", "fpr")
    rows = [("label", *columns), ("overall", *(_cell(result["overall"][c]) for c in columns))]
    rows += [(name, *(_cell(counts[c]) for c in columns)) for name, counts in result["labels"].items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns) + 1)]
    lines = [f"samples {result['samples']}"]
    lines += ["  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in
                        enumerate(zip(row, widths, strict=True))) for row in rows]  # fmt: skip
    latency = result["latency_ms"]
    lines.append(
        f"latency p50 {_cell(latency['p50'])} ms, p99 {_cell(latency['p99'])} ms; {samples_per_second:.1f} samples/s"
    )
    return "\n".join(lines)
