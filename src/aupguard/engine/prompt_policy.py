"""What end users may send (``[prompts]``): open, an allowlist, server-side templates, or
questions about a registered corpus. Pure checks over plain data; the corpus is read once.

A refusal names the rule that failed and never echoes the prompt or a variable's value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from .. import operator_regex
from ..errors import ConfigurationError
from ..normalize import clean, normalize
from ..outcome import Refusal
from ..policy.moderation import PromptsPolicy, TemplateSpec, VariableSpec
from ..prompts import CorpusDocument, PromptRequest, ResolvedPrompt
from .pieces import Piece

__all__ = ["Corpus", "CorpusDocument", "PromptPolicy", "PromptRequest", "ResolvedPrompt"]


class Corpus:
    """Documents by id, from a folder (one file a document, id = file name without suffix)
    or a JSONL file of ``{"id": ..., "text": ...}``. Each is content-hashed (SHA-256)."""

    def __init__(self, documents: Mapping[str, CorpusDocument]) -> None:
        self.documents = MappingProxyType(dict(documents))

    @classmethod
    def load(cls, path: str | Path) -> Corpus:
        source = Path(path)
        docs: dict[str, CorpusDocument] = {}
        try:
            if source.is_dir():
                for file in sorted(p for p in source.iterdir() if p.is_file()):
                    text = file.read_text(encoding="utf-8")
                    _unique(docs, file.stem, source)
                    docs[file.stem] = CorpusDocument(file.stem, text, hashlib.sha256(text.encode()).hexdigest())
            else:
                for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if (
                        not isinstance(item, dict)
                        or not isinstance(item.get("id"), str)
                        or not isinstance(item.get("text"), str)
                    ):
                        raise ConfigurationError(f'corpus {source} line {number}: expected {{"id": str, "text": str}}')
                    text = item["text"]
                    _unique(docs, item["id"], source)
                    docs[item["id"]] = CorpusDocument(item["id"], text, hashlib.sha256(text.encode()).hexdigest())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"corpus {source} cannot be read: {exc.__class__.__name__}") from None
        if not docs:
            raise ConfigurationError(f"corpus {source} holds no documents")
        return cls(docs)


class PromptPolicy:
    def __init__(self, policy: PromptsPolicy, corpus: Corpus | None = None) -> None:
        self.policy = policy
        self._allowed = {normalize(p, punctuation=False): p for p in policy.allowlist}
        self._patterns = [operator_regex.compile_operator_regex(p, ignore_case=True) for p in policy.allowlist_patterns]
        self.corpus = corpus
        if policy.mode == "corpus" and corpus is None:
            if not policy.corpus:
                raise ConfigurationError("[prompts] mode = 'corpus' needs prompts.corpus")
            self.corpus = Corpus.load(policy.corpus)

    def resolve_text(self, text: str) -> ResolvedPrompt | Refusal:
        """``resolve(PromptRequest(text=text))``, with a short path in ``open`` mode."""
        if self.policy.mode != "open":
            return self.resolve(PromptRequest(text=text))
        cleaned = self._cleaned(text)
        return cleaned if isinstance(cleaned, Refusal) else ResolvedPrompt(cleaned)

    def _cleaned(self, text: str) -> str | Refusal:
        """``text`` without invisible characters (hidden instructions never go on), if not too long."""
        text = clean(text)
        if len(text) > self.policy.max_length:
            return _refuse(f"the prompt is longer than {self.policy.max_length} characters (prompts.max_length)")
        return text

    def resolve(self, request: PromptRequest) -> ResolvedPrompt | Refusal:
        mode = self.policy.mode
        if request.origin == "app":  # the app wrote the call: moderated, not held to the prompt policy
            return ResolvedPrompt(
                clean(request.text or ""), (), request.pieces, request.body, False, request.prompt_turn, request.media
            )
        elif mode != "open" and request.origin == "client":  # the client's own context: refused unless allowed
            if request.system and not self.policy.allow_system:
                return _refuse("a system prompt or tools of the client's are not accepted (prompts.allow_system)")
            if request.history and not self.policy.allow_history:
                return _refuse("earlier turns are not accepted, only the prompt (prompts.allow_history)")
        if mode == "templates":
            return self._template(request)
        if request.template is not None:
            return _refuse("templates are not enabled ([prompts] mode is not 'templates')")
        text = self._cleaned(request.text or "")
        if isinstance(text, Refusal):
            return text
        if mode == "allowlist":
            norm = normalize(text, punctuation=False)
            if norm in self._allowed:  # what goes on is the operator's own wording
                return _resolved(request, self._allowed[norm])
            if _any_fullmatch(self._patterns, norm):
                return _resolved(request, text)
            return _refuse("the prompt is not one of the allowed prompts (prompts.allowlist)")
        if mode == "corpus":
            return self._corpus(request, text)
        if request.documents:
            return _refuse("corpus documents are not enabled ([prompts] mode is not 'corpus')")
        return ResolvedPrompt(text, (), request.pieces, request.body, False, request.prompt_turn, request.media)

    def _template(self, request: PromptRequest) -> ResolvedPrompt | Refusal:
        if request.template is None:
            return _refuse("free text is not accepted: send a template id and its variables (prompts.templates)")
        spec = self.policy.templates.get(request.template)
        if spec is None:
            return _refuse("unknown template id (prompts.templates)")
        if request.text:
            return _refuse("free text is not accepted alongside a template")
        values: dict[str, str] = {}
        for name, var in spec.variables.items():
            if name not in request.variables:
                return _refuse(f"template {spec.id}: variable {name} is missing")
            value = request.variables[name]
            value = clean(value) if isinstance(value, str) else value
            problem = _check_variable(var, value)
            if problem:
                return _refuse(f"template {spec.id}: variable {name} {problem}")
            values[name] = str(value)
        extra = sorted(set(request.variables) - set(spec.variables))
        if extra:
            return _refuse(f"template {spec.id}: a variable it does not declare was sent")
        return _resolved(request, _render(spec, values), where="template")

    def _corpus(self, request: PromptRequest, text: str) -> ResolvedPrompt | Refusal:
        if request.inline_documents:
            return _refuse("documents must come from the registered corpus, by id (prompts.corpus)")
        assert self.corpus is not None
        docs = []
        for doc_id in request.documents:
            doc = self.corpus.documents.get(doc_id)
            if doc is None:
                return _refuse("a document id is not in the registered corpus (prompts.corpus)")
            docs.append(doc)
        if not docs:
            return _refuse("name at least one document of the registered corpus (prompts.corpus)")
        return _resolved(request, text, tuple(docs))


def _resolved(
    request: PromptRequest, text: str, documents: tuple[CorpusDocument, ...] = (), where: str | None = None
) -> ResolvedPrompt:
    """A prompt the policy wrote: the client's prompt turn is replaced by ``text`` (what is
    screened is what goes on); the rest of the request, where allowed, is screened as sent.
    The corpus documents are the operator's and not screened."""
    turn = request.prompt_turn
    # the turn's text is replaced; its other blocks (a document, a tool result) stay in the
    # body the app is given, so they are screened as sent
    context = tuple(
        p for p in request.pieces if not (p.turn == turn and p.role == "user" and p.kind == "text") or turn < 0
    )
    if where is None:
        where = "prompt" if turn < 0 or request.body is None or "messages" not in request.body else f"messages[{turn}]"
    pieces = (*context, Piece(where, "user", turn, "text", text)) if text else context
    return ResolvedPrompt(text, documents, pieces, request.body, True, turn, request.media)


def _unique(docs: Mapping[str, CorpusDocument], doc_id: str, source: Path) -> None:
    if doc_id in docs:
        raise ConfigurationError(f"corpus {source} has two documents with the id {doc_id!r}")


def _check_variable(var: VariableSpec, value: object) -> str | None:
    """What is wrong with ``value`` (without quoting it), or None."""
    if var.type == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be an integer"
        if var.min is not None and value < var.min:
            return f"must be at least {var.min}" if var.max is None else f"must be between {var.min} and {var.max}"
        if var.max is not None and value > var.max:
            return f"must be at most {var.max}" if var.min is None else f"must be between {var.min} and {var.max}"
        return None
    if not isinstance(value, str):
        return "must be a string"
    if var.type == "enum":
        return None if value in var.values else f"must be one of {', '.join(var.values)}"
    if len(value) > var.max_length:
        return f"is longer than {var.max_length} characters"
    if var.pattern is not None and not _matches(var.pattern, value):
        return "does not match its pattern"
    return None


def _any_fullmatch(patterns: list[operator_regex.OperatorRegex], text: str) -> bool:
    """Whether one of ``patterns`` matches all of ``text``; one that runs out of time does not
    (the prompt is refused: fail closed)."""
    for pattern in patterns:
        try:
            if pattern.fullmatch(text):
                return True
        except operator_regex.PatternTimeout:
            continue
    return False


def _matches(pattern: str, value: str) -> bool:
    try:
        return operator_regex.fullmatch(pattern, value)
    except operator_regex.PatternTimeout:
        return False


def _render(spec: TemplateSpec, values: Mapping[str, str]) -> str:
    return spec.text.format_map(values)  # substituted values are not parsed again: braces are safe


def _refuse(rule: str) -> Refusal:
    return Refusal("prompt_not_allowed", f"Prompt not allowed: {rule}.")
