"""The example chat services run, offline and against the local Messages-API double."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from starlette.testclient import TestClient

from aupguard.testing import MessagesDouble

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXAMPLES))


def _json(response: Any) -> Any:
    """The JSON body of an httpx (Starlette test client) or werkzeug (Flask) response."""
    return response.get_json() if hasattr(response, "get_json") else response.json()


def user_headers(module: ModuleType, user: str) -> dict[str, str]:
    """How the example knows its user: a bearer token its own auth dependency checks
    (FastAPI), or the trusted ``x-user`` header of a service behind a gateway (the others)."""
    if hasattr(module, "token_for"):
        return {"authorization": f"Bearer {module.token_for(user)}"}
    return {"x-user": user}


@pytest.mark.parametrize("name", ["starlette_app", "fastapi_app", "flask_app"])
def test_offline_demo_answers_flags_and_suspends(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    module = load(name)
    guard = module.demo_guard(tmp_path)
    guard.suspend("mallory", reason="demo")
    app = module.build_app(guard)
    alice, mallory = user_headers(module, "alice"), user_headers(module, "mallory")
    with app.test_client() if name == "flask_app" else TestClient(app) as client:
        ok = client.post("/v1/chat", json={"prompt": "What is the capital of France?"}, headers=alice)
        assert ok.status_code == 200 and _json(ok)["text"].startswith("[offline stand-in model")
        flagged = client.post("/v1/chat", json={"prompt": "Explain nerve agent synthesis"}, headers=alice)
        assert (flagged.status_code, _json(flagged)["error"]["type"]) == (403, "content_flagged")
        suspended = client.post("/v1/chat", json={"prompt": "Hello"}, headers=mallory)
        assert (suspended.status_code, _json(suspended)["error"]["type"]) == (403, "user_suspended")
        assert client.post("/v1/chat", json={"prompt": "Hello"}).status_code == 401
    assert guard.status("alice").strikes == 1
    guard.close()


@pytest.mark.parametrize("name", ["fastapi_app", "flask_app"])
def test_with_an_api_key_the_example_calls_claude_with_the_hashed_user(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, messages_double: MessagesDouble
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", messages_double.url)
    module = load(name)
    guard = module.demo_guard(tmp_path)
    messages_double.messages.text("Paris.")
    app = module.build_app(guard)
    with app.test_client() if name == "flask_app" else TestClient(app) as client:
        response = client.post("/v1/chat", json={"prompt": "Capital of France?"}, headers=user_headers(module, "alice"))
    assert response.status_code == 200 and _json(response)["text"] == "Paris."
    (sent,) = messages_double.requests_to("/v1/messages")
    assert sent.body["metadata"]["user_id"] == guard.hash_user("alice")  # hashed, never the raw id
    (record,) = guard.audit.find(message_id=_json(response)["message_id"])
    assert record.anthropic_request_id == sent.request_id
    assert record.request_id == response.headers["aupguard-request-id"]  # the middleware's own record
    guard.close()


def test_langchain_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, messages_double: MessagesDouble) -> None:
    from langchain_anthropic import ChatAnthropic

    module = load("langchain_chain")
    guard = module.demo_guard(tmp_path)
    model = ChatAnthropic(model="claude-sonnet-5-5", api_key="test-key", base_url=messages_double.url, max_retries=0)
    chain = module.build_chain(guard, model)
    messages_double.messages.text("Paris is the capital.")
    assert module.ask(guard, chain, "alice", "Capital of France?") == "Paris is the capital."
    assert module.ask(guard, chain, "alice", "Explain nerve agent synthesis").startswith("refused: 403 content_flagged")
    (sent,) = messages_double.requests_to("/v1/messages")
    assert sent.body["metadata"]["user_id"] == guard.hash_user("alice")
    guard.close()


def test_fastapi_demo_serves_the_console_with_a_one_time_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from aupguard.cli.demo import demo_reviewer

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("AUPGUARD_CAPTURE_KEY", raising=False)
    module = load("fastapi_app")
    guard = module.demo_guard(tmp_path, console=True)
    module.seed(guard)
    name, password = demo_reviewer(guard)
    _, second = demo_reviewer(guard)
    assert second != password  # a new password each run: the printed one is the only copy
    entries = guard.store.queue_page()
    assert len(entries) == 3 and {e.item.user_hash for e in entries} == {
        guard.hash_user("trent"),
        guard.hash_user("peggy"),
    }
    with TestClient(module.build_app(guard)) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/aupguard/login").text)
        assert token is not None
        form = {"csrf": token.group(1), "name": name}
        assert client.post("/aupguard/login", data={**form, "password": password}).status_code == 401
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/aupguard/login").text)
        assert token is not None
        assert (
            client.post("/aupguard/login", data={"csrf": token.group(1), "name": name, "password": second}).status_code
            == 200
        )
        peggy = next(e for e in entries if e.item.user_hash == guard.hash_user("peggy"))
        page = client.get(f"/aupguard/items/{peggy.item.id}").text
        assert "&lt;script&gt;alert(" in page and "<script>" not in page  # the captured prompt, escaped
    guard.close()


def test_gateway_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, messages_double: MessagesDouble) -> None:
    from tests.support.gateway import UPSTREAM_KEY, serving

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    module = load("gateway")
    guard = module.demo_guard(tmp_path)
    alice, mallory = module.issue_key(guard, "alice"), module.issue_key(guard, "mallory")
    guard.suspend("mallory", reason="demo")
    messages_double.messages.text("Paris.")
    app = module.build_app(guard, upstream=messages_double.url, upstream_key=UPSTREAM_KEY)
    with serving(app) as url:
        assert module.ask(url, alice, "Capital of France?") == "Paris."
        assert module.ask(url, alice, "Explain nerve agent synthesis") == "refused: 403 content_flagged"
        assert module.ask(url, mallory, "Hello") == "refused: 403 user_suspended"
        assert module.ask(url, "agk_wrong", "Hello") == "refused: 401 authentication_required"
    (sent,) = messages_double.requests_to("/v1/messages")
    assert sent.body["metadata"]["user_id"] == guard.hash_user("alice") and sent.headers["x-api-key"] == UPSTREAM_KEY
    assert guard.status("alice").strikes == 1
    guard.close()


# -- every example run as written: a subprocess, its printed curl lines executed against it ----

ROOT = EXAMPLES.parent
RUNNABLE = ["engine_basics", "starlette_app", "fastapi_app", "flask_app", "gateway", "langchain_chain"]


def test_every_example_says_how_to_run_it_from_a_fresh_clone() -> None:
    import ast
    import re

    for path in sorted(EXAMPLES.glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert not re.search(r"(?<![/\w])python examples/", doc), path.name  # fails outside .venv
        if path.stem in RUNNABLE:
            assert f".venv/bin/python examples/{path.name}" in doc, path.name


def _env(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUPGUARD_", "ANTHROPIC_"))}
    return {**env, **extra}


class Running:
    """An example started as ``.venv/bin/python examples/NAME.py ...``, its output collected."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        import subprocess
        import threading

        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return "\n".join(self.lines)
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never printed; output:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        import subprocess

        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def curl(line: str) -> tuple[int, Any]:
    """Run a printed ``curl`` line with httpx: ``-s``, ``-H 'k: v'``, ``-d BODY``, ``-X METHOD``."""
    import shlex

    import httpx

    words = shlex.split(line)
    assert words[0] == "curl"
    url, headers, body, method = None, {}, None, None
    i = 1
    while i < len(words):
        word = words[i]
        if word == "-s":
            i += 1
        elif word in ("-H", "-d", "-X"):
            value = words[i + 1]
            if word == "-H":
                name, _, val = value.partition(":")
                headers[name.strip()] = val.strip()
            elif word == "-d":
                body = value
            else:
                method = value
            i += 2
        else:
            assert not word.startswith("-"), f"an option this test does not know: {word}"
            url = word
            i += 1
    assert url is not None
    response = httpx.request(method or ("POST" if body is not None else "GET"), url, headers=headers,
                             content=body, timeout=30)  # fmt: skip
    return response.status_code, response.json()


def _curl_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith("curl ")]


def _answer_text(name: str, body: Any) -> str:
    return str(body["content"][0]["text"] if name == "gateway" else body["text"])


def _check_the_three_curl_lines(name: str, output: str) -> None:
    lines = _curl_lines(output)
    assert len(lines) == 3, output
    (ok, answer), (flagged, refusal), (suspended, refused) = (curl(line) for line in lines)
    assert ok == 200 and _answer_text(name, answer).startswith("[offline stand-in model"), answer
    assert (flagged, refusal["error"]["type"]) == (403, "content_flagged")
    assert (suspended, refused["error"]["type"]) == (403, "user_suspended")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["starlette_app", "fastapi_app", "flask_app", "gateway"])
def test_a_server_example_prints_its_port_and_curl_lines_that_work(name: str, tmp_path: Path) -> None:
    from aupguard.testing import free_port, wait_port

    port = free_port()
    app = Running([sys.executable, str(EXAMPLES / f"{name}.py"), "--port", str(port)], tmp_path, _env())
    try:
        output = app.wait_for("Ctrl-C stops")
        assert f"http://127.0.0.1:{port}" in output
        wait_port(port, timeout=30)
        _check_the_three_curl_lines(name, output)
    finally:
        app.stop()
    assert "Traceback" not in "\n".join(app.lines)


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> Any:
    import subprocess

    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_langchain_example_runs_offline_with_the_stand_in_and_shows_the_callback(tmp_path: Path) -> None:
    done = _run([sys.executable, str(EXAMPLES / "langchain_chain.py")], tmp_path, _env())
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("[offline stand-in model")
    assert lines[1:5] == [
        "alice: What is the capital of France?",
        "  -> [offline stand-in model: set ANTHROPIC_API_KEY for real answers] "
        "You said: What is the capital of France?",
        "alice: Explain nerve agent synthesis step by step",
        "  -> refused: 403 content_flagged: This request was flagged under the usage policy (weapons).",
    ]
    assert lines[5] == "alice now: level warned, 1 strikes counting"  # the callback's refusal struck alice


def test_the_langchain_example_with_a_wrong_key_says_so_without_a_traceback(
    tmp_path: Path, messages_double: MessagesDouble
) -> None:
    messages_double.messages.error(401, "authentication_error", message="invalid x-api-key")
    env = _env(ANTHROPIC_API_KEY="sk-ant-wrong", ANTHROPIC_BASE_URL=messages_double.url)
    done = _run([sys.executable, str(EXAMPLES / "langchain_chain.py")], tmp_path, env)
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stderr
    assert "  -> Claude answered 401: check ANTHROPIC_API_KEY (or unset it for the offline stand-in)" in done.stdout
    assert "refused: 403 content_flagged" in done.stdout  # the callback refused before any call
    assert len(messages_double.requests_to("/v1/messages")) == 1  # only the allowed question went out
    assert "sk-ant-wrong" not in done.stdout + done.stderr


def _makefile_recipe(target: str) -> list[str]:
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line[1:])
    return recipe


@pytest.mark.timeout(180)
def test_make_demo_serves_the_walkthroughs_store_and_prints_how_to_inspect_it(tmp_path: Path) -> None:
    """`make demo`'s own commands, run as make runs them (in a fresh folder): the walkthrough
    and the served app share one store and key; the printed inspect lines show both."""
    import re
    import shlex

    from aupguard.testing import free_port, wait_port

    port = free_port()
    variables = {"$(VENV)": str(ROOT / ".venv"), "$(PY)": sys.executable, "$(PORT)": str(port),
                 "$(DEMO_DIR)": ".aupguard/demo", "examples/": f"{EXAMPLES}/"}  # fmt: skip
    walkthrough, serve = _makefile_recipe("demo")
    for name, value in variables.items():
        walkthrough, serve = walkthrough.replace(name, value), serve.replace(name, value)
    env = _env()
    done = _run(shlex.split(walkthrough), tmp_path, env)
    assert done.returncode == 0, done.stderr
    app = Running(shlex.split(serve), tmp_path, env)
    try:
        output = app.wait_for("Ctrl-C stops")
        wait_port(port, timeout=30)
        _check_the_three_curl_lines("fastapi_app", output)
    finally:
        app.stop()
    inspect = [line.strip() for line in (done.stdout + "\n" + output).splitlines()
               if re.match(r"\s*(export AUPGUARD_HASH_KEY=|\.venv/bin/aupguard )", line)]  # fmt: skip
    script = "\n".join(line.replace(".venv/bin/", f"{ROOT}/.venv/bin/") for line in inspect)
    assert ".venv/bin/aupguard --store sqlite:///.aupguard/demo/aupguard.db user status alice" in script
    shown = _run(["bash", "-e", "-c", script], tmp_path, env)
    assert shown.returncode == 0, shown.stderr
    assert "no record for this user" not in shown.stdout
    assert "reinstate" in shown.stdout and "by operator:sam" in shown.stdout  # the walkthrough's alice
    assert "completed policy review" in shown.stdout
    assert "asked for malware" in shown.stdout  # alice's strikes from the walkthrough ...
    assert "prompt flagged: weapons (at prompt)" in shown.stdout  # ... and the curl line's, one alice
    assert "level     warned" in shown.stdout and "strikes   1 counting" in shown.stdout  # reinstated, then struck
    assert re.search(r"/v1/chat +content_flagged +403", shown.stdout) and re.search(r"demo +allowed", shown.stdout)
    assert "level     suspended" in shown.stdout  # mallory, suspended by the served app
    assert len(list((tmp_path / ".aupguard").rglob("*.db"))) == 1  # one database
