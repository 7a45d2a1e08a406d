"""Fuzzing (hypothesis): request bodies, headers, JSON shapes, encodings and Unicode through the
ASGI middleware, the Flask extension and the gateway, policy tables and files, and CLI arguments. Only
documented answers come back (statuses and Anthropic's error shape), nothing raises, nothing
hangs, and memory stays bounded.

``make test`` runs ``AUPGUARD_FUZZ_EXAMPLES`` (default 200) cases per target; ``make fuzz``
runs 20,000 per target (ASGI, Flask, gateway, policy, CLI: 100,000 in all) and prints the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import resource
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from aupguard import Policy, PolicyError, Safeguards
from aupguard.cli.main import main as cli_main
from aupguard.engine.prompt_policy import PromptPolicy, PromptRequest
from aupguard.moderation import RulesModerator
from aupguard.testing import MessagesDouble
from aupguard_asgi import SafeguardsMiddleware
from aupguard_flask import FlaskSafeguards
from tests.conftest import MakeGuard
from tests.support.request_shapes import SHAPES

EXAMPLES = int(os.environ.get("AUPGUARD_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
#: the whole test's bound grows with the cases asked for (make fuzz runs 20,000 a target)
pytestmark = pytest.mark.timeout(max(300, EXAMPLES // 10))
CAP = 2_000  # max_body_bytes in the fuzzed apps: bodies around it are generated too
RULES = [{"category": "weapons", "action": "block", "keywords": ["nerve agent synthesis"]}]
POLICY = {"moderation": {"rules": RULES}, "limits": {"default": "100000/minute"},
          "prompts": {"max_length": 1_500},
          # wrong keys from the one fuzzing address would otherwise turn every later case into 429
          "gateway": {"bad_key_limit": "1000000/minute"}}  # fmt: skip
#: what the guard may answer itself, each in Anthropic's error shape
GUARD_STATUSES = {400, 401, 403, 413, 429}
#: what the apps and their routers answer (the guard passes the request on; 307: Starlette's
#: redirect of "/v1/chat/" to "/v1/chat", guarded all the same)
APP_STATUSES = {200, 307, 404, 405}

# -- inputs ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
words = st.sampled_from(["hello", "nerve agent synthesis", "ｎｅｒｖｅ agent", "n\u200berve", "", "\x00", "🙂" * 3])
content = (
    st.text(max_size=60)
    | words
    | st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "image", "tool_result", 7]), "text": st.text(max_size=30)}
        ),
        max_size=3,
    )
)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "", 3]), "content": content})
messages_body = st.fixed_dictionaries(
    {"messages": st.lists(message, max_size=3)},
    optional={"model": st.text(max_size=10), "metadata": json_values},
)
prompt_body = st.fixed_dictionaries({"prompt": content | json_values})
documents = messages_body | prompt_body | json_values


ODD_JSON = [
    b'{"prompt": "x", "max_tokens": ' + b"9" * 4301 + b"}",
    b'{"prompt": ' + b"[" * 975 + b"]" * 975 + b"}",
    b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
    b'{"prompt": "x", "top_p": -Infinity}',
    b'{"prompt": "\\ud800 lone"}',
    b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]}',
]


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "json", "json", "binary", "encoded", "big", "bom", "odd"]))
    if kind == "odd":  # JSON that Python reads badly: a huge integer, deep nesting, NaN, a lone surrogate
        return draw(st.sampled_from(ODD_JSON))
    if kind == "binary":
        return draw(st.binary(max_size=300))
    if kind == "big":
        return b'{"prompt": "' + b"a" * draw(st.integers(CAP - 40, CAP + 40)) + b'"}'
    text = json.dumps(draw(documents), ensure_ascii=draw(st.booleans()))
    if kind == "encoded":
        return text.encode(draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"])), errors="replace")
    if kind == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    return text.encode("utf-8", errors="surrogatepass")


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=30)
users = st.none() | st.sampled_from(["alice", "bob", "", " ", "a" * 300]) | header_text
content_types = st.sampled_from([None, "application/json", "text/plain", "application/json; charset=utf-16", "x/y;;"])
methods = st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "OPTIONS", "DELETE"])
paths = st.sampled_from(["/v1/chat", "/v1/chat", "/v1/other", "/health", "/v1/%00", "/v1/ünï", "/v1/chat/",
                         "//v1//chat", "/V1/CHAT", "/v1", "/"])  # fmt: skip
#: the mount point the app is served under (``Mount`` / ``--root-path``): ``path`` starts with it
roots = st.sampled_from(["", "", "/api", "/api/v1"])


@st.composite
def well_formed(draw: st.DrawFn) -> dict[str, Any]:
    """A request the guard takes to the engine: a known route, a user, a JSON prompt of any
    Unicode (normalisation, moderation, the prompt policy and the audit see it)."""
    text = draw(st.text(max_size=300) | words | st.text(st.characters(codec="utf-8"), max_size=100))
    shape = draw(st.sampled_from(["prompt", "messages", "blocks", "whole", "whole"]))
    document: Any = {"prompt": text}
    if shape == "whole":  # text in any place a Messages request carries it (tests/support/request_shapes.py)
        document = SHAPES[draw(st.sampled_from(sorted(SHAPES)))](text)
    elif shape == "messages":
        document = {"messages": [{"role": "user", "content": text}]}
    elif shape == "blocks":
        document = {"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}
    user = draw(st.sampled_from(["alice", "bob", "carol"]) | st.text(alphabet="abcxyz-_@.", min_size=1, max_size=20))
    body = json.dumps(document, ensure_ascii=draw(st.booleans())).encode("utf-8", errors="surrogatepass")
    return {"method": "POST", "path": "/v1/chat", "body": body, "cuts": [],
            "headers": [("x-user", user), ("content-type", "application/json")]}  # fmt: skip


@st.composite
def anything(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(bodies())
    headers: list[tuple[str, str]] = [(k, v) for k, v in draw(st.lists(st.tuples(
        st.sampled_from(["x-extra", "accept", "content-length", "x-user", "transfer-encoding"]), header_text),
        max_size=2))]  # fmt: skip
    user = draw(users)
    if user is not None:
        headers.append(("x-user", user))
    content_type = draw(content_types)
    if content_type is not None:
        headers.append(("content-type", content_type))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=2)))
    return {"method": draw(methods), "path": draw(paths), "body": body, "headers": headers, "cuts": cuts,
            "root": draw(roots)}  # fmt: skip


requests = well_formed() | anything()


def _check_answer(status: int, content_type: str, body: bytes) -> None:
    assert status in GUARD_STATUSES | APP_STATUSES, status
    if status in GUARD_STATUSES:
        document = json.loads(body)
        assert document["type"] == "error" and isinstance(document["error"]["message"], str)
        assert document["error"]["type"] in {"invalid_request_error", "authentication_required", "user_suspended",
                                             "terms_not_accepted", "prompt_not_allowed", "content_flagged",
                                             "permission_error", "request_too_large", "rate_limited"}  # fmt: skip


class _Memory:
    """Peak RSS before and after: growth stays bounded over many cases."""

    def __init__(self) -> None:
        self.start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    def grown_mib(self) -> float:
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.start) / 1024


def _report(target: str, seen: Counter[int], memory: _Memory) -> None:
    """One line per target for ``make fuzz`` (pytest shows it with ``-s``)."""
    print(f"\nfuzz {target}: {sum(seen.values()):,} requests, statuses {dict(sorted(seen.items()))}, "
          f"peak RSS +{memory.grown_mib():.1f} MiB")  # fmt: skip


@pytest.fixture
def fuzz_guard(make_guard: MakeGuard) -> Safeguards:
    return make_guard(POLICY)


# -- ASGI --------------------------------------------------------------------------------------


def _asgi_app(guard: Safeguards) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"chars": len(await request.body())})

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/v1/chat", chat, methods=["POST"]), Route("/health", health)])
    app.add_middleware(SafeguardsMiddleware, safeguards=guard, user_header="x-user", routes=["/v1/*"],
                       max_body_bytes=CAP)  # fmt: skip
    return app


async def _asgi_call(app: Starlette, case: dict[str, Any]) -> tuple[int, str, bytes]:
    body, cuts = case["body"], [0, *case["cuts"], len(case["body"])]
    chunks = [body[a:b] for a, b in itertools.pairwise(cuts)]
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    answer: dict[str, Any] = {"status": 0, "type": "", "body": b""}
    root = case.get("root", "")

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            found = dict(message.get("headers", []))
            answer["type"] = found.get(b"content-type", b"").decode("latin-1")
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": case["method"],
        "scheme": "http", "path": root + case["path"], "raw_path": (root + case["path"]).encode("utf-8"),
        "root_path": root,
        "query_string": b"", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000),
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in case["headers"]],
    }  # fmt: skip
    await asyncio.wait_for(app(scope, receive, send), timeout=10)  # no hang
    return answer["status"], answer["type"], answer["body"]


def test_asgi_middleware_answers_only_documented_statuses(fuzz_guard: Safeguards) -> None:
    app, memory, runner = _asgi_app(fuzz_guard), _Memory(), asyncio.Runner()
    seen: Counter[int] = Counter()

    @FUZZ
    @given(case=requests)
    def run(case: dict[str, Any]) -> None:
        status, content_type, body = runner.run(_asgi_call(app, case))
        _check_answer(status, content_type, body)
        seen[status] += 1

    with runner:
        run()
    _report("asgi", seen, memory)
    assert memory.grown_mib() < 200
    assert {200, 400} <= set(seen)  # the inputs reach both sides of the guard


# -- Flask -------------------------------------------------------------------------------------


def _flask_app(guard: Safeguards) -> Flask:
    app = Flask("fuzz")
    FlaskSafeguards(app, safeguards=guard, user_header="X-User", routes=["/v1/*"], max_body_bytes=CAP)

    @app.post("/v1/chat")
    def chat() -> dict[str, int]:
        return {"chars": len(request.get_data())}

    @app.get("/health")
    def health() -> str:
        return "ok"

    return app


def test_flask_extension_answers_only_documented_statuses(fuzz_guard: Safeguards) -> None:
    client, memory = _flask_app(fuzz_guard).test_client(), _Memory()
    seen: Counter[int] = Counter()

    @FUZZ
    @given(case=requests)
    def run(case: dict[str, Any]) -> None:
        headers = [(k, v) for k, v in case["headers"] if k not in ("content-length", "transfer-encoding")]
        response = client.open(case["path"], method=case["method"], data=case["body"], headers=headers)
        _check_answer(response.status_code, response.content_type or "", response.get_data())
        seen[response.status_code] += 1

    run()
    _report("flask", seen, memory)
    assert memory.grown_mib() < 200
    assert {200, 400} <= set(seen)


# -- the gateway ---------------------------------------------------------------------------------


@st.composite
def gateway_requests(draw: st.DrawFn, keys: list[str]) -> dict[str, Any]:
    """Messages-API calls (well-formed or not) with a valid, revoked or made-up gateway key."""
    key = draw(st.sampled_from(keys) | st.sampled_from(["", "agk_000000000000_x", "sk-ant-x"]) | header_text)
    if draw(st.booleans()):
        text = draw(st.text(max_size=200) | words)
        document: Any = {"model": "claude-sonnet-5-5", "max_tokens": draw(st.integers(-5, 50)),
                         "messages": [{"role": "user", "content": text}],
                         "stream": draw(st.booleans())}  # fmt: skip
        document.update(draw(st.dictionaries(st.sampled_from(list(OPERATOR_FIELDS)), st.just(None), max_size=2)))
        for field in [f for f, v in document.items() if v is None]:  # the operator controls' shapes
            document[field] = draw(OPERATOR_FIELDS[field])
        body = json.dumps(document).encode("utf-8", errors="surrogatepass")
    else:
        body = draw(bodies())
    path = draw(st.sampled_from(["/v1/messages", "/v1/messages", "/v1/messages/count_tokens", "/v1/other",
                                 "/v1/messages/", "//v1/messages"]))  # fmt: skip
    name = draw(st.sampled_from(["x-api-key", "x-api-key", "authorization", None]))  # None: no key header
    value = key if name == "x-api-key" else f"Bearer {key}"
    headers = [("content-type", "application/json"), ("anthropic-version", "2023-06-01")]
    if name is not None:
        headers.append((name, value))
    beta = draw(st.sampled_from([None, None, None, "interleaved-thinking-2025-05-14", "files-api-2025-04-14", ",",
                                 "", "x" * 30]))  # fmt: skip
    if beta is not None:
        headers.append(("anthropic-beta", beta))
    return {"method": draw(methods), "path": path, "body": body, "cuts": [], "headers": headers,
            "root": draw(st.sampled_from(["", "/llm"]))}  # fmt: skip


#: shapes for the gateway's operator controls (``[gateway]`` models, tools, MCP, files, fields)
OPERATOR_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "tools": st.lists(st.fixed_dictionaries({"name": st.text(max_size=8)}, optional={
        "type": st.sampled_from(["custom", "web_search_20250305", "code_execution_20250825", "bash_20250124", 3]),
        "input_schema": st.just({"type": "object"})}), max_size=3) | json_values,
    "mcp_servers": st.lists(st.fixed_dictionaries({"type": st.just("url"),
                                                   "url": st.sampled_from(["https://mcp.example.com", "", 5])}),
                            max_size=2) | json_values,
    "container": st.text(max_size=10) | json_values,
    "documents": json_values,
    "model": st.sampled_from(["claude-haiku-4-5", "", "*"]) | json_values,
    "max_tokens": st.integers(-(10**30), 10**30) | json_values,
    "system": st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "document"]), "source": st.just(
        {"type": "file", "file_id": "file_1"})}), max_size=2),
}  # fmt: skip


def test_gateway_answers_only_documented_statuses(fuzz_guard: Safeguards, messages_double: MessagesDouble) -> None:
    from aupguard.gateway.keys import GatewayKeys
    from aupguard_gateway import build_gateway

    keys = GatewayKeys(fuzz_guard)
    issued = [keys.create(user) for user in ("alice", "bob", "carol")]
    keys.revoke(issued[2].key_id)
    app = build_gateway(fuzz_guard, upstream=messages_double.url, upstream_key="sk-upstream-fuzz", keys=keys)
    memory, runner = _Memory(), asyncio.Runner()
    seen: Counter[int] = Counter()

    @FUZZ
    @given(case=gateway_requests([k.key for k in issued]))
    def run(case: dict[str, Any]) -> None:
        status, _, body = runner.run(_asgi_call(app, case))
        assert status in GUARD_STATUSES | APP_STATUSES, status  # the double answers 200: no 5xx anywhere
        if status != 200:
            assert json.loads(body)["type"] == "error"  # Anthropic's shape, the gateway's own 404/405 too
        seen[status] += 1

    with runner:
        run()
        runner.run(app.state.upstream.aclose())
    _report("gateway", seen, memory)
    assert memory.grown_mib() < 200
    assert {200, 401} <= set(seen)
    sent_keys = {r.headers.get("x-api-key") for r in messages_double.requests}
    assert sent_keys <= {"sk-upstream-fuzz"}  # never a gateway key upstream


# -- policy and CLI ----------------------------------------------------------------------------

tables = st.sampled_from(["identity", "terms", "ladder", "limits", "storage", "prompts", "moderation", "capture",
                          "review", "nonsense"])  # fmt: skip
policy_keys = st.sampled_from(["warn", "throttle", "suspend", "window", "default", "strategy", "store", "counters",
                               "fail", "timeout", "mode", "rules", "version", "url", "enabled", "sample_rate",
                               "allowlist", "templates", "max_length", "x"])  # fmt: skip


# the shapes hardened by name: durations past what a clock holds, regexes that backtrack
# exponentially (alone, with a backreference or a word boundary), URLs carrying credentials
durations = st.sampled_from(["36500d", "36501d", "3000000d", "1000000w", "9" * 400 + "d", 1e300, 10**400, 2**63])
regexes = st.sampled_from(
    [
        r"(a+)+$",
        r"(a+)+\1",
        r"(a|a)*\1",
        r"\b(a+)+\b",
        r"(?=x)(a*)*",
        r"((a|b)+)+\2",
        r"[[:alpha:]]+",
        r"\N{BULLET}",
        r"a{,3}b",
        r"\bбомба\b",
        r"(?x) a (b)",
        r"(",
        r"\u00e9",
    ]
)
secret_urls = st.sampled_from(["https://ops:fuzz-secret@h.example", "http://fuzz-secret@127.0.0.1:1/v1",
                               "https://h.example/", "http://h:port", "ftp://h.example"])  # fmt: skip
hardened = st.one_of(
    st.builds(lambda d: {"ladder": {"suspend_for": d}}, durations),
    st.builds(lambda d, k: {"moderation" if k == "timeout" else "review": {k: d}}, durations,
              st.sampled_from(["timeout", "claim_for", "session_for"])),
    st.builds(lambda r: {"moderation": {"rules": [{"category": "a", "patterns": r}]}}, st.lists(regexes, min_size=1)),
    st.builds(lambda r: {"prompts": {"mode": "allowlist", "allowlist_patterns": r}}, st.lists(regexes, min_size=1)),
    st.builds(lambda r: {"prompts": {"mode": "templates", "templates": {"t": {"text": "{v}", "variables": {
        "v": {"type": "string", "pattern": r}}}}}}, regexes),
    st.builds(lambda u: {"gateway": {"upstream": u}}, secret_urls),
    st.builds(lambda u: {"moderation": {"openai": {"url": u}}}, secret_urls),
)  # fmt: skip
ADVERSARIAL = "a" * 40 + "b"  # not punctuation: the normal form reads that as a space


def _use_hardened(policy: Policy) -> None:
    """A policy that loaded runs its regexes on an adversarial text: linear time, so it returns."""
    RulesModerator(policy.moderation.rules).moderate(ADVERSARIAL)
    prompts = policy.prompts
    if prompts.mode == "allowlist":
        PromptPolicy(prompts).resolve(PromptRequest(text=ADVERSARIAL))
    if prompts.mode == "templates":
        PromptPolicy(prompts).resolve(PromptRequest(template="t", variables={"v": ADVERSARIAL}))


def test_policy_tables_and_files_fail_only_with_policy_errors(tmp_path: Path) -> None:
    @FUZZ
    @given(data=st.dictionaries(tables, st.dictionaries(policy_keys, json_values, max_size=4) | json_values,
                                max_size=4),
           text=st.text(max_size=200), shaped=hardened)  # fmt: skip
    def run(data: dict[str, Any], text: str, shaped: dict[str, Any]) -> None:
        with contextlib.suppress(PolicyError):  # anything else fails the test
            Policy.from_mapping(data, env={})
        try:
            _use_hardened(Policy.from_mapping(shaped, env={}))
        except PolicyError as exc:
            refused = str(exc)
        else:
            refused = ""
        assert "fuzz-secret" not in refused  # a URL's credentials are never shown
        path = tmp_path / "p.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        with contextlib.suppress(PolicyError):
            Policy.from_toml(path, env={})

    run()


SERVING = {"console", "gateway", "demo"}
commands = st.sampled_from(
    ["user", "audit", "key", "capture", "doctor", "review", "report", "reviewer", "migrate", "status", "strike",
     "suspend", "reinstate", "find", "list", "show", "generate", "export", "--json", "--reason", "--for", "--until",
     "--limit", "--user", "-1", "7d", "x", "moderation", "eval", "--format", "--concurrency", "jsonl"]
)  # fmt: skip


def test_cli_arguments_never_end_in_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], key_entry: str
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing the CLI writes lands in the tree
    monkeypatch.setenv("AUPGUARD_HASH_KEY", key_entry)

    @FUZZ
    @given(argv=st.lists(commands | st.text(max_size=12), max_size=5))
    def run(argv: list[str]) -> None:
        assume(not SERVING.intersection(argv))  # these serve until stopped (tested where they are)
        try:
            code = cli_main(["--store", "memory://", *argv])
        except SystemExit as exc:  # argparse's usage errors and --help
            code = int(exc.code or 0)
        assert code in (0, 1, 2), f"{argv!r} ended with {code}"  # 70 would be an unexpected exception
        capsys.readouterr()

    run()
