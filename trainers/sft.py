"""Supervised fine-tuning on conversations: packed sequences that cannot see each other, loss on assistant tokens.

Data: JSONL, one ``{"messages": [{"role": ..., "content": ...}, ...]}`` per line. Each conversation is rendered with
the checkpoint's own chat template; the tokens of assistant messages (through their end-of-turn token, so the model
learns to stop) carry the loss, every other token gets label -100. Which characters belong to an assistant message
is read off the template's ``{% generation %}`` markers, or else off the template itself (the rendered prefix
before the message and through it); a template that renders earlier turns differently once the conversation goes on
(Qwen3 drops their thinking) gives each such turn a sequence of its own (:func:`tokenize_documents`).

Packing: conversations are placed into rows of ``max_length`` tokens by best-fit decreasing, and a batch is handed
to the model as one flat sequence whose ``position_ids`` restart at 0 for every conversation, without an attention
mask. transformers reads those restarts as document boundaries: the flash-attention kernels run variable-length
attention, and sdpa and eager attention get a block-diagonal causal mask (only without a KV cache: the collator
passes ``use_cache=False``). So no token attends across conversations, and the per-token loss equals that of the
same conversations run one by one (tests/test_trainers.py checks this).
The first token of every conversation has label -100 so the last token of the previous one is not trained to
predict it.
"""

from __future__ import annotations

import bisect
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lioneval.errors import DataError
from lioneval.trainers.config import StageConfig, _help
from lioneval.trainers.evalset import split_eval
from lioneval.trainers.models import with_adapter
from lioneval.trainers.stage import Stage, StageResult

log = logging.getLogger("lioneval.train")

__all__ = ["PackedCollator", "SFTConfig", "SFTStage", "build_rows", "pack", "read_conversations", "sft",
           "tokenize_conversation", "tokenize_documents"]

IGNORE = -100


@dataclass
class SFTConfig(StageConfig):
    """Settings of the SFT stage (also the keys of an `sft` stage in a recipe)."""

    data: str = _help("", "JSONL file of conversations, one {\"messages\": [...]} object per line.")
    max_length: int = _help(512, "Tokens per packed row; longer conversations are cut to this length.", minimum=1)
    packing: bool = _help(True, "Pack conversations into rows and train padding-free (position_ids restart per "
                                "conversation, so none attends to another). False: one padded conversation per row.")
    assistant_only_loss: bool = _help(True, "Train only on assistant tokens (labels -100 elsewhere).")
    learning_rate: float = _help(2e-5, "Peak learning rate.", minimum=0)

    KIND = "sft"
    REQUIRED = ("data",)
    INPUT_FILES = ("data",)


def read_conversations(path: str | Path) -> list[list[dict[str, str]]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no SFT data at {path}", fix="set `data:` to a JSONL file of {\"messages\": [...]} lines")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            msgs = json.loads(line)["messages"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{path}:{n} is not a {{\"messages\": [...]}} object ({e})",
                            fix="write one JSON object with a `messages` list per line") from e
        if not any(m.get("role") == "assistant" for m in msgs):
            raise DataError(f"{path}:{n} has no assistant message", fix="every conversation needs an answer to learn")
        out.append(msgs)
    return out


def tokenize_conversation(tokenizer: Any, messages: Sequence[dict[str, str]], max_length: int | None = None,
                          assistant_only: bool = True) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and their labels (-100 outside assistant messages), for templates that
    render a conversation as the concatenation of its prefixes (see :func:`tokenize_documents` for the others)."""
    docs = tokenize_documents(tokenizer, messages, max_length, assistant_only)
    if len(docs) > 1:
        raise DataError("the chat template renders a conversation differently from its prefixes (it drops or "
                        "rewrites earlier turns), so one sequence cannot carry every assistant turn",
                        fix="use tokenize_documents, which gives such a conversation one sequence per turn")
    return docs[0]


def tokenize_documents(tokenizer: Any, messages: Sequence[dict[str, str]], max_length: int | None = None,
                       assistant_only: bool = True) -> list[tuple[list[int], list[int]]]:
    """The training sequences of one conversation: token ids and labels (-100 outside assistant messages).

    Usually one sequence, the whole conversation. Which tokens are the assistant's comes from the template's
    ``{% generation %}`` markers when it has them, else from rendering each prefix of the conversation: the text
    before an assistant message (with the generation prompt) and through it. Some templates render an earlier turn
    differently once the conversation goes on (Qwen3 drops the thinking of assistant turns before the last user
    message); such a turn gets a sequence of its own, the conversation rendered through that turn, which is exactly
    what the model sees when it writes it. So every assistant turn is learned once, as the template renders it.
    """
    messages = list(messages)
    if not assistant_only:
        return [_encode(tokenizer, tokenizer.apply_chat_template(messages, tokenize=False), None, max_length)]
    if _MARKER.search(getattr(tokenizer, "chat_template", None) or ""):
        return [_by_markers(tokenizer, messages, max_length)]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    whole: list[tuple[int, int]] = []
    docs = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not through.startswith(before):
            raise DataError(
                f"the chat template renders assistant message {i} so that the conversation before it (with the "
                "generation prompt) is not where it starts, so its tokens cannot be located",
                fix="add {% generation %} markers to the template, or set assistant_only_loss: false")
        if text.startswith(through):
            whole.append((len(before), len(through)))
        else:  # later turns change how this one is rendered: it is learned in the conversation up to it
            docs.append(_encode(tokenizer, through, [(len(before), len(through))], max_length))
    if whole:
        docs.append(_encode(tokenizer, text, whole, max_length))
    return docs


_MARKER = re.compile(r"{%-?\s*generation\s*-?%}")


def _encode(tokenizer: Any, text: str, spans: list[tuple[int, int]] | None,
            max_length: int | None) -> tuple[list[int], list[int]]:
    """Ids of ``text`` and labels: the ids inside ``spans`` (character ranges; None: everywhere), else -100."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=spans is not None)
    ids = list(enc["input_ids"])
    if spans is None:
        labels = list(ids)
    else:
        starts = [s for s, _ in enc["offset_mapping"]]
        labels = [t if any(a <= s < b for a, b in spans) else IGNORE for t, s in zip(ids, starts, strict=True)]
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


def _by_markers(tokenizer: Any, messages: list[dict[str, str]], max_length: int | None) -> tuple[list[int], list[int]]:
    """Ids and labels from the template's own ``{% generation %}`` markers (transformers' assistant mask)."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids = list(out["input_ids"])
    labels = [t if keep else IGNORE for t, keep in zip(ids, out["assistant_masks"], strict=True)]
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


def pack(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Best-fit decreasing: indices of the documents in each row; every row holds at most ``max_length`` tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, row index), sorted: the best fit is the first with enough room
    for i in order:
        n = min(lengths[i], max_length)
        at = bisect.bisect_left(free, (n, -1))
        if at < len(free):
            room, r = free.pop(at)
        else:
            room, r = max_length, len(rows)
            rows.append([])
        rows[r].append(i)
        if room - n > 0:
            bisect.insort(free, (room - n, r))
    return rows


def build_rows(docs: Sequence[tuple[list[int], list[int]]], max_length: int, packing: bool = True
               ) -> list[dict[str, list[int]]]:
    """Training rows: packed (several documents, positions restarting per document) or one document each."""
    groups = pack([len(d[0]) for d in docs], max_length) if packing else [[i] for i in range(len(docs))]
    rows = []
    for g in groups:
        ids: list[int] = []
        labels: list[int] = []
        pos: list[int] = []
        for i in g:
            d_ids, d_labels = docs[i]
            ids += d_ids
            labels += [IGNORE, *d_labels[1:]]  # never learn to predict a document from the previous one
            pos += list(range(len(d_ids)))
        rows.append({"input_ids": ids, "labels": labels, "position_ids": pos})
    return rows


@dataclass
class PackedCollator:
    """Batches rows padding-free (one flat sequence, boundaries in ``position_ids``) or padded with a mask."""

    pad_token_id: int
    padding_free: bool = True

    def __call__(self, rows: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        if self.padding_free:
            flat = {k: [v for r in rows for v in r[k]] for k in ("input_ids", "labels", "position_ids")}
            batch: dict[str, Any] = {k: torch.tensor([v], dtype=torch.long) for k, v in flat.items()}
            # transformers finds the document boundaries in position_ids only when there is no KV cache; models
            # default to creating one even in training, and then every document attends to those before it.
            batch["use_cache"] = False
            return batch
        width = max(len(r["input_ids"]) for r in rows)
        out: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "attention_mask": []}
        for r in rows:
            pad = width - len(r["input_ids"])
            out["input_ids"].append(r["input_ids"] + [self.pad_token_id] * pad)
            out["labels"].append(r["labels"] + [IGNORE] * pad)
            out["attention_mask"].append([1] * len(r["input_ids"]) + [0] * pad)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}


class _Rows:
    def __init__(self, rows: list[dict[str, list[int]]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]


class SFTStage(Stage):
    """SFT on the shared stage skeleton: conversations read first, tokenized and packed before any file is written."""

    config_cls = SFTConfig
    needs = "transformers"
    what = "training"

    def prepare(self) -> None:
        self.conversations, self.eval_conversations = split_eval(read_conversations(self.cfg.data), self.cfg,
                                                                 read_conversations)

    def setup(self, model: Any, tokenizer: Any) -> None:
        self.rows = self._rows(tokenizer, self.conversations)
        self.eval_rows = self._rows(tokenizer, self.eval_conversations) if self.eval_conversations else None

    def _rows(self, tokenizer: Any, conversations: list[list[dict[str, str]]]) -> list[dict[str, list[int]]]:
        cfg = self.cfg
        docs = [d for c in conversations for d in tokenize_documents(tokenizer, c, cfg.max_length,
                                                                       cfg.assistant_only_loss)]
        kept = [d for d in docs if any(t != IGNORE for t in d[1][1:])]
        if len(kept) < len(docs):
            log.warning("sft: %d conversation(s) have no assistant token within max_length=%d and are left out",
                        len(docs) - len(kept), cfg.max_length)
        if not kept:
            raise DataError("no conversation has an assistant token to learn", fix="raise max_length")
        rows = build_rows(kept, cfg.max_length, cfg.packing)
        log.info("sft: %d conversations in %d rows of at most %d tokens", len(kept), len(rows), cfg.max_length)
        return rows

    def trainer(self, round: int, model: Any, tokenizer: Any, callbacks: list[Any]) -> Any:
        from transformers import Trainer, TrainingArguments

        args = self.cfg.training_arguments(TrainingArguments, remove_unused_columns=False)
        if self.cfg.peft_config is not None:
            model = with_adapter(model, self.cfg.peft_config)
        return Trainer(model=model, args=args, train_dataset=_Rows(self.rows),
                       eval_dataset=_Rows(self.eval_rows) if self.eval_rows else None,
                       data_collator=PackedCollator(tokenizer.pad_token_id, padding_free=self.cfg.packing),
                       processing_class=tokenizer, callbacks=callbacks)


def sft(cfg: SFTConfig, *, store: str | None = None) -> StageResult:
    """Fine-tune ``cfg.model`` on ``cfg.data``; checkpoints ``<output_dir>/<stage>-step<N>``."""
    return SFTStage(cfg, store=store).run()
