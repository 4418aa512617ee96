"""Memory estimate per adapter for two public decoder shapes, from their configurations
alone (models built on the meta device: nothing is downloaded or allocated).

The shapes are copied from the public config.json files: Qwen2.5-0.5B (hidden 896, 24
layers, 14 heads, 2 KV heads, MLP 4864, vocabulary 151936, tied embeddings) and
Llama-3.1-8B (hidden 4096, 32 layers, 32 heads, 8 KV heads, MLP 14336, vocabulary 128256).
Settings are those of a GPU trial: bf16 weights for peft adapters (fp32 for full
fine-tuning, as ``training.weights_dtype: auto`` does), bf16 activations.

    python benchmarks/memory_estimate.py [--batch 16] [--max-length 256] [--gradient-checkpointing]

These are estimates (see automl/memory.py for the formula and what it leaves out), not
measurements; ``benchmarks/gpu_check.sh`` prints the estimate beside the measured peak.
"""

from __future__ import annotations

import argparse
import warnings

from transformers import LlamaConfig, Qwen2Config

from automl.memory import estimate, human_bytes, meta_model

SHAPES = {
    "Qwen2.5-0.5B": Qwen2Config(
        hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True, pad_token_id=151643, num_labels=2,
    ),
    "Llama-3.1-8B": LlamaConfig(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False, pad_token_id=128001, num_labels=2,
    ),
}

#: (label, adapter, params)
TRIALS = [
    ("full", "full", {}),
    ("lora r16 attention", "lora", {"lora_r": 16, "target_modules": "attention"}),
    ("lora r16 all-linear", "lora", {"lora_r": 16, "target_modules": "all-linear"}),
    ("dora r16 all-linear", "dora", {"lora_r": 16, "target_modules": "all-linear"}),
    ("qlora r64 all-linear", "qlora", {"lora_r": 64, "target_modules": "all-linear"}),
    ("ia3 attention+mlp", "ia3", {"target_modules": "attention+mlp"}),
    ("loha r16 all-linear", "loha", {"loha_r": 16, "target_modules": "all-linear"}),
    ("lokr r16 all-linear", "lokr", {"lokr_r": 16, "target_modules": "all-linear"}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"batch {args.batch}, max_length {args.max_length}, gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}")
    print(f"| model | trial | trainable | weights | gradients + AdamW | activations | total |")
    print("|---|---|---|---|---|---|---|")
    for model_name, config in SHAPES.items():
        model = meta_model(config, "sequence-classification")
        for label, adapter, params in TRIALS:
            e = estimate(
                model, adapter=adapter, params=params, head="sequence-classification", default_targets=["q_proj", "v_proj"],
                batch_size=args.batch, max_length=args.max_length, weight_bytes=4 if adapter == "full" else 2,
                activation_bytes=2, gradient_checkpointing=args.gradient_checkpointing,
            )
            print(
                f"| {model_name} | {label} | {e.trainable / 1e6:,.1f}M of {e.parameters / 1e6:,.0f}M | {human_bytes(e.weights)} "
                f"| {human_bytes(e.training_state)} | {human_bytes(e.activations)} | {human_bytes(e.total)} |"
            )


if __name__ == "__main__":
    main()
