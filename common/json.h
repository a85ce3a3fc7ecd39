/* json.h - a small strict JSON reader for case configs and small metadata: objects,
 * arrays, strings (with \u escapes to UTF-8), numbers, true/false/null.  Depth and size
 * are bounded (depth 64, 16 MiB); duplicate keys are rejected; malformed text gives
 * MSA_EINPUT with the byte offset. */
#ifndef MSA_JSON_H
#define MSA_JSON_H

#include "msa_common.h"

typedef enum { MSA_JSON_NULL, MSA_JSON_BOOL, MSA_JSON_NUM, MSA_JSON_STR, MSA_JSON_ARR, MSA_JSON_OBJ } msa_json_type;

typedef struct msa_json {
    msa_json_type type;
    double num;  /* NUM */
    int boolean; /* BOOL */
    char *str;   /* STR (NUL-terminated, may not contain NUL) */
    int n;       /* ARR/OBJ element count */
    char **keys; /* OBJ keys */
    struct msa_json *items;
} msa_json;

int msa_json_parse(const char *text, size_t len, const char *label, msa_json *out, msa_err *e);
const msa_json *msa_json_get(const msa_json *obj, const char *key); /* NULL if absent */
void msa_json_free(msa_json *j);

#endif
