/* test_npz.c - CUnit suite "npz": .npy/.npz reading and writing.
 *
 * Round trips (stored and deflate), interoperability with an independent writer and
 * reader (tools/npz_tool.py, which writes exactly like np.savez: force_zip64, data
 * descriptors when streaming) and a table of malformed archives, each of which must give
 * MSA_EINPUT with a message naming the file and the entry or field.  No binary fixtures
 * are committed: every file is produced at test time. */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/npz.h"
#include "test_util.h"

#define LABEL "test.npz"

/* ------------------------------------------------------------------ helpers */
static int build_sample(msa_npz *z)
{
    msa_err e;
    static const uint16_t q[6] = {0x3f80, 0xbf80, 0x0000, 0x7f7f, 0x0001, 0x8000};
    static const uint8_t cfg[5] = {'{', '"', 'a', '"', '}'};
    static const float x[4] = {1.5f, -2.25f, 0.0f, 3e38f};
    static const int64_t s = -123456789012345LL;
    static const int32_t iv[3] = {0, 7, -1};
    int64_t sq[2] = {2, 3}, sc[1] = {5}, sx[1] = {4}, se[2] = {0, 3}, si[1] = {3};
    memset(z, 0, sizeof *z);
    if (msa_npz_add(z, "q", MSA_DT_U16, 2, sq, q, &e)) return -1;
    if (msa_npz_add(z, "config", MSA_DT_U8, 1, sc, cfg, &e)) return -1;
    if (msa_npz_add(z, "x", MSA_DT_FP32, 1, sx, x, &e)) return -1;
    if (msa_npz_add(z, "scalar", MSA_DT_I64, 0, NULL, &s, &e)) return -1;
    if (msa_npz_add(z, "empty", MSA_DT_FP64, 2, se, NULL, &e)) return -1;
    if (msa_npz_add(z, "iv", MSA_DT_I32, 1, si, iv, &e)) return -1;
    return 0;
}

static int same_tensor(const msa_tensor *a, const msa_tensor *b)
{
    if (strcmp(a->name, b->name) || a->dtype != b->dtype || a->ndim != b->ndim || a->count != b->count ||
        a->nbytes != b->nbytes)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0;
}

static void check_same_npz(const msa_npz *a, const msa_npz *b)
{
    CU_ASSERT_EQUAL_FATAL(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        const msa_tensor *t = msa_npz_find(b, a->t[i].name);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        CU_ASSERT(same_tensor(&a->t[i], t));
    }
}

static int read_all(const char *path, unsigned char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, n = 0;
    unsigned char *p = malloc(cap);
    for (size_t k; p && (k = fread(p + n, 1, cap - n, f)) > 0;) {
        n += k;
        if (n == cap) {
            unsigned char *np = realloc(p, cap *= 2);
            if (!np) { free(p); p = NULL; }
            else p = np;
        }
    }
    fclose(f);
    *buf = p;
    *len = n;
    return p ? 0 : -1;
}

/* ------------------------------------------------------------------ round trips */
static void roundtrip(int compress)
{
    msa_npz a, b;
    msa_err e = {{0}};
    void *buf = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(build_sample(&a), 0);
    CU_ASSERT_EQUAL_FATAL(msa_npz_serialize(&a, compress, &buf, &len, &e), MSA_OK);
    int rc = msa_npz_read_mem(buf, len, LABEL, &b, &e);
    if (rc) printf("\n  %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, MSA_OK);
    check_same_npz(&a, &b);
    const msa_tensor *s = msa_npz_find(&b, "scalar");
    CU_ASSERT(s && s->ndim == 0 && s->count == 1 && *(int64_t *)s->data == -123456789012345LL);
    /* same arrays, same bytes: the writer is deterministic */
    void *buf2;
    size_t len2;
    CU_ASSERT_EQUAL(msa_npz_serialize(&b, compress, &buf2, &len2, &e), MSA_OK);
    msa_npz_free(&b);
    msa_npz_free(&a);
    free(buf2);
    free(buf);
}

static void test_roundtrip_stored(void) { roundtrip(0); }
static void test_roundtrip_deflate(void) { roundtrip(1); }

static void test_add_replaces_and_rejects(void)
{
    msa_npz z = {0};
    msa_err e;
    int64_t sh[1] = {2}, neg[1] = {-1}, big[2] = {INT64_MAX, INT64_MAX};
    uint16_t a[2] = {1, 2}, b[2] = {3, 4};
    CU_ASSERT_EQUAL(msa_npz_add(&z, "a", MSA_DT_U16, 1, sh, a, &e), MSA_OK);
    CU_ASSERT_EQUAL(msa_npz_add(&z, "a", MSA_DT_U16, 1, sh, b, &e), MSA_OK);
    CU_ASSERT_EQUAL(z.n, 1);
    CU_ASSERT_EQUAL(((uint16_t *)msa_npz_find(&z, "a")->data)[1], 4);
    CU_ASSERT_EQUAL(msa_npz_add(&z, "b", MSA_DT_BF16, 1, sh, a, &e), MSA_EINPUT);
    CU_ASSERT_EQUAL(msa_npz_add(&z, "b", MSA_DT_U16, 1, neg, a, &e), MSA_EINPUT);
    CU_ASSERT_EQUAL(msa_npz_add(&z, "b", MSA_DT_U16, 2, big, a, &e), MSA_EINPUT);
    CU_ASSERT_EQUAL(msa_npz_add(&z, "", MSA_DT_U16, 1, sh, a, &e), MSA_EINPUT);
    CU_ASSERT_EQUAL(z.n, 1);
    CU_ASSERT_PTR_NULL(msa_npz_find(&z, "b"));
    msa_npz_free(&z);
}

/* The writer's .npy header must be the one numpy writes (checked byte for byte by the
 * Python side below); here: 64-byte alignment and version 1.0. */
static void test_header_alignment(void)
{
    msa_npz z = {0};
    msa_err e;
    void *buf = NULL;
    size_t len = 0;
    int64_t shapes[4][6] = {{1}, {12345678901LL, 0}, {1, 2, 3, 4, 5, 6}, {0}};
    int nd[4] = {1, 2, 6, 0};
    static const unsigned char zeros[720];
    for (int i = 0; i < 4; i++) {
        char nm[8];
        snprintf(nm, sizeof nm, "t%d", i);
        CU_ASSERT_EQUAL_FATAL(msa_npz_add(&z, nm, MSA_DT_U8, nd[i], shapes[i], zeros, &e), MSA_OK);
    }
    CU_ASSERT_EQUAL_FATAL(msa_npz_serialize(&z, 0, &buf, &len, &e), MSA_OK);
    const unsigned char *p = buf;
    int seen = 0;
    for (size_t i = 0; i + 10 <= len; i++)
        if (memcmp(p + i, "\x93NUMPY", 6) == 0) {
            size_t hl = (size_t)p[i + 8] | (size_t)p[i + 9] << 8;
            CU_ASSERT_EQUAL(p[i + 6], 1);
            CU_ASSERT_EQUAL((10 + hl) % 64, 0);
            CU_ASSERT_EQUAL(p[i + 10 + hl - 1], '\n');
            seen++;
        }
    CU_ASSERT_EQUAL(seen, 4);
    free(buf);
    msa_npz_free(&z);
}

/* ------------------------------------------------------------------ python interop */
static int python_ok(void) { return msa_test_python_ok("npz"); }

static msa_test_tmp tmp = {"msa_npz", "", ""};
static const char *tmp_path(const char *name) { return msa_test_tmp_path(&tmp, name); }

/* Arrays written by numpy-style Python (force_zip64 local headers, optional data
 * descriptors) must read back with the values given on the command line. */
static void python_write_read(const char *flags)
{
    if (!python_ok()) return;
    char cmd[600];
    const char *path = tmp_path("py.npz");
    snprintf(cmd, sizeof cmd,
             "python3 tools/npz_tool.py write %s %s 'a:<f4:2x2:1.5,-2,0.25,1e30' 'b:<u2:3:1,65535,256' "
             "'c:<i8::-9000000000' 'd:<f2:2:1.5,-0.0009765625' 'e:|u1:0:' 'f:<i4:1x1x1x1x1x1:-7' "
             "'g:<f8:2:0.1,-1e300'",
             path, flags);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    msa_npz z;
    msa_err e = {{0}};
    unsigned char *buf = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(read_all(path, &buf, &len), 0);
    CU_ASSERT_FATAL(len > 64);
    /* the structures under test are really there: numpy's force_zip64 local header
     * (saturated sizes + a ZIP64 extra), or a data descriptor when streaming */
    if (strstr(flags, "--stream")) {
        CU_ASSERT(buf[6] & 0x08);
    } else {
        CU_ASSERT(buf[28] == 20 && buf[30 + 5] == 1 && buf[18] == 0xff && buf[22] == 0xff);
    }
    if (strstr(flags, "--zip64-all")) {
        CU_ASSERT(memcmp(buf + len - 22 - 20, "PK\6\7", 4) == 0);
    }
    int rc = msa_npz_read_mem(buf, len, path, &z, &e);
    if (rc) printf("\n  %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, MSA_OK);
    CU_ASSERT_EQUAL(z.n, 7);
    const msa_tensor *a = msa_npz_find(&z, "a"), *b = msa_npz_find(&z, "b"), *c = msa_npz_find(&z, "c"),
                     *d = msa_npz_find(&z, "d"), *ee = msa_npz_find(&z, "e"), *f = msa_npz_find(&z, "f"),
                     *g = msa_npz_find(&z, "g");
    CU_ASSERT_FATAL(a && b && c && d && ee && f && g);
    CU_ASSERT(a->dtype == MSA_DT_FP32 && a->ndim == 2 && a->shape[0] == 2 && a->shape[1] == 2);
    CU_ASSERT(((float *)a->data)[1] == -2.0f && ((float *)a->data)[3] == 1e30f);
    CU_ASSERT(b->dtype == MSA_DT_U16 && b->count == 3 && ((uint16_t *)b->data)[1] == 65535);
    CU_ASSERT(c->dtype == MSA_DT_I64 && c->ndim == 0 && *(int64_t *)c->data == -9000000000LL);
    CU_ASSERT(d->dtype == MSA_DT_FP16 && ((uint16_t *)d->data)[0] == 0x3e00 && ((uint16_t *)d->data)[1] == 0x9400);
    CU_ASSERT(ee->dtype == MSA_DT_U8 && ee->count == 0 && ee->ndim == 1);
    CU_ASSERT(f->dtype == MSA_DT_I32 && f->ndim == 6 && *(int32_t *)f->data == -7);
    CU_ASSERT(g->dtype == MSA_DT_FP64 && ((double *)g->data)[0] == 0.1 && ((double *)g->data)[1] == -1e300);
    msa_npz_free(&z);
    free(buf);
}

static void test_python_stored(void) { python_write_read(""); }
static void test_python_deflate(void) { python_write_read("-z"); }
static void test_python_stream(void) { python_write_read("--stream"); }
static void test_python_stream_deflate(void) { python_write_read("-z --stream"); }
static void test_python_zip64_all(void) { python_write_read("-z --zip64-all"); }

/* Our archives, read by Python's zipfile (CRC checked) + literal_eval'd headers: same
 * values, and every header byte-identical to the one numpy would write. */
static void c_write_python_read(int compress)
{
    if (!python_ok()) return;
    msa_npz z;
    msa_err e = {{0}};
    void *buf = NULL;
    size_t len = 0;
    const char *path = tmp_path("c.npz");
    CU_ASSERT_EQUAL_FATAL(build_sample(&z), 0);
    CU_ASSERT_EQUAL_FATAL(msa_npz_serialize(&z, compress, &buf, &len, &e), MSA_OK);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL(fwrite(buf, 1, len, f), len);
    fclose(f);
    char cmd[300], line[4096] = "", all[8192] = "";
    snprintf(cmd, sizeof cmd, "python3 tools/npz_tool.py read %s", path);
    FILE *p = popen(cmd, "r");
    CU_ASSERT_FATAL(p != NULL);
    while (fgets(line, sizeof line, p)) strncat(all, line, sizeof all - strlen(all) - 1);
    CU_ASSERT_EQUAL(pclose(p), 0);
    static const char *want[] = {
        "q <u2 2x3 numpy-header 16256 49024 0 32639 1 32768\n",
        "config |u1 5 numpy-header 123 34 97 34 125\n",
        "x <f4 4 numpy-header 1.5 -2.25 0.0 3.0000000054977558e+38\n",
        "scalar <i8 - numpy-header -123456789012345\n",
        "empty <f8 0x3 numpy-header \n",
        "iv <i4 3 numpy-header 0 7 -1\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int found = strstr(all, want[i]) != NULL;
        if (!found) printf("\n  missing from python's reading: %s", want[i]);
        CU_ASSERT(found);
    }
    free(buf);
    msa_npz_free(&z);
}

static void test_c_python_stored(void) { c_write_python_read(0); }
static void test_c_python_deflate(void) { c_write_python_read(1); }

/* ------------------------------------------------------------------ malformed input */
/* A minimal stored-zip writer for the tests (independent of the one under test), so
 * that a malformed .npy image can be wrapped with a correct CRC. */
#include <zlib.h>

static void put16(unsigned char *p, unsigned v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v) { put16(p, v & 0xffff); put16(p + 2, v >> 16); }

static unsigned char *zip1(const char *name, const void *img, size_t n, size_t *len)
{
    size_t nl = strlen(name), L = 30 + nl + n, C = 46 + nl;
    unsigned char *z = calloc(1, L + C + 22);
    uint32_t crc = (uint32_t)crc32(0, img, (uInt)n);
    put32(z, 0x04034b50);
    put16(z + 4, 20);
    put32(z + 14, crc);
    put32(z + 18, (uint32_t)n);
    put32(z + 22, (uint32_t)n);
    put16(z + 26, (unsigned)nl);
    memcpy(z + 30, name, nl);
    memcpy(z + 30 + nl, img, n);
    unsigned char *c = z + L;
    put32(c, 0x02014b50);
    put16(c + 4, 20);
    put16(c + 6, 20);
    put32(c + 16, crc);
    put32(c + 20, (uint32_t)n);
    put32(c + 24, (uint32_t)n);
    put16(c + 28, (unsigned)nl);
    memcpy(c + 46, name, nl);
    unsigned char *r = c + C;
    put32(r, 0x06054b50);
    put16(r + 8, 1);
    put16(r + 10, 1);
    put32(r + 12, (uint32_t)C);
    put32(r + 16, (uint32_t)L);
    *len = L + C + 22;
    return z;
}

/* A .npy image: the given header dict (padded by hand to 64 bytes) and nbytes of data. */
static unsigned char *npy_img(const char *magic, int major, const char *dict, size_t nbytes, size_t *len)
{
    size_t dl = strlen(dict), hl = (10 + dl + 1 + 63) / 64 * 64 - 10;
    unsigned char *p = calloc(1, 10 + hl + nbytes + 1);
    memcpy(p, magic, 6);
    p[6] = (unsigned char)major;
    put16(p + 8, (unsigned)hl);
    memset(p + 10, ' ', hl);
    memcpy(p + 10, dict, dl);
    p[10 + hl - 1] = '\n';
    for (size_t i = 0; i < nbytes; i++) p[10 + hl + i] = (unsigned char)i;
    *len = 10 + hl + nbytes;
    return p;
}

static void expect_bad(const void *buf, size_t len, const char *what, const char *needle)
{
    msa_npz z;
    msa_err e = {{0}};
    int rc = msa_npz_read_mem(buf, len, LABEL, &z, &e);
    int ok = rc == MSA_EINPUT && strncmp(e.msg, LABEL ": ", strlen(LABEL) + 2) == 0 && strstr(e.msg, needle);
    if (!ok) printf("\n  case '%s': rc %d, message '%s' (want '%s')\n", what, rc, e.msg, needle);
    CU_ASSERT(ok);
    CU_ASSERT_EQUAL(z.n, 0);
    CU_ASSERT_PTR_NULL(z.t);
}

static void test_bad_npy_table(void)
{
    static const struct {
        const char *what, *magic, *dict;
        int major;
        size_t nbytes;
        const char *needle;
    } T[] = {
        {"good control", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 1, 8, NULL},
        {"bad magic", "\x93NUMPX", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 1, 8, "a: bad .npy magic"},
        {"version 4", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 4, 8, "a: unsupported .npy version"},
        {"not a dict", "\x93NUMPY", "['descr', '<f4']", 1, 8, "a: header is not a dict"},
        {"missing shape", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False}", 1, 8, "a: header dict lacks"},
        {"extra key", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 1, 8, "a: header dict has an unknown key"},
        {"repeated key", "\x93NUMPY", "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 1, 8, "a: header dict repeats"},
        {"junk after dict", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } x", 1, 8, "a: junk after"},
        {"fortran 1", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': 1, 'shape': (2,), }", 1, 8, "a: fortran_order is not"},
        {"fortran True", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 1, 8, "a: fortran_order True is not supported"},
        {"shape list", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", 1, 8, "a: shape is not a tuple"},
        {"shape (2)", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", 1, 8, "a: shape (n) without the comma"},
        {"negative dim", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 1, 8, "a: shape has a non-integer"},
        {"7 dims", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1), }", 1, 4, "a: shape has too many"},
        {"int64 overflow", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 1, 4, "a: shape dimension overflows"},
        {"product overflow", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 1, 4, "a: shape product overflows"},
        {"bytes overflow", "\x93NUMPY", "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }", 1, 4, "a: shape product overflows"},
        {"big endian", "\x93NUMPY", "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 1, 8, "a: unsupported dtype '>f4'"},
        {"complex", "\x93NUMPY", "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", 1, 8, "a: unsupported dtype '<c8'"},
        {"bool", "\x93NUMPY", "{'descr': '|b1', 'fortran_order': False, 'shape': (8,), }", 1, 8, "a: unsupported dtype '|b1'"},
        {"<u1", "\x93NUMPY", "{'descr': '<u1', 'fortran_order': False, 'shape': (8,), }", 1, 8, "a: unsupported dtype '<u1'"},
        {"structured", "\x93NUMPY", "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 1, 8, "a: descr is not a simple"},
        {"short data", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 1, 7, "a: data is 7 bytes, shape and dtype need 8"},
        {"long data", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 1, 9, "a: data is 9 bytes"},
        {"v2 header", "\x93NUMPY", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 2, 8, "a: "},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        size_t n, zl;
        unsigned char *img = npy_img(T[i].magic, T[i].major, T[i].dict, T[i].nbytes, &n);
        unsigned char *z = zip1("a.npy", img, n, &zl);
        if (!T[i].needle) {
            msa_npz ok;
            msa_err e;
            CU_ASSERT_EQUAL(msa_npz_read_mem(z, zl, LABEL, &ok, &e), MSA_OK);
            CU_ASSERT(ok.n == 1 && ok.t[0].count == 2 && ok.t[0].dtype == MSA_DT_FP32);
            msa_npz_free(&ok);
        } else {
            expect_bad(z, zl, T[i].what, T[i].needle);
        }
        free(z);
        free(img);
    }
}

/* Offsets inside a sample archive made by the writer under test: k-th central record. */
static unsigned char *central(unsigned char *buf, size_t len, int k)
{
    static unsigned char scratch[64]; /* absorbs a mutation if the record is missing */
    for (size_t i = 0; i + 4 <= len; i++)
        if (memcmp(buf + i, "PK\1\2", 4) == 0 && k-- == 0) return buf + i;
    CU_FAIL("central record not found");
    return scratch;
}

typedef void (*mutator)(unsigned char *buf, size_t *len);

static void m_crc(unsigned char *b, size_t *n) { (void)n; b[30 + 5 + 80] ^= 1; } /* a data byte of q */
static void m_deflate(unsigned char *b, size_t *n) { (void)n; b[30 + 5] = 0xff; } /* BTYPE 3: invalid */
static void m_encrypt(unsigned char *b, size_t *n) { central(b, *n, 0)[8] |= 1; }
static void m_method(unsigned char *b, size_t *n) { central(b, *n, 0)[10] = 12; }
static void m_offset(unsigned char *b, size_t *n) { put32(central(b, *n, 1) + 42, 0xfffffff0u); }
static void m_bomb(unsigned char *b, size_t *n) { put32(central(b, *n, 0) + 24, 0x7fffffffu); }
static void m_count(unsigned char *b, size_t *n) { b[*n - 22 + 10]++; b[*n - 22 + 8]++; }
static void m_cdoff(unsigned char *b, size_t *n) { b[*n - 22 + 16]++; }
static void m_trailing(unsigned char *b, size_t *n) { b[(*n)++] = 0; }
static void m_disk(unsigned char *b, size_t *n) { b[*n - 22 + 4] = 1; }
static void m_notzip(unsigned char *b, size_t *n) { memcpy(b, "hello", 5); *n = 5; }
static void m_zip64_nolocator(unsigned char *b, size_t *n) { put32(b + *n - 22 + 16, 0xffffffffu); }
static void m_local_sig(unsigned char *b, size_t *n) { (void)n; b[0] = 'X'; }
static void m_local_size(unsigned char *b, size_t *n) { (void)n; b[18]++; }
static void m_local_name(unsigned char *b, size_t *n) { (void)n; b[30] = 'Q'; }

/* "x" (second entry) renamed to "q": two entries with one name. */
static void m_dup(unsigned char *b, size_t *n)
{
    unsigned char *c = central(b, *n, 2);
    if (!c) return;
    size_t off = (size_t)c[42] | (size_t)c[43] << 8;
    c[46] = 'q';
    b[off + 30] = 'q';
}

/* A second central record that points at the first entry's data. */
static void m_overlap(unsigned char *b, size_t *n)
{
    unsigned char *c0 = central(b, *n, 0), *c2 = central(b, *n, 2);
    if (!c0 || !c2) return;
    memcpy(c2 + 8, c0 + 8, 20); /* flags .. sizes */
    memcpy(c2 + 42, c0 + 42, 4);
    c2[46] = c0[46];
}

static void test_bad_zip_table(void)
{
    static const struct {
        const char *what;
        int compress;
        mutator m;
        const char *needle;
    } T[] = {
        {"bad CRC", 0, m_crc, "q: CRC-32 mismatch"},
        {"bad deflate stream", 1, m_deflate, "q: bad deflate stream"},
        {"encrypted", 0, m_encrypt, "q: encrypted"},
        {"unknown method", 0, m_method, "q: compression method 12"},
        {"offset out of range", 0, m_offset, "config: local header offset out of range"},
        {"deflate bomb", 1, m_bomb, "q: declared size 2147483647 is impossible"},
        {"entry count", 0, m_count, "zip: "},
        {"central offset", 0, m_cdoff, "zip: central directory"},
        {"trailing junk", 0, m_trailing, "zip: no end of central directory"},
        {"multi-disk", 0, m_disk, "zip: multi-disk"},
        {"not a zip", 0, m_notzip, "zip: file too short"},
        {"zip64 without locator", 0, m_zip64_nolocator, "zip: saturated end record"},
        {"local signature", 0, m_local_sig, "q: bad local header signature"},
        {"local size", 0, m_local_size, "q: local header sizes or CRC disagree"},
        {"local name", 0, m_local_name, "q: local header names a different entry"},
        {"duplicate name", 0, m_dup, "q: duplicate entry name"},
        {"overlap", 0, m_overlap, "overlaps entry"},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        msa_npz z;
        msa_err e;
        void *buf;
        size_t len;
        CU_ASSERT_EQUAL_FATAL(build_sample(&z), 0);
        CU_ASSERT_EQUAL_FATAL(msa_npz_serialize(&z, T[i].compress, &buf, &len, &e), MSA_OK);
        msa_npz_free(&z);
        unsigned char *b = malloc(len + 16);
        memcpy(b, buf, len);
        T[i].m(b, &len);
        expect_bad(b, len, T[i].what, T[i].needle);
        free(b);
        free(buf);
    }
}

/* An entry declaring 17 GiB from 17 MiB of deflate data: a possible ratio (< 1032:1),
 * so only the 16 GiB cap on the archive's total stops it, before any allocation. */
static void test_total_cap(void)
{
    const size_t cs = (size_t)17 << 20;
    const uint64_t us = (uint64_t)17 << 30;
    size_t nl = 5, L = 30 + nl + cs, C = 46 + nl + 20, len = L + C + 22;
    unsigned char *z = calloc(1, len);
    CU_ASSERT_FATAL(z != NULL);
    put32(z, 0x04034b50);
    put16(z + 6, 0x08); /* sizes in a data descriptor (absent: never reached) */
    put16(z + 8, 8);
    put16(z + 26, (unsigned)nl);
    memcpy(z + 30, "a.npy", nl);
    unsigned char *c = z + L;
    put32(c, 0x02014b50);
    put16(c + 8, 0x08);
    put16(c + 10, 8);
    put32(c + 20, (uint32_t)cs);
    put32(c + 24, 0xffffffffu); /* uncompressed size in the ZIP64 extra */
    put16(c + 28, (unsigned)nl);
    put16(c + 30, 20);
    memcpy(c + 46, "a.npy", nl);
    put16(c + 46 + nl, 1);
    put16(c + 48 + nl, 16);
    put32(c + 50 + nl, (uint32_t)us);
    put32(c + 54 + nl, (uint32_t)(us >> 32));
    unsigned char *r = c + C;
    put32(r, 0x06054b50);
    put16(r + 8, 1);
    put16(r + 10, 1);
    put32(r + 12, (uint32_t)C);
    put32(r + 16, (uint32_t)L);
    expect_bad(z, len, "17 GiB declared", "a: archive expands beyond the 17179869184-byte cap");
    free(z);
}

/* Every prefix of a valid archive (stored and deflate) is refused cleanly. */
static void test_truncated_everywhere(void)
{
    for (int compress = 0; compress < 2; compress++) {
        msa_npz z;
        msa_err e;
        void *buf;
        size_t len;
        CU_ASSERT_EQUAL_FATAL(build_sample(&z), 0);
        CU_ASSERT_EQUAL_FATAL(msa_npz_serialize(&z, compress, &buf, &len, &e), MSA_OK);
        msa_npz_free(&z);
        int bad = 0;
        for (size_t n = 0; n < len; n++) {
            unsigned char *b = malloc(n ? n : 1); /* exact size: ASan sees any overread */
            memcpy(b, buf, n);
            msa_npz t;
            e.msg[0] = 0;
            int rc = msa_npz_read_mem(b, n, LABEL, &t, &e);
            if (rc != MSA_EINPUT || strncmp(e.msg, LABEL ": ", strlen(LABEL) + 2) != 0) {
                if (!bad) printf("\n  truncation at %zu of %zu: rc %d '%s'\n", n, len, rc, e.msg);
                bad++;
                if (rc == MSA_OK) msa_npz_free(&t);
            }
            free(b);
        }
        CU_ASSERT_EQUAL(bad, 0);
        free(buf);
    }
}

/* Entries whose names do not end in .npy are ignored, as numpy.load ignores them. */
static void test_non_npy_ignored(void)
{
    msa_npz z, r;
    msa_err e;
    void *buf = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(build_sample(&z), 0);
    CU_ASSERT_EQUAL_FATAL(msa_npz_serialize(&z, 0, &buf, &len, &e), MSA_OK);
    unsigned char *b = buf, *c = central(b, len, 0);
    memcpy(c + 46 + 1, ".txt", 4);
    memcpy(b + 30 + 1, ".txt", 4);
    CU_ASSERT_EQUAL(msa_npz_read_mem(b, len, LABEL, &r, &e), MSA_OK);
    CU_ASSERT_EQUAL(r.n, z.n - 1);
    CU_ASSERT_PTR_NULL(msa_npz_find(&r, "q"));
    CU_ASSERT_PTR_NOT_NULL(msa_npz_find(&r, "x"));
    msa_npz_free(&r);
    msa_npz_free(&z);
    free(buf);
}

/* msa_npz_write / msa_npz_read through the file system (atomic write). */
static void test_file_roundtrip(void)
{
    msa_npz a, b;
    msa_err e = {{0}};
    const char *path = tmp_path("rt.npz");
    CU_ASSERT_EQUAL_FATAL(build_sample(&a), 0);
    int rc = msa_npz_write(path, &a, 1, &e);
    if (rc) printf("\n  %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, MSA_OK);
    CU_ASSERT_EQUAL_FATAL(msa_npz_read(path, &b, &e), MSA_OK);
    check_same_npz(&a, &b);
    msa_npz_free(&b);
    CU_ASSERT_EQUAL(msa_npz_read(tmp_path("does-not-exist.npz"), &b, &e) != MSA_OK, 1);
    msa_npz_free(&a);
}

static int suite_clean(void) { return msa_test_tmp_remove(&tmp); }

int msa_suite_npz(void)
{
    CU_pSuite s = CU_add_suite("npz", NULL, suite_clean);
    if (!s) return -1;
    CU_add_test(s, "roundtrip stored", test_roundtrip_stored);
    CU_add_test(s, "roundtrip deflate", test_roundtrip_deflate);
    CU_add_test(s, "add replaces and rejects", test_add_replaces_and_rejects);
    CU_add_test(s, "npy header alignment", test_header_alignment);
    CU_add_test(s, "numpy-style stored read", test_python_stored);
    CU_add_test(s, "numpy-style deflate read", test_python_deflate);
    CU_add_test(s, "numpy-style stream (descriptors) read", test_python_stream);
    CU_add_test(s, "numpy-style stream deflate read", test_python_stream_deflate);
    CU_add_test(s, "numpy-style ZIP64 records read", test_python_zip64_all);
    CU_add_test(s, "C stored read by python", test_c_python_stored);
    CU_add_test(s, "C deflate read by python", test_c_python_deflate);
    CU_add_test(s, "bad npy table", test_bad_npy_table);
    CU_add_test(s, "bad zip table", test_bad_zip_table);
    CU_add_test(s, "total size cap", test_total_cap);
    CU_add_test(s, "truncated at every offset", test_truncated_everywhere);
    CU_add_test(s, "non-npy entries ignored", test_non_npy_ignored);
    CU_add_test(s, "file roundtrip", test_file_roundtrip);
    return 0;
}
