"""``make demo`` runs ``aupguard demo``: the walkthrough must show the whole ladder."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path


def test_demo_walks_through_the_ladder_on_embedded_defaults(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUPGUARD_")}
    done = subprocess.run(
        [sys.executable, "-m", "aupguard", "demo", "--dir", str(tmp_path / "demo")],
        env=env, capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "WARNING: no AUPGUARD_HASH_KEY set" in out
    for shown in [
        "alice  → demo_",  # hashed
        "anonymous → 401 authentication_required",
        "alice     → 403 terms_not_accepted",
        "→ level warned",
        "3 strikes → level throttled",
        "429 rate_limited  Retry-After",
        "5 strikes → level suspended",
        "403 user_suspended",
        "4 strikes → level throttled",  # the voided strike
        "level ok, 0 counting strikes",  # reinstated
        "reinstate     by operator:sam",
    ]:
        assert shown in out, shown
    assert "\033[" not in out  # no colour codes when not on a terminal
    key_file = tmp_path / "demo" / "hash-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert b"alice" not in (tmp_path / "demo" / "aupguard.db").read_bytes()
    # a second run reuses the persisted key: same hashes
    again = subprocess.run(
        [sys.executable, "-m", "aupguard", "demo", "--dir", str(tmp_path / "demo")],
        env=env, capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    first_hash = next(line for line in out.splitlines() if "alice  → " in line)
    assert first_hash in again.stdout


def test_examples_run(tmp_path: Path) -> None:
    from aupguard import generate_key_entry

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AUPGUARD_")}}
    env["AUPGUARD_HASH_KEY"] = generate_key_entry()
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(root / "examples" / "engine_basics.py")],
        env=env, capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "None 401 authentication_required",
        "u-42 403 terms_not_accepted",
        "u-42 200 59",
        "linked True True",
    ]
