"""A fake vLLM-style completions server on an httpx transport, backed by a real (tiny) transformers model.

It answers the fields the served client uses (token-id prompts, ``logprob_token_ids``, streamed samples
with ``return_token_ids``) by full forward passes, with no cache, so a test compares the client's trie
walk and stream reading with the in-process prefix-cached model on the same weights.
"""

from __future__ import annotations

import json
from typing import Any

import httpx


class FakeCompletionsServer:
    """``/v1/models`` and ``/v1/completions`` over one model; ``fail`` decides which requests fail first."""

    def __init__(self, model: Any, name: str = "tiny", lora: str = "prm"):
        self.model = model
        self.name = name
        self.lora = lora
        self.requests: list[dict[str, Any]] = []
        # Consumed one per request: an exception to raise, an HTTP status to answer, or None to answer normally.
        self.failures: list[Exception | int | None] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        failure = self.failures.pop(0) if self.failures else None
        if isinstance(failure, Exception):
            raise failure
        if failure is not None:
            return httpx.Response(failure, json={"error": {"message": f"failure {failure}"}})
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": self.name, "root": "/models/tiny", "parent": None},
                {"id": self.lora, "root": "/adapters/prm", "parent": self.name},
            ]})
        body = json.loads(request.content)
        self.requests.append(body)
        if body["model"] not in (self.name, self.lora):
            return httpx.Response(404, json={"error": {"message": f"The model `{body['model']}` does not exist."}})
        if body.get("stream"):
            return httpx.Response(200, content=self._stream(body).encode(),
                                  headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=self._next_token(body))

    def _logprobs(self, ids: list[int]) -> Any:
        import torch

        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        return torch.log_softmax(logits, dim=-1)

    def _next_token(self, body: dict[str, Any]) -> dict[str, Any]:
        logprobs = self._logprobs(body["prompt"])
        top = int(logprobs.argmax())
        wanted = {top, *body.get("logprob_token_ids", [])}
        return {
            "choices": [{"index": 0, "text": "", "finish_reason": "length", "logprobs": {
                "token_logprobs": [float(logprobs[top])],
                "top_logprobs": [{f"token_id:{t}": float(logprobs[t]) for t in wanted}]}}],
            "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": 1},
        }

    def _stream(self, body: dict[str, Any]) -> str:
        import torch

        generator = torch.Generator().manual_seed(body.get("seed") or 0)
        chunks = []
        for row in range(body.get("n", 1)):
            ids = list(body["prompt"])
            for step in range(body["max_tokens"]):
                logprobs = self._logprobs(ids)
                if body["temperature"] == 0:
                    token = int(logprobs.argmax())
                else:
                    probs = torch.softmax(logprobs / body["temperature"], dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                ids.append(token)
                ended = token in body.get("stop_token_ids", [])
                finish = "stop" if ended else ("length" if step == body["max_tokens"] - 1 else None)
                chunks.append({"choices": [{"index": row, "text": "", "token_ids": [token], "finish_reason": finish,
                                            "logprobs": {"token_logprobs": [float(logprobs[token])]}}]})
                if ended:
                    break
        return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
