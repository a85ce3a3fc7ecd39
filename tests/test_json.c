/* test_json.c - suite "json": the strict JSON reader on valid documents (values, escapes,
 * surrogate pairs, limits) and on malformed ones, each of which must give MSA_EINPUT with
 * a message naming the label and the hand-derived byte offset.  Truncations and random
 * byte mutations of a valid document must never crash (run it under ASan: SAN=1). */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/json.h"

static int parse(const char *s, msa_json *j, msa_err *e)
{
    return msa_json_parse(s, strlen(s), "cfg.json", j, e);
}

static void test_valid_config(void)
{
    const char *doc =
        " {\"dtype\":\"bf16\", \"block_size\" : 64,\n\t\"topk\":16,\"softmax_scale\":0.125,"
        "\"causal\":true,\"paged\":false,\"x\":null,\"\":7,"
        "\"arr\":[1,-2.5e3,0,-0,1E+2,0.1,1e-400,[],{}]}\r\n";
    msa_json j;
    msa_err e = {{0}};
    CU_ASSERT_EQUAL_FATAL(parse(doc, &j, &e), MSA_OK);
    CU_ASSERT_EQUAL(j.type, MSA_JSON_OBJ);
    CU_ASSERT_EQUAL(j.n, 9);
    const msa_json *v = msa_json_get(&j, "dtype");
    CU_ASSERT(v && v->type == MSA_JSON_STR && strcmp(v->str, "bf16") == 0);
    v = msa_json_get(&j, "block_size");
    CU_ASSERT(v && v->type == MSA_JSON_NUM && v->num == 64.0);
    v = msa_json_get(&j, "softmax_scale");
    CU_ASSERT(v && v->num == 0.125);
    v = msa_json_get(&j, "causal");
    CU_ASSERT(v && v->type == MSA_JSON_BOOL && v->boolean == 1);
    v = msa_json_get(&j, "paged");
    CU_ASSERT(v && v->type == MSA_JSON_BOOL && v->boolean == 0);
    v = msa_json_get(&j, "x");
    CU_ASSERT(v && v->type == MSA_JSON_NULL);
    v = msa_json_get(&j, "");
    CU_ASSERT(v && v->num == 7.0);
    CU_ASSERT_PTR_NULL(msa_json_get(&j, "missing"));
    CU_ASSERT_PTR_NULL(msa_json_get(v, "dtype")); /* not an object */
    v = msa_json_get(&j, "arr");
    CU_ASSERT_FATAL(v && v->type == MSA_JSON_ARR && v->n == 9);
    CU_ASSERT_EQUAL(v->items[0].num, 1.0);
    CU_ASSERT_EQUAL(v->items[1].num, -2500.0);
    CU_ASSERT(v->items[3].num == 0.0 && signbit(v->items[3].num));
    CU_ASSERT_EQUAL(v->items[4].num, 100.0);
    CU_ASSERT_EQUAL(v->items[5].num, 0.1); /* correctly rounded decimal conversion */
    CU_ASSERT_EQUAL(v->items[6].num, 0.0); /* underflow is accepted */
    CU_ASSERT(v->items[7].type == MSA_JSON_ARR && v->items[7].n == 0);
    CU_ASSERT(v->items[8].type == MSA_JSON_OBJ && v->items[8].n == 0);
    msa_json_free(&j);
    CU_ASSERT_EQUAL(j.n, 0);
    msa_json_free(&j); /* freeing twice is harmless */
}

static void test_strings(void)
{
    msa_json j;
    msa_err e = {{0}};
    CU_ASSERT_EQUAL_FATAL(parse("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", &j, &e), MSA_OK);
    CU_ASSERT_STRING_EQUAL(j.str, "\"\\/\b\f\n\r\t");
    msa_json_free(&j);
    /* U+00E9, U+20AC, U+1F600 via a surrogate pair; U+10FFFF is the last code point */
    CU_ASSERT_EQUAL_FATAL(parse("\"\\u00e9\\u20AC\\uD83D\\uDE00\\uDBFF\\uDFFF\"", &j, &e), MSA_OK);
    CU_ASSERT_STRING_EQUAL(j.str, "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF");
    msa_json_free(&j);
    /* raw UTF-8 passes through unchanged; "" is an empty, allocated string */
    CU_ASSERT_EQUAL_FATAL(parse("[\"\xC3\xA9\xF0\x9F\x98\x80\", \"\"]", &j, &e), MSA_OK);
    CU_ASSERT_STRING_EQUAL(j.items[0].str, "\xC3\xA9\xF0\x9F\x98\x80");
    CU_ASSERT(j.items[1].str && j.items[1].str[0] == 0);
    msa_json_free(&j);
    CU_ASSERT_EQUAL_FATAL(parse("\"\\u0041\\u007f\\u0080\\u07FF\\u0800\\uFFFF\"", &j, &e), MSA_OK);
    CU_ASSERT_STRING_EQUAL(j.str, "A\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF");
    msa_json_free(&j);
}

static void test_scalars_and_depth(void)
{
    msa_json j;
    msa_err e = {{0}};
    CU_ASSERT(parse("42", &j, &e) == MSA_OK && j.type == MSA_JSON_NUM && j.num == 42.0);
    msa_json_free(&j);
    CU_ASSERT(parse(" true ", &j, &e) == MSA_OK && j.type == MSA_JSON_BOOL && j.boolean);
    msa_json_free(&j);
    CU_ASSERT(parse("null", &j, &e) == MSA_OK && j.type == MSA_JSON_NULL);
    msa_json_free(&j);
    CU_ASSERT(parse("-1.5E-3", &j, &e) == MSA_OK && j.num == -1.5e-3);
    msa_json_free(&j);
    char deep[2 * 64 + 1];
    for (int i = 0; i < 64; i++) deep[i] = '[', deep[64 + i] = ']';
    deep[128] = 0;
    CU_ASSERT_EQUAL(parse(deep, &j, &e), MSA_OK); /* exactly the limit */
    msa_json_free(&j);
    /* a long array exercises growth */
    size_t n = 20000, len = 0;
    char *big = malloc(4 * n + 3);
    big[len++] = '[';
    for (size_t i = 0; i < n; i++) len += (size_t)sprintf(big + len, i ? ",%zu" : "%zu", i % 10);
    big[len++] = ']';
    CU_ASSERT_EQUAL(msa_json_parse(big, len, "big", &j, &e), MSA_OK);
    CU_ASSERT(j.n == (int)n && j.items[n - 1].num == (double)((n - 1) % 10));
    msa_json_free(&j);
    free(big);
}

/* Malformed documents with the byte offset derived by hand (0-based). */
static const struct {
    const char *text;
    size_t len; /* 0: strlen */
    size_t at;
} BAD[] = {
    {"", 0, 0},                       /* nothing */
    {"   ", 0, 3},                    /* only whitespace */
    {"{", 0, 1},                      /* no key */
    {"[1,]", 0, 3},                   /* trailing comma */
    {"[1 2]", 0, 3},                  /* missing comma */
    {"{\"a\":1,}", 0, 7},             /* trailing comma in object */
    {"{\"a\" 1}", 0, 5},              /* missing colon */
    {"{1:2}", 0, 1},                  /* non-string key */
    {"{'a':2}", 0, 1},                /* single quotes */
    {"01", 0, 1},                     /* leading zero */
    {"1.", 0, 2},                     /* no fraction digits */
    {"1.e5", 0, 2},
    {"1e", 0, 2},                     /* no exponent digits */
    {"1e+", 0, 3},
    {"-", 0, 1},
    {"+1", 0, 0},
    {".5", 0, 0},
    {"NaN", 0, 0},
    {"Infinity", 0, 0},
    {"-Infinity", 0, 1},
    {"0x10", 0, 1},                   /* trailing garbage after 0 */
    {"1e999", 0, 0},                  /* overflows a double */
    {"tru", 0, 0},
    {"nul", 0, 0},
    {"True", 0, 0},
    {"[1] x", 0, 4},                  /* trailing garbage */
    {"{\"a\":1}}", 0, 7},
    {"[1]\n[2]", 0, 4},               /* two values */
    {"\"abc", 0, 0},                  /* unterminated string */
    {"\"a\x01\"", 0, 2},              /* raw control character */
    {"\"a\nb\"", 0, 2},
    {"\"\\x\"", 0, 2},                /* invalid escape */
    {"\"\\u12\"", 0, 3},              /* truncated \u */
    {"\"\\u12G4\"", 0, 3},            /* bad hex */
    {"\"\\uD800\"", 0, 1},            /* lone high surrogate */
    {"\"\\uDC00\"", 0, 1},            /* lone low surrogate */
    {"\"\\uD800\\u0041\"", 0, 1},     /* high + non-low */
    {"\"\\u0000\"", 0, 1},            /* NUL cannot live in a C string */
    {"\"\xC3\x28\"", 0, 1},           /* bad continuation byte */
    {"\"\xED\xA0\x80\"", 0, 1},       /* UTF-8-encoded surrogate */
    {"\"\xC0\xAF\"", 0, 1},           /* overlong */
    {"\"\xF4\x90\x80\x80\"", 0, 1},   /* above U+10FFFF */
    {"\"\xE2\x82\"", 0, 1},           /* truncated sequence */
    {"\xEF\xBB\xBF{}", 0, 0},         /* byte order mark */
    {"[1,\0]", 5, 3},                 /* raw NUL byte */
    {"{\"a\":1,\"b\":2,\"a\":3}", 0, 0}, /* duplicate key (rejected, documented) */
    {"[{\"k\":[],\"k\":{}}]", 0, 1},  /* duplicate key inside */
    {"/*c*/1", 0, 0},                 /* comments are not JSON */
    {"[1,2", 0, 4},                   /* unterminated array */
};

static void test_malformed(void)
{
    long bad = 0;
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        msa_json j;
        msa_err e = {{0}};
        size_t len = BAD[i].len ? BAD[i].len : strlen(BAD[i].text);
        int rc = msa_json_parse(BAD[i].text, len, "case.npz:config", &j, &e);
        char want[64];
        snprintf(want, sizeof want, "case.npz:config: byte %zu: ", BAD[i].at);
        int ok = rc == MSA_EINPUT && strncmp(e.msg, want, strlen(want)) == 0 && j.n == 0 &&
                 j.items == NULL && j.str == NULL;
        if (!ok) {
            bad++;
            fprintf(stderr, "\n  json bad case %zu: rc %d msg \"%s\" want prefix \"%s\"", i, rc,
                    e.msg, want);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_limits(void)
{
    msa_json j;
    msa_err e = {{0}};
    char deep[2 * 65 + 1];
    for (int i = 0; i < 65; i++) deep[i] = '[', deep[65 + i] = ']';
    deep[130] = 0;
    CU_ASSERT_EQUAL(parse(deep, &j, &e), MSA_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "cfg.json: byte 64: nesting"));
    size_t n = ((size_t)16 << 20) + 1; /* one byte over the documented 16 MiB limit */
    char *big = malloc(n);
    CU_ASSERT_FATAL(big != NULL);
    memset(big, ' ', n);
    big[0] = '0';
    CU_ASSERT_EQUAL(msa_json_parse(big, n, "big.json", &j, &e), MSA_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "big.json: byte 0:"));
    CU_ASSERT_EQUAL(msa_json_parse(big, n - 1, "big.json", &j, &e), MSA_OK); /* at the limit */
    msa_json_free(&j);
    free(big);
    CU_ASSERT_EQUAL(msa_json_parse(NULL, 0, "empty", &j, &e), MSA_EINPUT);
}

/* Every proper prefix of an object document is invalid; random one-byte mutations give
 * either OK or EINPUT with a labelled message, never a crash or a leak (ASan build). */
static void test_truncations_and_mutations(void)
{
    const char *doc = "{\"dtype\":\"fp16\",\"k\":[1,2.5,{\"z\":\"\\u00e9\\uD83D\\uDE00\"}],"
                      "\"t\":true,\"n\":null}";
    size_t len = strlen(doc);
    long bad = 0;
    msa_json j;
    msa_err e;
    for (size_t l = 0; l < len; l++) {
        if (msa_json_parse(doc, l, "t", &j, &e) != MSA_EINPUT) bad++;
        msa_json_free(&j);
    }
    CU_ASSERT_EQUAL(bad, 0);
    char buf[256];
    uint64_t st = 88172645463325252u; /* fixed xorshift seed (Marsaglia 2003), printed */
    printf("[json mutation seed %llu] ", (unsigned long long)st);
    long ok = 0, einput = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(buf, doc, len);
        for (int m = 0; m < 1 + it % 3; m++) {
            st ^= st << 13, st ^= st >> 7, st ^= st << 17;
            buf[st % len] = (char)(st >> 32);
        }
        int rc = msa_json_parse(buf, len, "m", &j, &e);
        if (rc == MSA_OK) ok++;
        else if (rc == MSA_EINPUT && strncmp(e.msg, "m: byte ", 8) == 0) einput++;
        msa_json_free(&j);
    }
    CU_ASSERT_EQUAL(ok + einput, 20000);
    CU_ASSERT(einput > 0 && ok > 0); /* both outcomes occur: the mutations do reach the parser */
}

int msa_suite_json(void)
{
    CU_pSuite s = CU_add_suite("json", NULL, NULL);
    if (!s) return -1;
    if (!CU_add_test(s, "valid config document", test_valid_config) ||
        !CU_add_test(s, "strings, escapes, surrogates", test_strings) ||
        !CU_add_test(s, "scalars, depth 64, growth", test_scalars_and_depth) ||
        !CU_add_test(s, "malformed: EINPUT at the right byte", test_malformed) ||
        !CU_add_test(s, "depth and size limits", test_limits) ||
        !CU_add_test(s, "truncations and mutations", test_truncations_and_mutations))
        return -1;
    return 0;
}
