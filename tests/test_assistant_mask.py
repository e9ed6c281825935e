"""Assistant-only loss for chat templates that rewrite earlier turns (Qwen3-style thinking) or mark the assistant's
tokens with ``{% generation %}``, on a tokenizer trained locally."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers", reason="needs the train extra")

from transformers import AutoTokenizer  # noqa: E402

from lioneval.errors import DataError  # noqa: E402
from lioneval.testing.tiny import CHAT_TEMPLATE, make_tiny_causal_lm, make_tokenizer  # noqa: E402
from lioneval.trainers.sft import IGNORE, SFTConfig, sft, tokenize_conversation, tokenize_documents  # noqa: E402

# Written for these tests in the manner of Qwen3's template: an assistant turn shows its thinking (`reasoning_content`,
# or a <think> block inside the content) only after the last user message; earlier turns lose it.
THINKING_TEMPLATE = (
    "{%- set ns = namespace(last_user=-1) -%}"
    "{%- for m in messages -%}{%- if m['role'] == 'user' -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- for m in messages -%}"
    "{{- '<|im_start|>' + m['role'] + '\\n' -}}"
    "{%- if m['role'] == 'assistant' -%}"
    "{%- set content = m['content'] -%}{%- set thought = m.get('reasoning_content', '') -%}"
    "{%- if '</think>' in content -%}"
    "{%- set thought = content.split('</think>')[0].split('<think>')[-1].strip() -%}"
    "{%- set content = content.split('</think>')[-1].lstrip() -%}"
    "{%- endif -%}"
    "{%- if loop.index0 > ns.last_user -%}{{- '<think>\\n' + thought + '\\n</think>\\n\\n' -}}{%- endif -%}"
    "{{- content -}}"
    "{%- else -%}{{- m['content'] -}}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
# ChatML with the assistant's part of each turn inside {% generation %} markers.
MARKED_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}<|im_start|>assistant\n"
    "{% generation %}{{ m['content'] }}<|im_end|>\n{% endgeneration %}"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CONV = [
    {"role": "user", "content": "what is the answer"},
    {"role": "assistant", "content": "the answer is 42.", "reasoning_content": "the judge rates it"},
    {"role": "user", "content": "explain why"},
    {"role": "assistant", "content": "<think>\nbecause of rain\n</think>\n\nthe quick fox jumps."},
]


def _learned(tok, doc) -> str:
    ids, labels = doc
    assert all(lab in (IGNORE, t) for t, lab in zip(ids, labels, strict=True))
    return tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE])


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def test_a_template_that_drops_earlier_thinking_gets_one_sequence_per_rewritten_turn(tok):
    tok.chat_template = THINKING_TEMPLATE
    full = tok.apply_chat_template(CONV, tokenize=False)
    assert "the judge rates it" not in full  # the first turn's thinking is gone from the whole conversation
    first, whole = tokenize_documents(tok, CONV)
    # the first turn is learned as the model writes it: the conversation up to it, its thinking included
    assert tok.decode(first[0]).endswith("<|im_start|>assistant\n<think>\nthe judge rates it\n</think>\n\n"
                                         "the answer is 42.<|im_end|>\n")
    assert _learned(tok, first) == "<think>\nthe judge rates it\n</think>\n\nthe answer is 42.<|im_end|>\n"
    # the whole conversation carries the loss of the last turn only; the first is context there, without thinking
    assert tok.decode(whole[0]) == full
    assert _learned(tok, whole) == "<think>\nbecause of rain\n</think>\n\nthe quick fox jumps.<|im_end|>\n"
    with pytest.raises(DataError, match="one sequence per turn"):
        tokenize_conversation(tok, CONV)


def test_a_prefix_preserving_template_keeps_one_sequence(tok):
    tok.chat_template = CHAT_TEMPLATE
    (doc,) = tokenize_documents(tok, CONV)
    assert _learned(tok, doc) == ("the answer is 42.<|im_end|>\n<think>\nbecause of rain\n</think>\n\n"
                                  "the quick fox jumps.<|im_end|>\n")
    assert doc == tokenize_conversation(tok, CONV)


def test_generation_markers_decide_when_the_template_has_them(tok):
    tok.chat_template = MARKED_TEMPLATE
    (doc,) = tokenize_documents(tok, CONV)
    assert _learned(tok, doc) == ("the answer is 42.<|im_end|>\n<think>\nbecause of rain\n</think>\n\n"
                                  "the quick fox jumps.<|im_end|>\n")
    ids, labels = tokenize_documents(tok, CONV, max_length=5)[0]
    assert len(ids) == len(labels) == 5


def test_a_template_whose_prefixes_do_not_line_up_is_refused_with_the_fix(tok):
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant says: {% endif %}")
    with pytest.raises(DataError, match="generation %} markers"):
        tokenize_documents(tok, CONV)
    # without assistant-only loss every token is learned, whatever the template
    (doc,) = tokenize_documents(tok, CONV, assistant_only=False)
    assert doc[0] == doc[1]


def test_sft_trains_on_a_thinking_template(tmp_path):
    model = make_tiny_causal_lm(tmp_path / "tiny", hidden=32, layers=1)
    config = json.loads((model / "tokenizer_config.json").read_text())
    (model / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": THINKING_TEMPLATE}))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    assert AutoTokenizer.from_pretrained(model).chat_template == THINKING_TEMPLATE
    data = tmp_path / "sft.jsonl"
    data.write_text(json.dumps({"messages": CONV}) + "\n" + json.dumps({"messages": CONV[:2]}) + "\n")
    result = sft(SFTConfig(model=str(model), data=str(data), output_dir=str(tmp_path / "out"), max_length=128,
                           max_steps=1, save_steps=1, per_device_train_batch_size=2, report_to=["none"]))
    assert result.steps == 1 and len(result.checkpoints) == 1
