#!/usr/bin/env python3
"""ptx_same.py - does a change leave the CUDA kernels' code as it was?  For sessions with no
GPU: compiles every kernels/cuda/*.cu of a git revision and of the working tree to PTX
(sm_90a) and compares each kernel entry of the revision with the working tree's, after
renaming labels ($L__BB<fn>_ numbers) and the kernel's own symbol.  Kernels that only
gained a template parameter are matched through --map OLD=NEW (a substring rewrite of
the revision's mangled name, e.g. the sparse kernel's ELb0EEv -> ELb0ELb0EEv for
<D, F16> -> <D, F16, false>).  A comparison `setp.le a, b` against `setp.ge b, a` (the
same predicate, operands swapped) counts as the same.  Exit 0 when every entry of the
revision is the same in the working tree, 1 otherwise (each difference listed).

usage: tools/ptx_same.py REV [--map OLD=NEW ...]
"""
import os
import re
import subprocess
import sys
import tempfile

NVCC = os.environ.get("NVCC", "/usr/local/cuda/bin/nvcc")
SWAP = {"le": "ge", "ge": "le", "lt": "gt", "gt": "lt", "eq": "eq", "ne": "ne"}
SETP = re.compile(r"setp\.(\w+)\.(\w+)\s+(%p\d+), (\S+), (\S+);")


def ptx(src_dir, name, out):
    subprocess.run([NVCC, "-O3", "-std=c++17", "-gencode=arch=compute_90a,code=sm_90a", "-ptx",
                    "-o", out, os.path.join(src_dir, "kernels/cuda", name)], check=True)


def entries(path):
    res, cur, depth = {}, None, 0
    for line in open(path):
        m = re.match(r"\.visible \.entry (\S+)\(", line)
        if m and depth == 0:
            cur = m.group(1)
            res[cur] = []
        if cur is None:
            continue
        res[cur].append(line.strip())
        depth += line.count("{") - line.count("}")
        if depth == 0 and "}" in line:
            cur = None
    return res


def norm(lines, name):
    out = []
    for l in lines:
        l = re.sub(r"\$L__BB\d+_", "$L__BB_", l)
        l = l.replace(name, "FN").replace(name[2:], "FN2")  # the entry; its demoted shared variables
        l = re.sub(r"FN_param_(\d+)\[\d+\]", r"FN_param_\1[N]", l)  # struct parameters may grow
        out.append(l)
    return out


def same_line(a, b):
    if a == b:
        return True
    pa, pb = SETP.match(a), SETP.match(b)
    return bool(pa and pb and pa.group(2) == pb.group(2) and pa.group(3) == pb.group(3)
                and SWAP.get(pa.group(1)) == pb.group(1) and pa.group(4) == pb.group(5)
                and pa.group(5) == pb.group(4))


def main(argv):
    if len(argv) < 2 or argv[1].startswith("-"):
        print(__doc__.strip().splitlines()[-1])
        return 2
    rev, maps, i = argv[1], [], 2
    while i < len(argv):
        if argv[i] != "--map" or i + 1 >= len(argv) or "=" not in argv[i + 1]:
            print(f"ptx_same.py: argument {argv[i]!r}: expected --map OLD=NEW")
            return 2
        maps.append(tuple(argv[i + 1].split("=", 1)))
        i += 2
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          check=True).stdout.strip()
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = os.path.join(tmp, "old")
        os.makedirs(old_tree)
        arch = subprocess.run(["git", "-C", root, "archive", rev, "kernels", "common"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", old_tree], input=arch.stdout, check=True)
        names = sorted(f for f in os.listdir(os.path.join(old_tree, "kernels/cuda")) if f.endswith(".cu"))
        for f in names:
            if not os.path.exists(os.path.join(root, "kernels/cuda", f)):
                print(f"{f}: gone from the working tree")
                bad += 1
                continue
            po, pn = os.path.join(tmp, f + ".old.ptx"), os.path.join(tmp, f + ".new.ptx")
            ptx(old_tree, f, po)
            ptx(root, f, pn)
            old, new = entries(po), entries(pn)
            for name, body in old.items():
                cand = name
                for a, b in maps:
                    cand = cand.replace(a, b)
                if cand not in new:
                    print(f"{f}: {name}: no entry {cand} in the working tree")
                    bad += 1
                    continue
                a, b = norm(body, name), norm(new[cand], cand)
                diff = len(a) != len(b) or any(not same_line(x, y) for x, y in zip(a, b))
                print(f"{f}: {name}: {'DIFFERENT' if diff else 'same'}")
                bad += diff
    print(f"{bad} kernel(s) differ from {rev}" if bad else f"every kernel of {rev} is the same in the working tree")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
