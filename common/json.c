/* json.c - a strict RFC 8259 JSON reader for case configs and small metadata.
 *
 * Strict means: one value (any type) surrounded only by JSON whitespace; no comments,
 * no trailing commas, no NaN/Infinity, no leading zeros or '+', no single quotes; strings
 * must be valid UTF-8 without raw control characters; \u escapes are decoded to UTF-8 with
 * surrogate pairs combined, and lone surrogates and \u0000 are rejected (the result is a
 * NUL-terminated C string).  Numbers that overflow a double are rejected.
 * Duplicate keys in one object are REJECTED (RFC 8259 leaves them undefined; a config
 * with two "topk" entries is a mistake worth reporting).
 * A UTF-8 byte order mark is rejected (RFC 8259 section 8.1: senders must not add one).
 * Limits: nesting depth MSA_JSON_MAX_DEPTH, text size MSA_JSON_MAX_BYTES.
 * Every error is MSA_EINPUT with "LABEL: byte N: problem" (N is the 0-based offset).
 * It deliberately does not write JSON, keep key order metadata beyond the arrays, or
 * preserve number spelling. */
#include "json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MSA_JSON_MAX_DEPTH 64               /* configs nest 2-3 levels; 64 is generous */
#define MSA_JSON_MAX_BYTES ((size_t)16 << 20) /* configs are a few hundred bytes */
#define NUM_MAX_CHARS 512                   /* longest number spelling accepted */

typedef struct {
    const unsigned char *s;
    size_t len, pos;
    const char *label;
    msa_err *e;
    int depth;
} parser;

static int perr(parser *p, const char *what)
{
    return msa_fail(p->e, MSA_EINPUT, "%s: byte %zu: %s", p->label, p->pos, what);
}

static int nomem(parser *p)
{
    return msa_fail(p->e, MSA_ENOMEM, "%s: byte %zu: out of memory", p->label, p->pos);
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int peek(parser *p) { return p->pos < p->len ? p->s[p->pos] : -1; }

static int parse_value(parser *p, msa_json *out);

/* ---- strings */
typedef struct {
    char *s;
    size_t n, cap;
} strbuf;

static int sb_put(strbuf *b, unsigned char c)
{
    if (b->n + 1 >= b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 32;
        char *ns = realloc(b->s, cap);
        if (!ns) return -1;
        b->s = ns;
        b->cap = cap;
    }
    b->s[b->n++] = (char)c;
    b->s[b->n] = 0;
    return 0;
}

static int put_utf8(strbuf *b, unsigned long cp)
{
    int r = 0;
    if (cp < 0x80) return sb_put(b, (unsigned char)cp);
    if (cp < 0x800) {
        r |= sb_put(b, (unsigned char)(0xC0 | cp >> 6));
    } else if (cp < 0x10000) {
        r |= sb_put(b, (unsigned char)(0xE0 | cp >> 12));
        r |= sb_put(b, (unsigned char)(0x80 | (cp >> 6 & 0x3F)));
    } else {
        r |= sb_put(b, (unsigned char)(0xF0 | cp >> 18));
        r |= sb_put(b, (unsigned char)(0x80 | (cp >> 12 & 0x3F)));
        r |= sb_put(b, (unsigned char)(0x80 | (cp >> 6 & 0x3F)));
    }
    return r | sb_put(b, (unsigned char)(0x80 | (cp & 0x3F)));
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates,
 * <= U+10FFFF), or 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    unsigned long cp, min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (n > avail) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

static int hex4(parser *p, unsigned long *v)
{
    *v = 0;
    if (p->len - p->pos < 4) return perr(p, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        int c = p->s[p->pos + (size_t)i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return perr(p, "bad hex digit in \\u escape");
        *v = *v << 4 | (unsigned long)d;
    }
    p->pos += 4;
    return MSA_OK;
}

/* After "\u": reads one code point, combining a surrogate pair. */
static int parse_u_escape(parser *p, unsigned long *cp)
{
    size_t at = p->pos - 2;
    int rc = hex4(p, cp);
    if (rc) return rc;
    if (*cp >= 0xDC00 && *cp <= 0xDFFF) return p->pos = at, perr(p, "lone low surrogate");
    if (*cp >= 0xD800 && *cp <= 0xDBFF) {
        unsigned long lo;
        if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
            return p->pos = at, perr(p, "high surrogate without a low surrogate");
        p->pos += 2;
        if ((rc = hex4(p, &lo))) return rc;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return p->pos = at, perr(p, "high surrogate without a low surrogate");
        *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (*cp == 0) return p->pos = at, perr(p, "\\u0000 is not allowed in strings");
    return MSA_OK;
}

static int parse_escape(parser *p, strbuf *b)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    int c = peek(p);
    const char *hit = c > 0 ? strchr(from, c) : NULL;
    p->pos++;
    if (hit) return sb_put(b, (unsigned char)to[hit - from]) ? nomem(p) : MSA_OK;
    if (c != 'u') return p->pos--, perr(p, "invalid escape");
    unsigned long cp;
    int rc = parse_u_escape(p, &cp);
    if (rc) return rc;
    return put_utf8(b, cp) ? nomem(p) : MSA_OK;
}

/* At the opening quote; on success *out owns a NUL-terminated string. */
static int parse_string(parser *p, char **out)
{
    strbuf b = {NULL, 0, 0};
    size_t start = p->pos++;
    int rc = MSA_OK;
    if (sb_put(&b, 0) == 0) b.n = 0; /* allocate so "" gives a real empty string */
    else return nomem(p);
    for (;;) {
        if (p->pos >= p->len) { p->pos = start; rc = perr(p, "unterminated string"); break; }
        unsigned char c = p->s[p->pos];
        if (c == '"') { p->pos++; break; }
        if (c < 0x20) { rc = perr(p, "control character in string"); break; }
        if (c == '\\') {
            p->pos++;
            if ((rc = parse_escape(p, &b))) break;
            continue;
        }
        size_t n = utf8_len(p->s + p->pos, p->len - p->pos);
        if (!n) { rc = perr(p, "invalid UTF-8 in string"); break; }
        for (size_t i = 0; i < n && rc == MSA_OK; i++)
            if (sb_put(&b, p->s[p->pos + i])) rc = nomem(p);
        if (rc) break;
        p->pos += n;
    }
    if (rc) { free(b.s); return rc; }
    *out = b.s;
    return MSA_OK;
}

/* ---- numbers: the RFC 8259 grammar, then strtod on a NUL-terminated copy */
static size_t digits(parser *p)
{
    size_t n = 0;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++, n++;
    return n;
}

static int parse_number(parser *p, double *out)
{
    size_t start = p->pos;
    char buf[NUM_MAX_CHARS + 1];
    if (peek(p) == '-') p->pos++;
    if (peek(p) == '0') {
        p->pos++;
        if (peek(p) >= '0' && peek(p) <= '9') return perr(p, "leading zero in number");
    } else if (!digits(p)) {
        return perr(p, "expected a digit");
    }
    if (peek(p) == '.') {
        p->pos++;
        if (!digits(p)) return perr(p, "expected a digit after '.'");
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        p->pos++;
        if (peek(p) == '+' || peek(p) == '-') p->pos++;
        if (!digits(p)) return perr(p, "expected a digit in the exponent");
    }
    size_t n = p->pos - start;
    if (n > NUM_MAX_CHARS) return p->pos = start, perr(p, "number too long");
    memcpy(buf, p->s + start, n);
    buf[n] = 0;
    errno = 0;
    *out = strtod(buf, NULL);
    /* ERANGE with a huge result is overflow; underflow to 0 or a subnormal is accepted */
    if (errno == ERANGE && (*out > 1.0 || *out < -1.0))
        return p->pos = start, perr(p, "number out of the range of a double");
    return MSA_OK;
}

/* ---- containers */
static int grow(parser *p, msa_json *j, int *cap, int with_keys)
{
    if (j->n < *cap) return MSA_OK;
    int ncap = *cap ? 2 * *cap : 4;
    if (ncap > (1 << 28)) return nomem(p);
    msa_json *it = realloc(j->items, (size_t)ncap * sizeof *it);
    if (!it) return nomem(p);
    j->items = it;
    if (with_keys) {
        char **k = realloc(j->keys, (size_t)ncap * sizeof *k);
        if (!k) return nomem(p);
        j->keys = k;
    }
    *cap = ncap;
    return MSA_OK;
}

static int parse_array(parser *p, msa_json *j)
{
    int cap = 0, rc;
    j->type = MSA_JSON_ARR;
    p->pos++;
    skip_ws(p);
    if (peek(p) == ']') return p->pos++, MSA_OK;
    for (;;) {
        if ((rc = grow(p, j, &cap, 0))) return rc;
        skip_ws(p);
        j->n++; /* counted before parsing so that a half-parsed item is freed too */
        if ((rc = parse_value(p, &j->items[j->n - 1]))) return rc;
        skip_ws(p);
        int c = peek(p);
        p->pos++;
        if (c == ']') return MSA_OK;
        if (c != ',') return p->pos--, perr(p, "expected ',' or ']' in array");
    }
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts a copy of the key pointers: O(n log n) even for huge objects. */
static int check_duplicates(parser *p, const msa_json *j, size_t obj_start)
{
    if (j->n < 2) return MSA_OK;
    char **k = malloc((size_t)j->n * sizeof *k);
    if (!k) return nomem(p);
    memcpy(k, j->keys, (size_t)j->n * sizeof *k);
    qsort(k, (size_t)j->n, sizeof *k, cmp_keys);
    int dup = -1;
    for (int i = 1; i < j->n && dup < 0; i++)
        if (strcmp(k[i - 1], k[i]) == 0) dup = i;
    int rc = MSA_OK;
    if (dup >= 0) {
        p->pos = obj_start;
        rc = msa_fail(p->e, MSA_EINPUT, "%s: byte %zu: duplicate key \"%.64s\" in object",
                      p->label, obj_start, k[dup]);
    }
    free(k);
    return rc;
}

static int parse_object(parser *p, msa_json *j)
{
    int cap = 0, rc;
    size_t start = p->pos;
    j->type = MSA_JSON_OBJ;
    p->pos++;
    skip_ws(p);
    if (peek(p) == '}') return p->pos++, MSA_OK;
    for (;;) {
        if ((rc = grow(p, j, &cap, 1))) return rc;
        skip_ws(p);
        if (peek(p) != '"') return perr(p, "expected a string key");
        char *key;
        if ((rc = parse_string(p, &key))) return rc;
        j->keys[j->n] = key;
        memset(&j->items[j->n], 0, sizeof j->items[0]); /* a failed value frees cleanly */
        j->n++;
        skip_ws(p);
        if (peek(p) != ':') return perr(p, "expected ':' after key");
        p->pos++;
        skip_ws(p);
        if ((rc = parse_value(p, &j->items[j->n - 1]))) return rc;
        skip_ws(p);
        int c = peek(p);
        p->pos++;
        if (c == '}') return check_duplicates(p, j, start);
        if (c != ',') return p->pos--, perr(p, "expected ',' or '}' in object");
    }
}

static int parse_literal(parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return perr(p, "invalid literal");
    p->pos += n;
    return MSA_OK;
}

static int parse_value(parser *p, msa_json *out)
{
    int c = peek(p), rc;
    memset(out, 0, sizeof *out);
    if (c < 0) return perr(p, "unexpected end of text");
    if (c == '{' || c == '[') {
        if (p->depth >= MSA_JSON_MAX_DEPTH) return perr(p, "nesting deeper than 64");
        p->depth++;
        rc = c == '{' ? parse_object(p, out) : parse_array(p, out);
        p->depth--;
        return rc;
    }
    if (c == '"') return out->type = MSA_JSON_STR, parse_string(p, &out->str);
    if (c == '-' || (c >= '0' && c <= '9')) return out->type = MSA_JSON_NUM, parse_number(p, &out->num);
    if (c == 't') return out->type = MSA_JSON_BOOL, out->boolean = 1, parse_literal(p, "true");
    if (c == 'f') return out->type = MSA_JSON_BOOL, parse_literal(p, "false");
    if (c == 'n') return out->type = MSA_JSON_NULL, parse_literal(p, "null");
    return perr(p, "unexpected character");
}

int msa_json_parse(const char *text, size_t len, const char *label, msa_json *out, msa_err *e)
{
    parser p = {(const unsigned char *)text, len, 0, label ? label : "json", e, 0};
    memset(out, 0, sizeof *out);
    if (!text && len) return msa_fail(e, MSA_EINPUT, "%s: byte 0: no text", p.label);
    if (len > MSA_JSON_MAX_BYTES)
        return msa_fail(e, MSA_EINPUT, "%s: byte 0: %zu bytes exceed the %zu-byte limit",
                        p.label, len, MSA_JSON_MAX_BYTES);
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        return msa_fail(e, MSA_EINPUT, "%s: byte 0: byte order mark not allowed", p.label);
    skip_ws(&p);
    int rc = parse_value(&p, out);
    if (rc == MSA_OK) {
        skip_ws(&p);
        if (p.pos != p.len) rc = perr(&p, "trailing characters after the JSON value");
    }
    if (rc) msa_json_free(out);
    return rc;
}

const msa_json *msa_json_get(const msa_json *obj, const char *key)
{
    if (!obj || obj->type != MSA_JSON_OBJ || !key) return NULL;
    for (int i = 0; i < obj->n; i++)
        if (obj->keys[i] && strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

void msa_json_free(msa_json *j)
{
    if (!j) return;
    for (int i = 0; i < j->n; i++) {
        if (j->items) msa_json_free(&j->items[i]);
        if (j->keys) free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->str);
    memset(j, 0, sizeof *j);
}
