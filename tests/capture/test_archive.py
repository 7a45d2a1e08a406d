"""The archive of captures to S3-compatible storage, against a real S3 server (moto's) on
127.0.0.1: JSONL per day, still encrypted, a manifest, forget reaching archived text,
resuming after a failure, several runs at once, and CLI errors without tracebacks."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from aupguard import PolicyError, Safeguards, generate_key_entry
from aupguard.capture.archive import archive_captures, read_archive
from aupguard.capture.s3 import S3Objects
from aupguard.cli import main
from aupguard.cli.archive import Progress
from aupguard.policy import Policy
from aupguard.policy.archive import parse_s3_url
from aupguard.stores import store_from_uri
from aupguard.testing import free_port
from tests.capture.test_recorder import CAPTURE
from tests.conftest import DAY, Clock, MakeGuard
from tests.support.s3_server import S3, SECRET

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("capture_key")]


@pytest.fixture
def capture_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CAPTURE_KEY", generate_key_entry("c1"))


def _captures(guard: Safeguards, clock: Clock, users: dict[str, int], *, days: int = 1) -> None:
    """``users[name]`` prompts per user per day, over ``days`` UTC days ending yesterday."""
    for day in range(days):
        for name, count in users.items():
            for i in range(count):
                guard.check(name, prompt=f"{name} secret prompt {day}-{i}")
        clock.advance(DAY)
    guard.audit.flush()


def _lines(bucket: S3) -> list[dict[str, Any]]:
    rows = []
    for key in bucket.names():
        if "/captures/" in key:
            data = bucket.get(key)
            rows += [json.loads(line) for line in (gzip.decompress(data) if key.endswith(".gz") else data).splitlines()]
    return rows


def _objects(bucket: S3, prefix: str = "caps") -> tuple[Any, S3Objects]:
    target = parse_s3_url(f"s3://{bucket.bucket}/{prefix}")
    return target, S3Objects(target, endpoint_url=bucket.url)


def _common(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_entry: str, extra: str = "") -> list[str]:
    policy = tmp_path / "p.toml"
    policy.write_text(f"[capture]\nenabled = true\nkey_env = 'TEST_CAPTURE_KEY'\nretention = '7d'\n{extra}")
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)
    return ["--policy", str(policy), "--store", f"sqlite:///{tmp_path / 'aupguard.db'}"]


def test_archive_writes_one_encrypted_jsonl_object_per_day_and_a_manifest(
    make_guard: MakeGuard, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_entry: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    clock = Clock(time.time() - 3 * DAY)
    guard = make_guard(CAPTURE, clock=clock)
    _captures(guard, clock, {"alice": 2, "bob": 1}, days=2)
    guard.close()
    # the destination comes from the policy key, as a cron job runs it
    common = _common(tmp_path, monkeypatch, key_entry, f"archive = 's3://{s3.bucket}/caps'\n")
    assert main([*common, "capture", "archive", "--endpoint-url", s3.url]) == 0
    out = capsys.readouterr()
    assert "6 captures archived in 2 objects" in out.out
    assert "part 0: 3 captures" in out.err  # plain progress lines when not on a terminal
    keys = s3.names()
    assert keys[-1] == "caps/manifest.json" and len(keys) == 3
    assert all(k.startswith("caps/captures/day=") and k.endswith("/part-0000.jsonl.gz") for k in keys[:2])
    manifest = json.loads(s3.get("caps/manifest.json"))
    assert manifest["aupguard_version"] == "0.1.0" and manifest["format"] == "aupguard-capture-archive"
    assert [d["captures"] for d in manifest["days"].values()] == [3, 3]
    for part in manifest["parts"]:
        assert hashlib.sha256(s3.get(part["key"])).hexdigest() == part["sha256"]
        assert part["master_key_ids"] == ["c1"] and part["hash_key_ids"] == [key_entry.partition(":")[0]]
    rows = _lines(s3)
    assert len(rows) == 6 and {r["user_hash"] for r in rows} == {guard.hash_user("alice"), guard.hash_user("bob")}
    raw = b"".join(gzip.decompress(s3.get(k)) for k in keys[:2])
    assert b"secret prompt" not in raw and b"alice" not in raw  # ciphertext and hashes only
    # read back with the key ring and the store's data keys
    assert main([*common, "capture", "read-archive", "--endpoint-url", s3.url]) == 0
    out = capsys.readouterr()
    texts = sorted(json.loads(line)["text"] for line in out.out.splitlines())
    assert texts == sorted(f"{u} secret prompt {d}-{i}" for u, n in {"alice": 2, "bob": 1}.items()
                           for d in range(2) for i in range(n))  # fmt: skip
    # a second run has nothing new: no object is written twice
    assert main([*common, "capture", "archive", "--endpoint-url", s3.url]) == 0
    assert "0 captures archived in 0 objects" in capsys.readouterr().out and s3.names() == keys
    assert SECRET not in out.out + out.err


def test_forget_makes_a_users_archived_text_unreadable(
    make_guard: MakeGuard, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_entry: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    clock = Clock(time.time() - 2 * DAY)
    guard = make_guard(CAPTURE, clock=clock)
    _captures(guard, clock, {"alice": 3, "bob": 2})
    guard.close()
    common = _common(tmp_path, monkeypatch, key_entry)
    to = ["--to", f"s3://{s3.bucket}/caps", "--endpoint-url", s3.url]
    assert main([*common, "capture", "archive", *to]) == 0
    archived_before = _lines(s3)
    assert main([*common, "capture", "forget", "alice"]) == 0
    assert "archived copies are unreadable" in capsys.readouterr().out
    assert main([*common, "capture", "read-archive", "--from", f"s3://{s3.bucket}/caps", "--endpoint-url", s3.url]) == 0
    out = capsys.readouterr()
    assert sorted(json.loads(line)["text"] for line in out.out.splitlines()) == [
        "bob secret prompt 0-0",
        "bob secret prompt 0-1",
    ]
    assert "3 unreadable (their user was forgotten)" in out.err
    assert _lines(s3) == archived_before  # the objects are untouched: their ciphertext stays, unreadable
    # directly: every one of alice's archived rows opens to nothing with the key ring and the store
    reader = make_guard(CAPTURE)
    target, objects = _objects(s3)
    opened = list(read_archive(reader.capture, objects, target))
    alice = reader.hash_user("alice")
    assert sum(1 for r in archived_before if r["user_hash"] == alice) == 3
    assert [o.user_hash for o in opened if o is not None] == [reader.hash_user("bob")] * 2
    assert opened.count(None) == 3


class FailingAfter:
    """The real object store, failing (as a network fault would) on the ``n``-th capture object."""

    def __init__(self, objects: S3Objects, n: int) -> None:
        self.objects, self.n, self.puts = objects, n, 0

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        if "/captures/" in key:
            self.puts += 1
            if self.puts == self.n:
                raise ConnectionError("network down mid-run")
        self.objects.put(key, data, content_type=content_type)

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)


def test_an_interrupted_run_is_continued_by_the_next_without_duplicates(make_guard: MakeGuard, s3: S3) -> None:
    clock = Clock(time.time() - 2 * DAY)
    guard = make_guard(CAPTURE, clock=clock)
    _captures(guard, clock, {"alice": 5, "bob": 4})  # 9 captures, 2 per object: 5 objects
    target, objects = _objects(s3)
    failing = FailingAfter(objects, 3)
    with pytest.raises(ConnectionError):
        archive_captures(guard.store, failing, target, clock=clock, part_size=2)
    assert len(s3.names()) == 2  # two objects written, the third failed, no manifest yet
    run = archive_captures(guard.store, objects, target, clock=clock, part_size=2)
    assert (run.parts, run.captures, run.held) == (3, 5, 0)  # the failed part and the two never claimed
    rows = _lines(s3)
    ids = [(r["request_id"], r["kind"]) for r in rows]
    assert len(ids) == 9 and len(set(ids)) == 9  # every capture once
    manifest = json.loads(s3.get("caps/manifest.json"))
    assert [p["part"] for p in manifest["parts"]] == [0, 1, 2, 3, 4]
    assert sum(p["captures"] for p in manifest["parts"]) == 9


def test_a_part_left_by_a_killed_run_is_taken_over_when_its_lease_runs_out(make_guard: MakeGuard, s3: S3) -> None:
    clock = Clock(time.time() - 2 * DAY)
    guard = make_guard(CAPTURE, clock=clock)
    _captures(guard, clock, {"alice": 3})
    target, objects = _objects(s3)
    # a run that claimed a part and was killed (no release): its lease still holds
    day = time.strftime("%Y-%m-%d", time.gmtime(clock() - DAY))
    dead = guard.store.claim_archive_part(
        destination=target.url, day=day, start=0, end=clock(), owner="killed-run", lease_until=clock() + 300,
        limit=2, object_key=lambda n: target.key("captures", f"day={day}", f"part-{n:04d}.jsonl.gz"),
    )  # fmt: skip
    assert dead is not None
    run = archive_captures(guard.store, objects, target, clock=clock)
    assert (run.held, run.captures) == (1, 1)  # the live-looking lease is left alone
    clock.advance(301)
    run = archive_captures(guard.store, objects, target, clock=clock)
    assert (run.held, run.captures, run.written) == (0, 2, [dead.object_key])
    assert len({(r["request_id"], r["kind"]) for r in _lines(s3)}) == len(_lines(s3)) == 3


def test_rows_written_late_for_an_archived_day_become_its_next_part(make_guard: MakeGuard, s3: S3) -> None:
    clock = Clock(time.time() - 2 * DAY)
    guard = make_guard(CAPTURE, clock=clock)
    _captures(guard, clock, {"alice": 1})
    target, objects = _objects(s3)
    archive_captures(guard.store, objects, target, clock=time.time)
    clock.advance(-DAY + 60)  # a record of that day arrives late (replayed from the spill after an outage)
    _captures(guard, clock, {"bob": 1})
    run = archive_captures(guard.store, objects, target, clock=time.time, compress=False)
    assert run.written[0].endswith("/part-0001.jsonl") and run.captures == 1
    manifest = json.loads(s3.get("caps/manifest.json"))
    assert list(manifest["days"].values()) == [{"captures": 2, "parts": 2}]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_runs_at_once_archive_each_capture_once(
    backend: str, make_guard: MakeGuard, s3: S3, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    uri = request.getfixturevalue("pg_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'aupguard.db'}"
    clock = Clock(time.time() - 3 * DAY)
    guard = make_guard(CAPTURE, store=uri, clock=clock)
    _captures(guard, clock, {f"u{i}": 4 for i in range(10)}, days=2)  # 80 captures
    target, _ = _objects(s3)
    start = threading.Barrier(3)
    runs: list[Any] = []

    def worker() -> None:
        store = store_from_uri(uri)  # each "host" has connections of its own
        try:
            start.wait()
            runs.append(archive_captures(store, S3Objects(target, endpoint_url=s3.url), target, clock=time.time,
                                         part_size=3))  # fmt: skip
        finally:
            store.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(runs) == 3 and sum(r.captures for r in runs) == 80
    ids = [(r["request_id"], r["kind"]) for r in _lines(s3)]
    assert len(ids) == 80 and len(set(ids)) == 80
    written = [k for r in runs for k in r.written]
    assert len(written) == len(set(written))  # no object written by two runs


def test_cli_errors_name_the_problem_without_a_traceback_or_the_secret(
    make_guard: MakeGuard, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key_entry: str
) -> None:
    guard = make_guard(CAPTURE)
    guard.check("alice", prompt="hello")
    guard.close()
    common = _common(tmp_path, monkeypatch, key_entry)
    cli = [sys.executable, "-m", "aupguard", *common, "capture", "archive"]
    env = dict(os.environ)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], env=env, capture_output=True, text=True, timeout=60)

    missing = run("--to", "s3://no-such-bucket-here/x", "--endpoint-url", s3.url)
    assert missing.returncode == 2 and "bucket 'no-such-bucket-here'" in missing.stderr
    assert "does not exist" in missing.stderr
    down = run("--to", f"s3://{s3.bucket}/x", "--endpoint-url", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 75 and "cannot reach the object store" in down.stderr
    bad = run("--to", "s3://Bad_Bucket/x")
    assert bad.returncode == 2 and "--to" in bad.stderr
    creds = run("--to", f"s3://{s3.bucket}/x", "--endpoint-url", "http://key:hunter2@127.0.0.1:1")
    assert creds.returncode == 2 and "hunter2" not in creds.stderr
    for result in (missing, down, bad, creds):
        assert "Traceback" not in result.stderr + result.stdout
        assert SECRET not in result.stderr + result.stdout
    assert not s3.names()


def test_the_archive_policy_keys_are_validated_at_load() -> None:
    policy = Policy.from_mapping({"capture": {"archive": "s3://my-bucket/captures/", "archive_gzip": False}}, env={})
    assert (policy.capture.archive, policy.capture.archive_gzip) == ("s3://my-bucket/captures", False)
    with pytest.raises(PolicyError, match=r"capture\.archive"):
        Policy.from_mapping({"capture": {"archive": "https://my-bucket/captures"}}, env={})
    with pytest.raises(PolicyError, match=r"capture\.archive"):
        Policy.from_mapping({"capture": {"archive": "s3://x/../etc"}}, env={})
    with pytest.raises(PolicyError, match=r"capture\.archive_endpoint_url") as info:
        Policy.from_mapping({"capture": {"archive_endpoint_url": "https://id:secret@minio.local"}}, env={})
    assert "secret" not in str(info.value)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise() -> None:
    from aupguard.capture.archive import ArchiveRun
    from aupguard.stores.tables.capture_archive import ArchivePart

    part = ArchivePart("p", "s3://b/p", "2026-12-01", 0, "p/captures/day=2026-12-01/part-0000.jsonl.gz", "me", 0,
                       None, None, None, None, None)  # fmt: skip
    for stream in (Terminal(), io.StringIO()):
        progress = Progress(stream)
        run = ArchiveRun("s3://b/p", total=4)
        progress.start(run)
        run.captures, run.parts = 2, 1
        progress.part(run, part, 2)
        run.captures, run.parts = 4, 2
        progress.part(run, part, 2)
        progress.finish()
        shown = stream.getvalue()
        if isinstance(stream, Terminal):
            assert shown == f"\r[{'#' * 15}{'.' * 15}] 2/4 captures, 1 objects\r[{'#' * 30}] 4/4 captures, 2 objects\n"
        else:
            assert shown.splitlines() == [
                "archiving 4 captures to s3://b/p",
                "2026-12-01 part 0: 2 captures -> p/captures/day=2026-12-01/part-0000.jsonl.gz (2/4)",
                "2026-12-01 part 0: 2 captures -> p/captures/day=2026-12-01/part-0000.jsonl.gz (4/4)",
            ]
