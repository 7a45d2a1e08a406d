"""``make audit``: pip-audit over the installed dependencies, with a verdict that does not
hide what could not be checked.

Exit 0: every dependency was audited and none has a known vulnerability. Exit 1: a known
vulnerability. Exit 3: some dependencies could not be audited (the vulnerability service does
not know their versions, or cannot be reached); the report names how many.
"""

from __future__ import annotations

import json
import subprocess
import sys


def main() -> int:
    run = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--vulnerability-service", "pypi", "--skip-editable",
         "--progress-spinner", "off", "--format", "json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    try:
        report = json.loads(run.stdout)
    except ValueError:
        print(f"pip-audit gave no report (exit {run.returncode}): {run.stderr.strip()[-500:]}")
        return 3
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    vulnerable = [d for d in deps if d.get("vulns")]
    audited = len(deps) - len(skipped)
    print(f"dependencies: {len(deps)}; audited: {audited}; could not be audited: {len(skipped)}; "
          f"with known vulnerabilities: {len(vulnerable)}")  # fmt: skip
    for dep in vulnerable:
        ids = ", ".join(v["id"] for v in dep["vulns"])
        print(f"  {dep['name']} {dep.get('version', '')}: {ids}")
    if vulnerable:
        return 1
    if skipped:
        print("  not audited (first 5): " + "; ".join(d["skip_reason"] for d in skipped[:5]))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
