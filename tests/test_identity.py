"""User ids: validation, keyed HMAC-SHA256 hashing, the key ring and its rotation."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from aupguard.errors import ConfigurationError, InvalidUserId
from aupguard.identity import (
    MAX_USER_ID_LENGTH,
    HashKey,
    Keyring,
    UserHasher,
    generate_key_entry,
    validate_user_id,
)
from aupguard.policy.config import IdentityPolicy

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(100, 140))
KEY_3 = b"\xfb\xff\xbe" * 11  # base64 holds '+' and '/' (or '-' and '_' in the URL-safe alphabet)


def b64(secret: bytes) -> str:
    return base64.b64encode(secret).decode()


def urlsafe_b64(secret: bytes) -> str:
    return base64.urlsafe_b64encode(secret).decode().rstrip("=")


def reference(secret: bytes, user_id: str) -> str:
    return hmac.new(secret, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def hasher_for(text: str) -> UserHasher:
    return UserHasher(Keyring.parse(text, source="test"))


valid_ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=64,
).filter(lambda s: s.strip() != "")


# -- hashing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user_id",
    ["u-42", "alice@example.com", "üser-日本-🙂", " padded ", "a" * MAX_USER_ID_LENGTH],
    ids=["plain", "email", "non-ascii", "padded", "longest"],
)
def test_hash_is_kid_and_hmac_sha256_of_the_utf8_id(user_id: str) -> None:
    digest = hasher_for(f"k1:{b64(KEY_1)}").hash(user_id)
    assert re.fullmatch(r"k1_[0-9a-f]{64}", digest)
    assert digest == f"k1_{reference(KEY_1, user_id)}"


@given(user_id=valid_ids)
def test_hash_matches_the_stdlib_reference(user_id: str) -> None:
    assert hasher_for(f"key7:{urlsafe_b64(KEY_2)}").hash(user_id) == f"key7_{reference(KEY_2, user_id)}"


def test_hash_is_deterministic_across_hashers_and_calls() -> None:
    text = f"k1:{b64(KEY_1)}"
    first, second = hasher_for(text), hasher_for(text)
    assert first.hash("u-42") == first.hash("u-42") == second.hash("u-42")


def test_different_keys_give_different_hashes() -> None:
    one = hasher_for(f"k1:{b64(KEY_1)}").hash("u-42")
    other_secret = hasher_for(f"k1:{b64(KEY_2)}").hash("u-42")
    assert one != other_secret
    assert one.partition("_")[2] != other_secret.partition("_")[2]


def test_the_current_key_is_the_first_entry() -> None:
    hasher = hasher_for(f"k2:{b64(KEY_2)}\nk1:{b64(KEY_1)}")
    assert hasher.hash("u-42") == f"k2_{reference(KEY_2, 'u-42')}"


@given(a=valid_ids, b=valid_ids)
def test_distinct_ids_give_distinct_hashes(a: str, b: str) -> None:
    assume(a != b)
    hasher = hasher_for(f"k1:{b64(KEY_1)}")
    assert hasher.hash(a) != hasher.hash(b)


# -- invalid ids ---------------------------------------------------------------------------

SECRET_ID = "alice-7f3a"  # a distinctive part of every invalid id, so we can check it is not echoed

INVALID_IDS = [
    pytest.param(123456789, id="int"),
    pytest.param(b"alice-7f3a", id="bytes"),
    pytest.param(None, id="None"),
    pytest.param(["alice-7f3a"], id="list"),
    pytest.param("", id="empty"),
    pytest.param("    ", id="spaces"),
    pytest.param("\t\n \r", id="whitespace"),
    pytest.param(SECRET_ID * (10 * 1024 * 1024 // len(SECRET_ID)), id="10MB"),
    pytest.param("a" * (MAX_USER_ID_LENGTH + 1), id="one-too-long"),
    pytest.param(f"{SECRET_ID}\x00admin", id="NUL"),
    pytest.param(f"{SECRET_ID}\ud800", id="lone-surrogate"),
]


def assert_not_echoed(message: str, user_id: object) -> None:
    assert SECRET_ID not in message
    assert "123456789" not in message
    if isinstance(user_id, str) and user_id.strip():
        assert user_id not in message


@pytest.mark.parametrize("user_id", INVALID_IDS)
def test_validate_user_id_rejects_without_echoing(user_id: object) -> None:
    with pytest.raises(InvalidUserId) as info:
        validate_user_id(user_id)
    assert str(info.value)  # says what is wrong
    assert_not_echoed(str(info.value), user_id)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("user_id", INVALID_IDS)
def test_hash_rejects_without_echoing(user_id: object) -> None:
    hasher = hasher_for(f"k1:{b64(KEY_1)}")
    with pytest.raises(InvalidUserId) as info:
        hasher.hash(user_id)
    assert_not_echoed(str(info.value), user_id)


def test_rejected_id_says_what_is_wrong() -> None:
    with pytest.raises(InvalidUserId, match="string"):
        validate_user_id(42)
    with pytest.raises(InvalidUserId, match="empty"):
        validate_user_id(" ")
    with pytest.raises(InvalidUserId, match=str(MAX_USER_ID_LENGTH)):
        validate_user_id("x" * 5000)
    with pytest.raises(InvalidUserId, match="NUL"):
        validate_user_id("a\x00b")
    with pytest.raises(InvalidUserId, match="surrogate"):
        validate_user_id("a\udfffb")


@pytest.mark.parametrize(
    "user_id",
    ["u", "u-42", "  u  ", "a" * MAX_USER_ID_LENGTH, "名前"],
    ids=["short", "dashed", "spaces", "longest", "cjk"],
)
def test_validate_user_id_returns_valid_ids_unchanged(user_id: str) -> None:
    assert validate_user_id(user_id) == user_id


def test_previous_hashes_rejects_invalid_ids() -> None:
    hasher = hasher_for(f"k1:{b64(KEY_1)}")
    with pytest.raises(InvalidUserId):
        hasher.previous_hashes("")


# -- the key ring --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"k2:{b64(KEY_2)}\nk1:{b64(KEY_1)}:2026-12-31",
        f"k2:{b64(KEY_2)},k1:{b64(KEY_1)}:2026-12-31",
        f"k2:{b64(KEY_2)} , k1:{b64(KEY_1)}:2026-12-31 ,",
        f"# hash keys\n\nk2:{urlsafe_b64(KEY_2)}\n  # rotated out in 2026\nk1:{urlsafe_b64(KEY_1)}:2026-12-31\n\n",
        f"\r\n  k2:{b64(KEY_2)}  \r\n\tk1:{b64(KEY_1)}:2026-12-31\t\r\n",
    ],
    ids=["newline", "comma", "comma-spaces", "comments-urlsafe", "crlf-tabs"],
)
def test_parse_current_and_previous_keys(text: str) -> None:
    ring = Keyring.parse(text, source="test")
    assert [k.kid for k in ring.keys] == ["k2", "k1"]
    assert ring.current.kid == "k2"
    assert ring.current.secret == KEY_2
    assert ring.current.recognised_until is None
    assert ring.keys[1].secret == KEY_1
    assert ring.keys[1].recognised_until == dt.date(2026, 12, 31)


def test_parse_trailing_comments_run_to_the_end_of_the_line() -> None:
    # The format as documented (identity module docstring, docs/identity.md): a '#' comment runs
    # to the end of the line, even when the comment itself holds a comma.
    text = (
        f"k2:{b64(KEY_2)}                 # current key (first entry)\n"
        f"k1:{b64(KEY_1)}:2026-12-31      # previous key, recognised up to and including that day\n"
    )
    ring = Keyring.parse(text, source="test")
    assert [k.kid for k in ring.keys] == ["k2", "k1"]
    assert ring.current.secret == KEY_2
    assert ring.keys[1].recognised_until == dt.date(2026, 12, 31)


def test_parse_trailing_comment_without_comma() -> None:
    ring = Keyring.parse(f"k2:{b64(KEY_2)}  # current\nk1:{b64(KEY_1)}:2026-12-31 # old", source="test")
    assert [k.kid for k in ring.keys] == ["k2", "k1"]


@pytest.mark.parametrize("encode", [b64, urlsafe_b64], ids=["standard", "urlsafe"])
def test_both_base64_alphabets_decode(encode: Callable[[bytes], str]) -> None:
    ring = Keyring.parse(f"k1:{encode(KEY_3)}", source="test")
    assert ring.current.secret == KEY_3


def test_previous_key_without_date_is_recognised_indefinitely() -> None:
    ring = Keyring.parse(f"k2:{b64(KEY_2)}\nk1:{b64(KEY_1)}", source="test")
    assert [k.kid for k in ring.recognised(dt.date(2999, 1, 1))] == ["k1"]


@pytest.mark.parametrize(
    ("today", "recognised"),
    [
        (dt.date(2026, 1, 1), ["k1", "k0"]),
        (dt.date(2026, 6, 30), ["k1", "k0"]),  # the end date itself is inside the grace period
        (dt.date(2026, 7, 1), ["k1"]),
        (dt.date(2026, 12, 31), ["k1"]),
        (dt.date(2027, 1, 1), []),
    ],
)
def test_recognised_honours_the_end_date_inclusive(today: dt.date, recognised: list[str]) -> None:
    ring = Keyring.parse(
        f"k2:{b64(KEY_2)}\nk1:{b64(KEY_1)}:2026-12-31\nk0:{b64(KEY_3)}:2026-06-30",
        source="test",
    )
    assert [k.kid for k in ring.recognised(today)] == recognised
    assert ring.current.kid == "k2"  # the current key is never among the previous ones


def test_previous_hashes_use_the_keys_still_recognised() -> None:
    hasher = hasher_for(f"k2:{b64(KEY_2)}\nk1:{b64(KEY_1)}:2026-12-31")
    assert hasher.previous_hashes("u-42", dt.date(2026, 12, 31)) == (f"k1_{reference(KEY_1, 'u-42')}",)
    assert hasher.previous_hashes("u-42", dt.date(2027, 1, 1)) == ()
    assert hasher.hash("u-42") == f"k2_{reference(KEY_2, 'u-42')}"


def test_previous_hashes_default_to_today() -> None:
    hasher = hasher_for(f"k2:{b64(KEY_2)}\nk1:{b64(KEY_1)}:2000-01-01\nk0:{b64(KEY_3)}")
    assert hasher.previous_hashes("u-42") == (f"k0_{reference(KEY_3, 'u-42')}",)


def test_single_key_ring_has_no_previous_hashes() -> None:
    assert hasher_for(f"k1:{b64(KEY_1)}").previous_hashes("u-42", dt.date(2026, 1, 1)) == ()


SHORT = b"\x01" * 31
BAD_KEY_RINGS = [
    pytest.param(f"k1:{b64(KEY_1)}\nk1:{b64(KEY_2)}", "repeats a key id", id="duplicate-kid"),
    pytest.param(f"k1:{b64(SHORT)}", "31 bytes; at least 32", id="short-key"),
    pytest.param(f"k1:{b64(KEY_1)}\nk0:{b64(SHORT)}", "entry 2", id="short-second-key"),
    pytest.param(f"k1:{b64(KEY_1)[:-4]}!!!!", "not valid base64", id="bad-base64"),
    pytest.param(f"k1:{b64(KEY_1)} trailing", "not valid base64", id="base64-with-space"),
    pytest.param(f"k-1:{b64(KEY_1)}", "key id must be 1-16 letters or digits", id="kid-dash"),
    pytest.param(f":{b64(KEY_1)}", "key id must be 1-16 letters or digits", id="kid-empty"),
    pytest.param(f"{'k' * 17}:{b64(KEY_1)}", "key id must be 1-16 letters or digits", id="kid-long"),
    pytest.param(f"k2:{b64(KEY_2)}\nk1:{b64(KEY_1)}:2026-13-40", "YYYY-MM-DD", id="bad-date"),
    pytest.param(f"k2:{b64(KEY_2)}\nk1:{b64(KEY_1)}:soon", "YYYY-MM-DD", id="date-word"),
    pytest.param(f"k1:{b64(KEY_1)}:2026-12-31", "current (first) key cannot carry an end date", id="date-first"),
    pytest.param(f"{b64(KEY_1)}", "kid:BASE64KEY", id="no-kid"),
    pytest.param(f"k1:{b64(KEY_1)}:2026-12-31:x", "kid:BASE64KEY", id="too-many-parts"),
    pytest.param("", "empty", id="empty"),
    pytest.param("# only a comment\n\n , \n", "empty", id="only-comments"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD_KEY_RINGS)
def test_bad_key_ring_is_a_configuration_error_without_key_material(text: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Keyring.parse(text, source="environment variable APP_KEYS")
    message = str(info.value)
    assert fragment in message
    assert "environment variable APP_KEYS" in message
    for secret in (KEY_1, KEY_2, SHORT):
        for shown in (b64(secret), urlsafe_b64(secret), b64(secret)[:12], secret.hex(), repr(secret)):
            assert shown not in message


def test_configuration_error_hides_the_exception_chain() -> None:
    # A chained binascii/ValueError could carry the key text into logs.
    with pytest.raises(ConfigurationError) as info:
        Keyring.parse(f"k1:{b64(KEY_1)[:-4]}!!!!", source="test")
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


# -- loading from the policy -----------------------------------------------------------------


def test_from_policy_reads_the_default_env_variable() -> None:
    ring = Keyring.from_policy(IdentityPolicy(), env={"AUPGUARD_HASH_KEY": f"k1:{b64(KEY_1)}"})
    assert ring.current.kid == "k1"
    assert ring.current.secret == KEY_1


def test_from_policy_reads_a_named_env_variable() -> None:
    identity = IdentityPolicy(hash_key_env="MYAPP_KEYS")
    ring = Keyring.from_policy(identity, env={"MYAPP_KEYS": f"k2:{b64(KEY_2)},k1:{b64(KEY_1)}"})
    assert [k.kid for k in ring.keys] == ["k2", "k1"]


def test_from_policy_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUPGUARD_TEST_ONLY_KEYS", f"k5:{b64(KEY_2)}")
    ring = Keyring.from_policy(IdentityPolicy(hash_key_env="AUPGUARD_TEST_ONLY_KEYS"))
    assert ring.current.kid == "k5"


def test_from_policy_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "hash.keys"
    path.write_text(f"# rotated 2026-01\nk2:{b64(KEY_2)}\nk1:{b64(KEY_1)}:2026-12-31\n", encoding="utf-8")
    ring = Keyring.from_policy(IdentityPolicy(hash_key_file=str(path)), env={})
    assert [k.kid for k in ring.keys] == ["k2", "k1"]
    assert ring.keys[1].recognised_until == dt.date(2026, 12, 31)


def test_the_file_wins_over_the_env_variable(tmp_path: Path) -> None:
    path = tmp_path / "hash.keys"
    path.write_text(f"file1:{b64(KEY_1)}\n", encoding="utf-8")
    ring = Keyring.from_policy(IdentityPolicy(hash_key_file=str(path)), env={"AUPGUARD_HASH_KEY": f"env1:{b64(KEY_2)}"})
    assert ring.current.kid == "file1"


def test_missing_key_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.keys"
    with pytest.raises(ConfigurationError) as info:
        Keyring.from_policy(IdentityPolicy(hash_key_file=str(path)), env={"AUPGUARD_HASH_KEY": f"k1:{b64(KEY_1)}"})
    assert str(path) in str(info.value)
    assert "identity.hash_key_file" in str(info.value)


def test_unreadable_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        Keyring.from_policy(IdentityPolicy(hash_key_file=str(tmp_path)), env={})
    assert str(tmp_path) in str(info.value)


def test_bad_key_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hash.keys"
    path.write_text(f"k1:{b64(SHORT)}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        Keyring.from_policy(IdentityPolicy(hash_key_file=str(path)), env={})
    assert str(path) in str(info.value)
    assert b64(SHORT) not in str(info.value)


@pytest.mark.parametrize("env", [{}, {"AUPGUARD_HASH_KEY": ""}, {"AUPGUARD_HASH_KEY": "  \n "}])
def test_no_key_names_the_variable_and_the_generate_command(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError) as info:
        Keyring.from_policy(IdentityPolicy(), env=env)
    assert "AUPGUARD_HASH_KEY" in str(info.value)
    assert "aupguard hash-key generate" in str(info.value)


def test_no_key_names_a_custom_variable() -> None:
    with pytest.raises(ConfigurationError) as info:
        Keyring.from_policy(IdentityPolicy(hash_key_env="MYAPP_KEYS"), env={"AUPGUARD_HASH_KEY": f"k1:{b64(KEY_1)}"})
    assert "MYAPP_KEYS" in str(info.value)


def test_bad_env_key_names_the_variable_and_hides_the_key() -> None:
    with pytest.raises(ConfigurationError) as info:
        Keyring.from_policy(IdentityPolicy(), env={"AUPGUARD_HASH_KEY": f"k1:{b64(SHORT)}"})
    assert "environment variable AUPGUARD_HASH_KEY" in str(info.value)
    assert b64(SHORT) not in str(info.value)


# -- secrets stay secret -------------------------------------------------------------------


def test_hash_key_repr_hides_the_secret() -> None:
    key = HashKey("k1", KEY_3, dt.date(2026, 12, 31))
    ring = Keyring((HashKey("k2", KEY_2), key))
    for text in (repr(key), str(key), repr(ring), str(ring)):
        for secret in (KEY_2, KEY_3):
            for shown in (repr(secret), secret.hex(), b64(secret), urlsafe_b64(secret), repr(secret)[2:14]):
                assert shown not in text
    assert "k1" in repr(key)


def test_generated_entry_parses_to_32_random_bytes() -> None:
    entries = [generate_key_entry() for _ in range(20)]
    secrets = []
    for entry in entries:
        ring = Keyring.parse(entry, source="generated")
        assert ring.current.kid == "k1"
        assert len(ring.current.secret) == 32
        secrets.append(ring.current.secret)
    assert len(set(secrets)) == len(secrets)


def test_generated_entry_uses_the_given_kid_and_hashes() -> None:
    entry = generate_key_entry("k2026")
    kid, _, encoded = entry.partition(":")
    assert kid == "k2026"
    assert ":" not in encoded  # no end date on a fresh (current) key
    digest = hasher_for(entry).hash("u-42")
    assert digest.startswith("k2026_")


@pytest.mark.parametrize("kid", ["", "k-1", "k_1", "k" * 17, "k:1"])
def test_generate_rejects_a_bad_kid(kid: str) -> None:
    with pytest.raises(ConfigurationError):
        generate_key_entry(kid)
