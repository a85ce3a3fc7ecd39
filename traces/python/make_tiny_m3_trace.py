"""make_tiny_m3_trace.py - builds a tiny, randomly initialised MiniMax-M3 text model with
Hugging Face transformers (models/minimax_m3_vl), runs one prefill and a few decode steps
with the recorder hooks of hf_minimax_m3.py, and writes an MSA trace that `msa replay`
judges with our reference and oracle (transformers' selection and attention: a real
implementation nobody on this project wrote).

    python3 traces/python/make_tiny_m3_trace.py --out /tmp/m3_tiny.npz [--device cuda]
        [--dtype float32|bfloat16] [--tokens 300] [--steps 3] [--seed 7]

float32 (default) keeps every product in fp32, matching the "fp32" arithmetic profile the
trace declares.  With bfloat16, eager attention rounds the logits q.k to bf16 before the
softmax, which no profile of ours declares: expect the oracle to flag the outputs (that is
a finding about HF eager in bf16, not a bug of the recorder).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from hf_minimax_m3 import MiniMaxM3Recorder  # noqa: E402


def tiny_config(args):
    """A 3-layer config (layer 0 dense attention, 1-2 sparse; dense MLPs), written in the
    checkpoint's "sparse_attention_config" form, which both generations of the config
    class accept (newer ones map it onto their flat index_* fields)."""
    from transformers.models.minimax_m3_vl.configuration_minimax_m3_vl import MiniMaxM3VLTextConfig
    layers = 3
    sparse = {"sparse_num_index_heads": 2, "sparse_index_dim": 32, "sparse_block_size": args.block,
              "sparse_topk_blocks": args.topk, "sparse_init_block": 0, "sparse_local_block": 1,
              "sparse_score_type": "max", "sparse_attention_freq": [0] + [1] * (layers - 1)}
    cfg = MiniMaxM3VLTextConfig(
        hidden_size=128, intermediate_size=64, dense_intermediate_size=256, shared_intermediate_size=64,
        num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=2, head_dim=32,
        max_position_embeddings=4096, vocab_size=512, num_local_experts=4, num_experts_per_tok=2,
        rotary_dim=16, sparse_attention_config=sparse, moe_layer_freq=[0] * layers,
        layer_types=["full_attention"] + ["minimax_m3_sparse"] * (layers - 1),
        rope_parameters={"rope_type": "default", "rope_theta": 5e6, "partial_rotary_factor": 0.5},
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    cfg._attn_implementation = "eager"
    return cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--tokens", type=int, default=300, help="prefill length")
    ap.add_argument("--steps", type=int, default=3, help="decode steps after the prefill")
    ap.add_argument("--block", type=int, default=16)
    ap.add_argument("--topk", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from transformers.models.minimax_m3_vl import modeling_minimax_m3_vl as mm
    torch.manual_seed(args.seed)
    cfg = tiny_config(args)
    dtype = getattr(torch, args.dtype)
    model = mm.MiniMaxM3VLForCausalLM(cfg).to(device=args.device, dtype=dtype).eval()
    # Gemma-style norms start at weight 0 (scale 1); give them some spread so that the
    # index and main branches do not see perfectly normalised, tie-prone vectors.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.normal_(0.0, 0.3)
    ids = torch.randint(3, cfg.vocab_size, (1, args.tokens), device=args.device)
    from transformers.cache_utils import DynamicCache
    cache = DynamicCache(config=cfg)
    with torch.no_grad(), MiniMaxM3Recorder(model, mm) as rec:
        out = model(input_ids=ids, past_key_values=cache, use_cache=True)
        rec.next_step()
        nxt = out.logits[:, -1:].argmax(-1)
        for _ in range(args.steps):
            out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)
            rec.next_step()
            nxt = out.logits[:, -1:].argmax(-1)
        arith = "fp32" if args.dtype == "float32" else "bf16-p-bf16-out"
        n = rec.write(args.out, {"arith": arith, "seed": args.seed, "dtype": args.dtype,
                                 "device": str(args.device), "torch": torch.__version__,
                                 "config": "tiny random MiniMax-M3 text model (make_tiny_m3_trace.py)"})
    print(f"{args.out}: {n} records (sparse layers x {1 + args.steps} steps)")


if __name__ == "__main__":
    main()
