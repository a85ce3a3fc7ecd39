/* harness.c - opening backends: the registry of in-process backends (cpu-sim and its
 * variants built in, others through msa_kernel_register), the plugin loader (a path, or
 * "cuda" = libmsa_cuda.so next to the running executable or $MSA_CUDA_LIB, optionally
 * "LIB:VARIANT" through msa_backend_variant_v1) and the checks a table must pass before
 * anything calls it.  Running a backend on a case is harness_run.c.  It judges nothing. */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpusim.h"
#include "harness.h"

#define HARNESS_MAX_REGISTERED 64
#define HARNESS_CUDA_LIB "libmsa_cuda.so"

static struct {
    char name[128];
    const msa_backend *be;
} g_reg[HARNESS_MAX_REGISTERED];
static int g_nreg;
static pthread_mutex_t g_reg_lock = PTHREAD_MUTEX_INITIALIZER;

/* The checks every table passes; label names the library or backend in the message. */
static int check_backend(const msa_backend *be, const char *label, msa_err *e)
{
    if (be->abi_version != MSA_ABI_VERSION)
        return msa_fail(e, MSA_EINPUT, "%s: abi_version %u, this suite speaks %u (rebuild against kernels/msa_abi.h)",
                        label, (unsigned)be->abi_version, (unsigned)MSA_ABI_VERSION);
    const char *missing = !be->name ? "name" : !be->last_error ? "last_error" : !be->supports ? "supports"
                          : !be->select ? "select" : !be->attend ? "attend" : !be->forward ? "forward" : NULL;
    if (missing) return msa_fail(e, MSA_EINPUT, "%s: required entry '%s' is NULL", label, missing);
    if (be->mem != MSA_MEM_HOST && be->mem != MSA_MEM_DEVICE)
        return msa_fail(e, MSA_EINPUT, "%s: mem is %d, neither MSA_MEM_HOST nor MSA_MEM_DEVICE", label, (int)be->mem);
    if (be->mem == MSA_MEM_DEVICE) {
        missing = !be->dev_alloc ? "dev_alloc" : !be->dev_free ? "dev_free" : !be->copy_to_dev ? "copy_to_dev"
                  : !be->copy_to_host ? "copy_to_host" : !be->sync ? "sync" : NULL;
        if (missing)
            return msa_fail(e, MSA_EINPUT, "%s: device backend (mem = MSA_MEM_DEVICE) without the memory callback '%s'",
                            label, missing);
    }
    msa_dtype od = be->arith.out_dtype, pd = be->arith.p_dtype;
    if (od != MSA_DT_INVALID && od != MSA_DT_BF16 && od != MSA_DT_FP16 && od != MSA_DT_FP32)
        return msa_fail(e, MSA_EINPUT, "%s: arith.out_dtype must be BF16, FP16, FP32 or 0 (follows the input)", label);
    if (pd != MSA_DT_INVALID && pd != MSA_DT_BF16 && pd != MSA_DT_FP16 && pd != MSA_DT_FP32)
        return msa_fail(e, MSA_EINPUT, "%s: arith.p_dtype must be BF16, FP16, FP32 or 0 (follows the input)", label);
    return 0;
}

int msa_kernel_register(const char *name, const msa_backend *be)
{
    msa_err e;
    if (!name || !be || strlen(name) >= sizeof g_reg[0].name || check_backend(be, name, &e)) return MSA_EINPUT;
    pthread_mutex_lock(&g_reg_lock);
    int rc = MSA_ENOMEM, i;
    for (i = 0; i < g_nreg && strcmp(g_reg[i].name, name); i++) continue;
    if (i < HARNESS_MAX_REGISTERED) { /* a second registration replaces the first */
        snprintf(g_reg[i].name, sizeof g_reg[i].name, "%s", name);
        g_reg[i].be = be;
        if (i == g_nreg) g_nreg++;
        rc = 0;
    }
    pthread_mutex_unlock(&g_reg_lock);
    return rc;
}

static const msa_backend *find_registered(const char *name)
{
    const msa_backend *be = NULL;
    pthread_mutex_lock(&g_reg_lock);
    for (int i = 0; i < g_nreg && !be; i++)
        if (!strcmp(g_reg[i].name, name)) be = g_reg[i].be;
    pthread_mutex_unlock(&g_reg_lock);
    return be;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* build/libmsa_cuda.so lives next to build/msa (and build/test_msa). */
static int cuda_path(char *out, size_t n, msa_err *e)
{
    const char *env = getenv("MSA_CUDA_LIB");
    if (env && *env) {
        snprintf(out, n, "%s", env);
    } else {
        char exe[PATH_MAX];
        ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (len <= 0) return msa_fail(e, MSA_EINPUT, "cuda: cannot read /proc/self/exe to find %s; set MSA_CUDA_LIB",
                                      HARNESS_CUDA_LIB);
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) slash[1] = '\0';
        snprintf(out, n, "%s%s", slash ? exe : "./", HARNESS_CUDA_LIB);
    }
    if (!is_file(out))
        return msa_fail(e, MSA_EINPUT, "cuda: %s: not found (build it with make where nvcc exists, or set MSA_CUDA_LIB)",
                        out);
    return 0;
}

static int load_plugin(const char *path, const char *variant, msa_kernel *k, msa_err *e)
{
    char lib[PATH_MAX + 2];
    /* dlopen searches the library path for a bare name: a file in the cwd needs "./" */
    snprintf(lib, sizeof lib, "%s%s", strchr(path, '/') ? "" : "./", path);
    dlerror();
    void *dl = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *why = dlerror();
        return msa_fail(e, MSA_EINPUT, "%s: cannot load the plugin: %s", path, why ? why : "dlopen failed");
    }
    const msa_backend *be = NULL;
    const char *sym = variant ? MSA_BACKEND_VARIANT_SYMBOL : MSA_BACKEND_SYMBOL;
    void *fn = dlsym(dl, sym);
    if (!fn) {
        dlclose(dl);
        return msa_fail(e, MSA_EINPUT, "%s: missing symbol %s%s", path, sym,
                        variant ? " (the library has no variants)" : " (not an MSA backend plugin?)");
    }
    /* dlsym returns data pointers; POSIX guarantees the conversion for functions */
    if (variant) {
        msa_backend_variant_fn vf;
        memcpy(&vf, &fn, sizeof vf);
        be = vf(variant);
    } else {
        msa_backend_entry_fn ef;
        memcpy(&ef, &fn, sizeof ef);
        be = ef();
    }
    if (!be) {
        dlclose(dl);
        if (variant) return msa_fail(e, MSA_EINPUT, "%s: unknown variant '%s'", path, variant);
        return msa_fail(e, MSA_EINPUT, "%s: %s() returned NULL", path, sym);
    }
    int rc = check_backend(be, path, e);
    if (rc) {
        dlclose(dl);
        return rc;
    }
    k->be = be;
    k->dl = dl;
    return 0;
}

/* Splits "LIB:VARIANT" at the last ':' when LIB is an existing file. */
static int open_path(const char *name, msa_kernel *k, msa_err *e)
{
    if (is_file(name)) return load_plugin(name, NULL, k, e);
    const char *colon = strrchr(name, ':');
    if (colon && colon[1] && !strchr(colon, '/')) {
        char lib[PATH_MAX];
        size_t n = (size_t)(colon - name);
        if (n < sizeof lib) {
            memcpy(lib, name, n);
            lib[n] = '\0';
            if (is_file(lib)) return load_plugin(lib, colon + 1, k, e);
        }
    }
    return msa_fail(e, MSA_EINPUT, "%s: no such backend (cpu-sim[:VARIANT], cuda[:VARIANT], a registered name, or a path to a plugin .so)",
                    name);
}

static int resolve(const char *name, msa_kernel *k, msa_err *e)
{
    const msa_backend *be = find_registered(name);
    if (be) {
        k->be = be;
        return 0;
    }
    if (!strcmp(name, "cpu-sim") || !strncmp(name, "cpu-sim:", 8)) {
        be = msa_cpusim_variant(name[7] ? name + 8 : "none");
        if (!be) return msa_fail(e, MSA_EINPUT, "%s: unknown cpu-sim variant '%s' (`msa kernels` lists them)", name, name + 8);
        k->be = be;
        return check_backend(be, name, e);
    }
    if (!strcmp(name, "cuda") || !strncmp(name, "cuda:", 5)) {
        char path[PATH_MAX];
        int rc = cuda_path(path, sizeof path, e);
        return rc ? rc : load_plugin(path, name[4] ? name + 5 : NULL, k, e);
    }
    return open_path(name, k, e);
}

int msa_kernel_open(const char *name, msa_kernel *k, msa_err *e)
{
    if (!k) return msa_fail(e, MSA_EINTERNAL, "msa_kernel_open: no kernel struct");
    memset(k, 0, sizeof *k);
    if (!name || !*name) return msa_fail(e, MSA_EINPUT, "--kernel: empty backend name");
    int rc = resolve(name, k, e);
    if (rc) {
        memset(k, 0, sizeof *k);
        return rc;
    }
    snprintf(k->name, sizeof k->name, "%s", name);
    if (k->be->init) {
        rc = k->be->init(&k->ctx);
        if (rc) {
            int code = rc == MSA_EUNSUPPORTED ? MSA_EUNSUPPORTED : MSA_EBACKEND;
            /* last_error(NULL) may say why (e.g. "no CUDA device"); read it before dlclose */
            const char *why = k->be->last_error ? k->be->last_error(NULL) : NULL;
            msa_fail(e, code, "%s: init failed (%s)%s%s", name, msa_status_name(rc), why && *why ? ": " : "",
                     why && *why ? why : "");
            if (k->dl) dlclose(k->dl); /* no fini: init did not succeed */
            memset(k, 0, sizeof *k);
            return code;
        }
    }
    return 0;
}

void msa_kernel_close(msa_kernel *k)
{
    if (!k) return;
    if (k->be && k->be->fini) k->be->fini(k->ctx);
    if (k->dl) dlclose(k->dl);
    memset(k, 0, sizeof *k);
}
