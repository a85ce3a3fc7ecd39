#!/usr/bin/env python3
"""refcheck.py - checks `msa ref --mode exact` against an independent implementation,
to the last bit of every fp64 result, on random small cases it generates itself.

Independent means: Python standard library only (no numpy), none of the C code's
arithmetic.  Dot products are exact (fractions.Fraction on the dyadic inputs); exp, log
and sqrt come from the decimal module (correctly rounded to nearest at P digits, then
widened by one unit in the last place on each side, so every transcendental value is
enclosed in an interval); everything else is exact rational arithmetic on the interval
ends.  A value is accepted once both ends of its interval round to the same double
(Python's float(Fraction) is correctly rounded); otherwise P doubles.  Tokens with equal
exact scores are grouped, so exact zeros and exact rationals (exp(0) = 1) make the
interval collapse instead of looping forever (see docs/NUMERICS.md (section 11)).

It deliberately does not check fast mode, and it does not print the arrays.

usage: refcheck.py [--msa PATH] [--cases N] [--seed S] [--keep DIR] [--verbose]
  runs PATH ref CASE.npz -o RESULT.npz --mode exact for each generated case (default
  PATH: build/msa), compares topk_indices, out, lse, dense_out, dense_lse, block_scores
  bit for bit, prints a summary and exits 1 on any mismatch, 2 when a run fails.
"""
import argparse
import ast
import decimal
import os
import random
import struct
import subprocess
import sys
import tempfile
import zipfile
from fractions import Fraction
from math import isqrt

MAX_DIGITS = 4000  # Ziv never needs this for the small cases here; reaching it is a bug
EXP_FLOOR = -2000

# ------------------------------------------------------------------ number formats


def bf16_value(bits):
    return struct.unpack("<f", struct.pack("<I", bits << 16))[0]


def fp16_value(bits):
    return struct.unpack("<e", struct.pack("<H", bits))[0]


def fp32_value(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def e4m3_value(bits):
    """OCP fp8 e4m3: bias 7, no infinities, 0x7F/0xFF are NaN (never generated)."""
    s = -1.0 if bits & 0x80 else 1.0
    e, m = (bits >> 3) & 0xF, bits & 7
    if e == 0:
        return s * m / 8.0 * 2.0 ** -6
    return s * (1 + m / 8.0) * 2.0 ** (e - 7)


FORMATS = {  # name: (npy descr, struct code, bits, exponent bias, mantissa bits, decoder)
    "bf16": ("<u2", "H", 16, 127, 7, bf16_value),
    "fp16": ("<u2", "H", 16, 15, 10, fp16_value),
    "fp32": ("<f4", "f", 32, 127, 23, fp32_value),
    "e4m3": ("|u1", "B", 8, 7, 3, e4m3_value),
}


def random_code(rng, dt, style):
    """A random finite code of format dt.  style: 'normal' (exponents near 0), 'int'
    (small integers: many exact ties), 'wide' (fp32 only: exponents far apart).  Scores
    astronomically far apart (weights below e^-2000) are not generated: this checker
    encloses such weights coarsely and could not decide the boundary cases they create;
    tests/test_reference.c covers them with hand-derived values."""
    _, _, nbits, bias, mbits, dec = FORMATS[dt]
    if style == "int":
        x = float(rng.randint(-3, 3))
        return encode_exact(dt, x), x
    ebits = nbits - 1 - mbits
    # 'wide': exponents far apart (sums beyond a double-double: the C code's MPFR path)
    # but magnitudes small enough that no weight leaves this checker's exp range
    lo, hi = (-4, 2) if style == "normal" else (-100, 3)
    while True:
        e = rng.randint(lo, hi) + bias
        if e < 0 or e >= (1 << ebits) - (0 if dt == "e4m3" else 1):
            continue
        code = (rng.getrandbits(1) << (nbits - 1)) | (e << mbits) | rng.getrandbits(mbits)
        if dt == "e4m3" and (code & 0x7F) == 0x7F:
            continue
        v = dec(code)
        if dt == "fp32":
            return v, v
        return code, v


def encode_exact(dt, x):
    """The code of x, which must be representable in dt (search: formats are tiny)."""
    if dt == "fp32":
        return x
    if dt == "bf16":
        b = struct.unpack("<I", struct.pack("<f", x))[0]
        assert b & 0xFFFF == 0
        return b >> 16
    if dt == "fp16":
        return struct.unpack("<H", struct.pack("<e", x))[0]
    for code in range(256):
        if code & 0x7F != 0x7F and e4m3_value(code) == x:
            return code
    raise ValueError(x)


# ------------------------------------------------------------------ NPZ I/O


def npy_bytes(descr, shape, values):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, repr(tuple(shape)))
    raw = header.encode("latin1")
    pad = 64 - ((10 + len(raw) + 1) % 64)
    head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw) + pad + 1) + raw + b" " * pad + b"\n"
    code = {"<u2": "H", "<f4": "f", "|u1": "B", "<i4": "i", "<f8": "d"}[descr]
    return head + struct.pack("<%d%s" % (len(values), code), *values)


def write_npz(path, arrays):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, descr, shape, values in arrays:
            zf.writestr(name + ".npy", npy_bytes(descr, shape, values))


def read_npz(path):
    out = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            data = zf.read(info)
            if data[:6] != b"\x93NUMPY":
                raise ValueError("%s: %s: not an npy" % (path, info.filename))
            if data[6] == 1:
                hl, off = struct.unpack("<H", data[8:10])[0], 10
            else:
                hl, off = struct.unpack("<I", data[8:12])[0], 12
            hdr = ast.literal_eval(data[off:off + hl].decode("latin1"))
            count = 1
            for s in hdr["shape"]:
                count *= s
            code = {"<i4": "i", "<f8": "d", "<i8": "q"}[hdr["descr"]]
            vals = struct.unpack_from("<%d%s" % (count, code), data, off + hl)
            out[info.filename[:-4]] = (hdr["shape"], vals)
    return out


# ------------------------------------------------------------------ case generation


def gen_case(rng):
    c = {}
    c["dtype"] = rng.choice(["bf16", "fp16", "fp32", "e4m3"])
    c["index_dtype"] = c["dtype"] if rng.random() < 0.7 else rng.choice(["bf16", "fp32", "e4m3"])
    style = rng.choice(["normal", "normal", "normal", "int"])
    if c["dtype"] == "fp32" and rng.random() < 0.3:
        style = "wide"
    batch = rng.randint(1, 3)
    lk = [rng.randint(0, 20) for _ in range(batch)]
    lq = [rng.randint(0, x + 2) if rng.random() < 0.8 else x for x in lk]
    c["causal"] = rng.random() < 0.85
    hkv = rng.randint(1, 2)
    c["Hkv"], c["Hq"] = hkv, hkv * rng.randint(1, 3)
    c["D"], c["DI"] = rng.choice([1, 2, 3, 4, 8, 16]), rng.randint(1, 8)
    c["B"] = rng.choice([1, 2, 4, 8])
    c["topk"] = rng.randint(1, 4)
    c["init"] = rng.randint(0, 1) if c["topk"] > 1 else 0
    c["local"] = rng.randint(0, c["topk"] - c["init"])
    c["softmax_scale"] = None if rng.random() < 0.6 else rng.choice([0.125, 0.3, 1.7, 1.0])
    c["index_scale"] = None if rng.random() < 0.6 else rng.choice([0.5, 0.3, 3.0])
    c["lq"], c["lk"] = lq, lk
    tq, tk = sum(lq), sum(lk)
    idx_style = "int" if style == "int" else "normal"

    def tensor(n, dt, st):
        codes, vals = [], []
        for _ in range(n):
            code, v = random_code(rng, dt, st)
            codes.append(code)
            vals.append(v)
        return codes, vals

    D, DI = c["D"], c["DI"]
    c["q"] = tensor(tq * c["Hq"] * D, c["dtype"], style)
    c["k"] = tensor(tk * hkv * D, c["dtype"], style)
    c["v"] = tensor(tk * hkv * D, c["dtype"], "normal" if style != "wide" else "wide")
    c["iq"] = tensor(tq * hkv * DI, c["index_dtype"], idx_style)
    c["ik"] = tensor(tk * DI, c["index_dtype"], idx_style)
    c["paged"] = rng.random() < 0.3
    return c


def case_arrays(c, rng):
    """NPZ entries (docs/FORMATS.md); paged cases shuffle pages and leave one unused."""
    B, hkv, D, DI = c["B"], c["Hkv"], c["D"], c["DI"]
    cu_q, cu_k = [0], [0]
    for a, b in zip(c["lq"], c["lk"]):
        cu_q.append(cu_q[-1] + a)
        cu_k.append(cu_k[-1] + b)
    rows = {}  # (b, j) -> storage row
    k_codes, v_codes, ik_codes = c["k"][0], c["v"][0], c["ik"][0]
    arrays = []
    if c["paged"]:
        nblocks = [(x + B - 1) // B for x in c["lk"]]
        width = max(nblocks + [1])
        npages = sum(nblocks) + 1
        perm = list(range(npages))
        rng.shuffle(perm)
        table, nxt = [], 0
        for b, nb in enumerate(nblocks):
            row = []
            for blk in range(width):
                if blk < nb:
                    row.append(perm[nxt])
                    nxt += 1
                else:
                    row.append(perm[-1] if blk else 0)  # unused columns: any valid page
            table.extend(row)
        zero = {"fp32": 0.0}.get(c["dtype"], 0)
        izero = {"fp32": 0.0}.get(c["index_dtype"], 0)
        pk = [zero] * (npages * B * hkv * D)
        pv = [zero] * (npages * B * hkv * D)
        pik = [izero] * (npages * B * DI)
        for b in range(len(c["lk"])):
            for j in range(c["lk"][b]):
                src, dst = cu_k[b] + j, table[b * width + j // B] * B + j % B
                rows[(b, j)] = dst
                pk[dst * hkv * D:(dst + 1) * hkv * D] = k_codes[src * hkv * D:(src + 1) * hkv * D]
                pv[dst * hkv * D:(dst + 1) * hkv * D] = v_codes[src * hkv * D:(src + 1) * hkv * D]
                pik[dst * DI:(dst + 1) * DI] = ik_codes[src * DI:(src + 1) * DI]
        k_codes, v_codes, ik_codes, tk = pk, pv, pik, npages * B
        arrays.append(("page_table", "<i4", [len(c["lk"]), width], table))
    else:
        tk = cu_k[-1]
    d1, d2 = FORMATS[c["dtype"]][0], FORMATS[c["index_dtype"]][0]
    tq = cu_q[-1]
    arrays += [("q", d1, [tq, c["Hq"], D], c["q"][0]), ("k", d1, [tk, hkv, D], k_codes),
               ("v", d1, [tk, hkv, D], v_codes), ("index_q", d2, [tq, hkv, DI], c["iq"][0]),
               ("index_k", d2, [tk, DI], ik_codes), ("cu_seqlens_q", "<i4", [len(cu_q)], cu_q),
               ("cu_seqlens_k", "<i4", [len(cu_k)], cu_k)]

    def js(x):
        return "null" if x is None else repr(float(x))

    config = ('{"dtype": "%s", "index_dtype": "%s", "block_size": %d, "topk": %d, '
              '"init_blocks": %d, "local_blocks": %d, "softmax_scale": %s, "index_scale": %s, '
              '"causal": %s}' % (c["dtype"], c["index_dtype"], B, c["topk"], c["init"], c["local"],
                                 js(c["softmax_scale"]), js(c["index_scale"]),
                                 "true" if c["causal"] else "false")).encode()
    arrays.append(("config", "|u1", [len(config)], list(config)))
    return arrays


# ------------------------------------------------------------------ interval arithmetic


class Ziv:
    """Decimal contexts at P digits; interval ends are Fractions (exact)."""

    def __init__(self, digits):
        self.ctx = decimal.Context(prec=digits, Emin=decimal.MIN_EMIN, Emax=decimal.MAX_EMAX,
                                   rounding=decimal.ROUND_HALF_EVEN)
        self.down = self.ctx.copy()
        self.down.rounding = decimal.ROUND_FLOOR
        self.up = self.ctx.copy()
        self.up.rounding = decimal.ROUND_CEILING

    def dec(self, f, ctx):
        return ctx.divide(decimal.Decimal(f.numerator), decimal.Decimal(f.denominator))

    def exp(self, lo, hi):
        """[exp(lo), exp(hi)] enclosure; exp(0) = 1 exactly.  Below EXP_FLOOR the
        enclosure is [0, 2^-2885] (exp(-2000) < 2^-2885.4), above -EXP_FLOOR it is
        [2^2885, None = infinity]: such weights are far outside anything a double can
        show, and exact Fractions of them would be enormous."""
        if lo == 0:
            a = Fraction(1)
        elif lo < EXP_FLOOR:
            a = Fraction(0)
        elif lo > -EXP_FLOOR:
            a = Fraction(2 ** 2885)
        else:
            a = Fraction(self.ctx.next_minus(self.ctx.exp(self.dec(lo, self.down))))
        if hi == 0:
            b = Fraction(1)
        elif hi < EXP_FLOOR:
            b = Fraction(1, 2 ** 2885)
        elif hi > -EXP_FLOOR:
            b = None  # unbounded above
        else:
            b = Fraction(self.ctx.next_plus(self.ctx.exp(self.dec(hi, self.up))))
        return a, b

    def log(self, lo, hi):
        """[log(lo), log(hi)] enclosure for 1 <= lo <= hi.  A decimal end that rounds to
        exactly 1 has log 0 exactly (and widening 0 by one unit would give a number
        with an astronomically small exponent)."""
        dlo, dhi = self.dec(lo, self.down), self.dec(hi, self.up)
        a = Fraction(0) if dlo <= 1 else Fraction(self.ctx.next_minus(self.ctx.ln(dlo)))
        b = Fraction(0) if dhi <= 1 else Fraction(self.ctx.next_plus(self.ctx.ln(dhi)))
        return a, b

    def rsqrt(self, n):
        """Enclosure of 1/sqrt(n) (exact when n is a square)."""
        r = isqrt(n)
        if r * r == n:
            return Fraction(1, r), Fraction(1, r)
        s = self.ctx.sqrt(decimal.Decimal(n))
        return 1 / Fraction(self.ctx.next_plus(s)), 1 / Fraction(self.ctx.next_minus(s))


def bits(x):
    return struct.pack("<d", x)


def certain(lo, hi, sign=0):
    """The double both ends round to, or None.  sign (+1/-1, 0 unknown) is the known sign
    of a nonzero value: it decides the zero's sign when both ends round to zero."""
    a, b = float(lo), float(hi)
    if a == 0 and b == 0 and sign:
        return 0.0 if sign > 0 else -0.0
    return a if bits(a) == bits(b) else None


def scale_iv(z, given, dim):
    return z.rsqrt(dim) if given is None else (Fraction(given), Fraction(given))


def mul_iv(a, lo, hi):
    """Exact a times [lo, hi] with lo, hi > 0."""
    return (a * lo, a * hi) if a >= 0 else (a * hi, a * lo)


# ------------------------------------------------------------------ the reference


def geometry(c):
    """Per packed query row: (sequence, visible keys); per sequence the key offset."""
    out, cu_k = [], [0]
    for x in c["lk"]:
        cu_k.append(cu_k[-1] + x)
    for b, (lq, lk) in enumerate(zip(c["lq"], c["lk"])):
        for i in range(lq):
            pos = lk - lq + i
            nk = min(max(pos + 1, 0), lk) if c["causal"] else lk
            out.append((b, nk))
    return out, cu_k


def select(c, geo, cu_k):
    """topk [HI][Tq][k] and exact block maxima (None for blocks without visible keys)."""
    B, k, DI, hkv = c["B"], c["topk"], c["DI"], c["Hkv"]
    iq, ik = c["iq"][1], c["ik"][1]
    nblk = max([(x + B - 1) // B for x in c["lk"]] + [0])
    topk, maxima = [], []
    for g in range(hkv):
        for t, (b, nk) in enumerate(geo):
            qv = [Fraction(x) for x in iq[(t * hkv + g) * DI:(t * hkv + g + 1) * DI]]
            bm = [None] * nblk
            for j in range(nk):
                row = cu_k[b] + j
                s = sum(qv[d] * Fraction(ik[row * DI + d]) for d in range(DI))
                if bm[j // B] is None or s > bm[j // B]:
                    bm[j // B] = s
            nvis = (nk + B - 1) // B
            if nvis <= k:
                sel = list(range(nvis))
            else:
                init, local = c["init"], c["local"]
                sel = list(range(init)) + list(range(nvis - local, nvis))
                rest = sorted(range(init, nvis - local), key=lambda x: (-bm[x], x))
                sel += rest[:k - init - local]
            sel = sorted(sel) + [-1] * (k - len(sel))
            topk.append(sel)
            maxima.append(bm)
    return topk, maxima, nblk


def block_scores(c, maxima):
    out = []
    for bm in maxima:
        for m in bm:
            if m is None:
                out.append(float("-inf"))
                continue
            digits = 40
            while True:
                z = Ziv(digits)
                lo, hi = mul_iv(m, *scale_iv(z, c["index_scale"], c["DI"]))
                r = certain(lo, hi)
                if r is not None:
                    out.append(r)
                    break
                digits *= 2
                if digits > MAX_DIGITS:
                    raise RuntimeError("block score: no certain rounding")
    return out


def attend_row(c, toks, t, h):
    """out[D], lse for row (t, h) over storage-order token list toks (exact rows)."""
    D, hkv = c["D"], c["Hkv"]
    g = h // (c["Hq"] // hkv)
    if not toks:
        return [0.0] * D, float("-inf")
    qv = [Fraction(x) for x in c["q"][1][(t * c["Hq"] + h) * D:(t * c["Hq"] + h + 1) * D]]
    kv, vv = c["k"][1], c["v"][1]
    groups = {}  # exact score -> [count, [sum of v per d]]
    for row in toks:
        s = sum(qv[d] * Fraction(kv[(row * hkv + g) * D + d]) for d in range(D))
        grp = groups.setdefault(s, [0, [Fraction(0)] * D])
        grp[0] += 1
        for d in range(D):
            grp[1][d] += Fraction(vv[(row * hkv + g) * D + d])
    M = max(groups)
    out, lse, digits = [None] * D, None, 40
    while any(o is None for o in out) or lse is None:
        z = Ziv(digits)
        clo, chi = scale_iv(z, c["softmax_scale"], D)
        rel = {}  # reference score -> (weights, L lower, L upper or None)

        def weights(ref):
            # exp(c (s - ref)) for every group, and L' = sum count * weight
            if ref not in rel:
                w, lo, hi = {}, Fraction(0), Fraction(0)
                for s, (cnt, _) in groups.items():
                    a = s - ref
                    w[s] = z.exp(a * chi, a * clo) if a <= 0 else z.exp(a * clo, a * chi)
                    lo += cnt * w[s][0]
                    hi = None if hi is None or w[s][1] is None else hi + cnt * w[s][1]
                rel[ref] = (w, lo, hi)
            return rel[ref]

        Llo, Lhi = weights(M)[1:]
        for d in range(D):
            if out[d] is not None:
                continue
            # N / L = N' / L' relative to the top group with a nonzero column sum: then
            # N' = C_top + smaller terms has a certain sign even when weights underflow.
            # N != 0 (distinct exp(c(s - M)) are linearly independent over the
            # rationals, Lindemann-Weierstrass), so a result below the double range is
            # the zero of N's sign.
            nz = [s for s, (_, cs) in groups.items() if cs[d] != 0]
            if not nz:
                out[d] = 0.0
                continue
            w, llo, lhi = weights(max(nz))
            Nlo = Nhi = Fraction(0)
            for s in nz:
                C = groups[s][1][d]
                elo, ehi = w[s]
                Nlo += C * (elo if C > 0 else ehi)
                Nhi += C * (ehi if C > 0 else elo)
            if Nlo > 0:
                out[d] = certain(Nlo / lhi if lhi is not None else Fraction(0), Nhi / llo, 1)
            elif Nhi < 0:
                out[d] = certain(Nlo / llo, Nhi / lhi if lhi is not None else Fraction(0), -1)
        if lse is None:
            llo, lhi = z.log(Llo, Lhi)
            mlo, mhi = mul_iv(M, clo, chi)
            lse = certain(llo + mlo, lhi + mhi)
        digits *= 2
        if digits > MAX_DIGITS:
            raise RuntimeError("attention: no certain rounding")
    return out, lse


def attend(c, geo, cu_k, topk, rowmap):
    B, hkv, Tq = c["B"], c["Hkv"], len(geo)
    out, lse = [], []
    for t, (b, nk) in enumerate(geo):
        for h in range(c["Hq"]):
            g = h // (c["Hq"] // hkv)
            nvis = (nk + B - 1) // B
            blocks = range(nvis) if topk is None else sorted(
                {x for x in topk[g * Tq + t] if 0 <= x < nvis})
            toks = [cu_k[b] + j for blk in blocks for j in range(blk * B, min(blk * B + B, nk))]
            o, l = attend_row(c, toks, t, h)
            out += o
            lse.append(l)
    return out, lse


def reference(c):
    geo, cu_k = geometry(c)
    topk, maxima, nblk = select(c, geo, cu_k)
    res = {"topk_indices": [x for row in topk for x in row], "block_scores": block_scores(c, maxima)}
    res["out"], res["lse"] = attend(c, geo, cu_k, topk, None)
    res["dense_out"], res["dense_lse"] = attend(c, geo, cu_k, None, None)
    return res, nblk


# ------------------------------------------------------------------ driver


def compare(name, want, got):
    """Number of mismatching elements (fp64 compared bit for bit)."""
    if len(want) != len(got):
        return max(len(want), len(got))
    if name == "topk_indices":
        return sum(1 for a, b in zip(want, got) if a != b)
    return sum(1 for a, b in zip(want, got) if bits(a) != bits(b))


def describe(c):
    return ("%s/%s lq%s lk%s Hq%d Hkv%d D%d DI%d B%d k%d i%d l%d %s%s" %
            (c["dtype"], c["index_dtype"], c["lq"], c["lk"], c["Hq"], c["Hkv"], c["D"], c["DI"],
             c["B"], c["topk"], c["init"], c["local"], "causal" if c["causal"] else "noncausal",
             " paged" if c["paged"] else ""))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--msa", default="build/msa")
    ap.add_argument("--cases", type=int, default=120)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--keep", default=None, help="keep cases and results in this folder")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    if not os.access(a.msa, os.X_OK):
        print("refcheck: %s: not an executable (build it with make, or pass --msa)" % a.msa)
        return 2
    print("refcheck: seed %d, %d cases, %s ref --mode exact" % (a.seed, a.cases, a.msa))
    work = a.keep or tempfile.mkdtemp(prefix="refcheck-")
    os.makedirs(work, exist_ok=True)
    total = bad = 0
    failed_cases = []
    for i in range(a.cases):
        rng = random.Random("%d/%d" % (a.seed, i))
        c = gen_case(rng)
        case_path = os.path.join(work, "case%04d.npz" % i)
        res_path = os.path.join(work, "res%04d.npz" % i)
        write_npz(case_path, case_arrays(c, rng))
        p = subprocess.run([a.msa, "ref", case_path, "-o", res_path, "--mode", "exact"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            print("case %d (%s): msa ref failed (%d): %s" % (i, describe(c), p.returncode,
                                                             p.stderr.strip()))
            return 2
        got = read_npz(res_path)
        want, _ = reference(c)
        mism = 0
        for name, vals in want.items():
            g = got.get(name)
            n = compare(name, vals, list(g[1]) if g else [])
            total += len(vals)
            if n:
                print("case %d (%s): %s: %d of %d differ" % (i, describe(c), name, n, len(vals)))
                mism += n
        bad += mism
        if mism:
            failed_cases.append(i)
        elif a.verbose:
            print("case %d (%s): ok" % (i, describe(c)))
        if not a.keep:
            os.remove(case_path)
            os.remove(res_path)
    if not a.keep:
        os.rmdir(work)
    print("refcheck: %d cases, %d values compared bit for bit, %d mismatches%s" %
          (a.cases, total, bad, (" in cases %s" % failed_cases) if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
