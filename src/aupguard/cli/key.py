"""The hash-key commands of the ``aupguard`` CLI: ``key generate`` prints a new key ring entry
(``kid:BASE64KEY``) for ``AUPGUARD_HASH_KEY``. (Gateway keys are ``aupguard keys``, in
:mod:`aupguard.cli.gateway`.)"""

from __future__ import annotations

import argparse

from ..identity import generate_key_entry

__all__ = ["add_key_commands"]


def _generate(args: argparse.Namespace) -> int:
    print(generate_key_entry(args.kid))
    return 0


def add_key_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # `hash-key` (was `key`) and `gateway-keys` (was `keys`): the old names stay as aliases
    key = sub.add_parser("hash-key", aliases=["key"], help="user-hash keys: generate a key ring entry")
    key_sub = key.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    gen = key_sub.add_parser(
        "generate",
        help="print a new key ring entry 'kid:BASE64KEY'",
        description="print a new key ring entry 'kid:BASE64KEY'",
    )
    gen.add_argument("--kid", default="k1", help="key id, 1-16 letters or digits (default k1)")
    gen.set_defaults(func=_generate)
