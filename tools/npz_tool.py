#!/usr/bin/env python3
"""npz_tool.py - writes and reads .npz files exactly the way numpy does, with the Python
standard library only (numpy is absent on the development machine and in CI).

It exists so the C reader and writer can be checked against an independent
implementation: `write` and `case` produce archives byte-for-byte in the style of
np.savez / np.savez_compressed (numpy/lib/format.py headers, zipfile with
force_zip64=True, optionally a non-seekable stream so that data descriptors appear);
`read` parses an archive the way numpy.load does (zipfile checks every CRC, the header
dict is a Python literal) and prints each array, and says whether its header is the one
numpy itself would have written.

It deliberately does not do arithmetic on the arrays or support pickled/object arrays.

usage:
  npz_tool.py write OUT.npz [-z] [--stream] [--zip64-all] NAME:DESCR:SHAPE:V0,V1,...  ...
        SHAPE is like 2x3 ('' for a scalar, 0 for an empty 1-d array); values are
        Python numbers (ints for <u2/|u1/<i4/<i8, floats for <f2/<f4/<f8);
        --zip64-all writes the ZIP64 records numpy's zipfile uses beyond 4 GiB
  npz_tool.py case OUT.npz [-z] [--stream]   a small hand-written bf16 MSA case
  npz_tool.py read IN.npz                    one line per array:
        NAME DESCR SHAPE numpy-header|other-header V0 V1 ...
"""
import ast
import io
import struct
import sys
import zipfile

MAGIC = b"\x93NUMPY"
ARRAY_ALIGN = 64            # numpy/lib/format.py ARRAY_ALIGN
GROWTH_AXIS_MAX_DIGITS = 21  # numpy/lib/format.py
FORMATS = {"<f2": "e", "<f4": "f", "<f8": "d", "<i4": "i", "<i8": "q", "|u1": "B", "<u2": "H"}


def npy_header(descr, shape):
    """The header numpy's format.write_array writes for a C-order array."""
    d = {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
    header = "{" + "".join("'%s': %s, " % (k, repr(v)) for k, v in sorted(d.items())) + "}"
    if len(shape) > 0:
        header += " " * (GROWTH_AXIS_MAX_DIGITS - len(repr(shape[0])))
    raw = header.encode("latin1")
    hlen = len(raw) + 1
    padlen = ARRAY_ALIGN - ((len(MAGIC) + 2 + 2 + hlen) % ARRAY_ALIGN)
    if hlen + padlen < 65536:
        return MAGIC + bytes([1, 0]) + struct.pack("<H", hlen + padlen) + raw + b" " * padlen + b"\n"
    padlen = ARRAY_ALIGN - ((len(MAGIC) + 2 + 4 + hlen) % ARRAY_ALIGN)
    return MAGIC + bytes([2, 0]) + struct.pack("<I", hlen + padlen) + raw + b" " * padlen + b"\n"


def npy_bytes(descr, shape, values):
    count = 1
    for s in shape:
        count *= s
    if len(values) != count:
        raise SystemExit("npz_tool: %d values for shape %r" % (len(values), shape))
    return npy_header(descr, shape) + struct.pack("<%d%s" % (count, FORMATS[descr]), *values)


class _NoSeek(io.RawIOBase):
    """A write-only stream that cannot seek: zipfile then writes data descriptors,
    as numpy does when np.savez is given a pipe or a socket."""

    def __init__(self, f):
        self.f = f

    def writable(self):
        return True

    def write(self, b):
        return self.f.write(b)


def savez(path, arrays, compress, stream):
    """numpy/lib/npyio.py _savez: one member per array, always force_zip64."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with open(path, "wb") as raw:
        target = _NoSeek(raw) if stream else raw
        with zipfile.ZipFile(target, mode="w", compression=method, allowZip64=True) as zf:
            for name, descr, shape, values in arrays:
                with zf.open(name + ".npy", "w", force_zip64=True) as fid:
                    fid.write(npy_bytes(descr, shape, values))


def parse_spec(spec):
    name, descr, shape, values = spec.split(":", 3)
    shape = [int(s) for s in shape.split("x")] if shape else []
    conv = float if descr[1] == "f" else int
    vals = [conv(v) for v in values.split(",")] if values else []
    return name, descr, shape, vals


def bf16(x):
    """bf16 bits of x, which must be exactly representable (the case uses such values)."""
    b = struct.unpack("<I", struct.pack("<f", x))[0]
    if b & 0xFFFF:
        raise SystemExit("npz_tool: %r is not a bf16 value" % x)
    return b >> 16


def demo_case():
    """A 2-sequence bf16 case: Lq = (2, 1), Lk = (3, 5), Hq 2, Hkv 1, D 2, DI 2, B 2.
    Values are small dyadic numbers so the C test can state them literally."""
    tq, tk = 3, 8
    q = [bf16(0.5 * ((i % 7) - 3)) for i in range(tq * 2 * 2)]
    k = [bf16(0.25 * ((i % 5) - 2)) for i in range(tk * 1 * 2)]
    v = [bf16(float(i % 9 - 4)) for i in range(tk * 1 * 2)]
    iq = [bf16(0.125 * (i % 3)) for i in range(tq * 1 * 2)]
    ik = [bf16(1.0 - i) for i in range(tk * 2)]
    config = ('{"dtype": "bf16", "block_size": 2, "topk": 2, "init_blocks": 0, '
              '"local_blocks": 1, "softmax_scale": null, "index_scale": 0.5, '
              '"causal": true, "comment": "written by tools/npz_tool.py"}').encode()
    return [("q", "<u2", [tq, 2, 2], q), ("k", "<u2", [tk, 1, 2], k),
            ("v", "<u2", [tk, 1, 2], v), ("index_q", "<u2", [tq, 1, 2], iq),
            ("index_k", "<u2", [tk, 2], ik), ("cu_seqlens_q", "<i4", [3], [0, 2, 3]),
            ("cu_seqlens_k", "<i4", [3], [0, 3, 8]),
            ("config", "|u1", [len(config)], list(config))]


def read(path):
    """numpy.load's path: zipfile (CRC checked on read) and a literal-eval'd header."""
    out = []
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if not name.endswith(".npy"):
                continue
            data = zf.read(name)
            if data[:6] != MAGIC:
                raise SystemExit("npz_tool: %s: bad magic" % name)
            major = data[6]
            if major == 1:
                hl, start = struct.unpack("<H", data[8:10])[0], 10
            else:
                hl, start = struct.unpack("<I", data[8:12])[0], 12
            d = ast.literal_eval(data[start:start + hl].decode("latin1"))
            if set(d) != {"descr", "fortran_order", "shape"} or d["fortran_order"]:
                raise SystemExit("npz_tool: %s: unexpected header %r" % (name, d))
            descr, shape = d["descr"], list(d["shape"])
            count = 1
            for s in shape:
                count *= s
            body = data[start + hl:]
            size = struct.calcsize("<" + FORMATS[descr])
            if len(body) != count * size:
                raise SystemExit("npz_tool: %s: %d data bytes, want %d" % (name, len(body), count * size))
            vals = struct.unpack("<%d%s" % (count, FORMATS[descr]), body)
            style = "numpy-header" if data[:start + hl] == npy_header(descr, shape) else "other-header"
            out.append("%s %s %s %s %s" % (name[:-4], descr, "x".join(map(str, shape)) or "-",
                                           style, " ".join(repr(v) for v in vals)))
    print("\n".join(out))


def main(argv):
    if len(argv) < 3 or argv[1] not in ("write", "case", "read"):
        print(__doc__, file=sys.stderr)
        return 2
    cmd, path, rest = argv[1], argv[2], argv[3:]
    if cmd == "read":
        read(path)
        return 0
    compress = "-z" in rest
    stream = "--stream" in rest
    if "--zip64-all" in rest:
        # What numpy's zipfile writes past 4 GiB (ZIP64 sizes and offsets in the central
        # directory, ZIP64 end records), forced on small arrays to test the reader.
        zipfile.ZIP64_LIMIT = 0
        zipfile.ZIP_FILECOUNT_LIMIT = 0
    specs = [a for a in rest if a not in ("-z", "--stream", "--zip64-all")]
    arrays = demo_case() if cmd == "case" else [parse_spec(s) for s in specs]
    savez(path, arrays, compress, stream)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
