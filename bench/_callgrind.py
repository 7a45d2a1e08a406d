"""What the instruction-counting benchmarks share: a four-function C helper of callgrind's
client requests (from valgrind's ``callgrind.h``), compiled into a temporary directory, and a
run of the calling script under ``valgrind --tool=callgrind`` with instrumentation off until
the script starts it, one thread counted (``--separate-threads=yes``) and
``PYTHONHASHSEED=0``. Not a benchmark itself (bench/run.py skips modules whose name starts
with ``_``)."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["CHILD", "helper_library", "run_counted"]

HELPER = r"""
#include <valgrind/callgrind.h>
void bench_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void bench_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
void bench_zero(void) { CALLGRIND_ZERO_STATS; }
void bench_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
"""
CHILD = "AUPGUARD_BENCH_CALLGRIND_HELPER"  # set for the run under valgrind: the helper's path
_LABEL = re.compile(r"^desc: Trigger: Client Request: (\S+)$", re.MULTILINE)
_TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.MULTILINE)


def helper_library() -> ctypes.CDLL | None:
    """Under valgrind: the compiled helper (``bench_start``, ``bench_zero``, ``bench_dump``,
    ``bench_stop``); None in the parent run."""
    path = os.environ.get(CHILD)
    if not path:
        return None
    lib = ctypes.CDLL(path)
    lib.bench_dump.argtypes = [ctypes.c_char_p]
    return lib


def _compile(folder: Path, name: str) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or shutil.which("valgrind") is None:
        raise SystemExit(f"{name} needs valgrind and a C compiler (apt-get install valgrind gcc)")
    source, helper = folder / "callgrind_helper.c", folder / "callgrind_helper.so"
    source.write_text(HELPER, encoding="utf-8")
    subprocess.run([compiler, "-O1", "-shared", "-fPIC", "-o", str(helper), str(source)], check=True)
    return helper


def _dumps(folder: Path) -> dict[str, int]:
    """Ir of each labelled dump callgrind wrote into ``folder`` (the calling thread's)."""
    found = {}
    for path in folder.glob("callgrind.out.*"):
        text = path.read_text(encoding="utf-8", errors="replace")
        label, total = _LABEL.search(text), _TOTAL.search(text)
        if label is not None and total is not None:
            found[label.group(1)] = int(total.group(1))
    return found


def run_counted(script: Path, name: str) -> dict[str, int] | None:
    """Run ``script`` under callgrind; the instructions of each labelled dump it made (None,
    with valgrind's error printed, when the run failed)."""
    with tempfile.TemporaryDirectory(prefix="aupguard-callgrind-") as tmp:
        folder = Path(tmp)
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
                   f"--callgrind-out-file={folder}/callgrind.out.%p", sys.executable, str(script)]  # fmt: skip
        env = {**os.environ, CHILD: str(_compile(folder, name)), "PYTHONHASHSEED": "0"}
        print(f"{name}: PYTHONHASHSEED=0 {' '.join(command[:4])} python {script.name}")
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            return None
        return _dumps(folder)
