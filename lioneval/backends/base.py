"""The Backend interface shared by generation and judging.

A backend takes a batch of chats (lists of ``{"role", "content"}`` messages) and returns one Completion per chat, in
order. Failures are values: a Completion with ``error`` set and ``text=None``; a backend never raises for one bad
item. ``on_result`` is called as each item finishes, so callers can store results as they arrive and a crash loses
at most the requests in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

Chat = list[dict[str, str]]


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0
    max_tokens: int = 1024
    top_p: float = 1.0
    top_logprobs: int | None = None  # ask for the top-k alternatives of each generated token
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Completion:
    text: str | None
    finish_reason: str | None = None  # "stop" | "length" | ...
    # per generated token: {candidate token: logprob} for the top-k candidates (only when asked)
    top_logprobs: list[dict[str, float]] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    attempts: int = 1
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


OnResult = Callable[[int, Completion], None]


@runtime_checkable
class Backend(Protocol):
    """Anything that turns chats into completions."""

    #: stable identity that goes into judge ids and answer settings, e.g. "openai-compatible:qwen2@http://h:8000/v1"
    name: str

    def generate(
        self, chats: Sequence[Chat], sampling: Sampling, *, on_result: OnResult | None = None
    ) -> list[Completion]: ...
