"""An OpenAI-compatible ``/v1/completions`` client: one event loop, a concurrency limit, retries.

The search is synchronous and runs in many threads at once (``abatch``, async agents, data builds);
each search step needs many small requests in parallel (one per branching point of a token trie).
So every client owns one event loop in a background thread with one ``httpx.AsyncClient``: a call
from any thread schedules its requests there and waits, and one semaphore bounds what all searches
together have in flight against the server.

Transient failures (connection refused or reset, timeouts, 408/429/5xx) are retried with exponential
backoff (`tenacity`); past the last attempt, or on any other error, `ServedModelError` says which
server, which request and why. A request is only ever answered whole: a stream cut halfway is retried
from its start, never returned in part.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

__all__ = ["REFERENCE_SCHEME", "CompletionsClient", "ServedModelError", "ServerSettings", "StreamConsumer"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
REFERENCE_SCHEME = "openai+"
"""Prefix of a served-model reference: ``openai+http://127.0.0.1:8000/v1#model-name``."""
_TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ServedModelError(RuntimeError):
    """A served model could not answer: the server is unreachable, refused the request, or answered oddly."""


class ServerSettings(BaseModel):
    """Where a served model is and how hard the client tries.

    Written as a reference string (`ServerSettings.parse`)::

        openai+http://127.0.0.1:8000/v1#qwen2.5-coder-0.5b-instruct
        openai+http://127.0.0.1:8000/v1?tokenizer=qwen2.5-coder-0.5b-instruct&max_concurrency=8#prm

    The fragment is the served model name (a LoRA name for a PRM served as an adapter); the query holds
    any of the fields below.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(description="The API root, e.g. http://127.0.0.1:8000/v1.")
    model: str = Field(description="The served model name (or LoRA adapter name).")
    tokenizer: str | None = Field(
        None, description="Local tokenizer reference (packaged name, folder, hub id); default: the served "
        "base model's name as the server lists it.")
    max_concurrency: int = Field(32, ge=1, description="Requests in flight at once, across all searches.")
    timeout: float = Field(300.0, gt=0, description="Seconds a request may take (a cold long prompt on a CPU is slow).")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to open a connection.")
    retries: int = Field(4, ge=0, description="Further attempts after a transient failure.")
    backoff: float = Field(0.5, ge=0, description="First wait between attempts in seconds; it doubles, up to 8 s.")
    api_key: str | None = Field(None, description="Sent as a bearer token when set.")
    structured_outputs: bool = Field(
        True, description="Decode argument values under their schema on the server (vLLM's per-request "
        "`structured_outputs` with a Lark grammar); false for servers without it: values are then sampled "
        "freely and checked afterwards.")

    @classmethod
    def parse(cls, ref: str) -> ServerSettings:
        """Settings from a reference string (see the class docstring).

        Raises:
            ValueError: The reference is not ``openai+http(s)://...#model`` or has an unknown option.

        """
        if not ref.startswith(REFERENCE_SCHEME):
            raise ValueError(f"A served-model reference starts with {REFERENCE_SCHEME!r}: got {ref!r}.")
        parts = urlsplit(ref[len(REFERENCE_SCHEME):])
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{ref!r}: expected {REFERENCE_SCHEME}http://HOST:PORT/v1#MODEL.")
        if not parts.fragment:
            raise ValueError(f"{ref!r} names no model: add '#MODEL' (the served model or LoRA name).")
        options = dict(parse_qsl(parts.query, strict_parsing=bool(parts.query)))
        unknown = set(options) - (set(cls.model_fields) - {"base_url", "model"})
        if unknown:
            raise ValueError(f"{ref!r}: unknown option(s) {sorted(unknown)}; known: tokenizer, max_concurrency, "
                             "timeout, connect_timeout, retries, backoff, api_key, structured_outputs.")
        base_url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        return cls(base_url=base_url, model=parts.fragment, **options)


def _transient(error: BaseException) -> bool:
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code in _TRANSIENT_STATUS
    return isinstance(error, httpx.TransportError)


class CompletionsClient:
    """Requests to one server, from any thread, on the client's own event loop.

    Args:
        settings: Where the server is and the limits.
        transport: An httpx transport to use instead of the network (tests).

    """

    def __init__(self, settings: ServerSettings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self._transport = transport
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: httpx.AsyncClient | None = None
        self._limit: asyncio.Semaphore | None = None

    # -- the loop -------------------------------------------------------------------------------
    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="toolprm-served", daemon=True)
                thread.start()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the client's loop and wait for its result (from any other thread)."""
        loop = self._start()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coro.close()
            raise RuntimeError("CompletionsClient.run was called from its own event loop; await the coroutine.")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await a coroutine that runs on the client's loop, from any other event loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._start()))

    def close(self) -> None:
        """Close the connections and stop the loop; a later call starts them again."""
        with self._lock:
            loop, http = self._loop, self._http
            self._loop = self._http = self._limit = None
        if loop is None:
            return
        if http is not None:
            asyncio.run_coroutine_threadsafe(http.aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)

    def _client(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        # Called on the client's loop only, so no lock is needed.
        if self._http is None or self._limit is None:
            s = self.settings
            headers = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
            limits = httpx.Limits(max_connections=s.max_concurrency, max_keepalive_connections=s.max_concurrency)
            self._http = httpx.AsyncClient(base_url=s.base_url, headers=headers, transport=self._transport,
                                           timeout=httpx.Timeout(s.timeout, connect=s.connect_timeout),
                                           limits=limits)
            self._limit = asyncio.Semaphore(s.max_concurrency)
        return self._http, self._limit

    # -- requests -------------------------------------------------------------------------------
    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        s = self.settings
        retrying = AsyncRetrying(stop=stop_after_attempt(s.retries + 1), reraise=True,
                                 wait=wait_exponential(multiplier=s.backoff, max=8.0),
                                 retry=retry_if_exception(_transient))
        try:
            async for state in retrying:
                with state:
                    return await attempt()
        except httpx.HTTPStatusError as error:
            body = error.response.text[:500]
            raise ServedModelError(f"{s.base_url} answered {error.response.status_code} to {what} for model "
                                   f"{s.model!r}: {body}") from error
        except httpx.TransportError as error:
            raise ServedModelError(f"{s.base_url} is unreachable ({type(error).__name__}: {error}) after "
                                   f"{s.retries + 1} attempt(s) of {what}; is the server running?") from error
        raise AssertionError("unreachable")  # pragma: no cover (tenacity either returns or raises)

    async def get(self, path: str) -> dict[str, Any]:
        """``GET`` a JSON document (e.g. ``/models``)."""
        async def attempt() -> dict[str, Any]:
            http, limit = self._client()
            async with limit:
                response = await http.get(path)
                response.raise_for_status()
                return _json(response, path)
        return await self._retrying(f"GET {path}", attempt)

    async def complete(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One ``/completions`` request; the model name is added."""
        body = {"model": self.settings.model, **payload}

        async def attempt() -> dict[str, Any]:
            http, limit = self._client()
            async with limit:
                response = await http.post("/completions", json=body)
                response.raise_for_status()
                return _json(response, "/completions")
        return await self._retrying("a completion", attempt)

    async def stream(self, payload: dict[str, Any], consumer: Callable[[], StreamConsumer[T]]) -> T:
        """A streamed ``/completions`` request, read by a fresh ``consumer()`` per attempt.

        The consumer sees each chunk and may end the stream early (closing it aborts the request on
        vLLM); an attempt that breaks is retried from the start with a new consumer.
        """
        body = {"model": self.settings.model, **payload, "stream": True}

        async def attempt() -> T:
            http, limit = self._client()
            reader = consumer()
            async with limit, _stream(http, body) as lines:
                async for line in lines:
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise ServedModelError(f"{self.settings.base_url} failed a streamed completion: "
                                               f"{chunk['error']}")
                    if reader.feed(chunk):
                        break
            return reader.result()
        return await self._retrying("a streamed completion", attempt)


class StreamConsumer(Protocol[T_co]):
    """Reads the chunks of one streamed completion attempt."""

    def feed(self, chunk: dict[str, Any]) -> bool:
        """Take one chunk; return ``True`` to stop reading."""
        ...

    def result(self) -> T_co:
        """What the attempt produced."""
        ...


@asynccontextmanager
async def _stream(http: httpx.AsyncClient, body: dict[str, Any]) -> AsyncIterator[AsyncIterator[str]]:
    async with http.stream("POST", "/completions", json=body) as response:
        if response.is_error:
            await response.aread()
            response.raise_for_status()
        yield response.aiter_lines()


def _json(response: httpx.Response, path: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as error:
        raise ServedModelError(f"{response.request.url} answered {path} with something that is not JSON: "
                               f"{response.text[:200]!r}") from error
    if not isinstance(data, dict):
        raise ServedModelError(f"{response.request.url} answered {path} with {type(data).__name__}, not an object.")
    return data
