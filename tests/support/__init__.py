"""Local stand-ins for the remote services aupguard talks to, so tests run the real SDKs
against 127.0.0.1 and never the internet."""

from tests.support.messages_double import MessagesDouble
from tests.support.scripting import RecordedRequest, Reply, Script, verdict_reply

__all__ = ["MessagesDouble", "RecordedRequest", "Reply", "Script", "verdict_reply"]
