"""Tiny randomly initialised backbones for tests (seconds, offline, no downloads).

``tiny_tokenizer()`` is a byte-level BPE without merges (one token per byte, 260 ids) built with
``tokenizers``, with ``<pad>``, ``<s>``, ``</s>``, ``<unk>`` and a minimal chat template.
``tiny_llama_backbone()`` / ``tiny_gpt2_backbone()`` wrap randomly initialised models of hidden
size 32 and 2 layers. ``save_tiny_llama(path)`` writes one as a ``save_pretrained`` folder so the
loader's local-directory path can be tested.
"""

from __future__ import annotations

import torch

from recbole_llm.llm.backbone import Backbone

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)


def tiny_tokenizer(bos=True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama_model(vocab_size=260, hidden=32, layers=2, heads=4, kv_heads=2, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=1024,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2_model(vocab_size=260, hidden=32, layers=2, heads=4, seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab_size, n_embd=hidden, n_layer=layers, n_head=heads, n_positions=1024,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, attn_implementation="sdpa",
    )
    return GPT2LMHeadModel(cfg).eval()


def tiny_llama_backbone(seed=0, freeze=True, **kwargs) -> Backbone:
    return Backbone(tiny_llama_model(seed=seed, **kwargs), tiny_tokenizer(), name="tiny-llama",
                    fingerprint=f"tiny-llama-{seed}", freeze=freeze)


def tiny_gpt2_backbone(seed=0, freeze=True, **kwargs) -> Backbone:
    return Backbone(tiny_gpt2_model(seed=seed, **kwargs), tiny_tokenizer(bos=False), name="tiny-gpt2",
                    fingerprint=f"tiny-gpt2-{seed}", freeze=freeze)


def save_tiny_llama(path, seed=0):
    """Write a tiny Llama + tokenizer with ``save_pretrained``; return the folder."""
    model = tiny_llama_model(seed=seed)
    tok = tiny_tokenizer()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
