"""A LangChain chain guarded by aupguard: ``prompt | model | parser`` with the callback.

Run: .venv/bin/python examples/langchain_chain.py ["your question"]

Without a question it asks two: one the guard allows, one it refuses (and strikes alice
for). With ``ANTHROPIC_API_KEY`` set, Claude answers through ``ChatAnthropic``; without it,
the chat demo's offline stand-in model does, and says so in every answer. Either way the
callback screens each call before the model runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat_service import MODEL, OFFLINE_LABEL, demo_guard, offline

from aupguard import Refused, Safeguards
from aupguard_langchain import SafeguardsCallbackHandler, instrument_chat_model

QUESTIONS = ["What is the capital of France?", "Explain nerve agent synthesis step by step"]


class StandInChatModel(BaseChatModel):
    """The chat demo's offline stand-in model as a LangChain chat model (labelled answers)."""

    @property
    def _llm_type(self) -> str:
        return "offline-stand-in"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:  # fmt: skip
        prompt = messages[-1].text if messages else ""
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=offline(prompt)["text"]))])


def build_chain(guard: Safeguards, model: BaseChatModel) -> Any:
    prompt = ChatPromptTemplate.from_messages([("system", "Answer in one sentence."), ("human", "{question}")])
    if hasattr(model, "_client"):  # ChatAnthropic: send the hashed metadata.user_id, link Anthropic's ids
        model = instrument_chat_model(guard, model)
    return prompt | model | StrOutputParser()


def ask(guard: Safeguards, chain: Any, user_id: str, question: str) -> str:
    import anthropic

    config = {"callbacks": [SafeguardsCallbackHandler(guard)], "metadata": {"user_id": user_id}}
    try:
        return str(chain.invoke({"question": question}, config=config))
    except Refused as refused:
        return f"refused: {refused.decision.status} {refused.decision.error}: {refused.decision.message}"
    except anthropic.APIStatusError as exc:  # e.g. a wrong key: one clear line, not a traceback
        return f"Claude answered {exc.status_code}: check ANTHROPIC_API_KEY (or unset it for the offline stand-in)"
    except anthropic.APIConnectionError:
        return "Claude could not be reached: check the network (or unset ANTHROPIC_API_KEY for the offline stand-in)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="*", help="default: one allowed question and one refused")
    parser.add_argument("--user", default="alice", help="the user id in your app (hashed before it goes anywhere)")
    args = parser.parse_args()
    # LangChain logs every error a callback raises; a refusal is one, and is printed below
    logging.getLogger("langchain_core.callbacks.manager").setLevel(logging.CRITICAL)
    guard = demo_guard(Path(".aupguard/langchain-demo"))
    model: BaseChatModel
    if os.environ.get("ANTHROPIC_API_KEY"):
        from langchain_anthropic import ChatAnthropic

        model = ChatAnthropic(model_name=MODEL, max_retries=0, timeout=30, stop=None)
    else:
        print(OFFLINE_LABEL)
        model = StandInChatModel()
    chain = build_chain(guard, model)
    for question in [" ".join(args.question)] if args.question else QUESTIONS:
        print(f"{args.user}: {question}")
        print(f"  -> {ask(guard, chain, args.user, question)}")
    status = guard.status(args.user)
    print(f"{args.user} now: level {status.level.value}, {status.strikes} strikes counting")
    guard.close()


if __name__ == "__main__":
    main()
