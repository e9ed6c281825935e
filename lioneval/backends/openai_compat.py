"""Backends for any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp, TGI, ...) and for OpenAI itself.

Requests go through the official ``openai`` client, asynchronously, with at most ``max_in_flight`` in flight over
one or more base URLs. The client's own retries are off: this module retries, so that it can count attempts, honour
``Retry-After``, spread retries with full jitter, and turn every failure into a Completion whose error says what
failed, why, and the fix. The API key is read from the environment when ``generate`` runs and never appears in names,
errors or logs.

A base URL may carry credentials (``http://user:password@host/v1``, e.g. for a proxy in front of vLLM): they are sent
as HTTP basic auth, which takes the place of the bearer key in the one ``Authorization`` header, and are kept out of
the backend's name, repr, ``to_spec()`` and every message. Whatever a server sends back (error bodies, previews and the
completion text itself, which callers store) is scrubbed of the key and the URL credentials before it leaves here.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import heapq
import importlib
import itertools
import json
import logging
import math
import os
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lioneval.backends.base import (
    Chat,
    Completion,
    OnResult,
    Sampling,
    basic_token,
    credential_secrets,
    redact_url,
    scrub,
    split_credentials,
)
from lioneval.errors import LionEvalError

__all__ = ["OpenAICompatibleBackend", "OpenAIBackend"]

log = logging.getLogger(__name__)

# Sent when the environment has no key: local servers usually ignore the header, and the client refuses to start
# without one.
_NO_KEY = "no-key"
# HTTP statuses worth another attempt: overload, timeouts and conflicts that clear up, and server faults
_RETRY_STATUS = {408, 409, 429}
# A Retry-After beyond this is a quota reset, not a hiccup: give up rather than stall the whole run.
_MAX_RETRY_AFTER_S = 600.0


@dataclass
class _Endpoint:
    url: str  # without credentials: what results record
    client: Any  # openai.AsyncOpenAI
    shown: str = ""  # what messages show: credentials as ***
    has_credentials: bool = False
    in_flight: int = 0
    connect_failures: int = 0  # consecutive, across items; reset by any answer
    refusing_since: float = 0.0  # time.monotonic() of the first failure in that streak
    down: bool = False  # given up on for the rest of the call
    last_connect_error: str = ""


@dataclass
class _Failure:
    message: str  # what failed and why, without the fix
    fix: str
    retry: bool
    retry_after: float | None = None
    connect: bool = False  # nothing answered at the URL at all
    partial: Completion | None = None  # what to return (with the error) if this failure persists


class OpenAICompatibleBackend:
    """Chat completions from one model served at one or more OpenAI-compatible base URLs.

    ``base_urls`` end in ``/v1``; with several, each request goes to the least busy one. ``api_key_env`` names the
    environment variable holding the key (read at each ``generate``). ``timeout`` is per attempt in seconds;
    ``max_retries`` counts retries after the first attempt; backoff is exponential from ``backoff_base`` up to
    ``backoff_max`` with full jitter, or the server's ``Retry-After`` when it sends one. ``extra_body`` is merged into
    every request (e.g. ``{"top_k": 20}`` for vLLM).
    """

    _max_tokens_field = "max_tokens"  # what most compatible servers accept; OpenAI's reasoning models want another
    _needs_key = False

    def __init__(
        self,
        model: str,
        base_urls: Sequence[str] | str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_in_flight: int = 32,
        timeout: float = 60.0,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        extra_body: Mapping[str, Any] | None = None,
    ):
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not all(isinstance(u, str) for u in urls):
            raise LionEvalError(
                f"base_urls must be http(s) URLs, got {redact_url(repr(urls))}",
                fix="pass e.g. 'http://localhost:8000/v1'",
            )
        urls = [u.strip().rstrip("/") for u in urls]
        if not model:
            raise LionEvalError("no model name given", fix="pass the name the server serves, e.g. model='qwen2-7b'")
        if not urls or not all(u.startswith(("http://", "https://")) for u in urls):
            raise LionEvalError(
                f"base_urls must be http(s) URLs, got {redact_url(repr(urls))}",
                fix="pass e.g. 'http://localhost:8000/v1'",
            )
        split = [split_credentials(u) for u in urls]
        if max_in_flight < 1 or timeout <= 0 or max_retries < 0 or backoff_base < 0 or backoff_max < 0:
            raise LionEvalError(
                "max_in_flight must be >= 1, timeout > 0, and max_retries, backoff_base, backoff_max >= 0",
                fix="correct the backend settings",
            )
        self.model = model
        self.base_urls = [clean for clean, _ in split]  # never the credentials: names, reprs and specs show these
        self._userinfo = [userinfo for _, userinfo in split]
        self.api_key_env = api_key_env
        self.max_in_flight = int(max_in_flight)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.extra_body = dict(extra_body) if extra_body else None
        self.name = f"openai-compatible:{model}@{self.base_urls[0]}"
        self._rng = random.Random()

    # -- construction from settings --------------------------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | Any, **options: Any) -> OpenAICompatibleBackend:
        """Build from a settings dict (YAML, CLI): the constructor's keywords, with ``base_url`` also accepted; or
        from a parsed spec (``kind:MODEL@URL[,URL]``, the grammar ``--judge`` and ``--policy`` share)."""
        if not isinstance(spec, Mapping):
            spec = {"model": spec.model, "api_key_env": spec.api_key_env, "max_in_flight": spec.max_in_flight,
                     "timeout": spec.timeout, "max_retries": spec.max_retries,
                     **({"base_urls": list(spec.base_urls)} if spec.base_urls or not cls._needs_key else {})}
        kw = dict(spec)
        if "base_url" in kw:
            kw["base_urls"] = kw.pop("base_url")
        allowed = cls._spec_keys()
        unknown = sorted(set(kw) - allowed)
        if unknown:
            raise LionEvalError(
                f"unknown {cls.__name__} setting(s) {unknown}", fix=f"use only: {', '.join(sorted(allowed))}"
            )
        if "model" not in kw:
            raise LionEvalError(f"{cls.__name__} settings lack 'model'", fix="add model: <name the server serves>")
        return cls(**kw)

    @classmethod
    def _spec_keys(cls) -> set[str]:
        return {
            "model", "base_urls", "api_key_env", "max_in_flight", "timeout", "max_retries", "backoff_base",
            "backoff_max", "extra_body",
        }  # fmt: skip

    def to_spec(self, *, credentials: bool = False) -> dict[str, Any]:
        """The settings that rebuild this backend (never the key itself, only where to find it).

        The base URLs come without their ``user:password@`` unless ``credentials=True`` asks for them, e.g. to hand
        the backend to another process; such a spec must not be stored or shown.
        """
        return {
            "model": self.model,
            "base_urls": self._urls(credentials),
            "api_key_env": self.api_key_env,
            "max_in_flight": self.max_in_flight,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "backoff_base": self.backoff_base,
            "backoff_max": self.backoff_max,
            "extra_body": self.extra_body,
        }

    def _urls(self, credentials: bool) -> list[str]:
        if not credentials:
            return list(self.base_urls)
        pairs = zip(self.base_urls, self._userinfo, strict=True)
        return [u.replace("://", f"://{info}@", 1) if info else u for u, info in pairs]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model!r}, base_urls={self.base_urls!r}, "
            f"max_in_flight={self.max_in_flight}, timeout={self.timeout}, max_retries={self.max_retries})"
        )

    # -- the Backend protocol --------------------------------------------------------------------------------------

    def generate(
        self, chats: Sequence[Chat], sampling: Sampling, *, on_result: OnResult | None = None
    ) -> list[Completion]:
        """One Completion per chat, in order; ``on_result(index, completion)`` runs as each finishes."""
        coro = self.agenerate(chats, sampling, on_result=on_result)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # Called from inside a running loop (a notebook, an async app): that loop cannot be blocked on, so the
        # requests get their own loop on a helper thread.
        with ThreadPoolExecutor(1, thread_name_prefix="lioneval-openai") as pool:
            return pool.submit(asyncio.run, coro).result()

    async def agenerate(
        self, chats: Sequence[Chat], sampling: Sampling, *, on_result: OnResult | None = None
    ) -> list[Completion]:
        """``generate`` for callers that already run an event loop."""
        chats = list(chats)
        if not chats:
            return []
        key = os.environ.get(self.api_key_env) or ""
        if self._needs_key and not key:
            fail = self._finish_error(
                f"{self.name} cannot send requests: {self.api_key_env} is not set",
                f"export {self.api_key_env}=<your key>",
                attempts=0,
            )
            refused = [Completion(None, error=fail.error, attempts=0) for _ in chats]
            for i, c in enumerate(refused):
                if on_result is not None:
                    on_result(i, c)
            return refused
        endpoints = [self._client(u, info, key) for u, info in zip(self.base_urls, self._userinfo, strict=True)]
        run = _Run(self, sampling, key, endpoints)
        try:
            return await collect([run.item(i, chat) for i, chat in enumerate(chats)], on_result)
        finally:
            for ep in run.endpoints:
                await ep.client.close()

    # -- internals -------------------------------------------------------------------------------------------------

    def _client(self, url: str, userinfo: str | None, key: str) -> _Endpoint:
        import openai

        http = None
        ctx = _ssl_context()
        if ctx is not None:
            http = openai.DefaultAsyncHttpxClient(verify=ctx)
        # The client gets the URL without credentials, so that they never reach its (or httpx's) logs and errors;
        # they travel as the header an HTTP client would build from them, in place of the bearer key.
        headers = {"Authorization": f"Basic {basic_token(userinfo)}"} if userinfo else None
        client = openai.AsyncOpenAI(
            base_url=url, api_key=key or _NO_KEY, max_retries=0, timeout=self.timeout, http_client=http,
            default_headers=headers,
        )  # fmt: skip
        shown = url.replace("://", "://***@", 1) if userinfo else url
        return _Endpoint(url, client, shown=shown, has_credentials=bool(userinfo))

    def _request(self, chat: Chat, sampling: Sampling) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "model": self.model,
            "messages": chat,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            self._max_tokens_field: sampling.max_tokens,
        }
        if sampling.seed is not None:
            kw["seed"] = sampling.seed
        if sampling.stop:
            kw["stop"] = list(sampling.stop)
        if sampling.top_logprobs is not None:
            kw["logprobs"] = True
            kw["top_logprobs"] = sampling.top_logprobs
        if self.extra_body:
            kw.update(self.extra_body)
        return kw

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # at least what the server asked; a little spread so items told the same moment do not return at once
            return retry_after + self._rng.uniform(0, 0.1 * retry_after)
        return self._rng.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    @staticmethod
    def _finish_error(message: str, fix: str, attempts: int) -> Completion:
        return Completion(None, error=f"{message}. Fix: {fix}", attempts=attempts)


class _Slots:
    """A bound on requests in flight that lets retries go ahead of first attempts.

    Like ``asyncio.Semaphore``, but waiters are served by (priority, arrival) instead of arrival alone.
    """

    def __init__(self, n: int):
        self._free = n
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @contextlib.asynccontextmanager
    async def take(self, *, first: bool) -> AsyncIterator[None]:
        await self._acquire(1 if first else 0)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        self._dispatch()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # the slot was handed over just as we were cancelled: pass it on
            raise

    def _release(self) -> None:
        self._free += 1
        self._dispatch()

    def _dispatch(self) -> None:
        while self._free > 0 and self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():  # skip waiters cancelled while queued
                self._free -= 1
                fut.set_result(None)


class _Run:
    """State shared by the items of one ``generate`` call: clients, the in-flight bound, URL health."""

    def __init__(self, backend: OpenAICompatibleBackend, sampling: Sampling, key: str, endpoints: list[_Endpoint]):
        self.b = backend
        self.sampling = sampling
        self.key = key
        self.endpoints = endpoints
        # what no text leaving this run may contain: the key, and the credentials of every URL
        self.secrets = [key, *(s for info in backend._userinfo for s in credential_secrets(info))]
        self.slots = _Slots(backend.max_in_flight)
        self._all_down = asyncio.Event()  # wakes items sleeping before a retry that can no longer happen
        self._turn = 0

    def _pick(self) -> _Endpoint | None:
        """The least busy URL that still answers; ties go round robin so equal URLs share evenly."""
        alive = [ep for ep in self.endpoints if not ep.down]
        if not alive:
            return None
        self._turn += 1
        n = len(alive)
        return min((alive[(self._turn + j) % n] for j in range(n)), key=lambda ep: ep.in_flight)

    async def item(self, index: int, chat: Chat) -> tuple[int, Completion]:
        return index, self._scrubbed(await self._attempts(index, chat))

    async def _attempts(self, index: int, chat: Chat) -> Completion:
        b = self.b
        request = b._request(chat, self.sampling)
        failure: _Failure | None = None
        tries = b.max_retries + 1
        for attempt in range(1, tries + 1):
            if failure is not None:
                delay = b._backoff(attempt - 1, failure.retry_after)
                log.debug("%s item %d: %s; retry in %.2fs", b.name, index, self._redact(failure.message), delay)
                await self._sleep(delay)
            # a retry goes ahead of items not yet started: queued behind them it would finish last and stretch the run
            async with self.slots.take(first=attempt == 1):
                ep = self._pick()
                if ep is None:  # every URL refused for longer than an item retries: trying on only delays the error
                    return self._gave_up(attempt - 1, self._connect_failure(None), all_down=True)
                ep.in_flight += 1
                t0 = time.monotonic()
                try:
                    # The client's generic post (documented for endpoints it does not model) skips its typed
                    # transform of the params and the pydantic model of the answer: together they cost more CPU
                    # than the rest of a request, and the answer is checked field by field in _parse anyway.
                    # The client's timeout bounds each read, not the answer: a server that trickles a few bytes
                    # at a time would hold the item for as long as it likes. wait_for bounds the whole response.
                    post = ep.client.post("/chat/completions", body=request, cast_to=object)
                    response = await asyncio.wait_for(post, b.timeout)
                    failure = None
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # classified below; a backend never raises for one item
                    failure = self._classify(err, ep)
                finally:
                    ep.in_flight -= 1
            if failure is None:
                ep.connect_failures = 0
                parsed = self._parse(response, ep, attempt)
                if isinstance(parsed, Completion):
                    parsed.meta.update(base_url=ep.url, latency_s=round(time.monotonic() - t0, 4))
                    return parsed
                failure = parsed
            if failure.connect:
                self._refused(ep)
            else:
                ep.connect_failures = 0
            if not failure.retry:
                return self._gave_up(attempt, failure)
            if failure.retry_after is not None and failure.retry_after > _MAX_RETRY_AFTER_S:
                failure.message += f"; it asked to wait {failure.retry_after:.0f} s"
                return self._gave_up(attempt, failure)
        assert failure is not None  # the loop returns on success
        return self._gave_up(tries, failure)

    def _refused(self, ep: _Endpoint) -> None:
        """Count a failed connection; drop a URL that refused longer than one item would keep retrying it.

        Without this, a server that was never started costs every item its whole backoff schedule. The streak must
        also last a while (up to 5 s), so a server that restarts mid-run is waited for rather than abandoned.
        """
        now = time.monotonic()
        if ep.connect_failures == 0:
            ep.refusing_since = now
        ep.connect_failures += 1
        b = self.b
        patience = min(5.0, sum(min(b.backoff_max, b.backoff_base * 2**k) / 2 for k in range(b.max_retries)))
        if ep.connect_failures > b.max_retries and now - ep.refusing_since >= patience:
            ep.down = True
            if all(e.down for e in self.endpoints):
                self._all_down.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._all_down.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _gave_up(self, attempts: int, failure: _Failure, *, all_down: bool = False) -> Completion:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if all_down:
            message = f"{failure.message}; no URL accepted connections (this item stopped after {tries})"
        elif failure.retry:
            message = f"{failure.message} on each of {tries}"
        else:
            message = failure.message
        if failure.partial is None:
            return self.b._finish_error(message, failure.fix, attempts)
        completion = failure.partial  # keeps what the server did say (finish reason, token counts)
        completion.error = f"{message}. Fix: {failure.fix}"
        completion.attempts = attempts
        return completion

    def _redact(self, text: str) -> str:
        # servers echo keys they reject, and error texts may quote a URL with its credentials
        return redact_url(scrub(text, self.secrets))

    def _scrubbed(self, completion: Completion) -> Completion:
        """The completion without any secret: callers print its error and store its text."""
        if completion.error is not None:
            completion.error = self._redact(completion.error)
        if completion.text:
            completion.text = scrub(completion.text, self.secrets)
        return completion

    def _classify(self, err: Exception, ep: _Endpoint) -> _Failure:
        import openai

        b, url = self.b, ep.shown
        if isinstance(err, (openai.APITimeoutError, asyncio.TimeoutError)):
            return _Failure(
                f"no complete answer from {url} within the {b.timeout:g} s timeout",
                "raise timeout=, lower max_in_flight, or check the server's load",
                retry=True,
            )
        if isinstance(err, openai.APIConnectionError):
            if _is_connect_error(err):
                return self._connect_failure(ep, err)
            return _Failure(f"the connection to {url} broke ({_innermost(err)})", "check the server's logs", retry=True)
        if isinstance(err, openai.APIStatusError):
            return self._status_failure(err, ep)
        if isinstance(err, json.JSONDecodeError):  # a body cut short (a proxy, a restarting server): try again
            return _Failure(
                f"{url} answered with a truncated or malformed JSON body ({err.msg} at character {err.pos})",
                "check the server's logs and any proxy in front of it; raise max_retries if this is transient",
                retry=True,
            )
        if isinstance(err, openai.APIResponseValidationError) or _is_validation_error(err):
            return _Failure(
                f"{url} answered with a body that is not a chat completion ({type(err).__name__}: {err})",
                "check that the base URL points at an OpenAI-compatible /v1 endpoint",
                retry=False,
            )
        return _Failure(
            f"request to {url} failed unexpectedly ({type(err).__name__}: {err})",
            "report this with the server's name and version",
            retry=False,
        )

    def _connect_failure(self, ep: _Endpoint | None, err: Exception | None = None) -> _Failure:
        if ep is not None and err is not None:
            ep.last_connect_error = f"could not connect to {ep.shown} ({_innermost(err)})"
        eps = [ep] if ep is not None else self.endpoints
        message = "; ".join(e.last_connect_error or f"could not connect to {e.shown}" for e in eps)
        return _Failure(
            message,
            "start the server, or correct the base URL (host, port, and the /v1 suffix)",
            retry=True,
            connect=True,
        )

    def _status_failure(self, err: Any, ep: _Endpoint) -> _Failure:
        b, url = self.b, ep.shown
        status = int(err.status_code)
        detail = _server_message(err, self.secrets)
        what = f"{url} answered HTTP {status}" + (f" ({detail})" if detail else "")
        if status == 429:
            return _Failure(
                f"{what}: rate limited",
                "lower max_in_flight, raise max_retries, or raise the server's rate limit",
                retry=True,
                retry_after=_retry_after(err.response.headers),
            )
        if status in _RETRY_STATUS or status >= 500:
            return _Failure(
                f"{what}: the server failed",
                "check the server's logs; raise max_retries if the failures are transient",
                retry=True,
                retry_after=_retry_after(err.response.headers),
            )
        if status == 401 and ep.has_credentials:
            return _Failure(
                f"{what}: unauthorized, the user:password in the base URL was rejected",
                "correct the credentials in the base URL (they are sent as HTTP basic auth instead of the key)",
                retry=False,
            )
        if status == 401:
            why = "the key was rejected" if self.key else f"{b.api_key_env} is not set, so a placeholder key was sent"
            return _Failure(
                f"{what}: unauthorized, {why}", f"set {b.api_key_env} to a key this server accepts", retry=False
            )
        if status == 403:
            return _Failure(
                f"{what}: the key in {b.api_key_env} may not use model {b.model!r}",
                f"set {b.api_key_env} to a key with access to {b.model!r}, or choose another model",
                retry=False,
            )
        if status == 404:
            return _Failure(
                f"{what}: model {b.model!r} or the chat endpoint was not found",
                f"check the base URL ends in /v1 and that {b.model!r} is among the models listed at {url}/models",
                retry=False,
            )
        return _Failure(
            f"{what}: the request was refused as invalid",
            "check the model name and the sampling settings (max_tokens within the context, top_logprobs supported)",
            retry=False,
        )

    def _parse(self, response: Any, ep: _Endpoint, attempts: int) -> Completion | _Failure:
        """The completion in a 200 answer, or the failure it amounts to.

        A 200 without a choice or with empty content is what an overloaded or restarting server (or a proxy) sends
        now and then, so both are retried; an answer cut at max_tokens is not, as the same request gets the same cut.
        """
        b, sampling, url = self.b, self.sampling, ep.shown
        if not isinstance(response, dict):  # the client returns the text of a non-JSON body: not an API endpoint
            return _Failure(
                f"{url} answered with a body that is not a chat completion (got {_preview(response, self.secrets)})",
                "check that the base URL points at an OpenAI-compatible /v1 endpoint",
                retry=False,
            )
        choices = response.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if choice is None:
            return _Failure(
                f"{url} answered without a chat completion choice (got {_preview(response, self.secrets)})",
                "check that the base URL points at an OpenAI-compatible /v1 endpoint and the server's logs",
                retry=True,
            )
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        usage = response.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        completion = Completion(
            text=text if isinstance(text, str) else None,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            attempts=attempts,
        )
        if not isinstance(text, str) or not text.strip():
            return _Failure(
                f"model {b.model!r} at {url} returned empty content (finish_reason={completion.finish_reason!r})",
                "raise max_tokens if the reason is 'length' (a reasoning model may spend them all on thinking); "
                "otherwise check the chat template and the prompt",
                retry=completion.finish_reason != "length",
                partial=completion,
            )
        if sampling.top_logprobs is not None:
            logprobs = choice.get("logprobs")
            tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
            top = _top_logprobs(tokens)
            if top is None:
                completion.error = (
                    f"{url} returned no usable logprobs though top_logprobs={sampling.top_logprobs} was asked. "
                    "Fix: use a server that returns them (vLLM: raise --max-logprobs), or a judge that needs none"
                )
                return completion
            completion.top_logprobs = top
        return completion


@functools.lru_cache(maxsize=1)
def _ssl_context() -> Any:
    """The HTTP library's default TLS context, built once per process.

    Each client would otherwise load the CA bundle again (about 0.1 s), and clients live for one ``generate`` call.
    Built by the library openai uses (httpx2, or httpx for openai 1.x), so trust settings stay the library's.
    """
    for name in ("httpx2", "httpx"):
        try:
            return importlib.import_module(name).create_ssl_context()
        except (ImportError, AttributeError):
            continue
    return None


def _top_logprobs(tokens: Any) -> list[dict[str, float]] | None:
    if not isinstance(tokens, list) or not tokens:
        return None
    out = []
    try:
        for tok in tokens:
            cands: dict[str, float] = {}
            for cand in tok.get("top_logprobs") or []:
                # byte-level tokens can decode to the same string; the first listed is the likelier
                cands.setdefault(str(cand["token"]), float(cand["logprob"]))
            out.append(cands)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return out


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _preview(value: Any, secrets: Sequence[str] = ()) -> str:
    text = scrub(repr(value), secrets)  # before cutting: a cut secret would no longer be found
    return text if len(text) <= 120 else text[:117] + "..."


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and cur not in seen and len(seen) < 10:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _is_connect_error(err: BaseException) -> bool:
    # httpx/httpcore name their failed-to-connect errors ConnectError; the socket says ConnectionRefusedError
    return any(isinstance(e, ConnectionRefusedError) or type(e).__name__ == "ConnectError" for e in _chain(err))


def _innermost(err: BaseException) -> str:
    chain = _chain(err)
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    last = chain[-1]
    return f"{type(last).__name__}: {last}" if str(last) else type(last).__name__


def _is_validation_error(err: BaseException) -> bool:
    return type(err).__name__ == "ValidationError" and type(err).__module__.startswith("pydantic")


def _server_message(err: Any, secrets: Sequence[str] = ()) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return scrub(str(inner["message"]), secrets)[:300]  # scrubbed before the cut, which would hide a secret
        if isinstance(inner, str):
            return scrub(inner, secrets)[:300]
    return ""


def _retry_after(headers: Any) -> float | None:
    """Seconds the server asked to wait: ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAIBackend(OpenAICompatibleBackend):
    """OpenAI's own API: the base URL comes from ``OPENAI_BASE_URL`` or is OpenAI's, and a key is required."""

    DEFAULT_BASE_URL = "https://api.openai.com/v1"
    _max_tokens_field = "max_completion_tokens"  # the o-series and later models refuse max_tokens
    _needs_key = True

    def __init__(self, model: str, base_urls: Sequence[str] | str | None = None, **kw: Any):
        urls = base_urls or os.environ.get("OPENAI_BASE_URL") or self.DEFAULT_BASE_URL
        super().__init__(model, urls, **kw)
        if self.base_urls == [self.DEFAULT_BASE_URL]:
            self.name = f"openai:{model}"


async def collect(items: list[Any], on_result: OnResult | None) -> list[Completion]:
    """Run coroutines that each return ``(index, completion)``, reporting each as it ends; the completions in index
    order. Whatever is still running when this stops (an error, a cancellation) is cancelled and awaited."""
    tasks = [asyncio.create_task(it) for it in items]
    results: list[Completion | None] = [None] * len(tasks)
    try:
        for next_done in asyncio.as_completed(tasks):
            i, completion = await next_done
            results[i] = completion
            if on_result is not None:
                on_result(i, completion)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return results  # type: ignore[return-value]  # every slot is filled once as_completed is exhausted
