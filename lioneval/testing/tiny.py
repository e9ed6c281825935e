"""Tiny models built from a config, with a tokenizer trained locally: real transformers code paths, no download.

Used by the tests and by anyone who wants to try a pipeline without a real checkpoint. Their outputs are noise.
"""

from __future__ import annotations

from pathlib import Path

from lioneval.registry import require

# A ChatML-style template: the format many instruction-tuned checkpoints use.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
_CORPUS = (
    "the quick brown fox jumps over the lazy dog. a judge rates answers from 1 to 10 and writes [[8]]. "
    "assistant A is better than assistant B: [[A>B]]. the answer is 42. write a poem about rain on a tin roof. "
    "system user assistant question answer rating verdict model output instruction explain why because "
)


def make_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on a few sentences, wrapped as a transformers fast tokenizer."""
    require("tokenizers", "train", what="building a tiny tokenizer")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([_CORPUS] * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|endoftext|>", pad_token="<pad>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_causal_lm(path: str | Path, *, seed: int = 0, chat_template: bool = True, layers: int = 2,
                        hidden: int = 64) -> Path:
    """Save a randomly initialised Llama-architecture model and its tokenizer to ``path``."""
    require("torch", "train", what="building a tiny model")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tok = make_tokenizer()
    if not chat_template:
        tok.chat_template = None
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_tiny_reward_model(path: str | Path, *, seed: int = 0, hidden: int = 64) -> Path:
    """Save a randomly initialised one-label sequence-classification model (a reward model) to ``path``."""
    require("torch", "train", what="building a tiny model")
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    path = Path(path)
    tok = make_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id,
    )
    LlamaForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path
