"""Fan-out over many OpenAI-compatible servers: ``openai-compatible:MODEL@http://a:8000/v1,http://b:8000/v1``.

With several base URLs (vLLM or SGLang servers of the same model), requests are spread over the servers that answer:

* health checks: each URL is probed (``GET /models``) before the first request and, while it is down, every
  ``health_interval`` seconds; a URL that does not answer gets no traffic until it answers again;
* per-server concurrency: ``max_in_flight`` bounds each URL (the total is that times the servers that are up);
* failover: a request whose server refused it or dropped the connection (a crashed or killed server) moves at once
  to another server, without counting as a failed attempt, and that server's waiting requests move with it;
* prefix affinity: requests that share a long prefix go to the same server, whose prefix cache (vLLM's automatic
  prefix caching, SGLang's radix cache) then serves the prefix once: both Arena-Hard games of a question (same
  judge prompt and question, answers in swapped order), and the same question across checkpoints (same prefix in
  every batch). Each request is queued at the server its prefix hashes to (rendezvous hashing, so only the keys of
  a server that goes down move); a server with nothing queued takes work from the longest queue, so affinity
  never leaves a server idle.

With one base URL nothing of this applies: it is a server, or a router (the vLLM router, SGLang's gateway) that
does its own cache-aware routing, and everything is sent there.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lioneval.backends.base import Chat, Completion, OnResult, Sampling
from lioneval.backends.openai_compat import (
    _MAX_RETRY_AFTER_S,
    OpenAICompatibleBackend,
    _Endpoint,
    _Failure,
    _Run,
    collect,
)
from lioneval.errors import LionEvalError

__all__ = ["FanoutBackend", "affinity_keys"]

_MIN_SHARED = 32  # characters beyond the batch's common prefix that two requests must share to count as a pair
_HEAD = 64  # characters beyond the common prefix that route a request that shares nothing longer


def _flat(chat: Chat) -> str:
    return "".join(f"\x1e{m.get('role', '')}\x1f{m.get('content', '')}" for m in chat)


def _lcp(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def affinity_keys(chats: Sequence[Chat]) -> list[str]:
    """The routing key of each chat: the prefix it shares with its closest neighbour in the batch (both games of a
    pairwise judgment: the judge prompt and the question), else its first characters beyond the prefix every chat
    of the batch shares (the same question in another batch gets the same key)."""
    texts = [_flat(c) for c in chats]
    n = len(texts)
    if n < 2:
        return [t[:_HEAD] for t in texts]
    order = sorted(range(n), key=texts.__getitem__)
    common = _lcp(texts[order[0]], texts[order[-1]])
    near = [0] * n
    for a, b in zip(order, order[1:], strict=False):
        shared = _lcp(texts[a], texts[b])
        near[a], near[b] = max(near[a], shared), max(near[b], shared)
    return [t[:near[i]] if near[i] >= common + _MIN_SHARED else t[:common + _HEAD] for i, t in enumerate(texts)]


def _score(key: bytes, url: str) -> int:
    return int.from_bytes(hashlib.blake2b(key + url.encode(), digest_size=8).digest(), "big")


@dataclass
class _Waiter:
    index: int
    future: asyncio.Future


@dataclass
class _Health:
    probed: float = 0.0  # time.monotonic() of the last probe
    queue: collections.deque = field(default_factory=collections.deque)  # requests waiting for this URL


class FanoutBackend(OpenAICompatibleBackend):
    """``OpenAICompatibleBackend`` that spreads requests over several servers; see the module docstring.

    ``max_in_flight`` bounds each URL; ``health_interval`` is seconds between probes of a URL that is down,
    ``health_timeout`` the seconds a probe waits; ``affinity=False`` sends each request to the least busy URL.
    """

    def __init__(self, model: str, base_urls: Sequence[str] | str, *, health_interval: float = 2.0,
                 health_timeout: float = 3.0, affinity: bool = True, **kw: Any):
        super().__init__(model, base_urls, **kw)
        if health_interval <= 0 or health_timeout <= 0:
            raise LionEvalError("health_interval and health_timeout must be > 0 seconds",
                                fix="e.g. health_interval: 2, health_timeout: 3")
        self.health_interval = float(health_interval)
        self.health_timeout = float(health_timeout)
        self.affinity = bool(affinity)

    @classmethod
    def _spec_keys(cls) -> set[str]:
        return super()._spec_keys() | {"health_interval", "health_timeout", "affinity"}

    def to_spec(self, *, credentials: bool = False) -> dict[str, Any]:
        return {**super().to_spec(credentials=credentials), "health_interval": self.health_interval,
                "health_timeout": self.health_timeout, "affinity": self.affinity}

    async def agenerate(self, chats: Sequence[Chat], sampling: Sampling, *, on_result: OnResult | None = None
                        ) -> list[Completion]:
        chats = list(chats)
        if len(self.base_urls) < 2 or not chats:  # one server or a router: nothing to spread
            return await super().agenerate(chats, sampling, on_result=on_result)
        key = os.environ.get(self.api_key_env) or ""
        endpoints = [self._client(u, info, key) for u, info in zip(self.base_urls, self._userinfo, strict=True)]
        run = _FanoutRun(self, sampling, key, endpoints, chats)
        try:
            await run.probe_all()
            run.start_health()
            return await collect([run.item(i, chat) for i, chat in enumerate(chats)], on_result)
        finally:
            await run.stop_health()
            for ep in run.endpoints:
                await ep.client.close()


class _FanoutRun(_Run):
    """One ``generate`` call over several URLs: per-URL queues and bounds, probes, failover."""

    def __init__(self, backend: FanoutBackend, sampling: Sampling, key: str, endpoints: list[_Endpoint],
                 chats: list[Chat]):
        super().__init__(backend, sampling, key, endpoints)
        self.fb = backend
        self.health = {ep.url: _Health() for ep in endpoints}
        keys = affinity_keys(chats) if backend.affinity else [str(i) for i in range(len(chats))]
        self.keys = [hashlib.blake2b(k.encode(), digest_size=16).digest() for k in keys]
        self._task: asyncio.Task | None = None
        self._changed = asyncio.Event()

    # -- health ------------------------------------------------------------------------------------------------
    async def _probe(self, ep: _Endpoint) -> bool:
        import openai

        try:
            await asyncio.wait_for(ep.client.get("/models", cast_to=object), self.fb.health_timeout)
        except openai.APIStatusError:
            return True  # it answered: up, whatever it thinks of /models or the key
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - refused, reset or timed out: down
            return False
        finally:
            self.health[ep.url].probed = time.monotonic()
        return True

    async def probe_all(self) -> None:
        up = await asyncio.gather(*(self._probe(ep) for ep in self.endpoints))
        if any(up):  # with none up, requests go out anyway and fail with the reason (and their retries)
            for ep, ok in zip(self.endpoints, up, strict=True):
                if not ok:
                    ep.last_connect_error = f"could not connect to {ep.shown} (health check)"
                    self._down(ep)

    def start_health(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop_health(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), self.fb.health_interval)
            except asyncio.TimeoutError:
                pass
            self._changed.clear()
            now = time.monotonic()
            due = [ep for ep in self.endpoints if ep.down and now - self.health[ep.url].probed >=
                   self.fb.health_interval]
            for ep, ok in zip(due, await asyncio.gather(*(self._probe(ep) for ep in due)), strict=True):
                if ok:
                    ep.down, ep.connect_failures = False, 0
                    self._all_down.clear()
                    self._dispatch()

    def _refused(self, ep: _Endpoint) -> None:
        was = ep.down
        super()._refused(ep)
        if ep.down and not was:  # the base gave up on it: take it out through _down, which moves its queue
            ep.down = False
            self._down(ep)

    def _down(self, ep: _Endpoint) -> None:
        """Take a URL out of rotation; what waited for it goes to the next URL its key prefers."""
        if ep.down:
            return
        ep.down = True
        queue = self.health[ep.url].queue
        moved = list(queue)
        queue.clear()
        for w in moved:
            if not w.future.done():
                self._enqueue(w)
        if all(e.down for e in self.endpoints):
            self._all_down.set()
        self._changed.set()
        self._dispatch()

    # -- queues ------------------------------------------------------------------------------------------------
    def _preferred(self, index: int) -> _Endpoint | None:
        alive = [ep for ep in self.endpoints if not ep.down]
        return max(alive, key=lambda ep: _score(self.keys[index], ep.url)) if alive else None

    def _enqueue(self, w: _Waiter, *, first: bool = False) -> None:
        ep = self._preferred(w.index)
        if ep is None:
            w.future.set_result(None)  # no URL is up: the item decides what to do (back off, or give up)
            return
        queue = self.health[ep.url].queue
        queue.appendleft(w) if first else queue.append(w)

    def _take(self, ep: _Endpoint, *, steal: bool) -> _Waiter | None:
        own = self.health[ep.url].queue
        while own:
            w = own.popleft()
            if not w.future.done():
                return w
        if not steal:
            return None
        # nothing of its own: the tail (the most recent, least urgent work) of the longest queue, which belongs to
        # a server that is full (one with room served its own queue first)
        others = [self.health[e.url].queue for e in self.endpoints if e is not ep]
        while True:
            longest = max(others, key=len, default=None)
            if not longest:
                return None
            w = longest.pop()
            if not w.future.done():
                return w

    def _dispatch(self) -> None:
        cap = self.fb.max_in_flight
        for steal in (False, True):
            for ep in self.endpoints:
                while not ep.down and ep.in_flight < cap:
                    w = self._take(ep, steal=steal)
                    if w is None:
                        break
                    ep.in_flight += 1
                    w.future.set_result(ep)

    async def _acquire(self, index: int, *, first: bool) -> _Endpoint | None:
        w = _Waiter(index, asyncio.get_running_loop().create_future())
        self._enqueue(w, first=first)
        self._dispatch()
        try:
            return await w.future
        except asyncio.CancelledError:
            if w.future.done() and not w.future.cancelled() and w.future.result() is not None:
                self._release(w.future.result())
            raise

    def _release(self, ep: _Endpoint) -> None:
        ep.in_flight -= 1
        self._dispatch()

    # -- one item ----------------------------------------------------------------------------------------------
    async def _attempts(self, index: int, chat: Chat) -> Completion:
        import openai

        b = self.fb
        request = b._request(chat, self.sampling)
        failure: _Failure | None = None
        tries = b.max_retries + 1
        attempt = 0
        moves = 0  # failovers: they do not count as attempts, but are bounded so a flapping fleet cannot loop
        backoff = False
        while True:
            if backoff and failure is not None:
                await self._sleep(b._backoff(attempt, failure.retry_after))
            ep = await self._acquire(index, first=failure is None)
            if ep is None:  # every URL is down: wait for a probe to bring one back, as an attempt
                attempt += 1
                failure, backoff = self._connect_failure(None), True
                if attempt >= tries:
                    return self._gave_up(attempt, failure, all_down=True)
                continue
            attempt += 1
            t0 = time.monotonic()
            lost = False
            try:
                post = ep.client.post("/chat/completions", body=request, cast_to=object)
                response = await asyncio.wait_for(post, b.timeout)
                failure = None
            except asyncio.CancelledError:
                raise
            except Exception as err:  # classified below; a backend never raises for one item
                failure = self._classify(err, ep)
                lost = isinstance(err, openai.APIConnectionError) and not isinstance(err, openai.APITimeoutError)
            finally:
                self._release(ep)
            if failure is None:
                ep.connect_failures = 0
                parsed = self._parse(response, ep, attempt)
                if isinstance(parsed, Completion):
                    parsed.meta.update(base_url=ep.url, latency_s=round(time.monotonic() - t0, 4), failovers=moves)
                    return parsed
                failure = parsed
            if lost and any(not e.down for e in self.endpoints if e is not ep) and moves < 4 * len(self.endpoints):
                # the server refused or dropped it (crashed, killed, restarting): another one takes it now
                self._down(ep)
                moves += 1
                attempt -= 1
                backoff = False
                continue
            if failure.connect:
                self._refused(ep)
            if not failure.retry:
                return self._gave_up(attempt, failure)
            if failure.retry_after is not None and failure.retry_after > _MAX_RETRY_AFTER_S:
                failure.message += f"; it asked to wait {failure.retry_after:.0f} s"
                return self._gave_up(attempt, failure)
            if attempt >= tries:
                return self._gave_up(attempt, failure)
            backoff = True
