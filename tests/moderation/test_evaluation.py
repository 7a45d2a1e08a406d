"""``aupguard moderation eval``: small files of both layouts with known counts (plain and
gzip), a few hundred generated samples through a guard model on the chat double, the dry
run, failures counted and not hidden, and bad input named by its line."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

import pytest

from aupguard.cli.main import main
from aupguard.moderation.evaluation import Counts, percentile
from aupguard.testing import CHAT_PATH, MessagesDouble, RecordedRequest, Reply

RULES = """
[storage]
store = "sqlite:///{tmp}/never.db"

[[moderation.rules]]
category = "violence"
keywords = ["stab", "shoot"]

[[moderation.rules]]
category = "hate"
keywords = ["vermin"]
"""


def write(path: Path, records: list[dict[str, Any]], *, gz: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in records)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def rules_policy(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES.format(tmp=tmp_path))
    return path


OPENAI_SAMPLES = [
    {"prompt": "I will stab him tonight", "S": 0, "H": 0, "V": 1, "HR": 0, "SH": 0, "S3": 0, "H2": 0, "V2": 0},  # tp
    {"prompt": "those people are vermin", "S": 0, "H": 1, "V": 0, "HR": 0},  # tp (V2... missing: unlabeled)
    {"prompt": "a quiet walk in the park", "S": 0, "H": 0, "V": 0, "HR": 0, "SH": 0, "S3": 0, "H2": 0, "V2": 0},  # tn
    {"prompt": "how to shoot a good photo", "S": 0, "H": 0, "V": 0},  # fp
    {"prompt": "a very explicit story", "S": 1, "H": 0, "V": 0, "HR": 0, "SH": 0, "S3": 0, "H2": 0, "V2": 0},  # fn
    {"prompt": "nothing labeled here"},  # no label at all: skipped
]


@pytest.mark.parametrize("gz", [False, True])
def test_openai_layout_known_counts(
    tmp_path: Path, rules_policy: Path, capsys: pytest.CaptureFixture[str], gz: bool
) -> None:
    data = write(tmp_path / ("samples.jsonl.gz" if gz else "samples.jsonl"), OPENAI_SAMPLES, gz=gz)
    code, out, err = run(capsys, "moderation", "eval", str(data), "--policy", str(rules_policy), "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"samples", "overall", "labels", "latency_ms"}
    assert result["samples"] == 5
    assert result["overall"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 1, "precision": 0.6667, "recall": 0.6667,
                                 "f1": 0.6667, "fpr": 0.5}  # fmt: skip
    assert list(result["labels"]) == ["S", "H", "V", "HR", "SH", "S3", "H2", "V2"]
    # V: labeled in samples 1-5; positive only in sample 1; flagged: 1, 2, 4
    assert result["labels"]["V"] | {} == {"tp": 1, "fp": 2, "fn": 0, "tn": 2, "precision": 0.3333, "recall": 1.0,
                                          "f1": 0.5, "fpr": 0.5}  # fmt: skip
    # S: positive only in sample 5, which nothing flags
    assert (
        result["labels"]["S"]["tp"] == 0 and result["labels"]["S"]["fn"] == 1 and result["labels"]["S"]["recall"] == 0.0
    )
    # V2: labeled in samples 1, 3 and 5 only, never positive: precision has no denominator
    assert result["labels"]["V2"] == {"tp": 0, "fp": 1, "fn": 0, "tn": 2, "precision": 0.0, "recall": None,
                                      "f1": 0.0, "fpr": 0.3333}  # fmt: skip
    assert set(result["latency_ms"]) == {"p50", "p99"} and result["latency_ms"]["p50"] >= 0
    assert "1 sample(s) without any label skipped" in err
    assert "5/5 moderated" in err  # the progress bar, on stderr
    assert not (tmp_path / "never.db").exists()  # a dry run: no store is opened, so no strike or record


def test_jsonl_layout_known_counts_and_the_text_report(
    tmp_path: Path, rules_policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = [
        {"text": "stab", "flagged": True, "categories": ["violence"]},  # tp
        {"text": "vermin everywhere", "flagged": True, "categories": ["hate", "harassment"]},  # tp
        {"text": "hello there", "flagged": False},  # tn
        {"text": "hello again", "flagged": False, "categories": []},  # tn
        {"text": "a subtle threat", "flagged": True, "categories": ["violence"]},  # fn
        {"text": "shoot the breeze", "flagged": False},  # fp
    ]
    data = write(tmp_path / "mine.jsonl", samples)
    code, out, _ = run(capsys, "--policy", str(rules_policy), "moderation", "eval", str(data), "--json")
    result = json.loads(out)
    assert code == 0 and result["samples"] == 6
    assert result["overall"] | {} == {"tp": 2, "fp": 1, "fn": 1, "tn": 2, "precision": 0.6667, "recall": 0.6667,
                                      "f1": 0.6667, "fpr": 0.3333}  # fmt: skip
    assert sorted(result["labels"]) == ["harassment", "hate", "violence"]
    assert result["labels"]["violence"] | {} == {"tp": 1, "fp": 2, "fn": 1, "tn": 2, "precision": 0.3333,
                                                 "recall": 0.5, "f1": 0.4, "fpr": 0.5}  # fmt: skip
    code, out, _ = run(capsys, "--policy", str(rules_policy), "moderation", "eval", str(data), "--limit", "3")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "samples 3"
    assert lines[1].split() == ["label", "tp", "fp", "fn", "tn", "precision", "recall", "f1", "fpr"]
    assert lines[2].split() == ["overall", "2", "0", "0", "1", "1.000", "1.000", "1.000", "0.000"]
    assert "samples/s" in lines[-1] and "latency p50" in lines[-1]


# -- a few hundred generated samples through a guard model ----------------------------------


def _guard_answer(request: RecordedRequest) -> Reply:
    text = request.body["messages"][-1]["content"]
    if "garbled" in text:
        return Reply(text="I am not able to classify that")
    return Reply(text="unsafe\nS1" if "VIOLENT" in text else "safe")


def _guard_policy(tmp_path: Path, url: str, fail: str = "closed") -> Path:
    path = tmp_path / "guard.toml"
    path.write_text(
        f'[moderation]\nfail = "{fail}"\n[[moderation.guard]]\nurl = "{url}"\nmodel = "llama-guard3:1b"\n'
        'format = "llama-guard-3"\n'
    )
    return path


def _generated(n: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Counts]:
    """The same samples in both layouts, and the counts a perfect-on-VIOLENT guard gives."""
    rng = random.Random(seed)
    openai, mine, expected = [], [], Counts()
    for i in range(n):
        violent, labeled, caught = rng.random() < 0.3, rng.random() < 0.8, rng.random() < 0.75
        # a violent sample the guard catches says VIOLENT; one it misses does not; a few clean ones do
        says = (violent and caught) or (not violent and rng.random() < 0.05)
        text = f"sample {i} {'VIOLENT' if says else 'calm'} {rng.random()}"
        expected.add(violent, says)
        openai.append({"prompt": text, "V": int(violent), "H": 0} | ({"S": 0} if labeled else {}))
        mine.append({"text": text, "flagged": violent, "categories": ["violence"] if violent else []})
    return openai, mine, expected


@pytest.mark.parametrize("layout", ["openai", "jsonl"])
def test_a_few_hundred_generated_samples(
    tmp_path: Path, messages_double: MessagesDouble, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    messages_double.chat.responder = _guard_answer
    openai, mine, expected = _generated(300, seed=16)
    data = write(tmp_path / f"gen-{layout}.jsonl.gz", openai if layout == "openai" else mine, gz=True)
    policy = _guard_policy(tmp_path, messages_double.chat_url)
    argv = ["moderation", "eval", str(data), "--policy", str(policy), "--format", layout, "--json"]
    code, out, err = run(capsys, *argv, "--concurrency", "8")
    assert code == 0, err
    result = json.loads(out)
    assert result["samples"] == 300
    assert result["overall"] == expected.as_dict()
    label = "V" if layout == "openai" else "violence"
    assert result["labels"][label] == expected.as_dict()  # every sample is labeled for violence
    assert len(messages_double.requests_to(CHAT_PATH)) == 300  # one call per distinct text
    if layout == "openai":  # S is labeled in about 80 % of the samples and never positive
        labeled_s = sum(1 for record in openai if "S" in record)
        assert result["labels"]["S"]["fp"] + result["labels"]["S"]["tn"] == labeled_s < 300


def test_failures_are_counted_not_hidden(
    tmp_path: Path, messages_double: MessagesDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    messages_double.chat.responder = _guard_answer
    records = [{"text": f"garbled {i}", "flagged": False} for i in range(3)]
    records += [{"text": "VIOLENT one", "flagged": True}, {"text": "calm one", "flagged": False}]
    data = write(tmp_path / "some-fail.jsonl", records)
    policy = _guard_policy(tmp_path, messages_double.chat_url, fail="closed")
    code, out, err = run(capsys, "moderation", "eval", str(data), "--policy", str(policy), "--json")
    assert code == 1
    result = json.loads(out)
    assert result["samples"] == 2 and result["overall"]["tp"] == 1 and result["overall"]["tn"] == 1
    assert "moderator failures on 3 sample(s), 3 not scored" in err
    assert "3 × llama-guard-3: unparseable answer" in err
    policy = _guard_policy(tmp_path, messages_double.chat_url, fail="open")
    code, out, err = run(capsys, "moderation", "eval", str(data), "--policy", str(policy), "--json")
    assert code == 1 and json.loads(out)["samples"] == 5 and "0 not scored" in err  # scored as the chain went on


@pytest.mark.parametrize(
    ("content", "message"),
    [('{"prompt": "a", "V": 1}\nnot json\n', "line 2: not JSON"),
     ('{"prompt": "a", "V": 2}\n', "line 1: V must be 0 or 1, got 2"),
     ('{"text": "a"}\n', 'line 1: "flagged" must be true or false'),
     ('{"text": "a", "flagged": false, "categories": ["hate"]}\n', "line 1: \"categories\" given for a sample"),
     ('{"neither": 1}\n', "cannot tell the format"),
     ('[1, 2]\n', "line 1: not a JSON object")],
)  # fmt: skip
def test_bad_input_names_its_line(
    tmp_path: Path, rules_policy: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(content)
    code, _, err = run(capsys, "--policy", str(rules_policy), "moderation", "eval", str(data))
    assert code == 2 and message in err


def test_the_wrong_layout_and_a_missing_file_are_errors(
    tmp_path: Path, rules_policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write(tmp_path / "o.jsonl", OPENAI_SAMPLES[:1])
    code, _, err = run(capsys, "--policy", str(rules_policy), "moderation", "eval", str(data), "--format", "jsonl")
    assert code == 2 and '"text" must be a string' in err
    code, _, err = run(capsys, "--policy", str(rules_policy), "moderation", "eval", str(tmp_path / "none.jsonl"))
    assert code == 2 and "cannot read" in err
    (tmp_path / "broken.jsonl.gz").write_bytes(gzip.compress(b'{"text": "a", "flagged": false}\n' * 50)[:30])
    code, _, err = run(capsys, "--policy", str(rules_policy), "moderation", "eval", str(tmp_path / "broken.jsonl.gz"))
    assert code == 2 and "cannot read" in err


def test_a_policy_without_moderators_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.toml").write_text("")
    data = write(tmp_path / "o.jsonl", OPENAI_SAMPLES[:1])
    code, _, err = run(capsys, "moderation", "eval", str(data), "--policy", str(tmp_path / "empty.toml"))
    assert code == 2 and "no moderator" in err


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
