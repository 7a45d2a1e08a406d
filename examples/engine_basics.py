"""The engine on its own: what an adapter does around each call to Claude.

Run: AUPGUARD_HASH_KEY="$(.venv/bin/aupguard hash-key generate)" .venv/bin/python examples/engine_basics.py
(Claude is not called here; the adapters and the instrumented client do that.)
"""

from __future__ import annotations

from aupguard import Policy, Safeguards

policy = Policy.from_mapping({"terms": {"version": "2026-01", "url": "https://example.com/aup"}})

with Safeguards(policy, store="memory://") as guard:
    for user in (None, "u-42"):
        decision = guard.check(user, surface="chat")
        print(user, decision.status, decision.error)
    guard.accept_terms("u-42", "2026-01")
    decision = guard.check("u-42", surface="chat")
    print("u-42", decision.status, decision.headers()["RateLimit-Remaining"])
    # after calling Claude: link Anthropic's ids to our record
    guard.audit.link(decision.request_id, anthropic_request_id="req_example", message_id="msg_example")
    (record,) = guard.audit.find(message_id="msg_example")
    print("linked", record.request_id == decision.request_id, record.user_hash == guard.hash_user("u-42"))
