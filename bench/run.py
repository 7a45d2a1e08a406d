"""Run every benchmark in ``bench/`` (each module's ``main()``) in this one process, in
name order, and print what each reports. ``make bench`` runs this.

``python bench/run.py engine`` runs only the named modules. The exit status is non-zero if
any benchmark failed or reported failure (a non-zero return from its ``main()``).
"""

from __future__ import annotations

import importlib.util
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["main"]

BENCH_DIR = Path(__file__).resolve().parent


#: benchmarks run only when named: soak has a make target of its own, conversation_ir runs
#: under valgrind for minutes
SEPARATE = ("soak", "conversation_ir", "engine_ir")


def _name(path: Path) -> str:
    """A benchmark's name on the command line: ``bench_asgi.py`` is ``asgi``."""
    return path.stem.removeprefix("bench_")


def discover(names: Sequence[str] = ()) -> list[Path]:
    found = sorted(p for p in BENCH_DIR.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    if not names:
        return [p for p in found if _name(p) not in SEPARATE]
    by_name = {_name(p): p for p in found}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"no benchmark named {', '.join(unknown)}; available: {', '.join(by_name)}")
    return [by_name[n] for n in names]


def load(path: Path) -> ModuleType:
    # a distinct module name, so a benchmark called e.g. engine.py never shadows a real module
    spec = importlib.util.spec_from_file_location(f"aupguard_bench_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: Sequence[str] | None = None) -> int:
    failed: list[str] = []
    for path in discover(sys.argv[1:] if argv is None else argv):
        print(f"== {path.name}", flush=True)
        started = time.perf_counter()
        try:
            status = load(path).main()
        except Exception:
            traceback.print_exc()
            status = 1
        if status:
            failed.append(path.name)
        print(
            f"== {path.name}: {'FAILED' if status else 'done'} in {time.perf_counter() - started:.1f} s\n", flush=True
        )
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
