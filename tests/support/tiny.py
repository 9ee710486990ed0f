"""Tiny seeded models built from configs: the same classes as the real checkpoints, scaled down."""
from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

CORPUS = [
    "I love this movie, the cast is wonderful.",
    "This was a waste of money and time.",
    "Once upon a time there was a small model that wanted to learn.",
    "Write a haiku about autumn rain.",
] * 4


def wordpiece_tokenizer(max_length: int = 64):
    """A BERT-style (WordPiece, lowercase, [CLS] ... [SEP]) fast tokenizer with a tiny vocabulary."""
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'")
    vocab = {tok: i for i, tok in enumerate(special + chars + ["##" + c for c in chars])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=max_length,
    )


def bytelevel_tokenizer():
    """A GPT-style byte-level BPE fast tokenizer trained on a few sentences (any text encodes)."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", model_max_length=128)


def distilbert_classifier():
    """DistilBertForSequenceClassification (2 layers, dim 32) with SST-2's labels."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from core.text import SequenceClassifier

    torch.manual_seed(0)
    tokenizer = wordpiece_tokenizer()
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=32, hidden_dim=64, n_layers=2, n_heads=2, max_position_embeddings=64,
        id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    model = DistilBertForSequenceClassification(config).eval()
    return SequenceClassifier(tokenizer, model, ["negative", "positive"], 64)


def bert_encoder():
    """BertModel (2 layers, hidden 32), the class of all-MiniLM-L6-v2, as a TextEncoder."""
    from transformers import BertConfig, BertModel

    from core.text import TextEncoder

    torch.manual_seed(0)
    tokenizer = wordpiece_tokenizer()
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    return TextEncoder(tokenizer, BertModel(config).eval(), 64)


def llama_lm(context: int = 128):
    """LlamaForCausalLM (the class of SmolLM2), 2 layers, hidden 32, as a CausalLM without chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from core.textgen import CausalLM

    torch.manual_seed(0)
    tokenizer = bytelevel_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=context, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True,
    )
    return CausalLM(tokenizer, LlamaForCausalLM(config).eval(), chat=False, context=context)


def gpt2_lm(context: int = 128):
    """GPT2LMHeadModel, 2 layers, width 32, as a CausalLM."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from core.textgen import CausalLM

    torch.manual_seed(0)
    tokenizer = bytelevel_tokenizer()
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=context, n_embd=32, n_layer=2, n_head=2,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    return CausalLM(tokenizer, GPT2LMHeadModel(config).eval(), chat=False, context=context)
