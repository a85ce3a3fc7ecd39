/* npz.c - .npy parsing and .npz (zip) reading and writing, the way numpy writes them.
 *
 * Reader: finds the end-of-central-directory record (and the ZIP64 one when the classic
 * fields are saturated), walks the central directory, and for every entry named *.npy
 * checks its local header against the central record, bounds, overlap, method (stored
 * or deflate only), encryption, declared sizes against caps, then inflates and checks
 * CRC-32 before parsing the .npy image.  Entries with other names are ignored.
 * Writer: numpy-style .npy headers (dict, 64-byte alignment) in a plain zip, stored or
 * deflated, with a fixed timestamp so that equal arrays give equal bytes.
 * Deliberately not done: ZIP64 output (archives >= 4 GiB are refused), multi-disk
 * archives, encryption, Fortran-order arrays, big-endian or structured dtypes. */
#include "npz.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fsutil.h"

/* Caps that stop hostile archives from making us allocate absurd amounts of memory. */
#define NPZ_MAX_TOTAL ((uint64_t)16 << 30) /* total uncompressed bytes of one archive */
#define NPZ_MAX_FILE ((size_t)16 << 30)    /* bytes of an .npz file we agree to read */
/* Deflate cannot expand beyond 258 bytes per ~2 bits: RFC 1951 length codes give a
 * best case just over 1032:1.  A declared ratio above this is impossible, so lying. */
#define DEFLATE_MAX_RATIO 1032u
#define DEFLATE_RATIO_SLACK 1024u
/* zlib level 1: random low-precision tensors barely compress (bf16 mantissas are noise),
 * so higher levels cost 10x the time for a few percent; numpy uses 6, any level reads. */
#define NPZ_DEFLATE_LEVEL 1

/* Zip record signatures and fixed sizes (PKWARE APPNOTE 6.3.x, sections 4.3.7-4.3.16). */
#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_EOCD64_LOC 0x07064b50u
#define LOCAL_LEN 30u
#define CENTRAL_LEN 46u
#define EOCD_LEN 22u
#define EOCD64_LEN 56u
#define EOCD64_LOC_LEN 20u
#define ZIP64_EXTRA_ID 0x0001u
#define FLAG_ENCRYPTED 0x0001u
#define FLAG_DESCRIPTOR 0x0008u
#define FLAG_STRONG_ENC 0x0040u
#define FLAG_UTF8 0x0800u
#define METHOD_STORED 0u
#define METHOD_DEFLATE 8u
#define ZIP_VERSION 20u /* "2.0": deflate, no zip64 */
#define DOS_DATE_1980 0x21u /* 1980-01-01: a fixed timestamp keeps output reproducible */
#define U32_MAX_FIELD 0xffffffffu

/* .npy (numpy/lib/format.py): magic, version, header length, dict text; numpy pads the
 * header so that the data starts at a multiple of 64 bytes. */
static const unsigned char NPY_MAGIC[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
#define NPY_ALIGN 64u
#define NPY_GROWTH_DIGITS 21 /* numpy's GROWTH_AXIS_MAX_DIGITS: spare room after the dict */
#define NPY_MAX_HEADER 100000u /* numpy's own _MAX_HEADER_SIZE cap */

/* ------------------------------------------------------------------ little endian */
static unsigned rd16(const unsigned char *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }
static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr16(unsigned char *p, unsigned v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void wr32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* ------------------------------------------------------------------ dtypes */
static const struct {
    msa_dtype t;
    const char *descr;
} npy_types[] = {
    {MSA_DT_FP16, "<f2"}, {MSA_DT_FP32, "<f4"}, {MSA_DT_FP64, "<f8"}, {MSA_DT_I32, "<i4"},
    {MSA_DT_I64, "<i8"},  {MSA_DT_U8, "|u1"},   {MSA_DT_U16, "<u2"},
};
#define N_NPY_TYPES (sizeof npy_types / sizeof npy_types[0])

static const char *descr_of(msa_dtype t)
{
    for (size_t i = 0; i < N_NPY_TYPES; i++)
        if (npy_types[i].t == t) return npy_types[i].descr;
    return NULL;
}

static msa_dtype dtype_of_descr(const char *d)
{
    for (size_t i = 0; i < N_NPY_TYPES; i++)
        if (strcmp(npy_types[i].descr, d) == 0) return npy_types[i].t;
    return MSA_DT_INVALID;
}

/* ------------------------------------------------------------------ .npy header */
/* A cursor over the header dict text, which is a Python literal such as
 * {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }   */
typedef struct {
    const char *s;
    size_t n, i;
} hcur;

static void hskip(hcur *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' ||
                           c->s[c->i] == '\r'))
        c->i++;
}

static int hchar(hcur *c, char ch)
{
    hskip(c);
    if (c->i < c->n && c->s[c->i] == ch) {
        c->i++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes (numpy never writes escapes in these fields). */
static int hstring(hcur *c, char *buf, size_t cap)
{
    hskip(c);
    if (c->i >= c->n || (c->s[c->i] != '\'' && c->s[c->i] != '"')) return -1;
    char q = c->s[c->i++];
    size_t k = 0;
    while (c->i < c->n && c->s[c->i] != q) {
        if (c->s[c->i] == '\\' || k + 1 >= cap) return -1;
        buf[k++] = c->s[c->i++];
    }
    if (c->i >= c->n) return -1;
    c->i++;
    buf[k] = 0;
    return 0;
}

static int hword(hcur *c, const char *w)
{
    size_t L = strlen(w);
    hskip(c);
    if (c->n - c->i < L || memcmp(c->s + c->i, w, L) != 0) return 0;
    char nx = c->i + L < c->n ? c->s[c->i + L] : ' ';
    if ((nx >= 'a' && nx <= 'z') || (nx >= 'A' && nx <= 'Z') || (nx >= '0' && nx <= '9') || nx == '_')
        return 0;
    c->i += L;
    return 1;
}

/* "(d0, d1, ...)" with a trailing comma for one element, "()" for a scalar. */
static const char *hshape(hcur *c, int *ndim, int64_t *shape)
{
    if (!hchar(c, '(')) return "shape is not a tuple";
    *ndim = 0;
    for (;;) {
        hskip(c);
        if (hchar(c, ')')) break;
        if (c->i >= c->n || c->s[c->i] < '0' || c->s[c->i] > '9') return "shape has a non-integer or negative dimension";
        if (*ndim >= MSA_NPY_MAX_DIMS) return "shape has too many dimensions (max 6)";
        int64_t v = 0;
        while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
            int dg = c->s[c->i++] - '0';
            if (v > (INT64_MAX - dg) / 10) return "shape dimension overflows int64";
            v = v * 10 + dg;
        }
        shape[(*ndim)++] = v;
        if (hchar(c, ',')) continue;
        if (hchar(c, ')')) {
            if (*ndim == 1) return "shape (n) without the comma is not a tuple";
            break;
        }
        return "shape tuple is malformed";
    }
    return NULL;
}

typedef struct {
    char descr[32];
    int fortran, ndim;
    int64_t shape[MSA_NPY_MAX_DIMS];
} npy_hdr;

/* Parses the dict strictly: exactly the three keys, each once, nothing after '}' but
 * whitespace.  Returns NULL or a description of the defect. */
static const char *parse_dict(const char *s, size_t n, npy_hdr *h)
{
    hcur c = {s, n, 0};
    int seen[3] = {0, 0, 0};
    if (!hchar(&c, '{')) return "header is not a dict";
    for (;;) {
        char key[32];
        if (hchar(&c, '}')) break;
        if (hstring(&c, key, sizeof key) != 0) return "header dict key is not a string";
        if (!hchar(&c, ':')) return "header dict lacks ':'";
        int k = strcmp(key, "descr") == 0 ? 0 : strcmp(key, "fortran_order") == 0 ? 1
              : strcmp(key, "shape") == 0 ? 2 : -1;
        if (k < 0) return "header dict has an unknown key";
        if (seen[k]++) return "header dict repeats a key";
        if (k == 0) {
            if (hstring(&c, h->descr, sizeof h->descr) != 0) return "descr is not a simple dtype string";
        } else if (k == 1) {
            if (hword(&c, "True")) h->fortran = 1;
            else if (hword(&c, "False")) h->fortran = 0;
            else return "fortran_order is not True or False";
        } else {
            const char *m = hshape(&c, &h->ndim, h->shape);
            if (m) return m;
        }
        if (hchar(&c, ',')) continue;
        if (hchar(&c, '}')) break;
        return "header dict is malformed";
    }
    hskip(&c);
    if (c.i != c.n) return "junk after the header dict";
    if (!seen[0] || !seen[1] || !seen[2]) return "header dict lacks descr, fortran_order or shape";
    return NULL;
}

/* Validates the fixed part and returns the header text bounds and the data offset. */
static const char *npy_preamble(const unsigned char *p, size_t len, size_t *hstart, size_t *hlen)
{
    if (len < 10) return "truncated before the end of the .npy preamble";
    if (memcmp(p, NPY_MAGIC, sizeof NPY_MAGIC) != 0) return "bad .npy magic";
    unsigned major = p[6], minor = p[7];
    if (minor != 0 || major < 1 || major > 3) return "unsupported .npy version";
    if (major == 1) {
        *hstart = 10;
        *hlen = rd16(p + 8);
    } else {
        if (len < 12) return "truncated before the end of the .npy preamble";
        *hstart = 12;
        *hlen = rd32(p + 8);
    }
    if (*hlen > NPY_MAX_HEADER) return "header length is absurd";
    if (*hlen > len - *hstart) return "truncated inside the .npy header";
    return NULL;
}

/* Parses and checks the header; fills out (data left NULL) and the data offset. */
static int npy_header_parse(const unsigned char *p, size_t len, const char *label, const char *entry,
                            msa_tensor *out, size_t *data_off, msa_err *e)
{
    size_t hs, hl;
    npy_hdr h;
    memset(out, 0, sizeof *out);
    memset(&h, 0, sizeof h);
    const char *m = npy_preamble(p, len, &hs, &hl);
    if (!m) {
        for (size_t i = 0; i < hl && !m; i++)
            if (p[hs + i] == 0) m = "NUL byte in the .npy header";
        if (!m) m = parse_dict((const char *)p + hs, hl, &h);
    }
    if (m) return msa_fail(e, MSA_EINPUT, "%s: %s: %s", label, entry, m);
    if (h.fortran)
        return msa_fail(e, MSA_EINPUT, "%s: %s: fortran_order True is not supported (write C order)", label, entry);
    msa_dtype t = dtype_of_descr(h.descr);
    if (t == MSA_DT_INVALID)
        return msa_fail(e, MSA_EINPUT, "%s: %s: unsupported dtype '%s' (want <f2 <f4 <f8 <i4 <i8 |u1 <u2)",
                        label, entry, h.descr);
    size_t count = 1, nbytes;
    for (int d = 0; d < h.ndim; d++)
        if ((uint64_t)h.shape[d] > SIZE_MAX || msa_mul_size(count, (size_t)h.shape[d], &count) != 0)
            return msa_fail(e, MSA_EINPUT, "%s: %s: shape product overflows", label, entry);
    if (msa_mul_size(count, msa_dtype_size(t), &nbytes) != 0)
        return msa_fail(e, MSA_EINPUT, "%s: %s: shape product overflows", label, entry);
    size_t avail = len - hs - hl;
    if (avail != nbytes)
        return msa_fail(e, MSA_EINPUT, "%s: %s: data is %zu bytes, shape and dtype need %zu", label,
                        entry, avail, nbytes);
    snprintf(out->name, sizeof out->name, "%s", entry);
    out->dtype = t;
    out->ndim = h.ndim;
    memcpy(out->shape, h.shape, sizeof h.shape);
    out->count = count;
    out->nbytes = nbytes;
    *data_off = hs + hl;
    return MSA_OK;
}

int msa_npy_parse(const void *buf, size_t len, const char *label, const char *entry,
                  msa_tensor *out, msa_err *e)
{
    size_t off;
    int rc = npy_header_parse(buf, len, label, entry, out, &off, e);
    if (rc) return rc;
    out->data = malloc(out->nbytes ? out->nbytes : 1);
    if (!out->data) return msa_fail(e, MSA_ENOMEM, "%s: %s: cannot allocate %zu bytes", label, entry, out->nbytes);
    if (out->nbytes) memcpy(out->data, (const unsigned char *)buf + off, out->nbytes);
    return MSA_OK;
}

/* Like msa_npy_parse, but takes ownership of a malloc'ed image and moves the data to its
 * start instead of copying it: inflated arrays then cost one buffer, not two. */
static int npy_parse_owned(unsigned char *img, size_t len, const char *label, const char *entry,
                           msa_tensor *out, msa_err *e)
{
    size_t off;
    int rc = npy_header_parse(img, len, label, entry, out, &off, e);
    if (rc) {
        free(img);
        return rc;
    }
    memmove(img, img + off, out->nbytes);
    unsigned char *shrunk = realloc(img, out->nbytes ? out->nbytes : 1);
    out->data = shrunk ? shrunk : img;
    return MSA_OK;
}

/* ------------------------------------------------------------------ zip reading */
typedef struct {
    char name[MSA_NPY_NAME_MAX]; /* without ".npy" */
    uint32_t crc;
    uint64_t csize, usize, off; /* off: local header */
    uint64_t data, end;         /* compressed data [data, end) */
    unsigned method, flags;
} zent;

typedef struct {
    const unsigned char *p;
    size_t len;
    const char *label;
    uint64_t cd_off, cd_size, cd_end, n;
} zarc;

/* Locates the end of central directory record: it must end exactly at the end of the
 * file (its comment included), so trailing junk or a truncated file is refused. */
static int find_eocd(zarc *z, msa_err *e)
{
    if (z->len < EOCD_LEN) return msa_fail(e, MSA_EINPUT, "%s: zip: file too short to be a zip archive", z->label);
    size_t pos = z->len - EOCD_LEN, stop = pos > 0xffff ? pos - 0xffff : 0;
    for (;; pos--) {
        if (rd32(z->p + pos) == SIG_EOCD && pos + EOCD_LEN + rd16(z->p + pos + 20) == z->len) break;
        if (pos == stop)
            return msa_fail(e, MSA_EINPUT, "%s: zip: no end of central directory record (not a zip, or truncated)", z->label);
    }
    const unsigned char *r = z->p + pos;
    if (rd16(r + 4) != 0 || rd16(r + 6) != 0 || rd16(r + 8) != rd16(r + 10))
        return msa_fail(e, MSA_EINPUT, "%s: zip: multi-disk archives are not supported", z->label);
    z->n = rd16(r + 10);
    z->cd_size = rd32(r + 12);
    z->cd_off = rd32(r + 16);
    z->cd_end = pos;
    /* ZIP64: a locator right before the classic record; writers add it when any value
     * is too large, and some whenever they like, so its presence decides. */
    int has64 = pos >= EOCD64_LOC_LEN && rd32(z->p + pos - EOCD64_LOC_LEN) == SIG_EOCD64_LOC;
    if (!has64 && (z->n == 0xffff || z->cd_size == U32_MAX_FIELD || z->cd_off == U32_MAX_FIELD))
        return msa_fail(e, MSA_EINPUT, "%s: zip: saturated end record without a ZIP64 locator", z->label);
    if (!has64) return MSA_OK;
    uint64_t off64 = rd64(z->p + pos - EOCD64_LOC_LEN + 8);
    if (off64 > pos - EOCD64_LOC_LEN || pos - EOCD64_LOC_LEN - off64 < EOCD64_LEN ||
        rd32(z->p + off64) != SIG_EOCD64)
        return msa_fail(e, MSA_EINPUT, "%s: zip: bad ZIP64 end of central directory record", z->label);
    r = z->p + off64;
    if (rd32(r + 16) != 0 || rd32(r + 20) != 0 || rd64(r + 24) != rd64(r + 32))
        return msa_fail(e, MSA_EINPUT, "%s: zip: multi-disk archives are not supported", z->label);
    z->n = rd64(r + 32);
    z->cd_size = rd64(r + 40);
    z->cd_off = rd64(r + 48);
    z->cd_end = off64;
    return MSA_OK;
}

/* Reads the ZIP64 extra field: each saturated classic field is replaced, in the order
 * uncompressed size, compressed size, local header offset (APPNOTE 4.5.3). */
static const char *zip64_extra(const unsigned char *x, size_t xl, uint64_t *u, uint64_t *c, uint64_t *o)
{
    size_t i = 0;
    while (i + 4 <= xl) {
        unsigned id = rd16(x + i), sz = rd16(x + i + 2);
        if (sz > xl - i - 4) return "extra field overruns its area";
        if (id == ZIP64_EXTRA_ID) {
            size_t k = i + 4, end = i + 4 + sz;
            uint64_t *f[3] = {u, c, o};
            for (int j = 0; j < 3; j++) {
                if (!f[j] || *f[j] != U32_MAX_FIELD) continue;
                if (end - k < 8) return "ZIP64 extra field too short";
                *f[j] = rd64(x + k);
                k += 8;
            }
            return NULL;
        }
        i += 4 + sz;
    }
    if (i != xl) return "extra field area is malformed";
    if ((u && *u == U32_MAX_FIELD) || (c && *c == U32_MAX_FIELD) || (o && *o == U32_MAX_FIELD))
        return "saturated size or offset without a ZIP64 extra field";
    return NULL;
}

static int ends_npy(const unsigned char *s, size_t n)
{
    return n >= 4 && memcmp(s + n - 4, ".npy", 4) == 0;
}

/* Parses one central directory record at *pos; appends it to ents if it is a .npy. */
static int central_entry(const zarc *z, uint64_t *pos, zent *ents, int *ne, msa_err *e)
{
    const unsigned char *r = z->p + *pos;
    if (z->cd_off + z->cd_size - *pos < CENTRAL_LEN || rd32(r) != SIG_CENTRAL)
        return msa_fail(e, MSA_EINPUT, "%s: zip: central directory record %d is malformed", z->label, *ne);
    size_t nl = rd16(r + 28), xl = rd16(r + 30), cl = rd16(r + 32);
    if (z->cd_off + z->cd_size - *pos - CENTRAL_LEN < nl + xl + cl)
        return msa_fail(e, MSA_EINPUT, "%s: zip: central directory record overruns the directory", z->label);
    const unsigned char *name = r + CENTRAL_LEN;
    *pos += CENTRAL_LEN + nl + xl + cl;
    if (!ends_npy(name, nl)) return MSA_OK; /* not an array: ignored, like numpy.load */
    char shown[MSA_NPY_NAME_MAX];
    size_t sl = nl - 4 < sizeof shown - 1 ? nl - 4 : sizeof shown - 1;
    for (size_t i = 0; i < sl; i++) shown[i] = (name[i] >= 32 && name[i] < 127) ? (char)name[i] : '?';
    shown[sl] = 0;
    if (nl - 4 >= MSA_NPY_NAME_MAX || nl == 4 || memchr(name, 0, nl))
        return msa_fail(e, MSA_EINPUT, "%s: %s: entry name is empty, too long or has a NUL byte", z->label, shown);
    zent *t = &ents[*ne];
    memset(t, 0, sizeof *t);
    memcpy(t->name, name, nl - 4);
    t->flags = rd16(r + 8);
    t->method = rd16(r + 10);
    t->crc = rd32(r + 16);
    t->csize = rd32(r + 20);
    t->usize = rd32(r + 24);
    t->off = rd32(r + 42);
    if (rd16(r + 34) != 0 && rd16(r + 34) != 0xffff)
        return msa_fail(e, MSA_EINPUT, "%s: %s: entry on another disk", z->label, t->name);
    const char *m = zip64_extra(name + nl, xl, &t->usize, &t->csize, &t->off);
    if (m) return msa_fail(e, MSA_EINPUT, "%s: %s: %s", z->label, t->name, m);
    (*ne)++;
    return MSA_OK;
}

/* Checks the local header of an entry against its central record and sets its data
 * range; the range must lie before the central directory. */
static int local_entry(const zarc *z, zent *t, msa_err *e)
{
    const char *L = z->label, *N = t->name;
    if (t->flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENC))
        return msa_fail(e, MSA_EINPUT, "%s: %s: encrypted entries are not supported", L, N);
    if (t->method != METHOD_STORED && t->method != METHOD_DEFLATE)
        return msa_fail(e, MSA_EINPUT, "%s: %s: compression method %u is not supported (stored or deflate only)", L, N, t->method);
    if (t->method == METHOD_STORED && t->csize != t->usize)
        return msa_fail(e, MSA_EINPUT, "%s: %s: stored entry with different compressed and uncompressed sizes", L, N);
    if (t->method == METHOD_DEFLATE && t->usize > t->csize * DEFLATE_MAX_RATIO + DEFLATE_RATIO_SLACK)
        return msa_fail(e, MSA_EINPUT, "%s: %s: declared size %llu is impossible for %llu deflated bytes (zip bomb?)",
                        L, N, (unsigned long long)t->usize, (unsigned long long)t->csize);
    if (t->off > z->cd_off || z->cd_off - t->off < LOCAL_LEN)
        return msa_fail(e, MSA_EINPUT, "%s: %s: local header offset out of range", L, N);
    const unsigned char *r = z->p + t->off;
    size_t nl = rd16(r + 26), xl = rd16(r + 28);
    if (rd32(r) != SIG_LOCAL)
        return msa_fail(e, MSA_EINPUT, "%s: %s: bad local header signature", L, N);
    if (z->cd_off - t->off - LOCAL_LEN < nl + xl)
        return msa_fail(e, MSA_EINPUT, "%s: %s: local header overruns the archive", L, N);
    size_t want = strlen(N) + 4;
    if (nl != want || memcmp(r + LOCAL_LEN, N, want - 4) != 0 || memcmp(r + LOCAL_LEN + want - 4, ".npy", 4) != 0)
        return msa_fail(e, MSA_EINPUT, "%s: %s: local header names a different entry", L, N);
    if (rd16(r + 8) != t->method || ((rd16(r + 6) ^ t->flags) & FLAG_ENCRYPTED))
        return msa_fail(e, MSA_EINPUT, "%s: %s: local header disagrees with the central directory", L, N);
    if (!(rd16(r + 6) & FLAG_DESCRIPTOR)) {
        uint64_t lc = rd32(r + 18), lu = rd32(r + 22);
        const char *m = zip64_extra(r + LOCAL_LEN + nl, xl, &lu, &lc, NULL);
        if (m) return msa_fail(e, MSA_EINPUT, "%s: %s: local header: %s", L, N, m);
        if (rd32(r + 14) != t->crc || lc != t->csize || lu != t->usize)
            return msa_fail(e, MSA_EINPUT, "%s: %s: local header sizes or CRC disagree with the central directory", L, N);
    }
    t->data = t->off + LOCAL_LEN + nl + xl;
    if (t->csize > z->cd_off - t->data)
        return msa_fail(e, MSA_EINPUT, "%s: %s: entry data runs past the central directory (truncated?)", L, N);
    t->end = t->data + t->csize;
    return MSA_OK;
}

static int cmp_off(const void *a, const void *b)
{
    const zent *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const zent *)a)->name, ((const zent *)b)->name);
}

/* Rejects overlapping entries (a classic of zip bombs and parser confusion), duplicate
 * names, and archives whose declared total exceeds the cap. */
static int check_layout(const zarc *z, zent *ents, int ne, msa_err *e)
{
    uint64_t total = 0;
    qsort(ents, (size_t)ne, sizeof *ents, cmp_off);
    for (int i = 0; i < ne; i++) {
        if (i > 0 && ents[i].off < ents[i - 1].end)
            return msa_fail(e, MSA_EINPUT, "%s: %s: entry overlaps entry %s", z->label, ents[i].name, ents[i - 1].name);
        total += ents[i].usize; /* each usize <= 1032 * file size: cannot wrap */
        if (total > NPZ_MAX_TOTAL)
            return msa_fail(e, MSA_EINPUT, "%s: %s: archive expands beyond the %llu-byte cap", z->label,
                            ents[i].name, (unsigned long long)NPZ_MAX_TOTAL);
    }
    qsort(ents, (size_t)ne, sizeof *ents, cmp_name);
    for (int i = 1; i < ne; i++)
        if (strcmp(ents[i].name, ents[i - 1].name) == 0)
            return msa_fail(e, MSA_EINPUT, "%s: %s: duplicate entry name", z->label, ents[i].name);
    return MSA_OK;
}

/* CRC-32 over a buffer of any size (zlib takes uInt lengths). */
static uint32_t crc_all(const unsigned char *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

/* Inflates a raw deflate stream that must produce exactly outlen bytes and consume
 * exactly inlen bytes. */
static const char *inflate_exact(const unsigned char *in, size_t inlen, unsigned char *out, size_t outlen)
{
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, -MAX_WBITS) != Z_OK) return "zlib inflateInit2 failed";
    const char *m = NULL;
    size_t ip = 0, op = 0;
    for (;;) {
        uInt ai = inlen - ip > (1u << 30) ? (1u << 30) : (uInt)(inlen - ip);
        uInt ao = outlen - op > (1u << 30) ? (1u << 30) : (uInt)(outlen - op);
        unsigned char spill; /* one spare byte detects output beyond the declared size */
        s.next_in = (Bytef *)(uintptr_t)(in + ip);
        s.avail_in = ai;
        s.next_out = ao ? out + op : &spill;
        s.avail_out = ao ? ao : 1;
        int rc = inflate(&s, Z_NO_FLUSH);
        size_t used = ai - s.avail_in, made = (ao ? ao : 1) - s.avail_out;
        if (!ao && made) {
            m = "deflate stream longer than the declared size";
            break;
        }
        ip += used;
        op += made;
        if (rc == Z_STREAM_END) {
            if (op != outlen) m = "deflate stream shorter than the declared size";
            else if (ip != inlen) m = "junk after the end of the deflate stream";
            break;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            m = "bad deflate stream";
            break;
        }
        if (used == 0 && made == 0) {
            m = ip == inlen ? "truncated deflate stream" : "bad deflate stream";
            break;
        }
    }
    inflateEnd(&s);
    return m;
}

/* Uncompresses (or copies) one entry, verifies its CRC and parses the .npy image. */
static int extract_entry(const zarc *z, const zent *t, msa_tensor *out, msa_err *e)
{
    size_t n = (size_t)t->usize;
    if ((uint64_t)n != t->usize)
        return msa_fail(e, MSA_EINPUT, "%s: %s: entry too large for this machine", z->label, t->name);
    const unsigned char *src = z->p + t->data;
    unsigned char *tmp = NULL;
    if (t->method == METHOD_DEFLATE) {
        tmp = malloc(n ? n : 1);
        if (!tmp) return msa_fail(e, MSA_ENOMEM, "%s: %s: cannot allocate %zu bytes", z->label, t->name, n);
        const char *m = inflate_exact(src, (size_t)t->csize, tmp, n);
        if (m) {
            free(tmp);
            return msa_fail(e, MSA_EINPUT, "%s: %s: %s", z->label, t->name, m);
        }
        src = tmp;
    }
    if (crc_all(src, n) != t->crc) {
        free(tmp);
        return msa_fail(e, MSA_EINPUT, "%s: %s: CRC-32 mismatch (corrupt entry)", z->label, t->name);
    }
    if (tmp) return npy_parse_owned(tmp, n, z->label, t->name, out, e);
    return msa_npy_parse(src, n, z->label, t->name, out, e);
}

static int npz_push(msa_npz *z, msa_tensor *t)
{
    if (z->n == z->cap) {
        int nc = z->cap ? 2 * z->cap : 8;
        msa_tensor *nt = realloc(z->t, (size_t)nc * sizeof *nt);
        if (!nt) return -1;
        z->t = nt;
        z->cap = nc;
    }
    z->t[z->n++] = *t;
    return 0;
}

static int read_entries(const zarc *a, zent *ents, int ne, msa_npz *out, msa_err *e)
{
    int rc = MSA_OK;
    for (int i = 0; i < ne && rc == MSA_OK; i++) rc = local_entry(a, &ents[i], e);
    if (rc == MSA_OK) rc = check_layout(a, ents, ne, e);
    for (int i = 0; i < ne && rc == MSA_OK; i++) {
        msa_tensor t;
        rc = extract_entry(a, &ents[i], &t, e);
        if (rc == MSA_OK && npz_push(out, &t) != 0) {
            free(t.data);
            rc = msa_fail(e, MSA_ENOMEM, "%s: %s: out of memory", a->label, t.name);
        }
    }
    return rc;
}

int msa_npz_read_mem(const void *buf, size_t len, const char *label, msa_npz *out, msa_err *e)
{
    zarc a = {buf, len, label ? label : "npz", 0, 0, 0, 0};
    memset(out, 0, sizeof *out);
    int rc = find_eocd(&a, e);
    if (rc) return rc;
    if (a.cd_off > a.cd_end || a.cd_size != a.cd_end - a.cd_off)
        return msa_fail(e, MSA_EINPUT, "%s: zip: central directory offset or size out of range", a.label);
    if (a.n > a.cd_size / CENTRAL_LEN)
        return msa_fail(e, MSA_EINPUT, "%s: zip: entry count %llu does not fit the central directory", a.label,
                        (unsigned long long)a.n);
    zent *ents = malloc((size_t)(a.n ? a.n : 1) * sizeof *ents);
    if (!ents) return msa_fail(e, MSA_ENOMEM, "%s: zip: out of memory", a.label);
    int ne = 0;
    uint64_t pos = a.cd_off;
    for (uint64_t i = 0; i < a.n && rc == MSA_OK; i++) rc = central_entry(&a, &pos, ents, &ne, e);
    if (rc == MSA_OK && pos != a.cd_off + a.cd_size)
        rc = msa_fail(e, MSA_EINPUT, "%s: zip: central directory size disagrees with its records", a.label);
    if (rc == MSA_OK) rc = read_entries(&a, ents, ne, out, e);
    free(ents);
    if (rc) msa_npz_free(out);
    return rc;
}

int msa_npz_read(const char *path, msa_npz *out, msa_err *e)
{
    void *buf = NULL;
    size_t len = 0;
    memset(out, 0, sizeof *out);
    int rc = msa_read_file(path, NPZ_MAX_FILE, &buf, &len, e);
    if (rc) return rc;
    rc = msa_npz_read_mem(buf, len, path, out, e);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------ building */
const msa_tensor *msa_npz_find(const msa_npz *z, const char *name)
{
    for (int i = 0; z && i < z->n; i++)
        if (strcmp(z->t[i].name, name) == 0) return &z->t[i];
    return NULL;
}

int msa_npz_add(msa_npz *z, const char *name, msa_dtype dtype, int ndim, const int64_t *shape,
                const void *data, msa_err *e)
{
    if (!name || !*name || strlen(name) >= MSA_NPY_NAME_MAX)
        return msa_fail(e, MSA_EINPUT, "npz: %s: entry name empty or too long", name ? name : "(null)");
    if (!descr_of(dtype))
        return msa_fail(e, MSA_EINPUT, "npz: %s: dtype %s has no .npy form (store bf16 as uint16, fp8 as uint8)",
                        name, msa_dtype_name(dtype));
    if (ndim < 0 || ndim > MSA_NPY_MAX_DIMS)
        return msa_fail(e, MSA_EINPUT, "npz: %s: %d dimensions (max %d)", name, ndim, MSA_NPY_MAX_DIMS);
    size_t count = 1, nbytes;
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0 || (uint64_t)shape[d] > SIZE_MAX || msa_mul_size(count, (size_t)shape[d], &count))
            return msa_fail(e, MSA_EINPUT, "npz: %s: negative or overflowing shape", name);
    if (msa_mul_size(count, msa_dtype_size(dtype), &nbytes))
        return msa_fail(e, MSA_EINPUT, "npz: %s: shape product overflows", name);
    msa_tensor t;
    memset(&t, 0, sizeof t);
    t.data = malloc(nbytes ? nbytes : 1);
    if (!t.data) return msa_fail(e, MSA_ENOMEM, "npz: %s: cannot allocate %zu bytes", name, nbytes);
    if (nbytes) memcpy(t.data, data, nbytes);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.dtype = dtype;
    t.ndim = ndim;
    for (int d = 0; d < ndim; d++) t.shape[d] = shape[d];
    t.count = count;
    t.nbytes = nbytes;
    for (int i = 0; i < z->n; i++)
        if (strcmp(z->t[i].name, name) == 0) {
            free(z->t[i].data);
            z->t[i] = t;
            return MSA_OK;
        }
    if (npz_push(z, &t) != 0) {
        free(t.data);
        return msa_fail(e, MSA_ENOMEM, "npz: %s: out of memory", name);
    }
    return MSA_OK;
}

void msa_npz_free(msa_npz *z)
{
    if (!z) return;
    for (int i = 0; i < z->n; i++) free(z->t[i].data);
    free(z->t);
    memset(z, 0, sizeof *z);
}

/* ------------------------------------------------------------------ writing */
/* The .npy header numpy writes (format.py _write_array_header / _wrap_header): sorted
 * keys, repr() values, spare spaces for the growth axis, then spaces and '\n' up to a
 * multiple of 64 bytes.  Version 1.0 (the length always fits 16 bits here). */
static size_t npy_header(const msa_tensor *t, char *h, size_t cap)
{
    char shp[MSA_NPY_MAX_DIMS * 24 + 4];
    size_t k = 0;
    shp[k++] = '(';
    for (int d = 0; d < t->ndim; d++)
        k += (size_t)snprintf(shp + k, sizeof shp - k, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (t->ndim == 1) shp[k++] = ',';
    shp[k++] = ')';
    shp[k] = 0;
    int n = snprintf(h + 10, cap - 10, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descr_of(t->dtype), shp);
    size_t len = 10 + (size_t)n;
    if (t->ndim > 0) { /* GROWTH_AXIS_MAX_DIGITS - len(repr(shape[0])) */
        char first[24];
        int fl = snprintf(first, sizeof first, "%lld", (long long)t->shape[0]);
        for (int i = fl; i < NPY_GROWTH_DIGITS; i++) h[len++] = ' ';
    }
    /* numpy pads by ALIGN - (len+1) % ALIGN, i.e. a full 64 when already aligned */
    size_t total = len + 1 + (NPY_ALIGN - (len + 1) % NPY_ALIGN);
    while (len < total - 1) h[len++] = ' ';
    h[len++] = '\n';
    memcpy(h, NPY_MAGIC, sizeof NPY_MAGIC);
    h[6] = 1;
    h[7] = 0;
    wr16((unsigned char *)h + 8, (unsigned)(len - 10));
    return len;
}

typedef struct {
    unsigned char *p;
    size_t len, cap;
    int oom;
} wbuf;

static unsigned char *wgrow(wbuf *b, size_t n)
{
    if (b->oom) return NULL;
    if (n > b->cap - b->len) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc - b->len < n) {
            if (nc > SIZE_MAX / 2) { b->oom = 1; return NULL; }
            nc *= 2;
        }
        unsigned char *np = realloc(b->p, nc);
        if (!np) { b->oom = 1; return NULL; }
        b->p = np;
        b->cap = nc;
    }
    unsigned char *r = b->p + b->len;
    b->len += n;
    return r;
}

/* Deflates src into b (raw stream, NPZ_DEFLATE_LEVEL). */
static int deflate_into(wbuf *b, const unsigned char *src, size_t n)
{
    z_stream s;
    memset(&s, 0, sizeof s);
    if (deflateInit2(&s, NPZ_DEFLATE_LEVEL, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
    size_t ip = 0;
    int rc;
    do {
        unsigned char *o = wgrow(b, 1u << 16);
        if (!o) { deflateEnd(&s); return -1; }
        uInt ai = n - ip > (1u << 30) ? (1u << 30) : (uInt)(n - ip);
        s.next_in = (Bytef *)(uintptr_t)(src + ip);
        s.avail_in = ai;
        s.next_out = o;
        s.avail_out = 1u << 16;
        rc = deflate(&s, ip + ai == n ? Z_FINISH : Z_NO_FLUSH);
        ip += ai - s.avail_in;
        b->len -= s.avail_out;
    } while (rc == Z_OK || rc == Z_BUF_ERROR);
    deflateEnd(&s);
    return rc == Z_STREAM_END ? 0 : -1;
}

static void zip_header(unsigned char *h, int central, uint32_t crc, uint64_t cs, uint64_t us,
                       size_t nl, uint64_t off, unsigned method)
{
    unsigned char *q = h;
    wr32(q, central ? SIG_CENTRAL : SIG_LOCAL);
    q += 4;
    if (central) { wr16(q, ZIP_VERSION); q += 2; }
    wr16(q, ZIP_VERSION);
    wr16(q + 2, 0);          /* flags */
    wr16(q + 4, method);
    wr16(q + 6, 0);          /* time 00:00:00 */
    wr16(q + 8, DOS_DATE_1980);
    wr32(q + 10, crc);
    wr32(q + 14, (uint32_t)cs);
    wr32(q + 18, (uint32_t)us);
    wr16(q + 22, (unsigned)nl);
    wr16(q + 24, 0);         /* extra */
    if (central) {
        memset(q + 26, 0, 6); /* comment length, disk, internal attributes */
        wr32(q + 32, 0x01800000u); /* external: mode 0600 << 16, as Python's zipfile */
        wr32(q + 36, (uint32_t)off);
    }
}

static int zip_entry(wbuf *b, const msa_tensor *t, int compress, uint64_t *off, uint32_t *crc,
                     uint64_t *cs, uint64_t *us, msa_err *e)
{
    char hdr[512];
    size_t hl = npy_header(t, hdr, sizeof hdr), nl = strlen(t->name) + 4;
    if (t->nbytes > U32_MAX_FIELD - 1 - hl)
        return msa_fail(e, MSA_EUNSUPPORTED, "npz: %s: entries of 4 GiB or more need ZIP64, not written", t->name);
    unsigned char *img = malloc(hl + t->nbytes);
    if (!img) return msa_fail(e, MSA_ENOMEM, "npz: %s: out of memory", t->name);
    memcpy(img, hdr, hl);
    if (t->nbytes) memcpy(img + hl, t->data, t->nbytes);
    *us = hl + t->nbytes;
    *crc = crc_all(img, (size_t)*us);
    *off = b->len;
    unsigned char *lh = wgrow(b, LOCAL_LEN + nl);
    if (lh) {
        memcpy(lh + LOCAL_LEN, t->name, nl - 4);
        memcpy(lh + LOCAL_LEN + nl - 4, ".npy", 4);
    }
    size_t start = b->len;
    int bad = 0;
    if (compress) bad = deflate_into(b, img, (size_t)*us);
    else if (wgrow(b, (size_t)*us)) memcpy(b->p + start, img, (size_t)*us);
    free(img);
    if (bad || b->oom) return msa_fail(e, MSA_ENOMEM, "npz: %s: out of memory while writing", t->name);
    *cs = b->len - start;
    if (*cs >= U32_MAX_FIELD || b->len >= U32_MAX_FIELD)
        return msa_fail(e, MSA_EUNSUPPORTED, "npz: %s: archive reaches 4 GiB and would need ZIP64, not written", t->name);
    zip_header(b->p + *off, 0, *crc, *cs, *us, nl, 0, compress ? METHOD_DEFLATE : METHOD_STORED);
    return MSA_OK;
}

int msa_npz_serialize(const msa_npz *z, int compress, void **buf, size_t *len, msa_err *e)
{
    wbuf b = {NULL, 0, 0, 0};
    int n = z->n, rc = MSA_OK;
    *buf = NULL;
    *len = 0;
    if (n > 0xfffe) return msa_fail(e, MSA_EUNSUPPORTED, "npz: too many entries (%d) without ZIP64", n);
    uint64_t *meta = calloc((size_t)(n ? n : 1) * 4, sizeof *meta);
    if (!meta) return msa_fail(e, MSA_ENOMEM, "npz: out of memory");
    for (int i = 0; i < n && rc == MSA_OK; i++) {
        uint32_t crc;
        rc = zip_entry(&b, &z->t[i], compress, &meta[4 * i], &crc, &meta[4 * i + 1], &meta[4 * i + 2], e);
        meta[4 * i + 3] = crc;
    }
    size_t cd = b.len;
    for (int i = 0; i < n && rc == MSA_OK; i++) {
        size_t nl = strlen(z->t[i].name) + 4;
        unsigned char *h = wgrow(&b, CENTRAL_LEN + nl);
        if (!h) break;
        zip_header(h, 1, (uint32_t)meta[4 * i + 3], meta[4 * i + 1], meta[4 * i + 2], nl, meta[4 * i],
                   compress ? METHOD_DEFLATE : METHOD_STORED);
        memcpy(h + CENTRAL_LEN, z->t[i].name, nl - 4);
        memcpy(h + CENTRAL_LEN + nl - 4, ".npy", 4);
    }
    unsigned char *r = rc == MSA_OK ? wgrow(&b, EOCD_LEN) : NULL;
    if (rc == MSA_OK && (!r || b.len >= U32_MAX_FIELD))
        rc = b.oom ? msa_fail(e, MSA_ENOMEM, "npz: out of memory")
                   : msa_fail(e, MSA_EUNSUPPORTED, "npz: archive reaches 4 GiB and would need ZIP64, not written");
    if (rc == MSA_OK) {
        memset(r, 0, EOCD_LEN);
        wr32(r, SIG_EOCD);
        wr16(r + 8, (unsigned)n);
        wr16(r + 10, (unsigned)n);
        wr32(r + 12, (uint32_t)(b.len - EOCD_LEN - cd));
        wr32(r + 16, (uint32_t)cd);
        *buf = b.p;
        *len = b.len;
    } else {
        free(b.p);
    }
    free(meta);
    return rc;
}

int msa_npz_write(const char *path, const msa_npz *z, int compress, msa_err *e)
{
    void *buf;
    size_t len;
    int rc = msa_npz_serialize(z, compress, &buf, &len, e);
    if (rc) return rc;
    rc = msa_write_atomic(path, buf, len, e);
    free(buf);
    return rc;
}
