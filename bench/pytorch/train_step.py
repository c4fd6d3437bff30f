#!/usr/bin/env python3
"""PyTorch reference for `bupo-hybrid bench train`: the same model shape, the same three training steps.

Builds a llama/qwen2/qwen3 decoder from the hyperparameters of a GGUF file (--gguf, metadata only, weights are random)
or of a named shape (--shape, the same table as RandomModelSpec.Named in src/BuPO.Hybrid.Gguf/RandomGgufModel.cs),
then times forward + backward + grad-norm clip + AdamW step on random tokens for:

  full       the full policy (a GRPO step): all blocks, final norm, logits, log-probs of the targets
  reference  a BuPO layer-k step as the reference code runs it: the whole model with every hidden state kept and the
             final [tokens x vocab] logits made, then block k's lens logits (h_k @ E_u^T) materialized
  bupo       a BuPO layer-k step where only blocks 0..k run (then block k's lens logits)

The loss is GRPO's clipped surrogate with dual clip, token-mean (BUPO_SPEC.md section 4), on-policy (pi_old = pi
detached). fp32 master weights, optional bf16 autocast (--dtype bf16, the default on CUDA), SDPA attention, AdamW
(lr 1e-6, weight decay 0.01, betas 0.9/0.999; fused on CUDA). Prints ms/step, tokens/s, peak GiB (CUDA) and the
ratios to the full step. Needs only torch (no transformers). See bench/README.md.
"""
import argparse
import json
import math
import struct
import sys
import time

import torch
import torch.nn.functional as F

# The named shapes of RandomModelSpec.Named (vocab: 151,936 = the Qwen2/Qwen3 vocabulary the bench uses from ../shared).
SHAPES = {
    "qwen3-0.6b": dict(arch="qwen3", layers=28, d=1024, heads=16, kv_heads=8, head_dim=128, ff=3072, rope_base=1e6, eps=1e-6, tied=True),
    "qwen3-tiny": dict(arch="qwen3", layers=2, d=64, heads=4, kv_heads=2, head_dim=16, ff=128, rope_base=1e6, eps=1e-6, tied=True),
    "qwen2-tiny": dict(arch="qwen2", layers=2, d=64, heads=4, kv_heads=2, head_dim=16, ff=128, rope_base=1e6, eps=1e-6, tied=True),
    "llama-tiny": dict(arch="llama", layers=3, d=64, heads=4, kv_heads=2, head_dim=16, ff=128, rope_base=1e4, eps=1e-5, tied=False),
}

# PLATFORM_NOTES' H100 anchors (Qwen3-0.6B shape, bf16 autocast, 8 x 1024 tokens, k = 5): tokens/s per mode.
ANCHORS = {"full": 34757.0, "reference": 62562.0, "bupo": 97360.0}


# ----------------------------------------------------------------------------------------------------------- GGUF

def read_gguf_config(path):
    """Hyperparameters from a GGUF's metadata (tensors are not read; tokenizer arrays are skipped)."""
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            sys.exit(f"error: {path}: not a GGUF file")
        version, n_tensors, n_kv = struct.unpack("<IQQ", f.read(20))
        if version < 2:
            sys.exit(f"error: {path}: GGUF version {version} is not supported")

        def read_str():
            (n,) = struct.unpack("<Q", f.read(8))
            return f.read(n).decode("utf-8", errors="replace")

        def read_value(t, keep):
            if t in scalar:
                fmt = "<" + scalar[t]
                return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
            if t == 8:
                return read_str()
            if t == 9:
                (et, n) = struct.unpack("<IQ", f.read(12))
                if not keep:  # skip (tokenizer arrays)
                    if et in scalar:
                        f.seek(n * struct.calcsize("<" + scalar[et]), 1)
                    else:
                        for _ in range(n):
                            read_value(et, False)
                    return n
                return [read_value(et, True) for _ in range(n)]
            sys.exit(f"error: {path}: unknown GGUF value type {t}")

        meta = {}
        for _ in range(n_kv):
            key = read_str()
            (t,) = struct.unpack("<I", f.read(4))
            meta[key] = read_value(t, keep=not key.startswith("tokenizer."))
        tensor_names = []
        for _ in range(n_tensors):
            name = read_str()
            (nd,) = struct.unpack("<I", f.read(4))
            f.seek(8 * nd + 4 + 8, 1)
            tensor_names.append(name)

    arch = meta.get("general.architecture")
    if arch not in ("llama", "qwen2", "qwen3"):
        sys.exit(f"error: {path}: architecture {arch!r} is not llama, qwen2 or qwen3")
    g = lambda k, default=None: meta.get(f"{arch}.{k}", default)
    d, heads = g("embedding_length"), g("attention.head_count")
    vocab = meta.get("tokenizer.ggml.tokens") or g("vocab_size")
    return dict(
        arch=arch, layers=g("block_count"), d=d, heads=heads, kv_heads=g("attention.head_count_kv", heads),
        head_dim=g("attention.key_length", d // heads), ff=g("feed_forward_length"), rope_base=g("rope.freq_base", 1e4),
        eps=g("attention.layer_norm_rms_epsilon", 1e-6), tied="output.weight" not in tensor_names, vocab=vocab,
    )


# ---------------------------------------------------------------------------------------------------------- model

class RMSNorm(torch.nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight.to(x.dtype)


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d, hd = c["d"], c["head_dim"]
        self.c = c
        bias = c["arch"] == "qwen2"
        self.attn_norm = RMSNorm(d, c["eps"])
        self.wq = torch.nn.Linear(d, c["heads"] * hd, bias=bias)
        self.wk = torch.nn.Linear(d, c["kv_heads"] * hd, bias=bias)
        self.wv = torch.nn.Linear(d, c["kv_heads"] * hd, bias=bias)
        self.wo = torch.nn.Linear(c["heads"] * hd, d, bias=False)
        self.q_norm = RMSNorm(hd, c["eps"]) if c["arch"] == "qwen3" else None
        self.k_norm = RMSNorm(hd, c["eps"]) if c["arch"] == "qwen3" else None
        self.ffn_norm = RMSNorm(d, c["eps"])
        self.gate = torch.nn.Linear(d, c["ff"], bias=False)
        self.up = torch.nn.Linear(d, c["ff"], bias=False)
        self.down = torch.nn.Linear(c["ff"], d, bias=False)

    def forward(self, h, cos, sin):
        c, (b, t, _) = self.c, h.shape
        hd = c["head_dim"]
        x = self.attn_norm(h)
        q = self.wq(x).view(b, t, c["heads"], hd)
        k = self.wk(x).view(b, t, c["kv_heads"], hd)
        v = self.wv(x).view(b, t, c["kv_heads"], hd)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        q, k = rope(q, cos, sin, c["arch"]), rope(k, cos, sin, c["arch"])
        if c["heads"] != c["kv_heads"]:
            rep = c["heads"] // c["kv_heads"]
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.wo(o.transpose(1, 2).reshape(b, t, -1))
        y = self.ffn_norm(h)
        return h + self.down(F.silu(self.gate(y)) * self.up(y))


def rope_tables(c, t, device):
    hd = c["head_dim"]
    inv = 1.0 / (c["rope_base"] ** (torch.arange(0, hd, 2, device=device, dtype=torch.float32) / hd))
    ang = torch.outer(torch.arange(t, device=device, dtype=torch.float32), inv)  # [t, hd/2]
    return ang.cos(), ang.sin()


def rope(x, cos, sin, arch):
    """NEOX halves for qwen2/qwen3, adjacent pairs for llama (llama.cpp's ROPE_TYPE_NEOX / NORM)."""
    xf = x.float()
    if arch == "llama":
        a, b = xf[..., 0::2], xf[..., 1::2]
        out = torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2)
    else:
        half = xf.shape[-1] // 2
        a, b = xf[..., :half], xf[..., half:]
        out = torch.cat((a * cos - b * sin, a * sin + b * cos), -1)
    return out.to(x.dtype)


class Model(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed = torch.nn.Embedding(c["vocab"], c["d"])
        self.blocks = torch.nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["d"], c["eps"])
        self.output = None if c["tied"] else torch.nn.Linear(c["d"], c["vocab"], bias=False)
        for p in self.parameters():
            if p.dim() > 1:
                torch.nn.init.normal_(p, std=0.02)

    @property
    def unembedding(self):
        return self.embed.weight if self.output is None else self.output.weight

    def forward(self, tokens, stop_after=None, keep_hidden=False):
        """Runs blocks 0..stop_after (all when None); returns (last hidden, hidden states if kept, final logits if all ran)."""
        cos, sin = rope_tables(self.c, tokens.shape[1], tokens.device)
        h = self.embed(tokens)
        hidden = [h] if keep_hidden else None
        last = len(self.blocks) - 1 if stop_after is None else stop_after
        for i in range(last + 1):
            h = self.blocks[i](h, cos, sin)
            if keep_hidden:
                hidden.append(h)
        logits = self.norm(h) @ self.unembedding.to(h.dtype).t() if last == len(self.blocks) - 1 else None
        return h, hidden, logits

    def params_up_to(self, k):
        """What BuPO's IPA loss reaches: the embedding (= E_u when tied), blocks 0..k, output.weight when untied."""
        ps = list(self.embed.parameters())
        for i in range(k + 1):
            ps += list(self.blocks[i].parameters())
        if self.output is not None:
            ps += list(self.output.parameters())
        return ps


# ----------------------------------------------------------------------------------------------------------- step

def target_log_probs(logits, targets):
    return torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def grpo_loss(lp, adv, clip=0.2, dual=10.0):
    old = lp.detach()
    ratio = torch.exp(torch.clamp(lp - old, -20, 20))
    a = adv.unsqueeze(1).expand_as(lp)
    loss = torch.maximum(-a * ratio, -a * ratio.clamp(1 - clip, 1 + clip))
    loss = torch.where(a < 0, torch.minimum(loss, -a * dual), loss)
    return loss.mean()


def step(model, mode, k, tokens, targets, adv, opt, params, autocast, device):
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
        if mode == "full":
            _, _, logits = model(tokens)
            lp = target_log_probs(logits, targets)
        elif mode == "reference":
            _, hidden, logits = model(tokens, keep_hidden=True)  # final logits made and kept, as HF's forward does
            lens = hidden[k + 1] @ model.unembedding.to(hidden[k + 1].dtype).t()
            lp = target_log_probs(lens, targets)
        else:
            h, _, _ = model(tokens, stop_after=k)
            lp = target_log_probs(h @ model.unembedding.to(h.dtype).t(), targets)
        loss = grpo_loss(lp, adv)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return loss.detach()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf", help="read the hyperparameters (and vocab size) from this GGUF, e.g. the file bench train --random wrote")
    src.add_argument("--shape", choices=sorted(SHAPES), help="a named shape (as bench train --random NAME)")
    ap.add_argument("--vocab", type=int, default=151936, help="vocab size for --shape (default 151936, the Qwen2/Qwen3 vocab)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--layer", type=int, default=None, help="block k of the BuPO steps (default 5, or (L-1)/2 below 6 blocks)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per mode")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--modes", default="full,reference,bupo")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["bf16", "f32"], default=None, help="bf16: fp32 weights + bf16 autocast (default on CUDA); f32: no autocast")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="also write the results to this file")
    a = ap.parse_args()

    c = dict(read_gguf_config(a.gguf)) if a.gguf else dict(SHAPES[a.shape], vocab=a.vocab)
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    for m in modes:
        if m not in ANCHORS:
            sys.exit(f"error: --modes: {m!r} is not one of full, reference, bupo")
    k = a.layer if a.layer is not None else (5 if c["layers"] > 5 else (c["layers"] - 1) // 2)
    if not 0 <= k < c["layers"]:
        sys.exit(f"error: --layer {k}: the model has {c['layers']} blocks")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    autocast = (a.dtype or ("bf16" if device.type == "cuda" else "f32")) == "bf16"
    torch.manual_seed(a.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    model = Model(c).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    tokens = torch.randint(0, c["vocab"], (a.batch, a.seq), device=device)
    targets = torch.randint(0, c["vocab"], (a.batch, a.seq), device=device)
    adv = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(a.batch)], device=device)
    ntok = a.batch * a.seq

    results = []
    for mode in modes:  # one mode after another, each with its own AdamW, so peak memory is per mode
        params = list(model.parameters()) if mode == "full" else model.params_up_to(k)
        opt = torch.optim.AdamW(params, lr=1e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                                **({"fused": True} if device.type == "cuda" else {}))
        times = []
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        for i in range(a.warmup + a.steps):
            sync(device)
            t0 = time.perf_counter()
            loss = step(model, mode, k, tokens, targets, adv, opt, params, autocast, device)
            sync(device)
            if i >= a.warmup:
                times.append((time.perf_counter() - t0) * 1000)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        ms = sum(times) / len(times)
        results.append(dict(mode=mode, ms_per_step=ms, min_ms_per_step=min(times), tokens_per_second=ntok / (ms / 1000),
                            peak_gib=None if math.isnan(peak) else peak, final_loss=float(loss)))
        del opt
        model.zero_grad(set_to_none=True)

    full = next((r for r in results if r["mode"] == "full"), None)
    ref = next((r for r in results if r["mode"] == "reference"), None)
    print(f"PyTorch {torch.__version__}: {a.gguf or a.shape} ({c['arch']}, {c['layers']} blocks, d {c['d']}, vocab {c['vocab']:,}, "
          f"{n_params / 1e6:.1f} M params), batch {a.batch} x {a.seq}, layer k = {k}, {device}, "
          f"{'fp32 master + bf16 autocast' if autocast else 'fp32'}")
    print(f"{'step':<11}{'ms/step':>10}{'min ms':>10}{'tokens/s':>12}{'peak GiB':>10}{'vs full':>9}{'vs ref':>8}{'H100 anchor vs full':>21}")
    for r in results:
        r["speedup_vs_full"] = full["ms_per_step"] / r["ms_per_step"] if full else None
        r["speedup_vs_reference"] = ref["ms_per_step"] / r["ms_per_step"] if ref and r["mode"] != "full" else None
        fmt = lambda v, f: "-" if v is None else format(v, f)
        print(f"{r['mode']:<11}{r['ms_per_step']:>10.1f}{r['min_ms_per_step']:>10.1f}{r['tokens_per_second']:>12,.0f}"
              f"{fmt(r['peak_gib'], '.1f'):>10}{fmt(r['speedup_vs_full'], '.2f'):>9}{fmt(r['speedup_vs_reference'], '.2f'):>8}"
              f"{ANCHORS[r['mode']] / ANCHORS['full']:>21.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(benchmark="train", engine=f"pytorch {torch.__version__}", config=c, batch=a.batch, seq=a.seq, layer=k,
                           device=str(device), autocast_bf16=autocast, results=results), f, indent=2)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
