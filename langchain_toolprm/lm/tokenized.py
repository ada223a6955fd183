"""What a tokenizer alone decides, shared by the in-process and the served models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


from langchain_toolprm.lm.types import StopFn


class TokenizedLM:
    """What a model's tokenizer alone decides: token ids, the end of a turn, where a sample ends.

    Shared by the in-process `CausalLM` and a served model (`langchain_toolprm.served.ServedLM`), so
    both tokenise, stop and cut samples by the same rules.

    Args:
        tokenizer: The model's tokenizer.
        extra_stop: End-of-turn ids the model's generation config adds to the tokenizer's.

    """

    name: str
    """The model's name, for logs and metadata (each kind of model sets its own)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, extra_stop: int | list[int] | None = None):
        self.tokenizer = tokenizer
        self.stop_ids = self._end_of_turn_ids(extra_stop)
        # Chat-control tokens (``<|im_start|>``, ``<|fim_prefix|>``...): never words of an answer.
        self.control_ids = sorted(i for i, token in getattr(tokenizer, "added_tokens_decoder", {}).items()
                                  if token.special and i not in self.stop_ids)

    # -- tokens ---------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without added special tokens (chat templates write their own)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens kept (formats and stop checks need them)."""
        return cast(str, self.tokenizer.decode(list(ids), skip_special_tokens=False))  # one id list: one string

    def _end_of_turn_ids(self, extra: int | list[int] | None) -> set[int]:
        ids: set[int] = set()
        for value in (self.tokenizer.eos_token_id, extra):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list):
                ids.update(v for v in value if isinstance(v, int))
        for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != self.tokenizer.unk_token_id and token_id >= 0:
                ids.add(token_id)
        return ids

    @property
    def end_of_turn(self) -> str:
        """The text of the token that ends an assistant turn."""
        for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id in self.stop_ids:
                return token
        return self.tokenizer.eos_token or ""

    def single_token_id(self, text: str) -> int | None:
        """The id of ``text`` if it is exactly one token, else ``None``."""
        ids = self.encode(text)
        return ids[0] if len(ids) == 1 else None

    def opening_token_ids(self, openings: Sequence[str], *, anywhere: bool = False) -> list[int]:
        r"""The tokens that begin one of ``openings``, leading whitespace aside (see `CausalLM.opening_logprob`).

        A token counts when its text starts with an opening or is the start of one: ``{"`` and ``{\n``
        both open ``{``, and ``<`` may open ``<tool_call>``. With ``anywhere``, also a token that holds an
        opening after other text (``({"``): what a text answer's first token may not be, since a model
        kept from its call's usual opening writes the call behind one more character.
        """
        texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))], skip_special_tokens=False)
        ids = []
        for i, text in enumerate(texts):
            text = text.lstrip()
            if text and any(text.startswith(o) or o.startswith(text) or (anywhere and o in text) for o in openings):
                ids.append(i)
        return ids

    def ended(self, tokens: list[int], stop: StopFn | None) -> tuple[str, bool] | None:
        """``(text, finished)`` once a sample ends, ``None`` while it goes on.

        The end-of-turn token ends every sample; with a stop function, a sample cut by it is finished
        only if the stop function accepts the text before it.
        """
        if tokens[-1] in self.stop_ids:
            text = self.decode(tokens[:-1])
            if stop is None:
                return text, True
            end = stop(text + "\n")
            return (text[:end], True) if end is not None else (text, False)
        if stop is None:
            return None
        text = self.decode(tokens)
        end = stop(text)
        return None if end is None else (text[:end], True)
