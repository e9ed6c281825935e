"""The Backend interface shared by generation and judging.

A backend takes a batch of chats (lists of ``{"role", "content"}`` messages) and returns one Completion per chat, in
order. Failures are values: a Completion with ``error`` set and ``text=None``; a backend never raises for one bad
item. ``on_result`` is called as each item finishes, so callers can store results as they arrive and a crash loses
at most the requests in flight.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
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


# -- secrets in URLs -----------------------------------------------------------------------------------------------

# ``scheme://userinfo@`` anywhere in a text: a URL, a judge spec (several URLs, ensembles) or a message. The userinfo
# stops at what ends a URL's authority or a spec's list item, so one URL's credentials never swallow the next URL.
_USERINFO = re.compile(r"(?i)\b(https?://)([^/?#\s,;\[\]]*)@")


def split_credentials(url: str) -> tuple[str, str | None]:
    """``(url without its user:password@, "user:password" or None)``.

    ``http://u:p@h:8000/v1`` gives ``("http://h:8000/v1", "u:p")``; a URL without credentials comes back as is.
    """
    m = _USERINFO.match(url.strip())
    if m is None:
        return url, None
    return m.group(1) + url.strip()[m.end():], m.group(2)


def redact_url(text: str) -> str:
    """``text`` with the credentials of every http(s) URL in it replaced by ``***`` (``http://***@h/v1``).

    Safe on any text that may hold URLs: a URL, a judge spec string, an error message.
    """
    return _USERINFO.sub(r"\1***@", text)


def credential_secrets(userinfo: str | None) -> list[str]:
    """The texts of ``user:password`` that must never be shown: the password (raw and percent-decoded), the whole
    userinfo, and the HTTP basic token built from it; a lone user name is taken for a token. The user name beside a
    password is not a secret (and scrubbing a common word like "admin" from answers would corrupt them)."""
    if not userinfo:
        return []
    user, colon, password = userinfo.partition(":")
    secret = password if colon else user
    out = [secret, urllib.parse.unquote(secret), userinfo, basic_token(userinfo)]
    return [s for s in dict.fromkeys(out) if s]


def basic_token(userinfo: str) -> str:
    """The base64 credentials of an ``Authorization: Basic`` header for ``user:password`` (percent-decoded)."""
    user, _, password = userinfo.partition(":")
    raw = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
    return base64.b64encode(raw.encode()).decode("ascii")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret of 4 characters or more replaced by ``***`` (longest first, so that a secret that
    contains another is replaced whole)."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
