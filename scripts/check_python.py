"""Stop early, with a message, when the Python running make is too old or lacks venv."""

import sys

# ruff: noqa: UP036 - this script must run on old Pythons to say they are too old

if sys.version_info < (3, 11):
    sys.exit(
        f"aupguard needs Python 3.11 or newer; {sys.executable} is {sys.version.split()[0]}. "
        "Run: make PYTHON=python3.11 ..."
    )
try:
    import ensurepip  # noqa: F401
    import venv  # noqa: F401
except ImportError:
    sys.exit("Python's venv module is missing: install it (Debian: apt-get install python3-venv).")
