"""Test helpers shipped with lioneval, so users can test their own judges and pipelines offline.

``ScriptedServer`` is a real OpenAI-compatible HTTP server on 127.0.0.1 with scripted answers and faults; see
``lioneval.testing.openai_server``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FAULTS", "Faults", "Reply", "RequestRecord", "ScriptedServer", "ScriptedServerProcess", "prompt_hash"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `python -m lioneval.testing.openai_server` must find the module not yet imported,
    # or runpy warns and the module exists twice.
    if name in __all__:
        from lioneval.testing import openai_server

        return getattr(openai_server, name)
    raise AttributeError(f"module 'lioneval.testing' has no attribute {name!r}")
