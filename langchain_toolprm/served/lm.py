"""A causal LM behind an OpenAI-compatible completions server, scored and sampled by token ids.

The client tokenises locally, with the model's own tokenizer, and sends prompts as token ids. The
search's rule is that a prompt (the root) and the assistant text after it are tokenised apart, as
in training (`langchain_toolprm.lm`); a server's ``/tokenize`` would cost a round trip per text and
could not keep that rule for a text it receives whole. Local ids also make every request's prefix
the same tokens, which is what the server's prefix cache matches on.

Scores come from next-token logprobs only: the continuations to score form a token trie, and each
node that predicts a token is one ``max_tokens=1`` request asking for the logprobs of exactly the
tokens that follow it (``logprob_token_ids``). All of them go out at once; the shared prompt is in
the server's prefix cache after the first. Prompt logprobs (``echo``, ``prompt_logprobs``) would
score a whole continuation in one request, but they bypass vLLM's prefix cache, so every request
would pay for the whole prompt again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from langchain_toolprm.constrained import value_grammar_text
from langchain_toolprm.lm import Sample, StopFn, TokenizedLM, Usage, common_prefix, logsumexp
from langchain_toolprm.served.client import CompletionsClient, ServedModelError, ServerSettings

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["LOGPROB_IDS_PER_REQUEST", "ServedLM", "load_tokenizer", "request_seed"]

LOGPROB_IDS_PER_REQUEST = 128
"""Most tokens one request may name in ``logprob_token_ids`` (vLLM 0.32's ``MAX_LOGPROB_TOKEN_IDS``)."""


def load_tokenizer(ref: str) -> PreTrainedTokenizerBase:
    """A tokenizer from a packaged model name, a folder (with or without weights), a ``.gguf`` or a hub id."""
    from transformers import AutoTokenizer

    from langchain_toolprm.models import resolve_model

    return AutoTokenizer.from_pretrained(str(resolve_model(ref)))


class ServedLM(TokenizedLM):
    """A served model and its local tokenizer.

    Args:
        settings: The server and the served model name.
        tokenizer: The model's tokenizer; loaded from ``settings.tokenizer`` (or the name the server
            lists for the model's base) when not given.
        client: A client to share (several models on one server); a new one otherwise.

    """

    def __init__(self, settings: ServerSettings, tokenizer: PreTrainedTokenizerBase | None = None,
                 client: CompletionsClient | None = None):
        self.settings = settings
        self.client = client or CompletionsClient(settings)
        self.name = settings.model
        super().__init__(tokenizer or load_tokenizer(settings.tokenizer or self._served_base()))
        self._openings: dict[tuple[str, ...], list[int]] = {}
        self._unconstrained: set[str] = set()  # schemas the server refused to constrain

    @classmethod
    def from_reference(cls, ref: str | ServerSettings) -> ServedLM:
        """A served model from ``openai+http://HOST:PORT/v1#MODEL`` (see `ServerSettings`)."""
        return cls(ref if isinstance(ref, ServerSettings) else ServerSettings.parse(ref))

    def _served_base(self) -> str:
        """The name of the base model under ``settings.model`` as the server lists it (a LoRA's parent)."""
        listing = self.client.run(self.client.get("/models")).get("data") or []
        entries = {entry.get("id"): entry for entry in listing if isinstance(entry, dict)}
        if self.settings.model not in entries:
            raise ServedModelError(f"{self.settings.base_url} does not serve {self.settings.model!r}; it serves "
                                   f"{sorted(str(k) for k in entries)}.")
        return str(entries[self.settings.model].get("parent") or self.settings.model)

    # -- requests -------------------------------------------------------------------------------
    async def next_logprobs(self, prompt: Sequence[int], token_ids: Sequence[int], usage: Usage | None = None
                            ) -> dict[int, float]:
        """Log-probabilities of ``token_ids`` right after the token ids ``prompt``, in one request."""
        wanted = sorted(set(token_ids))
        answer = await self.client.complete({
            "prompt": list(prompt), "max_tokens": 1, "temperature": 0.0, "logprobs": 1,
            "logprob_token_ids": wanted, "return_tokens_as_token_ids": True,
        })
        _count(usage, answer)
        try:
            top = answer["choices"][0]["logprobs"]["top_logprobs"][0]
            found = {int(key.rsplit(":", 1)[1]): float(value) for key, value in top.items()}
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise ServedModelError(f"{self.settings.base_url} returned no next-token logprobs for "
                                   f"{self.settings.model!r} ({type(error).__name__}: {error}).") from error
        missing = [t for t in wanted if t not in found]
        if missing:
            raise ServedModelError(
                f"{self.settings.base_url} left out the logprobs of tokens {missing[:5]}: the server must honour "
                "`logprob_token_ids` (vLLM does; servers that only give top-k logprobs cannot score a trie).")
        return {t: found[t] for t in wanted}

    async def opening_logprob(self, prompt: Sequence[int], openings: Sequence[str], usage: Usage | None = None
                              ) -> float:
        """Log-probability that the token after ``prompt`` begins one of ``openings``, over the whole vocabulary.

        The same sum as `langchain_toolprm.lm.CausalLM.opening_logprob`, from next-token requests of at
        most `LOGPROB_IDS_PER_REQUEST` named tokens each (vLLM's limit), all on the same cached prompt.
        """
        key = tuple(openings)
        ids = self._openings.get(key)
        if ids is None:
            ids = self._openings[key] = self.opening_token_ids(key)
        if not ids:
            return -math.inf
        chunks = [ids[i : i + LOGPROB_IDS_PER_REQUEST] for i in range(0, len(ids), LOGPROB_IDS_PER_REQUEST)]
        found = await asyncio.gather(*(self.next_logprobs(prompt, chunk, usage) for chunk in chunks))
        return logsumexp([value for part in found for value in part.values()])

    async def tree_logprobs(self, root_ids: Sequence[int], items: Sequence[tuple[str, str]],
                            usage: Usage | None = None) -> list[list[float]]:
        """What `langchain_toolprm.lm.CausalLM.tree_logprobs` returns, from next-token requests.

        Each text is ``root + tail + continuation``, the part after the root tokenised whole; per item,
        the log-probabilities of the tokens that ``root + tail`` does not fix. Every distinct context
        that predicts one of them is one request, all sent at once.
        """
        root = list(root_ids)
        tails = {tail: root + self.encode(tail) for tail, _ in items}
        fulls = [root + self.encode(tail + continuation) for tail, continuation in items]
        needed: dict[tuple[int, ...], set[int]] = {}
        for full, (tail, _) in zip(fulls, items, strict=True):
            start = max(min(common_prefix(full, tails[tail]), len(full) - 1), 1)
            for p in range(start, len(full)):
                needed.setdefault(tuple(full[:p]), set()).add(full[p])
        contexts = list(needed)
        answers = await asyncio.gather(*(self.next_logprobs(c, sorted(needed[c]), usage) for c in contexts))
        table = dict(zip(contexts, answers, strict=True))
        out = []
        for full, (tail, _) in zip(fulls, items, strict=True):
            start = max(min(common_prefix(full, tails[tail]), len(full) - 1), 1)
            out.append([table[tuple(full[:p])][full[p]] for p in range(start, len(full))])
        return out

    async def sample(self, prompt: Sequence[int], n: int, *, temperature: float, max_new_tokens: int,
                     stop: StopFn | None = None, seed: int | None = None, usage: Usage | None = None,
                     schema: Mapping[str, Any] | None = None) -> list[Sample]:
        """``n`` continuations of the token ids ``prompt``, cut where ``stop`` says, as `CausalLM.sample` does.

        The stop function is Python, not a string the server knows, so the samples stream in and the
        stream is closed (the server aborts the request) once every sample has ended. With ``schema``
        (an argument value's), the server decodes under the value's grammar
        (`langchain_toolprm.constrained.value_grammar_text`, vLLM's ``structured_outputs``), so every
        sample is a valid value as in process. A server that refuses the grammar (400/422: no
        structured outputs, or a schema its backend cannot compile) gets that schema's values
        unconstrained from then on, with a `RuntimeWarning`; they are still checked afterwards.
        """
        if n <= 0:
            return []
        if temperature == 0 and n > 1:  # greedy rows are all the same; servers refuse n > 1 at temperature 0
            return (await self.sample(prompt, 1, temperature=0.0, max_new_tokens=max_new_tokens, stop=stop,
                                      usage=usage, schema=schema)) * n
        payload: dict[str, Any] = {
            "prompt": list(prompt), "n": n, "max_tokens": max_new_tokens, "temperature": temperature,
            # The model's own distribution: no server-side defaults from its generation config.
            "top_p": 1.0, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0,
            "logprobs": 0, "return_token_ids": True, "skip_special_tokens": False,
            "stop_token_ids": sorted(self.stop_ids), "stream_options": {"include_usage": True},
        }
        if temperature > 0 and seed is not None:
            payload["seed"] = seed
        key = json.dumps(schema, sort_keys=True) if schema is not None else None
        if key is None or not self.settings.structured_outputs or key in self._unconstrained:
            return await self.client.stream(payload, lambda: _SampleReader(self, n, max_new_tokens, stop, usage))
        constrained = {**payload, "structured_outputs": {"grammar": value_grammar_text(schema or {})}}
        try:
            return await self.client.stream(constrained, lambda: _SampleReader(self, n, max_new_tokens, stop, usage))
        except ServedModelError as error:
            cause = error.__cause__
            if not (isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code in (400, 422)):
                raise
            self._unconstrained.add(key)
            warnings.warn(f"{self.settings.base_url} refused to constrain values of {key} ({error}); they are "
                          "sampled freely and checked afterwards. Serve with vLLM (structured outputs) or pass "
                          "structured_outputs=false in the reference to skip the attempt.",
                          RuntimeWarning, stacklevel=2)
        return await self.client.stream(payload, lambda: _SampleReader(self, n, max_new_tokens, stop, usage))


class _SampleReader:
    """Collects the streamed samples of one attempt and says when all of them have ended."""

    def __init__(self, lm: ServedLM, n: int, max_new_tokens: int, stop: StopFn | None, usage: Usage | None):
        self.lm, self.stop, self.max_new_tokens, self.usage = lm, stop, max_new_tokens, usage
        self.tokens: list[list[int]] = [[] for _ in range(n)]
        self.logprob = [0.0] * n
        self.done: list[Sample | None] = [None] * n
        self.counted = False

    def feed(self, chunk: dict[str, Any]) -> bool:
        if chunk.get("usage"):
            _count(self.usage, chunk)
            self.counted = True
        for choice in chunk.get("choices") or []:
            row = int(choice["index"])
            if self.done[row] is not None:
                continue
            ids = choice.get("token_ids")
            if ids is None:
                raise ServedModelError(f"{self.lm.settings.base_url} streams no token ids: the server must honour "
                                       "`return_token_ids` (vLLM does).")
            logprobs = (choice.get("logprobs") or {}).get("token_logprobs") or []
            for token, logprob in zip(ids, logprobs, strict=False):
                self.tokens[row].append(int(token))
                self.logprob[row] += float(logprob)
                if self._end(row, eot=False):
                    break
            if self.done[row] is None and choice.get("finish_reason"):
                self._end(row, eot=choice["finish_reason"] == "stop", final=True)
        return all(d is not None for d in self.done)

    def _end(self, row: int, *, eot: bool, final: bool = False) -> bool:
        tokens = self.tokens[row]
        if eot and tokens and tokens[-1] not in self.lm.stop_ids:
            tokens = [*tokens, next(iter(self.lm.stop_ids))]  # a server that drops the end-of-turn token
        ended = self.lm.ended(tokens, self.stop) if tokens else None
        if ended is None and not (final or len(tokens) >= self.max_new_tokens):
            return False
        text, finished = ended if ended is not None else (self.lm.decode(tokens), False)
        self.done[row] = Sample(text, tuple(self.tokens[row]), self.logprob[row], finished)
        return True

    def result(self) -> list[Sample]:
        missing = [i for i, d in enumerate(self.done) if d is None]
        if missing:
            raise ServedModelError(f"{self.lm.settings.base_url} ended a stream before samples {missing} finished.")
        if self.usage is not None and not self.counted:  # closed early: count the tokens generated
            self.usage.add(sum(len(t) for t in self.tokens))
        return [d for d in self.done if d is not None]


def _count(usage: Usage | None, answer: dict[str, Any]) -> None:
    """Count one request: the tokens the server computed (prompt tokens it did not have cached, and outputs)."""
    if usage is None:
        return
    stats = answer.get("usage") or {}
    cached = (stats.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    usage.add(int(stats.get("prompt_tokens", 0)) - int(cached) + int(stats.get("completion_tokens", 0)))


def request_seed(seed: int, counter: int) -> int:
    """A request's sampling seed from its session's seed and its place in the session (reproducible runs)."""
    digest = hashlib.blake2b(f"{seed}:{counter}".encode(), digest_size=7).digest()
    return int.from_bytes(digest, "big")
