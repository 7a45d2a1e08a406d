"""Request ids: UUIDv7 strings that sort in creation order."""

from __future__ import annotations

import itertools
import time
import uuid

from aupguard.ids import id_time, new_id


def test_new_id_is_a_uuid_version_7() -> None:
    value = new_id()
    parsed = uuid.UUID(value)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == value  # canonical lowercase 8-4-4-4-12 form


def test_ids_are_unique_and_strictly_increasing_in_creation_order() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(earlier < later for earlier, later in itertools.pairwise(ids))
    assert all(uuid.UUID(value).version == 7 for value in ids)


def test_id_time_is_the_creation_time() -> None:
    before = time.time()
    value = new_id()
    after = time.time()
    assert before - 1.0 <= id_time(value) <= after + 1.0


def test_id_time_reads_the_millisecond_timestamp() -> None:
    # 0x0190_0000_0000 ms since the epoch, written by hand in the UUIDv7 layout
    assert id_time("01900000-0000-7000-8000-000000000000") == 0x019000000000 / 1000.0
