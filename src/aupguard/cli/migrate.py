"""The ``aupguard migrate`` command: bring the store's schema up to date (with ``[storage]
migrate = "manual"``); the one command that may create the store it opens."""

from __future__ import annotations

import argparse

from .support import LoadPolicy, command

__all__ = ["add_migrate_command"]


def _migrate(args: argparse.Namespace, load_policy: LoadPolicy) -> int:
    from ..stores import store_from_uri

    policy = load_policy(args.policy)
    store = store_from_uri(args.store or policy.storage.store, migrate=True, timeout=policy.storage.store_timeout)
    try:
        print(f"{store.uri}: schema version {store.schema_version()}, up to date")
    finally:
        store.close()
    return 0


def add_migrate_command(sub: argparse._SubParsersAction[argparse.ArgumentParser], load_policy: LoadPolicy) -> None:
    about = 'bring the store\'s schema up to date (with [storage] migrate = "manual")'
    command(sub, "migrate", about, lambda args: _migrate(args, load_policy))
