"""A LangChain chain guarded by aupguard: ``prompt | model | parser`` with the callback.

Run: python examples/langchain_chain.py "your question" (uses ANTHROPIC_API_KEY; without
it, prints what the guard decided and stops before calling Claude).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from langchain_anthropic import ChatAnthropic
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat_service import demo_guard

from aupguard import Refused, Safeguards
from aupguard_langchain import SafeguardsCallbackHandler, instrument_chat_model


def build_chain(guard: Safeguards, model: ChatAnthropic) -> object:
    prompt = ChatPromptTemplate.from_messages([("system", "Answer in one sentence."), ("human", "{question}")])
    return prompt | instrument_chat_model(guard, model) | StrOutputParser()


def ask(guard: Safeguards, chain: object, user_id: str, question: str) -> str:
    config = {"callbacks": [SafeguardsCallbackHandler(guard)], "metadata": {"user_id": user_id}}
    try:
        return str(chain.invoke({"question": question}, config=config))  # type: ignore[attr-defined]
    except Refused as refused:
        return f"refused: {refused.decision.status} {refused.decision.error}: {refused.decision.message}"


def main() -> None:
    question = " ".join(sys.argv[1:]) or "What is the capital of France?"
    guard = demo_guard(Path(".aupguard/langchain-demo"))
    if not os.environ.get("ANTHROPIC_API_KEY"):
        decision = guard.check("alice", surface="langchain", prompt=question)
        verdict = decision.error or "allowed"
        print(f"(no ANTHROPIC_API_KEY: not calling Claude) the guard says: {decision.status} {verdict}")
        return
    chain = build_chain(guard, ChatAnthropic(model="claude-haiku-4-5"))
    print(ask(guard, chain, "alice", question))


if __name__ == "__main__":
    main()
