"""An in-process scripted backend: a policy or a judge that answers from a Python function, with no model, no
torch and no HTTP, so the whole pipeline (run, rejudge, report, checks) can be tested in milliseconds.

Named through the registries like any backend: ``--policy scripted:NAME`` and ``--judge scripted:NAME``, where NAME
is a script registered with :func:`script` (``echo`` and ``fair-judge`` are built in). A script gets the chat and
the sampling settings and returns the reply text, or raises to make that one item fail as a value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from lioneval.backends.base import Chat, Completion, OnResult, Sampling
from lioneval.errors import ConfigError
from lioneval.types import content_hash

Script = Callable[[Chat, Sampling], str]

SCRIPTS: dict[str, Script] = {}


def script(name: str, fn: Script | None = None) -> Any:
    """Register ``fn`` as the script ``name`` (usable as a decorator)."""
    if fn is None:
        return lambda f: script(name, f)
    SCRIPTS[name] = fn
    return fn


_WORDS = ("river", "amber", "quiet", "signal", "harvest", "copper", "lantern", "orbit", "meadow", "cipher", "granite",
          "velvet", "tundra", "beacon", "saffron", "falcon", "prism", "ember", "glacier", "mosaic", "thistle", "zenith",
          "canyon", "ripple", "sparrow", "marble", "willow", "comet", "basalt", "juniper", "quartz", "harbor")


@script("echo")
def _echo(chat: Chat, sampling: Sampling) -> str:
    """A policy that restates the last question and adds words drawn from its hash: deterministic, and different
    enough between questions that the duplicate-answer check sees real answers, not a template."""
    question = chat[-1]["content"]
    digest = content_hash(question, 32)
    words = " ".join(_WORDS[int(digest[i : i + 2], 16) % len(_WORDS)] for i in range(0, 32, 2))
    return f"{question[:200]} {words}."


@script("fair-judge")
def _fair_judge(chat: Chat, sampling: Sampling) -> str:
    """A judge that follows any of the verdict formats: a rating, a pairwise verdict or an output id, derived from
    a hash of what it was shown (deterministic; not biased by position or length)."""
    text = "\n".join(m["content"] for m in chat)
    h = int(content_hash(text, 8), 16)
    if "[[A>B]]" in text or "[[A>>B]]" in text:
        return f"My final verdict is: [[{('A>B', 'A=B', 'B>A', 'A>>B', 'B>>A')[h % 5]}]]"
    if re.search(r"\[\[\s*rating\s*\]\]|\[\[\d+\]\]", text):
        return f"Rating: [[{1 + h % 10}]]"
    return "m" if h % 2 else "M"


class ScriptedBackend:
    """Batch of chats in, one Completion per chat out, from a script; token counts are word counts."""

    def __init__(self, script_name: str = "echo", fn: Script | None = None):
        if fn is None and script_name not in SCRIPTS:
            raise ConfigError(f"no scripted backend {script_name!r}",
                              fix=f"register it with lioneval.testing.scripted.script, or use one of {sorted(SCRIPTS)}")
        self.fn = fn or SCRIPTS[script_name]
        self.name = f"scripted:{script_name}"
        self.calls = 0

    @classmethod
    def from_spec(cls, spec: Any, **options: Any) -> ScriptedBackend:
        return cls(spec.model)

    def generate(self, chats: Sequence[Chat], sampling: Sampling, *, on_result: OnResult | None = None
                 ) -> list[Completion]:
        out = []
        for i, chat in enumerate(chats):
            self.calls += 1
            messages = list(chat)
            prefill = messages.pop()["content"] if messages and messages[-1]["role"] == "assistant" else ""
            try:
                text = self.fn(messages, sampling)
                words = text.split()
                finish = "length" if len(words) > sampling.max_tokens else "stop"
                c = Completion(text=" ".join(words[: sampling.max_tokens]) if finish == "length" else text,
                               finish_reason=finish, prompt_tokens=sum(len(m["content"].split()) for m in chat),
                               completion_tokens=min(len(words), sampling.max_tokens))
                if prefill and c.text and c.text.startswith(prefill):
                    c.text = c.text[len(prefill):]
                if sampling.top_logprobs and words:
                    # the first token is the reply's first word, most likely but not certain
                    c.top_logprobs = [{words[0]: math.log(0.8), "<other>": math.log(0.2)}]
            except Exception as e:  # a script's failure is one item's failure, as with a real server
                c = Completion(text=None, error=f"{type(e).__name__}: {e}")
            out.append(c)
            if on_result is not None:
                on_result(i, c)
        return out
