/* bpe.c - GPT-2 style byte-level BPE, as used by SmolLM2's GGUF (tokenizer.ggml.model
 * "gpt2", pre-tokenizer "smollm"): the text is split so that every digit stands alone,
 * then by GPT-2's pattern ('s 't 're 've 'm 'll 'd, " ?letters", " ?digits",
 * " ?other", whitespace runs that leave their last space to the next word), each piece's
 * bytes are mapped to GPT-2's printable alphabet and merged by rank.
 * Letters are ASCII letters and every byte >= 0x80 (an approximation of \p{L} that is
 * exact for ASCII text, which is all this suite feeds it).  Special tokens in the text
 * are not recognised: callers insert their ids. */
#include <stdlib.h>
#include <string.h>

#include "traces.h"

typedef struct {
    char **key;
    int *val;
    size_t cap;
} strmap;

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64-bit offset basis and prime */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int map_init(strmap *m, size_t n)
{
    m->cap = 16;
    while (m->cap < 2 * n + 16) m->cap *= 2;
    m->key = calloc(m->cap, sizeof *m->key);
    m->val = calloc(m->cap, sizeof *m->val);
    return m->key && m->val ? 0 : -1;
}

static void map_free(strmap *m)
{
    if (!m) return;
    free(m->key);
    free(m->val);
    free(m);
}

/* Keys are borrowed (they live in the tokenizer's arrays). First insertion wins. */
static void map_put(strmap *m, char *k, int v)
{
    size_t i = fnv(k, strlen(k)) & (m->cap - 1);
    while (m->key[i]) {
        if (!strcmp(m->key[i], k)) return;
        i = (i + 1) & (m->cap - 1);
    }
    m->key[i] = k;
    m->val[i] = v;
}

static int map_get(const strmap *m, const char *k, size_t n)
{
    size_t i = fnv(k, n) & (m->cap - 1);
    while (m->key[i]) {
        if (strlen(m->key[i]) == n && !memcmp(m->key[i], k, n)) return m->val[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68
 * bytes to U+0100.. in byte order.  Returns the code point. */
static unsigned byte_cp(unsigned b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return b;
    unsigned n = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
    return 256 + n;
}

static int put_utf8(unsigned cp, char *o)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 63));
    return 2; /* byte_cp never exceeds U+0143 */
}

int msa_bpe_init(msa_bpe *b, char **tokens, const int *types, int ntok, char **merges, int nmerge, msa_err *e)
{
    memset(b, 0, sizeof *b);
    strmap *tm = calloc(1, sizeof *tm), *rm = calloc(1, sizeof *rm);
    b->special = calloc(ntok > 0 ? (size_t)ntok : 1, sizeof *b->special);
    if (!tm || !rm || !b->special || map_init(tm, (size_t)ntok) || map_init(rm, (size_t)nmerge)) {
        map_free(tm);
        map_free(rm);
        free(b->special);
        return msa_fail(e, MSA_ENOMEM, "tokenizer: out of memory");
    }
    for (int i = 0; i < ntok; i++) {
        if (!tokens[i]) return msa_fail(e, MSA_EINPUT, "tokenizer: token %d missing", i);
        map_put(tm, tokens[i], i);
        b->special[i] = types && types[i] == 3;
    }
    for (int i = 0; i < nmerge; i++) {
        const char *sp = merges[i] ? strchr(merges[i], ' ') : NULL;
        if (!sp || sp == merges[i] || !sp[1] || strchr(sp + 1, ' ')) {
            map_free(tm);
            map_free(rm);
            free(b->special);
            memset(b, 0, sizeof *b);
            return msa_fail(e, MSA_EINPUT, "tokenizer: merges[%d]: expected \"LEFT RIGHT\"", i);
        }
        map_put(rm, merges[i], i);
    }
    b->nvocab = ntok;
    b->tok = tokens;
    b->map = tm;
    b->ranks = rm;
    b->nmerge = nmerge;
    return MSA_OK;
}

void msa_bpe_free(msa_bpe *b)
{
    map_free(b->map);
    map_free(b->ranks);
    free(b->special);
    memset(b, 0, sizeof *b);
}

int msa_bpe_find(const msa_bpe *b, const char *s) { return map_get(b->map, s, strlen(s)); }

/* ---------------------------------------------------------------- pre-tokenizer */

enum { C_L, C_N, C_S, C_P };
static int cls(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch >= 0x80) return C_L;
    if (ch >= '0' && ch <= '9') return C_N;
    if (ch == ' ' || (ch >= '\t' && ch <= '\r')) return C_S;
    return C_P;
}

/* Length of the GPT-2 pattern's match at s[i] within a segment of n bytes. */
static size_t match_len(const char *s, size_t i, size_t n)
{
    static const char *const contr[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (size_t c = 0; c < sizeof contr / sizeof *contr; c++) {
        size_t l = strlen(contr[c]);
        if (i + l <= n && !memcmp(s + i, contr[c], l)) return l;
    }
    size_t j = i;
    if (s[j] == ' ' && j + 1 < n && cls((unsigned char)s[j + 1]) != C_S) j++;
    int k = cls((unsigned char)s[j]);
    if (k != C_S) {
        while (j < n && cls((unsigned char)s[j]) == k) j++;
        return j - i;
    }
    while (j < n && cls((unsigned char)s[j]) == C_S) j++;
    if (j < n && j - i > 1) j--; /* \s+(?!\S): leave the last one to the next word */
    return j - i;
}

/* ---------------------------------------------------------------- BPE of one word */

typedef struct {
    char *s; /* symbol text (UTF-8 of the mapped bytes) */
    size_t n;
} sym;

static int rank_of(const msa_bpe *b, const sym *x, const sym *y, char *tmp)
{
    memcpy(tmp, x->s, x->n);
    tmp[x->n] = ' ';
    memcpy(tmp + x->n + 1, y->s, y->n);
    return map_get(b->ranks, tmp, x->n + 1 + y->n);
}

static int encode_word(const msa_bpe *b, const char *w, size_t n, int32_t *ids, int max, int count)
{
    char *buf = malloc(2 * n + 1), *tmp = malloc(4 * n + 2);
    sym *v = malloc(sizeof *v * (n ? n : 1));
    if (!buf || !tmp || !v) {
        free(buf); free(tmp); free(v);
        return -1;
    }
    size_t off = 0, m = n;
    for (size_t i = 0; i < n; i++) {
        v[i].s = buf + off;
        v[i].n = (size_t)put_utf8(byte_cp((unsigned char)w[i]), buf + off);
        off += v[i].n;
    }
    for (;;) { /* merge the lowest-ranked adjacent pair (leftmost on ties) */
        int best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < m; i++) {
            int r = rank_of(b, &v[i], &v[i + 1], tmp);
            if (r >= 0 && (best < 0 || r < best)) best = r, at = i;
        }
        if (best < 0) break;
        v[at].n += v[at + 1].n; /* neighbours are adjacent in buf, so merging is a length change */
        memmove(&v[at + 1], &v[at + 2], sizeof *v * (m - at - 2));
        m--;
    }
    for (size_t i = 0; i < m && count >= 0; i++) {
        int id = map_get(b->map, v[i].s, v[i].n);
        if (id < 0) { /* cannot happen with a byte-level vocabulary; keep going per byte */
            for (size_t k = 0; k < v[i].n && count >= 0; k++) {
                int one = map_get(b->map, v[i].s + k, 1);
                if (count >= max) count = -1;
                else if (one >= 0) ids[count++] = one;
            }
            continue;
        }
        if (count >= max) count = -1;
        else ids[count++] = id;
    }
    free(buf); free(tmp); free(v);
    return count;
}

int msa_bpe_encode(const msa_bpe *b, const char *text, size_t len, int32_t *ids, int max_ids)
{
    int count = 0;
    size_t seg = 0;
    while (seg < len && count >= 0) {
        /* digit pre-split: a digit is its own segment, else a run without digits */
        size_t end = seg + 1;
        if (cls((unsigned char)text[seg]) != C_N)
            while (end < len && cls((unsigned char)text[end]) != C_N) end++;
        for (size_t i = seg; i < end && count >= 0;) {
            size_t l = match_len(text + seg, i - seg, end - seg);
            count = encode_word(b, text + i, l, ids, max_ids, count);
            i += l;
        }
        seg = end;
    }
    return count;
}

int msa_bpe_decode(const msa_bpe *b, int32_t id, char *buf, size_t n)
{
    if (id < 0 || id >= b->nvocab || n == 0) return 0;
    const unsigned char *s = (const unsigned char *)b->tok[id];
    size_t o = 0;
    while (*s && o + 1 < n) {
        unsigned cp = *s++;
        if (cp >= 0xC0 && (*s & 0xC0) == 0x80) cp = ((cp & 0x1F) << 6) | (*s++ & 63);
        int byte = -1;
        for (unsigned x = 0; x < 256 && byte < 0; x++)
            if (byte_cp(x) == cp) byte = (int)x;
        buf[o++] = (char)(byte >= 0 ? byte : '?');
    }
    buf[o] = 0;
    return (int)o;
}
