"""BenchBuilder: curate a benchmark from a pool of prompts (Li, Chiang, Frick et al., "From Crowdsourced Data to
High-Quality Benchmarks: Arena-Hard and BenchBuilder Pipeline", 2024, section 3), written out in Arena-Hard's layout.

The steps, each recorded in the build report with what it dropped and why:

1. read the pool (JSONL with ``prompt``, ``turns`` or a ``conversation``'s first user turn, or plain text, one prompt
   a line); drop empty prompts and exact duplicates (same words after case and punctuation are folded);
2. embed every prompt (``lioneval.embeddings``: all-MiniLM-L6-v2 shipped offline by default, or any named model) and
   drop near-duplicates: a prompt whose cosine similarity to an earlier kept prompt reaches ``dedup_threshold``;
3. cluster the embeddings by topic: seeded k-means++ (Lloyd's iterations, several restarts) on the unit vectors, the
   number of clusters given or chosen by the best mean silhouette (cosine) over a range; each cluster named by its
   most distinctive words (frequency in the cluster over frequency in the pool);
4. annotate every kept prompt through a judge spec with the seven qualities of the paper (specificity, domain
   knowledge, complexity, problem-solving, creativity, technical accuracy, real-world application), in a prompt
   written for lioneval and versioned (``ANNOTATION_VERSION``; its hash is part of the annotator id); a prompt's score
   is the number of qualities it has (0-7). Each answer is stored the moment it arrives, keyed by the annotator and
   the exact messages, so a rerun asks only for what is missing and never pays twice;
5. keep prompts scoring at least ``min_score`` in clusters whose mean score reaches ``min_cluster_score``, and sample
   ``n`` of them round-robin over those clusters (best clusters first; within one, best prompts first, ties broken by
   a seeded draw), so the benchmark spreads over topics;
6. write ``question.jsonl`` (``uid``, ``category``, ``cluster``, ``prompt``: the layout ``lioneval run --data
   arena-hard=DIR`` reads) and ``build_report.json``; optionally generate a baseline model's answers into
   ``model_answer/<model>.jsonl``.

A build with annotations still missing (the annotator did not answer) writes its report marked incomplete, no
question file, and raises IncompleteError (exit 3); rerunning it finishes the work.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lioneval import benchmarks
from lioneval.backends.base import Backend, Completion, Sampling
from lioneval.benchmarks.arena_hard import BENCHMARK as ARENA_HARD
from lioneval.embeddings import embed
from lioneval.errors import ConfigError, DataError, IncompleteError, LionEvalError
from lioneval.generation import generate_answers
from lioneval.judges.judge import backend_for
from lioneval.judges.spec import parse_spec
from lioneval.store import RunStore
from lioneval.types import content_hash

__all__ = ["ANNOTATION_VERSION", "QUALITIES", "BuildConfig", "BuildResult", "build_bench", "kmeans",
           "load_prompts", "parse_annotation", "silhouette"]

ANNOTATION_VERSION = "benchbuilder-qualities-v1"
QUALITIES = ("specificity", "domain_knowledge", "complexity", "problem_solving", "creativity", "technical_accuracy",
             "real_world")
ANNOTATION_SYSTEM = """You help choose prompts for a benchmark that must tell strong AI assistants from weak ones.
Read the user prompt you are given and decide, for each of these seven qualities, whether the prompt has it:
- specificity: it asks for one clearly defined result rather than something vague or open-ended;
- domain_knowledge: a good answer needs knowledge of a particular field;
- complexity: it combines several parts, steps or constraints that must be handled together;
- problem_solving: the assistant has to work something out, not only recall or restate facts;
- creativity: a good answer needs original ideas or an inventive approach;
- technical_accuracy: the answer can be checked as right or wrong, and precision matters;
- real_world: it comes from a practical situation that people actually face.
Answer with a single JSON object and nothing else, giving true or false for each quality by the names above, e.g.
{"specificity": true, "domain_knowledge": false, "complexity": true, "problem_solving": true, "creativity": false,
"technical_accuracy": true, "real_world": false}"""
ANNOTATION_USER = "The prompt to assess:\n<prompt>\n{prompt}\n</prompt>"
TEMPLATE_HASH = content_hash({"version": ANNOTATION_VERSION, "system": ANNOTATION_SYSTEM, "user": ANNOTATION_USER})
ANNOTATION_CACHE = "annotation"  # the prefix of the keys annotations are stored under

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("""a an the and or but if then else of to in on at by for with from into about as is are was were be
been being it its this that these those there their them they you your we our i me my he she his her not no do does
did can could should would will shall may might must have has had how what which who whom when where why all any
each some such more most other than too very so just only own same also one two please write give make using use
explain describe tell show need want help get""".split())

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class BuildConfig:
    """What ``lioneval build-bench`` takes; every field is a flag of the same name."""

    prompts: str  # the pool: JSONL or plain text
    judge: str  # the annotator's judge spec
    out: str  # the benchmark folder to write
    n: int = 500  # prompts in the benchmark
    clusters: int | None = None  # number of topic clusters; None: chosen by silhouette
    max_clusters: int = 50  # the largest number tried when choosing
    dedup_threshold: float = 0.95  # cosine similarity at which a prompt is a near-duplicate
    min_score: int = 6  # a prompt needs at least this many of the seven qualities
    min_cluster_score: float = 5.0  # a cluster's mean score needs to reach this
    category: str = "benchbuilder"  # the question category written to question.jsonl
    embedding_model: str | None = None  # default: the offline all-MiniLM-L6-v2
    seed: int = 0
    baseline_policy: str | None = None  # a backend spec that answers the questions as the baseline ...
    baseline_model: str | None = None  # ... under this model name (default: the spec's model)

    def check(self) -> None:
        if self.n < 1:
            raise ConfigError(f"n is {self.n}", fix="ask for at least one prompt (--n 500)")
        if self.clusters is not None and self.clusters < 1:
            raise ConfigError(f"clusters is {self.clusters}", fix="give at least one cluster, or leave it out")
        if not 0.0 < self.dedup_threshold <= 1.0:
            raise ConfigError(f"dedup threshold {self.dedup_threshold} is not in (0, 1]",
                              fix="use a cosine similarity such as 0.95")
        if not 0 <= self.min_score <= len(QUALITIES):
            raise ConfigError(f"min score {self.min_score} is not in 0..{len(QUALITIES)}",
                              fix="a score counts the seven qualities a prompt has")
        if self.max_clusters < 2:
            raise ConfigError(f"max clusters is {self.max_clusters}", fix="try at least 2")


@dataclass
class BuildResult:
    out: Path
    complete: bool
    questions: int
    report: dict[str, Any] = field(default_factory=dict)


# -- reading the pool ---------------------------------------------------------------------------------------------
def load_prompts(path: str | Path) -> list[tuple[str, str]]:
    """(id, text) of every prompt in a JSONL file (``prompt``/``text``/``question`` as a string, ``turns``, or a
    ``conversation``/``messages`` list whose first user turn is taken; id from ``id``, ``uid`` or ``question_id``,
    else the line number) or a text file with one prompt a line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"cannot read the prompt pool {p}: {e.strerror}", fix="check the path") from e
    except UnicodeDecodeError as e:
        raise DataError(f"the prompt pool {p} is not UTF-8 text ({e.reason})", fix="save it as UTF-8") from e
    out: list[tuple[str, str]] = []
    jsonl = p.suffix.lower() in (".jsonl", ".json")
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if not jsonl:
            out.append((str(i), line.strip()))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{p} line {i} is not JSON ({e.msg})",
                            fix="write one JSON object per line, or pass a .txt file with one prompt a line") from None
        prompt = _prompt_of(obj) if isinstance(obj, dict) else None
        if prompt is None:
            raise DataError(f"{p} line {i} has no prompt",
                            fix='give each line "prompt" (a string), "turns" or a "conversation" with a user turn')
        pid = next((obj[k] for k in ("id", "uid", "question_id") if obj.get(k) not in (None, "")), i)
        out.append((str(pid), prompt))
    if not out:
        raise DataError(f"the prompt pool {p} holds no prompts", fix="pass a file with one prompt per line")
    ids = Counter(pid for pid, _ in out)
    dup = [k for k, c in ids.items() if c > 1]
    if dup:
        raise DataError(f"{p}: prompt ids repeat ({', '.join(dup[:3])})", fix="give every prompt its own id")
    return out


def _prompt_of(obj: dict[str, Any]) -> str | None:
    for k in ("prompt", "text", "question", "instruction"):
        if isinstance(obj.get(k), str):
            return obj[k]
    turns = obj.get("turns")
    if isinstance(turns, list) and turns:
        first = turns[0]
        first = first.get("content") if isinstance(first, dict) else first
        return first if isinstance(first, str) else None
    for k in ("conversation", "messages"):
        conv = obj.get(k)
        if isinstance(conv, list):
            for m in conv:
                if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
                    return m["content"]
    return None


def _fold(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


# -- clustering ---------------------------------------------------------------------------------------------------
def kmeans(x: np.ndarray, k: int, *, seed: int = 0, restarts: int = 4, iters: int = 100) -> np.ndarray:
    """Cluster labels of the rows of ``x`` (unit vectors): k-means++ seeding and Lloyd's iterations, the best of
    ``restarts`` runs by within-cluster squared distance. Labels are renumbered by first appearance."""
    n = len(x)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    sq = (x * x).sum(1)
    best, best_cost = np.zeros(n, int), math.inf
    for _ in range(restarts):
        centers = [x[rng.integers(n)]]
        d2 = np.maximum(sq - 2 * x @ centers[0] + centers[0] @ centers[0], 0)
        for _ in range(1, k):
            total = d2.sum()
            i = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
            centers.append(x[i])
            d2 = np.minimum(d2, np.maximum(sq - 2 * x @ x[i] + x[i] @ x[i], 0))
        c = np.array(centers)
        labels = np.full(n, -1)
        for _ in range(iters):
            dist = sq[:, None] - 2 * x @ c.T + (c * c).sum(1)[None]
            new = dist.argmin(1)
            if np.array_equal(new, labels):
                break
            labels = new
            for j in range(k):
                members = x[labels == j]
                # an emptied cluster restarts at the point farthest from its center
                c[j] = members.mean(0) if len(members) else x[dist.min(1).argmax()]
        cost = float(np.maximum(sq - 2 * (x * c[labels]).sum(1) + (c[labels] ** 2).sum(1), 0).sum())
        if cost < best_cost:
            best, best_cost = labels.copy(), cost
    _, first = np.unique(best, return_index=True)
    order = {old: new for new, old in enumerate(best[np.sort(first)])}
    return np.array([order[v] for v in best])


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette with cosine distance (``1 - x_i . x_j`` for unit vectors); 0 for a single cluster."""
    ks = np.unique(labels)
    if len(ks) < 2:
        return 0.0
    dist = 1.0 - x @ x.T
    onehot = (labels[:, None] == ks[None]).astype(float)
    sizes = onehot.sum(0)
    sums = dist @ onehot  # (n, k): total distance to each cluster
    own = np.searchsorted(ks, labels)
    a = sums[np.arange(len(x)), own] / np.maximum(sizes[own] - 1, 1)
    other = sums / sizes[None]
    other[np.arange(len(x)), own] = np.inf
    b = other.min(1)
    s = np.where(sizes[own] > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def choose_clusters(x: np.ndarray, *, max_k: int, seed: int, sample: int = 2000) -> tuple[int, dict[int, float]]:
    """The number of clusters with the best silhouette among 2..max_k (on a seeded sample of at most ``sample``
    rows, since silhouette is quadratic), and every k's silhouette."""
    n = len(x)
    if n < 4:
        return 1, {}
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(n, sample), replace=False))
    xs = x[idx]
    scores = {k: silhouette(xs, kmeans(xs, k, seed=seed)) for k in range(2, min(max_k, n // 2) + 1)}
    return max(scores, key=lambda k: (round(scores[k], 6), -k)), scores


def _names(texts: Sequence[str], labels: np.ndarray, top: int = 3) -> dict[int, str]:
    """Each cluster's name: its words most over-represented against the whole pool (ties by frequency, word)."""
    docs = [set(_WORD.findall(t.lower())) - _STOP for t in texts]
    docs = [{w for w in d if len(w) > 2 and not w.isdigit()} for d in docs]
    pool = Counter(w for d in docs for w in d)
    out = {}
    for k in np.unique(labels):
        members = [docs[i] for i in np.flatnonzero(labels == k)]
        counts = Counter(w for d in members for w in d)
        lift = {w: (c / len(members)) / (pool[w] / len(docs)) * math.log1p(c) for w, c in counts.items() if c > 1}
        words = sorted(lift, key=lambda w: (-lift[w], -counts[w], w))[:top]
        out[int(k)] = "-".join(words) or f"cluster-{int(k)}"
    return out


# -- annotation ---------------------------------------------------------------------------------------------------
def parse_annotation(text: str | None) -> dict[str, bool] | None:
    """The qualities an annotator's reply gives (a JSON object of the seven names to booleans, or a JSON list of the
    names it has); None when the reply holds neither."""
    if not text:
        return None
    for match in reversed(re.findall(r"\{[^{}]*\}|\[[^\[\]]*\]", text, flags=re.S)):
        try:
            obj = json.loads(match)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            keys = {str(k).strip().lower().replace(" ", "_").replace("-", "_"): v for k, v in obj.items()}
            if all(q in keys and isinstance(keys[q], bool | int) for q in QUALITIES):
                return {q: bool(keys[q]) for q in QUALITIES}
        elif isinstance(obj, list) and all(isinstance(v, str) for v in obj):
            names = {v.strip().lower().replace(" ", "_").replace("-", "_") for v in obj}
            if names <= set(QUALITIES):
                return {q: q in names for q in QUALITIES}
    return None


def annotator_id(spec_text: str) -> str:
    spec = parse_spec(spec_text)
    return f"{spec.label}#{content_hash({'spec': spec.identity(), 'template': TEMPLATE_HASH}, 10)}"


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": ANNOTATION_SYSTEM},
            {"role": "user", "content": ANNOTATION_USER.format(prompt=prompt)}]


def annotate(texts: Sequence[str], judge: str, store: RunStore, *, backend: Backend | None = None,
             progress: Progress | None = None) -> tuple[list[dict[str, Any] | None], dict[str, Any]]:
    """Each text's stored annotation (``{"qualities": {...} | None, "text": raw}``), asking the annotator only for
    those the store lacks; None where the annotator did not answer. Also the counts of the pass."""
    spec = parse_spec(judge)
    if spec.kind in ("reward-model", "ensemble"):
        raise ConfigError(f"the annotator {judge!r} is a {spec.kind} judge, which cannot write annotations",
                          fix="name a chat judge (openai:MODEL, openai-compatible:MODEL@URL, hf:PATH, vllm:PATH)")
    judge_id = annotator_id(judge)
    sampling = Sampling(temperature=spec.temperature, max_tokens=max(1, min(spec.max_tokens, 512)))
    keys = [f"{ANNOTATION_CACHE}:" + content_hash({"judge": judge_id, "messages": _messages(t),
                                                   "sampling": sampling.as_dict()}, 24) for t in texts]
    stored = store.games(keys)
    results: list[dict[str, Any] | None] = [stored.get(k) for k in keys]
    todo = [i for i, r in enumerate(results) if r is None]
    counts = {"annotator": judge_id, "cached": len(texts) - len(todo), "asked": len(todo), "unanswered": 0}
    if not todo:
        return results, counts
    be = backend if backend is not None else backend_for(spec)
    done = 0
    if progress:
        progress("annotate", 0, len(todo))

    lock = threading.Lock()  # a backend may report results from its worker threads

    def on_result(j: int, c: Completion) -> None:
        nonlocal done
        i = todo[j]
        with lock:
            if c.ok and results[i] is None:
                rec = {"qualities": parse_annotation(c.text), "text": c.text, "prompt_tokens": c.prompt_tokens,
                       "completion_tokens": c.completion_tokens}
                store.put_game(keys[i], judge_id, rec)  # stored the moment it is paid for
                results[i] = rec
            done += 1
            if progress:
                progress("annotate", done, len(todo))

    outs = be.generate([_messages(texts[i]) for i in todo], sampling, on_result=on_result)
    for j, c in enumerate(outs):  # a backend that does not call on_result for every item
        if results[todo[j]] is None and c.ok:
            on_result(j, c)
    errors = Counter(c.error for c in outs if not c.ok and c.error)
    counts["unanswered"] = sum(r is None for r in results)
    if errors:
        counts["errors"] = dict(errors.most_common(3))
    return results, counts


# -- the build ----------------------------------------------------------------------------------------------------
def _embeddings(texts: Sequence[str], model: str | None, cache: Path) -> np.ndarray:
    """Embeddings, reusing those of an earlier build of the same folder (keyed by text and model)."""
    name = model or "default"
    keys = [content_hash({"model": name, "text": t}, 16) for t in texts]
    known: dict[str, np.ndarray] = {}
    if cache.is_file():
        try:
            with np.load(cache) as z:
                known = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
        except (OSError, ValueError, KeyError):
            known = {}  # a damaged cache is rebuilt
    missing = [i for i, k in enumerate(keys) if k not in known]
    if missing:
        fresh = embed([texts[i] for i in missing], model)
        for i, v in zip(missing, fresh, strict=True):
            known[keys[i]] = v
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(known)), vectors=np.array(list(known.values()), dtype=np.float32))
        tmp.replace(cache)
    return np.array([known[k] for k in keys], dtype=np.float32).reshape(len(texts), -1)


def _near_duplicates(x: np.ndarray, threshold: float, block: int = 512) -> dict[int, tuple[int, float]]:
    """Row -> (earlier kept row, similarity) for each row at least ``threshold``-similar to an earlier kept row.

    Rows are taken in order, a block at a time: one matrix product against every row kept before the block, then
    the block's rows against each other in order."""
    dropped: dict[int, tuple[int, float]] = {}
    kept = np.zeros(len(x), dtype=np.int64)
    count = 0
    for start in range(0, len(x), block):
        rows = np.arange(start, min(start + block, len(x)))
        before = x[rows] @ x[kept[:count]].T if count else np.zeros((len(rows), 0), np.float32)
        within = x[rows] @ x[rows].T
        fresh: list[int] = []  # positions in this block kept so far
        for r, i in enumerate(rows):
            best_j, best = -1, -np.inf
            if before.shape[1]:
                c = int(before[r].argmax())
                best_j, best = int(kept[c]), float(before[r, c])
            if fresh:
                sims = within[r, fresh]
                c = int(sims.argmax())
                if sims[c] > best:
                    best_j, best = int(rows[fresh[c]]), float(sims[c])
            if best >= threshold:
                dropped[int(i)] = (best_j, best)
            else:
                fresh.append(r)
        kept[count:count + len(fresh)] = rows[fresh]
        count += len(fresh)
    return dropped


def _sample(clusters: dict[int, list[int]], scores: dict[int, int], order: list[int], n: int,
            rng: np.random.Generator) -> list[int]:
    """Round-robin over ``order`` (clusters, best first), taking each cluster's best remaining prompt per round."""
    queues = {}
    for k in order:
        members = clusters[k]
        tie = rng.permutation(len(members))
        queues[k] = [m for _, _, m in sorted(zip((-scores[m] for m in members), tie, members, strict=True))]
    picked: list[int] = []
    while len(picked) < n and any(queues.values()):
        for k in order:
            if queues[k] and len(picked) < n:
                picked.append(queues[k].pop(0))
    return picked


def build_bench(cfg: BuildConfig, store: RunStore, *, backend: Backend | None = None,
                progress: Progress | None = None) -> BuildResult:
    """Curate a benchmark from ``cfg.prompts`` into ``cfg.out`` (see the module notes)."""
    cfg.check()
    out = Path(cfg.out)
    pool = load_prompts(cfg.prompts)
    dropped: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    kept: list[tuple[str, str]] = []
    for pid, text in pool:
        folded = _fold(text)
        if not folded:
            dropped.append({"id": pid, "reason": "empty prompt"})
        elif folded in seen:
            dropped.append({"id": pid, "reason": "exact duplicate", "of": seen[folded]})
        else:
            seen[folded] = pid
            kept.append((pid, text))
    if progress:
        progress("embed", 0, len(kept))
    x = _embeddings([t for _, t in kept], cfg.embedding_model, out / ".cache" / "embeddings.npz")
    if progress:
        progress("embed", len(kept), len(kept))
    near = _near_duplicates(x, cfg.dedup_threshold)
    for i, (j, sim) in sorted(near.items()):
        dropped.append({"id": kept[i][0], "reason": "near duplicate", "of": kept[j][0], "similarity": round(sim, 4)})
    rows = [i for i in range(len(kept)) if i not in near]
    ids = [kept[i][0] for i in rows]
    texts = [kept[i][1] for i in rows]
    x = x[rows]
    if len(texts) < 2:
        raise DataError(f"only {len(texts)} distinct prompt(s) left after removing duplicates",
                        fix="give a larger pool of prompts")

    # topics
    silhouettes: dict[int, float] = {}
    if cfg.clusters is not None:
        k = min(cfg.clusters, len(texts))
    else:
        k, silhouettes = choose_clusters(x, max_k=cfg.max_clusters, seed=cfg.seed)
    labels = kmeans(x, k, seed=cfg.seed)
    names = _names(texts, labels)

    # qualities
    results, counts = annotate(texts, cfg.judge, store, backend=backend, progress=progress)
    quals = [r.get("qualities") if r else None for r in results]
    score = {i: sum(q.values()) for i, q in enumerate(quals) if q is not None}

    clusters: dict[int, list[int]] = {}
    for i, lab in enumerate(labels):
        clusters.setdefault(int(lab), []).append(i)
    cluster_rows: list[dict[str, Any]] = []
    for k_, members in sorted(clusters.items()):
        scored = [score[i] for i in members if i in score]
        mean = float(np.mean(scored)) if scored else None
        cluster_rows.append({"cluster": k_, "name": names[k_], "size": len(members), "annotated": len(scored),
                             "mean_score": None if mean is None else round(mean, 3),
                             "eligible": mean is not None and mean >= cfg.min_cluster_score})
    good = {c["cluster"] for c in cluster_rows if c["eligible"]}
    candidates: dict[int, list[int]] = {}
    for i in range(len(texts)):
        lab = int(labels[i])
        if results[i] is None:
            dropped.append({"id": ids[i], "reason": "not annotated (the annotator did not answer)"})
        elif quals[i] is None:
            dropped.append({"id": ids[i], "reason": "annotation unparsed"})
        elif score[i] < cfg.min_score:
            dropped.append({"id": ids[i], "reason": "low quality", "score": score[i]})
        elif lab not in good:
            dropped.append({"id": ids[i], "reason": "low-quality cluster", "cluster": names[lab]})
        else:
            candidates.setdefault(lab, []).append(i)
    means: dict[int, float] = {c["cluster"]: c["mean_score"] for c in cluster_rows}
    order = sorted(candidates, key=lambda c: (-means[c], c))
    picked = _sample(candidates, score, order, cfg.n, np.random.default_rng(cfg.seed))
    chosen = set(picked)
    for lab in order:
        for i in candidates[lab]:
            if i not in chosen:
                dropped.append({"id": ids[i], "reason": "not sampled", "score": score[i]})
    per_cluster = Counter(int(labels[i]) for i in picked)
    for c in cluster_rows:
        c["selected"] = per_cluster.get(c["cluster"], 0)
    complete = counts["unanswered"] == 0
    report: dict[str, Any] = {
        "complete": complete,
        "settings": {**asdict(cfg), "annotation_version": ANNOTATION_VERSION},
        "annotator": counts,
        "pool": len(pool), "distinct": len(texts), "selected": len(picked), "clusters_chosen": k,
        "silhouette": {str(k_): round(v, 4) for k_, v in silhouettes.items()},
        "clusters": cluster_rows,
        "score_distribution": {str(s): sum(1 for v in score.values() if v == s) for s in range(len(QUALITIES) + 1)},
        "quality_share": {q: round(float(np.mean([v[q] for v in quals if v is not None])), 4) if score else None
                          for q in QUALITIES},
        "prompts": [{"id": ids[i], "cluster": names[int(labels[i])], "score": score.get(i)} for i in range(len(ids))],
        "dropped_counts": dict(Counter(d["reason"] for d in dropped)),
        "dropped": dropped,
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "build_report.json", report)
    if not complete:
        raise IncompleteError(f"{counts['unanswered']} of {len(texts)} prompts are not annotated yet "
                              f"({', '.join(counts.get('errors', {})) or 'the annotator did not answer'})",
                              fix="rerun the same command: stored annotations are reused, only the rest are asked")
    if not picked:
        raise LionEvalError("no prompt passed the quality filters",
                            fix=f"lower --min-score ({cfg.min_score}) or --min-cluster-score "
                                f"({cfg.min_cluster_score}); see {out / 'build_report.json'}")
    lines = [json.dumps({"uid": ids[i], "category": cfg.category, "cluster": names[int(labels[i])],
                         "prompt": texts[i], "score": score[i]}, ensure_ascii=False) for i in picked]
    tmp = out / "question.jsonl.tmp"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(out / "question.jsonl")
    if cfg.baseline_policy:
        report["baseline"] = write_baseline(out, cfg.baseline_policy, cfg.baseline_model, store,
                                            seed=cfg.seed, progress=progress)
        _write_json(out / "build_report.json", report)
    return BuildResult(out, True, len(picked), report)


def write_baseline(out: Path, policy: str, model: str | None, store: RunStore, *, seed: int = 0,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Answers of a baseline model (any backend spec) to the built questions, stored and written as
    ``model_answer/<model>.jsonl``."""
    spec = parse_spec(policy)
    if spec.kind in ("reward-model", "ensemble"):
        raise ConfigError(f"--baseline-policy {policy!r} names a judge, not a generation backend",
                          fix="use hf:PATH, vllm:PATH, openai:MODEL or openai-compatible:MODEL@URL")
    name = model or spec.model
    bench = benchmarks.load(ARENA_HARD, out, baseline=name)
    questions = bench.questions()
    store.put_questions(questions)

    def step(done: int, total: int, **_: Any) -> None:
        if progress:
            progress("baseline", done, total)

    answers = generate_answers(backend_for(spec), bench, questions, name, seed=seed, store=store, progress=step)
    bench.export_official(out, [], answers, [])
    return {"model": name, "answers": len(answers)}


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
