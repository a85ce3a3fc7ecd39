"""msa_trace.py - writing and checking MSA trace files from Python (stdlib + numpy).

A trace is an .npz archive (numpy.load reads it) holding, per record NAME (one layer at
one step), an MSA case under "NAME." (config, cu_seqlens_q/k, q, k, v, index_q,
index_k), what the recorded run produced (NAME.topk_indices [HI, Tq, topk] int32,
optionally NAME.block_scores, NAME.out [Tq, Hq, D] float32, NAME.lse [Tq, Hq] float32),
a "meta" JSON entry and a "checksum" entry: SHA-256 over every other entry, taken in
byte order of the entry names, each contributing
    name UTF-8, NUL, dtype.str ("<f4", "<u2", "|u1", ...), NUL, ndim (1 byte),
    each dimension as little-endian int64, the C-order little-endian data bytes.
docs/TRACES.md is the full description; the C reader (traces/trace.c) is the authority.

This module does no attention arithmetic and imports no torch: the recorders
(hf_minimax_m3.py) hand it numpy arrays.
"""

import hashlib
import json
import os
import struct
import tempfile

import numpy as np

FORMAT = "msa-trace"
VERSION = 1
_NAME_OK = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
# dtype names of common/case.h's config JSON, by numpy storage type of q/k/v
CASE_DTYPES = ("bf16", "fp16", "fp32", "e4m3")


def checksum(arrays):
    """SHA-256 (32 bytes) of a dict name -> numpy array, excluding "checksum"."""
    h = hashlib.sha256()
    for name in sorted(n for n in arrays if n != "checksum"):
        a = np.ascontiguousarray(arrays[name])
        if a.dtype.byteorder == ">":
            raise ValueError(f"{name}: big-endian arrays are not part of the format")
        h.update(name.encode("utf-8") + b"\0" + a.dtype.str.encode("ascii") + b"\0")
        h.update(struct.pack("<B", a.ndim) + struct.pack(f"<{a.ndim}q", *a.shape))
        h.update(a.tobytes(order="C"))
    return np.frombuffer(h.digest(), dtype=np.uint8).copy()


def bf16_bits(x):
    """float32 array -> uint16 bf16 bits, round to nearest even (NaN kept quiet)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(x)
    out = rounded.astype(np.uint16)
    out[nan] = 0x7FC0
    return out


def _u8(text):
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def case_config(dtype, index_dtype, block_size, topk, init_blocks, local_blocks,
                softmax_scale=None, index_scale=None, causal=True):
    """The case's config JSON (None scale = the default 1/sqrt(dim))."""
    if dtype not in CASE_DTYPES or index_dtype not in CASE_DTYPES:
        raise ValueError(f"dtype must be one of {CASE_DTYPES}")
    return json.dumps({"dtype": dtype, "index_dtype": index_dtype, "block_size": int(block_size),
                       "topk": int(topk), "init_blocks": int(init_blocks),
                       "local_blocks": int(local_blocks),
                       "softmax_scale": None if softmax_scale is None else float(softmax_scale),
                       "index_scale": None if index_scale is None else float(index_scale),
                       "causal": bool(causal)})


class TraceWriter:
    """Collects records, then writes meta + checksum atomically."""

    def __init__(self):
        self.arrays = {}
        self.records = []

    def add_record(self, name, layer, step, config_json, cu_seqlens_q, cu_seqlens_k, q, k, v,
                   index_q, index_k, topk_indices=None, block_scores=None, out=None, lse=None):
        """q [Tq,Hq,D], k/v [Tk,Hkv,D], index_q [Tq,HI,DI], index_k [Tk,DI] in storage
        format (uint16 bits for bf16/fp16, float32 for fp32); topk [HI,Tq,topk]."""
        if not name or len(name) >= 32 or set(name) - _NAME_OK or name in ("meta", "checksum"):
            raise ValueError(f"record name {name!r}: 1-31 characters of [A-Za-z0-9._-]")
        if any(r["name"] == name for r in self.records):
            raise ValueError(f"record {name} added twice")
        entries = {"config": _u8(config_json),
                   "cu_seqlens_q": np.asarray(cu_seqlens_q, dtype=np.int32),
                   "cu_seqlens_k": np.asarray(cu_seqlens_k, dtype=np.int32),
                   "q": q, "k": k, "v": v, "index_q": index_q, "index_k": index_k}
        if topk_indices is not None:
            entries["topk_indices"] = np.asarray(topk_indices, dtype=np.int32)
        if block_scores is not None:
            entries["block_scores"] = np.asarray(block_scores, dtype=np.float32)
        if out is not None:
            entries["out"] = np.asarray(out, dtype=np.float32)
        if lse is not None:
            entries["lse"] = np.asarray(lse, dtype=np.float32)
        for key, a in entries.items():
            self.arrays[f"{name}.{key}"] = np.ascontiguousarray(a)
        self.records.append({"name": name, "layer": int(layer), "step": int(step)})

    def write(self, path, meta):
        """meta: dict of model facts (model, weights_sha256, index, arith, order, ...)."""
        m = dict(meta)
        m.setdefault("format", FORMAT)
        m.setdefault("version", VERSION)
        m["records"] = self.records
        arrays = dict(self.arrays)
        arrays["meta"] = _u8(json.dumps(m))
        arrays["checksum"] = checksum(arrays)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".trace-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def verify(path):
    """Loads a trace with numpy and checks its checksum; returns (meta dict, arrays dict)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {n: z[n] for n in z.files}
    if "checksum" not in arrays or "meta" not in arrays:
        raise ValueError(f"{path}: not a trace (meta or checksum missing)")
    if not np.array_equal(checksum(arrays), arrays["checksum"]):
        raise ValueError(f"{path}: checksum mismatch: the trace is corrupted")
    meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: meta.format is not {FORMAT!r}")
    return meta, arrays


def vllm_topk_to_trace(buf, num_tokens, topk, layout="token-major"):
    """vLLM's MiniMax-M3 top-k buffer -> the trace's [HI, Tq, topk] int32.

    vLLM keeps one persistent buffer for all layers: on CUDA it is token-major
    [max_tokens, HI, topk] and the kernels write through a head-major view
    (buf.transpose(0, 1)); on ROCm the buffer itself is head-major [HI, max_tokens, topk].
    Tokens are in the batch's decode-first order; only the first num_tokens rows are valid.
    Unused slots hold -1.  Mixing the two layouts gives garbage block ids (MSA.md 6)."""
    a = np.asarray(buf)
    if a.ndim != 3 or a.shape[-1] != topk:
        raise ValueError(f"top-k buffer has shape {a.shape}, expected 3-d with last dim {topk}")
    if layout == "token-major":
        a = a[:num_tokens].transpose(1, 0, 2)
    elif layout == "head-major":
        a = a[:, :num_tokens]
    else:
        raise ValueError("layout must be 'token-major' or 'head-major'")
    return np.ascontiguousarray(a, dtype=np.int32)


if __name__ == "__main__":
    import sys
    for p in sys.argv[1:]:
        meta, arrays = verify(p)
        print(f"{p}: OK, model {meta.get('model')}, index {meta.get('index')}, "
              f"{len(meta['records'])} records, {len(arrays)} entries")
