"""Build a model folder vLLM can serve; run by the vLLM virtualenv's python, never imported by llmctl.

Usage: `python modelbuild.py tiny OUT` or `python modelbuild.py smollm2 OUT --gguf FILE`.
This file must import nothing from llmctl: the vLLM virtualenv does not have llmctl installed,
and llmctl's own environment has no torch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

# ChatML, the format SmolLM2 was tuned on; the tiny model uses it too so both take the same prompts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_VOCAB = 2048

# A fixed corpus keeps the trained tokenizer, and so the model folder, reproducible byte for byte.
_TEXT = (
    "the a an of to in and is for on with as by at from that this it be are was were "
    "model token request queue gateway engine cache batch stream latency throughput prompt "
    "user assistant system answer question hello world one two three four five six seven "
    "eight nine ten time first last next fast slow small large GPU CPU memory block step "
    "please write tell explain count list why how what when where who which can will would"
)


def _corpus() -> list[str]:
    vocab = _TEXT.split()
    lines = []
    for i in range(400):
        words = [vocab[(i * 7 + j * 13) % len(vocab)] for j in range(12 + i % 9)]
        lines.append(" ".join(words).capitalize() + ". " + str(i))
    return lines


def build_tiny(out: Path) -> None:
    """A random-weight Llama: hidden 128, 2 layers, 2 heads (head_dim 64, which CPU attention supports)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    fast.save_pretrained(out)


def build_smollm2(out: Path, gguf: Path) -> None:
    """Dequantise SmolLM2-135M-Instruct's Q4_1 GGUF into a safetensors folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Dequantised at load: vLLM serves plain safetensors, and a model left in GGUF blocks cannot be saved.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
    )
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHAT_TEMPLATE
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipe", choices=["tiny", "smollm2"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--gguf", type=Path, help="the SmolLM2 GGUF file (recipe smollm2)")
    args = parser.parse_args(argv)
    if args.recipe == "smollm2" and args.gguf is None:
        parser.error("--gguf is required for smollm2")
    # Build in a folder created exclusively beside the target (a random name: never one someone
    # planted) and rename, so a crash never leaves a half-written model behind.
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{args.out.name}.", suffix=".partial", dir=args.out.parent)
    )
    try:
        if args.recipe == "tiny":
            build_tiny(tmp)
        else:
            build_smollm2(tmp, args.gguf)
        (tmp / "llmctl-model.json").write_text(json.dumps({"recipe": args.recipe}) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would keep other users' vLLM out of a shared cache
        old = None
        if args.out.exists() or args.out.is_symlink():
            old = Path(
                tempfile.mkdtemp(prefix=f".{args.out.name}.", suffix=".old", dir=args.out.parent)
            )
            os.replace(args.out, old / "model")
        os.replace(tmp, args.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
