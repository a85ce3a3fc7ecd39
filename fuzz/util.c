/* util.c - small helpers of the fuzzer: a content hash of a case (FNV-1a 64 over its
 * configuration, lengths, page table and tensor bytes) used for corpus file names and for
 * deterministic row sampling.  Not a cryptographic hash: names only need to differ. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_int.h"

#define FNV_OFFSET UINT64_C(0xcbf29ce484222325) /* FNV-1a 64-bit parameters (Fowler/Noll/Vo) */
#define FNV_PRIME UINT64_C(0x100000001b3)

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

uint64_t fz_hash_case(const msa_case *c)
{
    uint64_t h = FNV_OFFSET;
    char *cfg = msa_case_config_json(c);
    if (cfg) h = fnv(h, cfg, strlen(cfg));
    free(cfg);
    int dims[8] = {c->batch, c->Tq, c->Tk, c->Hq, c->Hkv, c->D, c->DI, c->max_blocks};
    h = fnv(h, dims, sizeof dims);
    h = fnv(h, c->cu_q, sizeof(int32_t) * (size_t)(c->batch + 1));
    h = fnv(h, c->cu_k, sizeof(int32_t) * (size_t)(c->batch + 1));
    if (c->page_table) h = fnv(h, c->page_table, sizeof(int32_t) * (size_t)c->batch * c->max_blocks);
    size_t es = msa_dtype_size(c->dtype), ies = msa_dtype_size(c->index_dtype);
    h = fnv(h, c->q, es * c->Tq * c->Hq * c->D);
    h = fnv(h, c->k, es * c->Tk * c->Hkv * c->D);
    h = fnv(h, c->v, es * c->Tk * c->Hkv * c->D);
    h = fnv(h, c->index_q, ies * c->Tq * c->HI * c->DI);
    h = fnv(h, c->index_k, ies * c->Tk * c->DI);
    return h;
}
