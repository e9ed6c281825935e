"""Run-level detectors: what only shows across all of a model's answers.

* ``duplicates``: a null model gives the same answer everywhere; real models differ from question to question. Each
  answer turn gets a MinHash sketch of its character shingles (one-permutation hashing over a consistent 1-in-8
  sample of shingles, fully vectorized), LSH bands propose candidate pairs, and near-duplicate groups are the
  connected components of the confirmed pairs.
* ``ignores_question``: the share of answers that reuse almost none of their question's content words.
* ``truncated``: answers that stopped at the token limit (from ``Answer.finish_reasons``).
* ``turn_repeat``: MT-Bench second turns that repeat the first.
* ``empty_answers``: empty or whitespace-only answers.
* Length and style (need judgments or baseline answers): ``length_ratio`` to the baseline, ``length_score_correlation``
  (Spearman, by question), ``lc_gap`` (AlpacaEval raw minus length-controlled win rate) and ``style_control_gap``
  (Arena-Hard score minus its style-controlled score).

Each returns one CheckResult per run (a benchmark and a model): "pass", "warn" (worth a look: length inflation,
truncation, repeated turns) or "flag" (cheating suspected: constant answers, answers that ignore their questions).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from lioneval.checks.answers import normalize
from lioneval.checks.config import CheckConfig, CheckStatus
from lioneval.types import Answer, CheckResult, Judgment, Question

__all__ = [
    "check_duplicates",
    "check_empty",
    "check_ignores_question",
    "check_length_ratio",
    "check_length_score",
    "check_run",
    "check_truncated",
    "check_turn_repeat",
    "content_stems",
    "estimate_jaccard",
    "near_duplicate_groups",
    "sketch",
]

_U64 = np.uint64
_PRIME = _U64(0x100000001B3)  # FNV prime: odd, so the polynomial hash is a bijection per position
_SAMPLE_BELOW = _U64(1 << 61)  # keep shingles whose mixed hash has its top 3 bits zero: the same in every text
_EMPTY = np.iinfo(np.uint64).max
_WS = re.compile(r"\s+")


def _mix(h: np.ndarray) -> np.ndarray:
    """Fibonacci multiplicative hashing: the top bits of the product are well spread even where the polynomial
    hash's low bits are not; sampling and bins read the top bits."""
    with np.errstate(over="ignore"):
        return (h ^ (h >> _U64(29))) * _U64(0x9E3779B97F4A7C15)


def _canonical(text: str) -> str:
    return " ".join(normalize(text).text.lower().split())


def _shingle_table(texts: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mixed hashes of the sampled character k-grams of every non-empty canonical text, and the text of each.

    All texts are hashed in one pass over their concatenation (a k-gram crossing into the next text is dropped);
    a text shorter than k is padded so that it still has one shingle, itself. Only k-grams whose mixed hash has its
    top three bits zero are kept (1 in 8), except that a text left with none keeps its smallest.
    """
    encoded = []
    for t in texts:
        b = _canonical(t).encode("utf-8")
        encoded.append(b + b"\0" * (k - len(b)) if 0 < len(b) < k else b)
    lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(_U64)
    n = data.size - k + 1
    if n <= 0:
        return np.zeros(0, dtype=_U64), np.zeros(0, dtype=np.int64)
    h = np.zeros(n, dtype=_U64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = h * _PRIME + data[j : j + n]
    h = _mix(h)
    ends = np.cumsum(lengths)
    valid = np.ones(n, dtype=bool)
    inner = ends[ends < n + k - 1]
    for j in range(1, k):  # k-grams that start within k-1 bytes before a text's end cross into the next text
        pos = inner - j
        valid[pos[(pos >= 0) & (pos < n)]] = False
    keep = valid & (h < _SAMPLE_BELOW)
    pos = np.flatnonzero(keep)
    owner = np.searchsorted(ends, pos, side="right")
    present = np.zeros(len(texts), dtype=bool)
    present[np.searchsorted(ends, np.flatnonzero(valid), side="right")] = True
    starved = np.flatnonzero(present & (np.bincount(owner, minlength=len(texts)) == 0))
    if starved.size:
        starts = ends - lengths
        extra = [starts[t] + int(np.argmin(h[starts[t] : max(starts[t] + 1, ends[t] - k + 1)])) for t in starved]
        pos = np.concatenate([pos, extra])
        owner = np.concatenate([owner, starved])
    return h[pos], owner


def sketch(texts: Sequence[str], config: CheckConfig | None = None) -> np.ndarray:
    """(len(texts), minhash_perms) uint64 signatures; an empty text gets an all-``_EMPTY`` row.

    One-permutation hashing: a shingle's top bits pick its bin, the rest is its value, a bin keeps its minimum.
    Only one shingle in eight takes part, chosen by its hash (the same ones in every text, so similarities stay
    unbiased); a text left with none keeps its smallest. Empty bins borrow from the next filled one (rotation
    densification), so short texts still compare fairly.
    """
    config = config or CheckConfig()
    bins = config.minhash_perms
    if bins < 2 or bins & (bins - 1):
        raise ValueError(f"minhash_perms must be a power of two, got {bins}")
    bits = int(bins).bit_length() - 1
    sig = np.full((len(texts), bins), _EMPTY, dtype=_U64)
    h, owner = _shingle_table(texts, config.shingle_chars)
    if h.size == 0:
        return sig
    # Below the 3 sampling bits, the next bits pick the bin and the rest is the value the bin minimises.
    key = owner * bins + ((h >> _U64(61 - bits)) & _U64(bins - 1)).astype(np.int64)
    value = h & _U64((1 << (61 - bits)) - 1)
    np.minimum.at(sig.reshape(-1), key, value)
    # Densify: an empty bin takes the next filled bin's value (circularly), salted by the distance so that the
    # borrowed copies stay distinct from the original.
    filled = sig != _EMPTY
    rows = np.flatnonzero(filled.any(axis=1) & ~filled.all(axis=1))
    out = sig
    if rows.size:
        cols = np.arange(2 * bins)
        twice = np.concatenate([filled[rows], filled[rows]], axis=1)
        nearest = np.where(twice, cols, 2 * bins)[:, ::-1]
        nxt = np.minimum.accumulate(nearest, axis=1)[:, ::-1][:, :bins]  # next filled column at or after each
        dist = (nxt - cols[:bins]).astype(_U64)
        src = sig[rows[:, None], nxt % bins]
        with np.errstate(over="ignore"):
            out[rows] = np.where(filled[rows], sig[rows], src + dist * _U64(0x9E3779B97F4A7C15))
    return out


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of equal signature entries (row-wise); 0 where either text was empty."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    ok = (a[:, 0] != _EMPTY) & (b[:, 0] != _EMPTY)
    return np.where(ok, (a == b).mean(axis=1), 0.0)


def near_duplicate_groups(
    sig: np.ndarray, config: CheckConfig | None = None, lengths: np.ndarray | None = None
) -> np.ndarray:
    """A group label per row: rows whose estimated Jaccard reaches ``near_duplicate_jaccard`` (directly or through
    a chain) share a label; -1 for empty texts. With ``lengths`` (characters), a pair involving a text shorter than
    ``near_duplicate_min_chars`` must match exactly.

    Each LSH band groups rows with an identical band; every row is compared with its band group's first row only,
    so a constant answer over n questions costs n comparisons, not n squared.
    """
    config = config or CheckConfig()
    n, width = sig.shape
    labels = np.full(n, -1, dtype=np.int64)
    idx = np.flatnonzero(sig[:, 0] != _EMPTY)
    if idx.size == 0:
        return labels
    s = sig[idx]
    rows_per_band = max(1, width // config.lsh_bands)
    src, dst = [], []
    for b in range(0, width - rows_per_band + 1, rows_per_band):
        band = np.ascontiguousarray(s[:, b : b + rows_per_band]).view(np.dtype((np.void, 8 * rows_per_band)))
        _, first, inverse = np.unique(band.ravel(), return_index=True, return_inverse=True)
        rep = first[inverse.ravel()]
        cand = np.flatnonzero(rep != np.arange(idx.size))
        if cand.size:
            need = np.full(cand.size, config.near_duplicate_jaccard)
            if lengths is not None:
                short = np.minimum(lengths[idx[cand]], lengths[idx[rep[cand]]]) < config.near_duplicate_min_chars
                need[short] = 1.0
            ok = estimate_jaccard(s[cand], s[rep[cand]]) >= need
            src.append(cand[ok])
            dst.append(rep[cand[ok]])
    labels[idx] = _components(idx.size, np.concatenate(src) if src else None, np.concatenate(dst) if dst else None)
    return labels


def _components(m: int, a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray:
    """Connected components by min-label propagation with pointer jumping (the edges form near-stars, so this
    converges in a few rounds)."""
    lab = np.arange(m)
    if a is None or a.size == 0:
        return lab
    assert b is not None  # the edges' two ends come in pairs: b is None only when a is
    while True:
        low = np.minimum(lab[a], lab[b])
        new = lab.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]
        if np.array_equal(new, lab):
            return lab
        lab = new


# --- helpers ------------------------------------------------------------------------------------------------------


def _result(name: str, status: CheckStatus, answers: Sequence[Answer], run: str | None, **kw: Any) -> CheckResult:
    a = answers[0]
    meta = {"benchmark": a.benchmark, **kw.pop("meta", {})}
    return CheckResult(name=name, scope="run", run=run, status=status, model=a.model, meta=meta, **kw)


def _status(value: float, flag: float | None, warn: float | None) -> CheckStatus:
    if flag is not None and value >= flag:
        return "flag"
    if warn is not None and value >= warn:
        return "warn"
    return "pass"


def _turn_texts(answers: Sequence[Answer], turn: int) -> tuple[list[str], list[str]]:
    qids, texts = [], []
    for a in answers:
        if len(a.turns) > turn:
            qids.append(a.question_id)
            texts.append(a.turns[turn])
    return qids, texts


# --- duplicates ---------------------------------------------------------------------------------------------------


def check_duplicates(
    answers: Sequence[Answer],
    config: CheckConfig | None = None,
    *,
    run: str | None = None,
    sketches: dict[int, np.ndarray] | None = None,
) -> CheckResult:
    """Largest group of near-identical answers to different questions, per turn; the worst turn decides."""
    config = config or CheckConfig()
    worst: dict[str, Any] = {"share": 0.0, "size": 0, "turn": 1, "questions": [], "with_duplicate": 0.0, "n": 0}
    per_turn = {}
    for t in range(max(len(a.turns) for a in answers)):
        qids, texts = _turn_texts(answers, t)
        sig = sketches[t] if sketches and t in sketches else sketch(texts, config)
        lengths = np.fromiter((len(" ".join(x.split())) for x in texts), dtype=np.int64, count=len(texts))
        labels = near_duplicate_groups(sig, config, lengths)
        valid = labels >= 0
        n = int(valid.sum())
        if n == 0:
            continue
        counts = np.bincount(labels[valid])
        top = int(counts.argmax())
        size = int(counts[top])
        share = size / n
        with_dup = float((counts[labels[valid]] > 1).mean())
        members = [qids[i] for i in np.flatnonzero(labels == top)][:10]
        per_turn[str(t + 1)] = {"largest_group": size, "share": round(share, 4), "with_duplicate": round(with_dup, 4),
                                "answers": n}
        if share > worst["share"] or (share == worst["share"] and size > worst["size"]):
            worst = {"share": share, "size": size, "turn": t + 1, "questions": members, "with_duplicate": with_dup,
                     "n": n}
    big_enough = worst["size"] >= config.duplicate_min_group
    status = _status(worst["share"], config.duplicate_share_flag, config.duplicate_share_warn) if big_enough else "pass"
    if status == "pass":
        detail = f"answers differ across questions (largest near-identical group: {worst['size']} of {worst['n']})"
    else:
        detail = (
            f"{worst['size']} of {worst['n']} answers (turn {worst['turn']}) are near-identical across different "
            f"questions ({worst['share']:.0%}): a constant or templated answer, e.g. questions "
            f"{', '.join(worst['questions'][:5])}"
        )
    return _result(
        "duplicates", status, answers, run, value=float(worst["share"]), threshold=config.duplicate_share_flag,
        detail=detail, meta={"per_turn": per_turn, "questions": worst["questions"],
                             "jaccard": config.near_duplicate_jaccard},
    )


# --- answers that ignore their question ----------------------------------------------------------------------------

_STOP = frozenset(
    """
    a about above after again against all also always among an and another any are around as at be because been
    before being below between both but by can cannot could did do does doing done down during each either else
    ever every few first for from further get gets give given gives go had has have having he her here hers him his
    how however i if in into is it its itself just keep know let like make makes many may me might more most much
    must my need new next no nor not now of off often on once one only or other our ours out over own per please
    rather really same say says second see several shall she should show since so some something such take tell
    than that the their them then there these they thing things this those though three through thus to too two
    under until up upon us use used using very via want was way we well were what when where whether which while
    who whom whose why will with within without would yes yet you your yours
    answer answers ask asked based briefly consider describe detail details detailed discuss example examples
    explain following format given help ideas include including information list mention output possible provide
    question questions reply respond response short simple specific step steps sure text write written words
    previous earlier above below now again also instead same rewrite revise modify change changes make sentence
    sentences paragraph paragraphs response responses version
    """.split()
)
_WORD = re.compile(r"[a-z]+")
_SUFFIX = re.compile(r"(?:ations?|ments?|ings?|ies|ied|ers?|est|ed|es|ly|s)$")


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    if len(word) > 5:
        word = _SUFFIX.sub("", word) or word
    return word[:6]


@lru_cache(maxsize=4096)
def content_stems(text: str) -> frozenset[str]:
    """Crude stems of a text's content words (ASCII letters, 4+ characters, stop words and prompt verbs removed).

    Stems are 4-6 character prefixes after stripping a common suffix, tested as substrings of the answer, so
    "beaches" matches "beach" and "culture" matches "cultural": lenient on purpose, since a miss here means a real
    answer counted as ignoring its question.
    """
    words = set(_WORD.findall(normalize(text).text.lower()))
    return frozenset(st for w in words if len(w) >= 4 and w not in _STOP and len(st := _stem(w)) >= 4)


def check_ignores_question(
    answers: Sequence[Answer], questions: dict[str, Question], config: CheckConfig | None = None, *,
    run: str | None = None,
) -> CheckResult | None:
    """Share of testable answers that reuse under ``ignore_overlap`` of their question's content words.

    A later turn may also draw on the earlier user turns (MT-Bench's "Rewrite your previous response" names little).
    Questions with fewer than ``min_question_words`` content words are not tested.

    Off-topic text is a quality problem (a weak model rambling, an answer cut off at the token limit) unless it is
    the same few texts again and again: the run is flagged only when the ignoring answers that were not cut off
    reach ``ignore_share_flag`` and fall into at most ``ignore_distinct_flag`` of them as near-duplicate groups (a
    constant answer, or a handful of them in rotation); otherwise it warns.
    """
    config = config or CheckConfig()
    tested = ignoring = 0
    examples: list[str] = []
    off_topic: list[str] = []  # ignoring texts that were not cut off at the token limit
    for a in answers:
        q = questions.get(a.question_id)
        if q is None:
            continue
        for t, text in enumerate(a.turns[: len(q.turns)]):
            stems = content_stems(q.turns[t])
            if t > 0:
                stems = stems | content_stems("\n".join(q.turns[:t]))
            if len(stems) < config.min_question_words:
                continue
            tested += 1
            low = normalize(text).text.lower()
            overlap = sum(s in low for s in stems) / len(stems)
            if overlap < config.ignore_overlap:
                ignoring += 1
                if not (a.finish_reasons and t < len(a.finish_reasons) and a.finish_reasons[t] == "length"):
                    off_topic.append(text)
                if len(examples) < 10:
                    examples.append(a.question_id if t == 0 else f"{a.question_id}#{t + 1}")
    if tested == 0:
        return None
    share = ignoring / tested
    status = _status(share, None, config.ignore_share_warn)
    groups = 0
    if off_topic and len(off_topic) / tested >= config.ignore_share_flag:
        labels = near_duplicate_groups(sketch(off_topic, config), config,
                                       np.fromiter((len(" ".join(x.split())) for x in off_topic), dtype=np.int64,
                                                   count=len(off_topic)))
        groups = len(set(labels[labels >= 0].tolist())) + int((labels < 0).any())
        if groups <= config.ignore_distinct_flag * len(off_topic):
            status = "flag"
    detail = f"{ignoring} of {tested} answers reuse almost none of their question's words ({share:.0%})"
    if status == "flag":
        detail += f", and they are {groups} texts over and over, as a constant answer would be"
    elif status == "warn":
        detail += ": off-topic or cut-off answers, a quality problem worth a look (they differ from each other)"
    return _result("ignores_question", status, answers, run, value=share, threshold=config.ignore_share_flag,
                   detail=detail, meta={"tested": tested, "ignoring": ignoring, "examples": examples,
                                        "not_truncated": len(off_topic), "distinct": groups})


# --- truncation, repeated turns, empty answers --------------------------------------------------------------------


def check_truncated(answers: Sequence[Answer], config: CheckConfig | None = None, *,
                    run: str | None = None) -> CheckResult | None:
    config = config or CheckConfig()
    known = [a for a in answers if a.finish_reasons]
    if not known:
        return None
    cut = [a for a in known if "length" in (a.finish_reasons or [])]
    share = len(cut) / len(known)
    status = _status(share, None, config.truncated_share_warn)
    return _result(
        "truncated", status, answers, run, value=share, threshold=config.truncated_share_warn,
        detail=f"{len(cut)} of {len(known)} answers stopped at the token limit ({share:.0%})",
        meta={"questions": [a.question_id for a in cut][:20]},
    )


def check_turn_repeat(answers: Sequence[Answer], config: CheckConfig | None = None, *, run: str | None = None,
                      sketches: dict[int, np.ndarray] | None = None) -> CheckResult | None:
    config = config or CheckConfig()
    multi = [i for i, a in enumerate(answers) if len(a.turns) >= 2]
    if not multi:
        return None
    if sketches and 0 in sketches and 1 in sketches and len(multi) == len(answers):
        s1, s2 = sketches[0], sketches[1]
    else:
        s1 = sketch([answers[i].turns[0] for i in multi], config)
        s2 = sketch([answers[i].turns[1] for i in multi], config)
    j = estimate_jaccard(s1, s2)
    rep = j >= config.turn_repeat_jaccard
    share = float(rep.mean())
    status = _status(share, None, config.turn_repeat_share_warn)
    return _result(
        "turn_repeat", status, answers, run, value=share, threshold=config.turn_repeat_share_warn,
        detail=f"{int(rep.sum())} of {len(multi)} second turns repeat the first ({share:.0%})",
        meta={"questions": [answers[multi[i]].question_id for i in np.flatnonzero(rep)][:20]},
    )


def check_empty(answers: Sequence[Answer], config: CheckConfig | None = None, *,
                run: str | None = None) -> CheckResult:
    config = config or CheckConfig()
    texts = [t for a in answers for t in a.turns]
    empty = sum(not t.strip() for t in texts)
    share = empty / len(texts) if texts else 0.0
    return _result(
        "empty_answers", _status(share, None, config.empty_share_warn), answers, run, value=share,
        threshold=config.empty_share_warn, detail=f"{empty} of {len(texts)} answer turns are empty ({share:.0%})",
    )


# --- length and style ---------------------------------------------------------------------------------------------


def _length(a: Answer) -> float:
    return float(sum(len(t) for t in a.turns))


def check_length_ratio(answers: Sequence[Answer], baseline: Sequence[Answer], config: CheckConfig | None = None, *,
                       run: str | None = None) -> CheckResult | None:
    config = config or CheckConfig()
    base = {a.question_id: _length(a) for a in baseline}
    pairs = [(_length(a), base[a.question_id]) for a in answers if a.question_id in base]
    if not pairs:
        return None
    mine, theirs = np.array(pairs).T
    if theirs.mean() <= 0:
        return None
    ratio = float(mine.mean() / theirs.mean())
    return _result(
        "length_ratio", _status(ratio, None, config.length_ratio_warn), answers, run, value=ratio,
        threshold=config.length_ratio_warn,
        detail=f"answers are {ratio:.2f}x the baseline's length on average ({mine.mean():.0f} vs {theirs.mean():.0f} "
               f"characters, {len(pairs)} questions)",
        meta={"baseline": baseline[0].model if baseline else None, "n": len(pairs)},
    )


def _scores_by_question(judgments: Iterable[Judgment]) -> dict[str, float]:
    vals: dict[str, list[float]] = defaultdict(list)
    for j in judgments:
        if j.value is not None:
            vals[j.question_id].append(j.value)
    return {q: float(np.mean(v)) for q, v in vals.items()}


def check_length_score(answers: Sequence[Answer], judgments: Sequence[Judgment], baseline: Sequence[Answer] = (),
                       config: CheckConfig | None = None, *, run: str | None = None) -> CheckResult | None:
    """Spearman correlation, over questions, of answer length (relative to the baseline's when there is one) and
    the judged score: high when the judge rewards length rather than content."""
    from scipy.stats import spearmanr

    config = config or CheckConfig()
    scores = _scores_by_question(judgments)
    base = {a.question_id: _length(a) for a in baseline}
    xs, ys = [], []
    for a in answers:
        if a.question_id not in scores:
            continue
        length = _length(a)
        if base:
            if a.question_id not in base:
                continue
            length = np.log((length + 1) / (base[a.question_id] + 1))
        xs.append(length)
        ys.append(scores[a.question_id])
    if len(xs) < 10 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return None
    rho = float(spearmanr(xs, ys).statistic)
    if not np.isfinite(rho):
        return None
    return _result(
        "length_score_correlation", _status(rho, None, config.length_score_rho_warn), answers, run, value=rho,
        threshold=config.length_score_rho_warn,
        detail=f"Spearman correlation of {'relative ' if base else ''}length and judged score: {rho:.2f} "
               f"over {len(xs)} questions",
        meta={"n": len(xs), "judge": judgments[0].judge, "relative_to_baseline": bool(base)},
    )


# --- one run ------------------------------------------------------------------------------------------------------


def check_run(
    answers: Sequence[Answer],
    questions: dict[str, Question],
    judgments: Sequence[Judgment] = (),
    baseline: Sequence[Answer] = (),
    config: CheckConfig | None = None,
    *,
    run: str | None = None,
) -> list[CheckResult]:
    """Every run-level check that applies to one model's answers on one benchmark."""
    config = config or CheckConfig()
    if not answers:
        return []
    turns = max(len(a.turns) for a in answers)
    sketches = {}
    if all(len(a.turns) == turns for a in answers):
        sketches = {t: sketch([a.turns[t] for a in answers], config) for t in range(turns)}
    out: list[CheckResult | None] = [
        check_duplicates(answers, config, run=run, sketches=sketches),
        check_ignores_question(answers, questions, config, run=run),
        check_empty(answers, config, run=run),
        check_truncated(answers, config, run=run),
        check_turn_repeat(answers, config, run=run, sketches=sketches) if turns >= 2 else None,
    ]
    if baseline:
        out.append(check_length_ratio(answers, baseline, config, run=run))
    by_judge: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        by_judge[j.judge].append(j)
    for js in by_judge.values():
        out.append(check_length_score(answers, js, baseline, config, run=run))
    return [r for r in out if r is not None]
