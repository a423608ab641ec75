/* The wasmtime backend's C shim: a dlsym function table, typed call paths and
 * the host-function trampoline. Python reaches all of it through cffi (API mode).
 *
 * Why a shim at all: calling wasmtime through cffi function pointers costs
 * ~600 ns per call into wasm; doing the bookkeeping (deadline, status, trap
 * capture) here and passing integers as scalars brings it to ~200 ns.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "_shim.h"

/* The trap message of a host call whose Python function could not run at all
 * (in practice: host <-> wasm recursion exhausted Python's recursion limit). */
#define PWVM_HOST_NOT_RUN_MSG "host function could not be called: the Python stack is exhausted"

/* Defined by cffi from the `extern "Python"` declarations in _build.py: per arity, the host
 * functions without a Caller (pwvm_py_host<n>) and with one (pwvm_py_hostc<n>). */
#define PWVM_I64S0
#define PWVM_I64S1 , int64_t
#define PWVM_I64S2 PWVM_I64S1, int64_t
#define PWVM_I64S3 PWVM_I64S2, int64_t
#define PWVM_I64S4 PWVM_I64S3, int64_t
#define PWVM_I64S5 PWVM_I64S4, int64_t
#define PWVM_I64S6 PWVM_I64S5, int64_t
#define PWVM_DECLARE_HOST(n)                                           \
    static int64_t pwvm_py_host##n(int64_t id, int64_t store PWVM_I64S##n); \
    static int64_t pwvm_py_hostc##n(int64_t id, int64_t store PWVM_I64S##n);
PWVM_DECLARE_HOST(0) PWVM_DECLARE_HOST(1) PWVM_DECLARE_HOST(2) PWVM_DECLARE_HOST(3)
PWVM_DECLARE_HOST(4) PWVM_DECLARE_HOST(5) PWVM_DECLARE_HOST(6)
static int32_t pwvm_py_host_raw(int64_t id, int64_t store, wasmtime_val_raw_t *vals, size_t n);
static void pwvm_py_host_drop(int64_t id);

/* ---- loading ------------------------------------------------------------ */

extern char **environ;

/* A linker namespace's libc starts with this process's environ *pointer* (the array, not a
 * copy). This process's setenv() moves that array when it grows it (pytest, monkeypatch and
 * embedders add variables after a runtime was loaded) and frees the old one, so the copy's
 * next getenv() read freed memory: a crash at its next compile (Rust's std reads RUST_MIN_STACK
 * when wasmtime spawns its first thread). Give the namespace's libc (found through h, the first
 * object loaded there) an array of its own: the environment as it is now, never freed. */
static void pwvm_private_environ(void *h) {
    char ***ns_environ = (char ***)dlsym(h, "environ");
    if (ns_environ == NULL || ns_environ == &environ || *ns_environ != environ || environ == NULL)
        return;
    size_t n = 0;
    while (environ[n]) n++;
    char **copy = calloc(n + 1, sizeof *copy);
    if (copy == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        copy[i] = strdup(environ[i]) ? : "";
    *ns_environ = copy;
}

const pwvm_api *pwvm_open(const char *path, int namespace_, char *err) {
    /* RTLD_LOCAL: our symbols never satisfy anyone else's lookups.
     * RTLD_DEEPBIND: the library prefers its own symbols over any same-named
     *   ones already global (another runtime exporting wasm_* symbols).
     * RTLD_NODELETE: unloading a runtime with live signal handlers and
     *   threads is never safe; we never dlclose, and this makes it explicit.
     * With namespace_, the library goes into a new linker namespace
     * (dlmopen LM_ID_NEWLM): a separate copy with its own globals and its own
     * libc heap (so what it allocates is freed only through its own table). */
    void *h = namespace_
        ? dlmopen(LM_ID_NEWLM, path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)
        : dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND | RTLD_NODELETE);
    if (!h) {
        const char *why = dlerror();
        /* Past glibc's namespace table (or its static TLS space, which
         * usually runs out first, at about 10 copies) dlmopen fails. */
        if (namespace_)
            snprintf(err, 256, "cannot load another copy into a new linker namespace: %s",
                     why ? why : "dlmopen failed");
        else
            snprintf(err, 256, "%s", why ? why : "dlopen failed");
        return NULL;
    }
    if (namespace_)
        pwvm_private_environ(h);
    pwvm_api *api = calloc(1, sizeof *api);
    if (!api) {
        snprintf(err, 256, "out of memory");
        return NULL;
    }
#define LOAD(name)                                                        \
    do {                                                                  \
        *(void **)(&api->name) = dlsym(h, #name);                         \
        if (!api->name) {                                                 \
            snprintf(err, 256, "symbol %s missing from %s", #name, path); \
            free(api);                                                    \
            return NULL;                                                  \
        }                                                                 \
    } while (0)
    LOAD(wasm_config_new); LOAD(wasm_engine_new_with_config); LOAD(wasm_engine_delete);
    LOAD(wasmtime_engine_clone); LOAD(wasmtime_engine_increment_epoch);
    LOAD(wasmtime_config_epoch_interruption_set); LOAD(wasmtime_config_consume_fuel_set);
    LOAD(wasmtime_config_max_wasm_stack_set); LOAD(wasmtime_config_signals_based_traps_set);
    LOAD(wasmtime_config_wasm_bulk_memory_set); LOAD(wasmtime_config_wasm_multi_value_set); LOAD(wasmtime_config_wasm_reference_types_set); LOAD(wasmtime_config_wasm_simd_set); LOAD(wasmtime_config_wasm_threads_set); LOAD(wasmtime_config_wasm_tail_call_set); LOAD(wasmtime_config_wasm_multi_memory_set); LOAD(wasmtime_config_wasm_memory64_set);
    LOAD(wasmtime_config_wasm_relaxed_simd_set); LOAD(wasmtime_config_wasm_exceptions_set); LOAD(wasmtime_config_wasm_function_references_set); LOAD(wasmtime_config_wasm_gc_set); LOAD(wasmtime_config_wasm_wide_arithmetic_set); LOAD(wasmtime_config_wasm_custom_page_sizes_set); LOAD(wasmtime_config_wasm_component_model_set); LOAD(wasmtime_config_wasm_stack_switching_set);
    LOAD(wasmtime_config_wasm_component_model_async_set); LOAD(wasmtime_config_wasm_component_model_async_stackful_set); LOAD(wasmtime_config_wasm_component_model_more_async_builtins_set);
    LOAD(wasmtime_config_shared_memory_set);
    LOAD(wasm_byte_vec_delete); LOAD(wasmtime_error_message); LOAD(wasmtime_error_delete);
    LOAD(wasm_trap_message); LOAD(wasm_trap_delete); LOAD(wasmtime_trap_code); LOAD(wasmtime_trap_new);
    LOAD(wasmtime_module_new); LOAD(wasmtime_module_delete); LOAD(wasmtime_module_validate);
    LOAD(wasmtime_module_serialize); LOAD(wasmtime_module_deserialize); LOAD(wasmtime_module_deserialize_file);
    LOAD(wasmtime_store_new); LOAD(wasmtime_store_delete); LOAD(wasmtime_store_context);
    LOAD(wasmtime_store_limiter); LOAD(wasmtime_context_get_data); LOAD(wasmtime_context_set_fuel);
    LOAD(wasmtime_context_get_fuel); LOAD(wasmtime_context_set_epoch_deadline);
    LOAD(wasm_valtype_new); LOAD(wasmtime_wasm_valtype_v128); LOAD(wasmtime_wasm_valtype_equal); LOAD(wasm_valtype_vec_new); LOAD(wasm_functype_new); LOAD(wasm_functype_delete);
    LOAD(wasm_memorytype_new); LOAD(wasm_memorytype_delete); LOAD(wasm_globaltype_new);
    LOAD(wasm_globaltype_delete); LOAD(wasm_tabletype_new); LOAD(wasm_tabletype_delete);
    LOAD(wasmtime_func_new_unchecked); LOAD(wasmtime_func_call_unchecked); LOAD(wasmtime_func_to_raw);
    LOAD(wasmtime_func_from_raw); LOAD(wasmtime_caller_context); LOAD(wasmtime_caller_export_get);
    LOAD(wasmtime_instance_new); LOAD(wasmtime_instance_export_get);
    LOAD(wasmtime_linker_new); LOAD(wasmtime_linker_delete); LOAD(wasmtime_linker_allow_shadowing);
    LOAD(wasmtime_linker_define_func_unchecked); LOAD(wasmtime_linker_define);
    LOAD(wasmtime_linker_instantiate_pre); LOAD(wasmtime_instance_pre_delete);
    LOAD(wasmtime_instance_pre_instantiate);
    LOAD(wasmtime_memory_new); LOAD(wasmtime_memory_data); LOAD(wasmtime_memory_data_size);
    LOAD(wasmtime_memory_size); LOAD(wasmtime_memory_grow);
    LOAD(wasmtime_global_new); LOAD(wasmtime_global_get); LOAD(wasmtime_global_set);
    LOAD(wasmtime_table_new); LOAD(wasmtime_table_size); LOAD(wasmtime_table_get); LOAD(wasmtime_table_set);
    LOAD(wasmtime_table_grow);
    LOAD(wasmtime_externref_new); LOAD(wasmtime_externref_data); LOAD(wasmtime_externref_to_raw);
    LOAD(wasmtime_externref_from_raw); LOAD(wasmtime_externref_unroot); LOAD(wasmtime_val_unroot);
    LOAD(wasm_valtype_kind); LOAD(wasmtime_func_type); LOAD(wasm_functype_params); LOAD(wasm_functype_results);
    LOAD(wasmtime_memory_type); LOAD(wasmtime_memorytype_minimum); LOAD(wasmtime_memorytype_maximum);
    LOAD(wasmtime_memorytype_is64); LOAD(wasmtime_global_type); LOAD(wasm_globaltype_content);
    LOAD(wasm_globaltype_mutability); LOAD(wasmtime_table_type); LOAD(wasm_tabletype_element);
    LOAD(wasm_tabletype_limits);
    LOAD(wasmtime_module_imports); LOAD(wasmtime_module_exports); LOAD(wasm_importtype_vec_delete);
    LOAD(wasm_exporttype_vec_delete); LOAD(wasm_importtype_module); LOAD(wasm_importtype_name);
    LOAD(wasm_importtype_type); LOAD(wasm_exporttype_name); LOAD(wasm_exporttype_type); LOAD(wasm_externtype_kind);
    LOAD(wasm_externtype_as_functype_const); LOAD(wasm_externtype_as_globaltype_const);
    LOAD(wasm_externtype_as_tabletype_const); LOAD(wasm_externtype_as_memorytype_const);
#undef LOAD
    return api;
}

/* ---- stores ------------------------------------------------------------- */

/* With epoch interruption on, a store's deadline starts at 0 ticks, which
 * would trap at the first check: stores without a deadline get a far one. */
#define PWVM_NO_DEADLINE (UINT64_C(1) << 62)

pwvm_store *pwvm_store_new(const pwvm_api *api, wasm_engine_t *engine, int64_t handle) {
    pwvm_store *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->api = api;
    s->handle = handle;
    s->caller_mem = -1;
    s->store = api->wasmtime_store_new(engine, s, NULL);
    s->ctx = api->wasmtime_store_context(s->store);
    api->wasmtime_context_set_epoch_deadline(s->ctx, PWVM_NO_DEADLINE);
    return s;
}

/* A tracked memory (see pwvm_meminfo): the record Python reads first, so a pwvm_tracked*
 * is a pwvm_meminfo*. */
struct pwvm_tracked {
    pwvm_meminfo info;
    wasmtime_memory_t mem;
    int32_t index;
    pwvm_tracked *next;
};

/* Bring every tracked record up to date (the store may be closed: then empty). Any change of
 * base or size bumps the generation, so Python never reads through a buffer made before. */
static void refresh_tracked(pwvm_store *s) {
    for (pwvm_tracked *t = s->tracked; t; t = t->next) {
        uint8_t *data = NULL;
        uint64_t size = 0;
        if (s->ctx) {
            size = s->api->wasmtime_memory_data_size(s->ctx, &t->mem);
            data = s->api->wasmtime_memory_data(s->ctx, &t->mem);
        }
        if (data != t->info.data || size != t->info.size) {
            t->info.data = data;
            t->info.size = size;
            t->info.gen++;
        }
    }
}

static void clear_outcome(pwvm_store *s) {
    if (s->trap) { s->api->wasm_trap_delete(s->trap); s->trap = NULL; }
    if (s->error) { s->api->wasmtime_error_delete(s->error); s->error = NULL; }
}

void pwvm_store_delete(pwvm_store *s) {
    if (!s) return;
    clear_outcome(s);
    if (s->store) s->api->wasmtime_store_delete(s->store);
    for (pwvm_tracked *t = s->tracked, *next; t; t = next) {
        next = t->next;
        free(t);
    }
    free(s);
}

int pwvm_store_close(pwvm_store *s) {
    if (s->depth) return -1;
    clear_outcome(s);
    if (s->store) s->api->wasmtime_store_delete(s->store);
    s->store = NULL;
    s->ctx = NULL;
    refresh_tracked(s);
    /* even a record that was already empty: Python must see the store closed */
    for (pwvm_tracked *t = s->tracked; t; t = t->next) t->info.gen++;
    return 0;
}

void pwvm_store_set_deadline(pwvm_store *s, uint64_t ticks) {
    s->deadline_ticks = ticks;
    if (!ticks && s->ctx) s->api->wasmtime_context_set_epoch_deadline(s->ctx, PWVM_NO_DEADLINE);
}

/* ---- epoch ticker ------------------------------------------------------- */

/* One thread for the process increments the epoch of every engine that has
 * stores with deadlines (deadlines are on by default, so that is most engines):
 * one wake-up per interval whatever the number of engines, and an engine is
 * let go (pwvm_ticker_stop, from its finalizer) instead of living forever. */
typedef struct ticked { const pwvm_api *api; wasm_engine_t *key, *clone; struct ticked *next; } ticked;

static pthread_mutex_t tick_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tick_cv = PTHREAD_COND_INITIALIZER;
static ticked *tick_list;
static uint32_t tick_interval_us;
static bool tick_running;

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void *ticker_main(void *unused) {
    (void)unused;
    struct timespec ts = { tick_interval_us / 1000000, (long)(tick_interval_us % 1000000) * 1000 };
    /* The epoch counts elapsed intervals of wall time, not sleeps: a sleep
     * that overran (a loaded machine) is made up at the next wake-up, so a
     * deadline of N ticks really means N intervals. */
    uint64_t start = now_us(), ticks = 0;
    for (;;) {
        pthread_mutex_lock(&tick_mu);
        if (!tick_list) {  /* nothing to tick: sleep until an engine comes, then count afresh */
            while (!tick_list) pthread_cond_wait(&tick_cv, &tick_mu);
            start = now_us();
            ticks = 0;
        }
        pthread_mutex_unlock(&tick_mu);
        nanosleep(&ts, NULL);
        uint64_t due = (now_us() - start) / tick_interval_us;
        pthread_mutex_lock(&tick_mu);
        for (; ticks < due; ticks++)
            for (ticked *t = tick_list; t; t = t->next) t->api->wasmtime_engine_increment_epoch(t->clone);
        pthread_mutex_unlock(&tick_mu);
    }
    return NULL;
}

int pwvm_ticker_start(const pwvm_api *api, wasm_engine_t *engine, uint32_t interval_us) {
    ticked *t = malloc(sizeof *t);
    if (!t) return -1;
    t->api = api;
    t->key = engine;
    t->clone = api->wasmtime_engine_clone(engine);
    int rc = 0;
    pthread_mutex_lock(&tick_mu);
    if (!tick_running) {
        tick_interval_us = interval_us ? interval_us : 1000;
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        rc = pthread_create(&th, &attr, ticker_main, NULL);
        pthread_attr_destroy(&attr);
        tick_running = rc == 0;
    }
    if (rc == 0) {
        t->next = tick_list;
        tick_list = t;
        pthread_cond_signal(&tick_cv);
    }
    pthread_mutex_unlock(&tick_mu);
    if (rc) {
        api->wasm_engine_delete(t->clone);
        free(t);
    }
    return rc;
}

void pwvm_ticker_stop(wasm_engine_t *engine) {
    ticked *gone = NULL;
    pthread_mutex_lock(&tick_mu);
    for (ticked **p = &tick_list; *p; p = &(*p)->next)
        if ((*p)->key == engine) { gone = *p; *p = gone->next; break; }
    pthread_mutex_unlock(&tick_mu);
    if (gone) {
        gone->api->wasm_engine_delete(gone->clone);
        free(gone);
    }
}

/* ---- calls into wasm ---------------------------------------------------- */

/* Arm the deadline for the outermost call only: a host function that calls
 * back into wasm stays under the budget of the call that started it all. */
static inline void enter(pwvm_store *s) {
    if (s->depth++ == 0 && s->deadline_ticks)
        s->api->wasmtime_context_set_epoch_deadline(s->ctx, s->deadline_ticks);
}

static inline void leave(pwvm_store *s, wasmtime_error_t *err, wasm_trap_t *trap) {
    s->depth--;
    if (s->tracked) refresh_tracked(s);  /* wasm may have grown a memory */
    if (err) {
        clear_outcome(s);
        s->error = err;
        s->status = PWVM_ERROR;
    } else if (trap) {
        clear_outcome(s);
        s->trap = trap;
        s->status = PWVM_TRAP;
    } else {
        s->status = PWVM_OK;
    }
}

int pwvm_call(pwvm_store *s, const wasmtime_func_t *f, wasmtime_val_raw_t *buf, size_t n) {
    if (!s->ctx) return s->status = PWVM_CLOSED;
    wasm_trap_t *trap = NULL;
    enter(s);
    wasmtime_error_t *err = s->api->wasmtime_func_call_unchecked(s->ctx, f, buf, n, &trap);
    leave(s, err, trap);
    return s->status;
}

static inline int64_t call_ints(pwvm_store *s, const wasmtime_func_t *f, uint32_t nargs, uint32_t nslots,
                                int32_t result_kind, const int64_t *a) {
    /* i32 params read only the low half of a slot (little-endian union), so
     * storing every argument as i64 is right for both integer kinds. */
    wasmtime_val_raw_t buf[6];
    if (!s->ctx) {
        s->status = PWVM_CLOSED;
        return result_kind < 0 ? PWVM_CLOSED : PWVM_FAIL;
    }
    uint32_t i32_mask = nargs >> 8;
    nargs &= 0xff;
    for (uint32_t i = 0; i < nargs; i++) {
        if ((i32_mask >> i & 1) && (a[i] < INT32_MIN || a[i] > (int64_t)UINT32_MAX)) {
            s->status = PWVM_RANGE;
            return result_kind < 0 ? PWVM_RANGE : PWVM_FAIL;
        }
        buf[i].i64 = a[i];
    }
    if (nslots == 0) nslots = 1;
    wasm_trap_t *trap = NULL;
    enter(s);
    wasmtime_error_t *err = s->api->wasmtime_func_call_unchecked(s->ctx, f, buf, nslots, &trap);
    leave(s, err, trap);
    /* The result doubles as the status, so Python needs no second field read:
     * no result -> the status; i32 -> the value, or PWVM_FAIL (outside i32);
     * i64 -> the value, or PWVM_FAIL with s->status set (check both). */
    if (result_kind < 0) return s->status;
    if (s->status != PWVM_OK) return PWVM_FAIL;
    return result_kind == PWVM_K_I32 ? (int64_t)buf[0].i32 : buf[0].i64;
}

#define PWVM_CALL_DESC(d, a) call_ints((d)->s, &(d)->f, (d)->nargs, (d)->nslots, (d)->result_kind, (a))

int64_t pwvm_call0(const pwvm_func *d) {
    return PWVM_CALL_DESC(d, NULL);
}
int64_t pwvm_call1(const pwvm_func *d, int64_t a0) {
    const int64_t a[1] = { a0 };
    return PWVM_CALL_DESC(d, a);
}
int64_t pwvm_call2(const pwvm_func *d, int64_t a0, int64_t a1) {
    const int64_t a[2] = { a0, a1 };
    return PWVM_CALL_DESC(d, a);
}
int64_t pwvm_call3(const pwvm_func *d, int64_t a0, int64_t a1, int64_t a2) {
    const int64_t a[3] = { a0, a1, a2 };
    return PWVM_CALL_DESC(d, a);
}
int64_t pwvm_call4(const pwvm_func *d, int64_t a0, int64_t a1, int64_t a2, int64_t a3) {
    const int64_t a[4] = { a0, a1, a2, a3 };
    return PWVM_CALL_DESC(d, a);
}
int64_t pwvm_call5(const pwvm_func *d, int64_t a0, int64_t a1, int64_t a2, int64_t a3, int64_t a4) {
    const int64_t a[5] = { a0, a1, a2, a3, a4 };
    return PWVM_CALL_DESC(d, a);
}
int64_t pwvm_call6(const pwvm_func *d, int64_t a0, int64_t a1, int64_t a2, int64_t a3, int64_t a4, int64_t a5) {
    const int64_t a[6] = { a0, a1, a2, a3, a4, a5 };
    return PWVM_CALL_DESC(d, a);
}

int pwvm_instantiate(pwvm_store *s, const wasmtime_module_t *m, const wasmtime_extern_t *imports, size_t n,
                     wasmtime_instance_t *out) {
    if (!s->ctx) return s->status = PWVM_CLOSED;
    wasm_trap_t *trap = NULL;
    enter(s);
    wasmtime_error_t *err = s->api->wasmtime_instance_new(s->ctx, m, imports, n, out, &trap);
    leave(s, err, trap);
    return s->status;
}

int pwvm_instantiate_pre(pwvm_store *s, const wasmtime_instance_pre_t *pre, wasmtime_instance_t *out) {
    if (!s->ctx) return s->status = PWVM_CLOSED;
    wasm_trap_t *trap = NULL;
    enter(s);
    wasmtime_error_t *err = s->api->wasmtime_instance_pre_instantiate(pre, s->ctx, out, &trap);
    leave(s, err, trap);
    return s->status;
}

/* ---- host functions ----------------------------------------------------- */

pwvm_hostenv *pwvm_hostenv_new(const pwvm_api *api, int64_t id, uint32_t nparams, uint32_t nresults,
                               const uint8_t *kinds, int32_t with_caller) {
    pwvm_hostenv *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->api = api;
    e->id = id;
    e->with_caller = with_caller;
    e->nparams = nparams;
    e->nresults = nresults;
    int ints = nparams <= 6 && nresults <= 1 && nparams + nresults <= sizeof e->kinds;
    for (uint32_t i = 0; ints && i < nparams + nresults; i++) {
        e->kinds[i] = kinds[i];
        if (kinds[i] != PWVM_K_I32 && kinds[i] != PWVM_K_I64) ints = 0;
    }
    e->ints_only = ints;
    return e;
}

/* Set at interpreter exit: stores collected after that must not call into Python. */
static volatile int python_finalizing;

void pwvm_python_exiting(void) { python_finalizing = 1; }

void pwvm_hostenv_free(void *env) {
    pwvm_hostenv *e = env;
    if (!python_finalizing) pwvm_py_host_drop(e->id);
    free(e);
}

static int32_t caller_mem_index(pwvm_store *s);

/* Call the Python entry of e's shape with exactly its arguments (a[] holds them, zero-padded). */
static int64_t call_python_ints(const pwvm_hostenv *e, int64_t sid, const int64_t *a) {
    int64_t id = e->id;
#define PWVM_ARGS0
#define PWVM_ARGS1 , a[0]
#define PWVM_ARGS2 PWVM_ARGS1, a[1]
#define PWVM_ARGS3 PWVM_ARGS2, a[2]
#define PWVM_ARGS4 PWVM_ARGS3, a[3]
#define PWVM_ARGS5 PWVM_ARGS4, a[4]
#define PWVM_ARGS6 PWVM_ARGS5, a[5]
#define PWVM_CASE(n) \
    case n: return e->with_caller ? pwvm_py_hostc##n(id, sid PWVM_ARGS##n) : pwvm_py_host##n(id, sid PWVM_ARGS##n);
    switch (e->nparams) {
        PWVM_CASE(0) PWVM_CASE(1) PWVM_CASE(2) PWVM_CASE(3) PWVM_CASE(4) PWVM_CASE(5)
        default: break;
    }
    return e->with_caller ? pwvm_py_hostc6(id, sid PWVM_ARGS6) : pwvm_py_host6(id, sid PWVM_ARGS6);
#undef PWVM_CASE
}

wasm_trap_t *pwvm_host_trampoline(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *vals, size_t n) {
    pwvm_hostenv *e = env;
    const pwvm_api *api = e->api;
    pwvm_store *s = api->wasmtime_context_get_data(api->wasmtime_caller_context(caller));
    /* Host calls nest (host -> wasm -> host): keep the outer caller. */
    wasmtime_caller_t *outer = s->caller;
    int64_t outer_mem = s->caller_mem;
    pwvm_hostenv *outer_env = s->cur_env;
    s->caller = caller;
    s->cur_env = e;
    s->host_failed = 0;
    if (s->tracked) refresh_tracked(s);  /* the wasm that called may have grown a memory */
    /* resolved here (no call from Python) for a function that used its Caller's memory before */
    s->caller_mem = e->wants_memory ? caller_mem_index(s) : PWVM_MEM_UNKNOWN;
    if (e->ints_only) {
        int64_t a[6] = { 0, 0, 0, 0, 0, 0 };
        for (uint32_t i = 0; i < e->nparams; i++)
            a[i] = e->kinds[i] == PWVM_K_I32 ? (int64_t)vals[i].i32 : vals[i].i64;
        int64_t r = call_python_ints(e, s->handle, a);
        /* PWVM_FAIL is also what cffi returns when the Python function could
         * not even start (its RecursionError happens before any `try`), so
         * unless Python said the value is genuine (an i64 result can be it),
         * a PWVM_FAIL with nothing parked is a failure of its own. */
        if (r == PWVM_FAIL) {
            if (s->host_failed == PWVM_HOST_GENUINE_FAIL) s->host_failed = 0;
            else if (!s->host_failed) s->host_failed = PWVM_HOST_NOT_RUN;
        }
        if (e->nresults == 1 && !s->host_failed) {
            if (e->kinds[e->nparams] == PWVM_K_I32) vals[0].i32 = (int32_t)r;
            else vals[0].i64 = r;
        }
    } else if (pwvm_py_host_raw(e->id, s->handle, vals, n) != 0 && !s->host_failed) {
        s->host_failed = PWVM_HOST_NOT_RUN;  /* cffi's error value: the callback did not run */
    }
    s->caller = outer;
    s->caller_mem = outer_mem;
    s->cur_env = outer_env;
    if (s->host_failed == PWVM_HOST_NOT_RUN) {
        s->host_failed = 0;
        static const char msg[] = PWVM_HOST_NOT_RUN_MSG;
        return api->wasmtime_trap_new(msg, sizeof msg - 1);
    }
    if (s->host_failed) {
        /* The Python exception waits on the Store; this trap unwinds the wasm
         * frames and the call into wasm re-raises the original exception. */
        s->host_failed = 0;
        static const char msg[] = "host function raised an exception";
        return api->wasmtime_trap_new(msg, sizeof msg - 1);
    }
    return NULL;
}

/* ---- memory ------------------------------------------------------------- */

int32_t pwvm_mem_track(pwvm_store *s, const wasmtime_memory_t *m) {
    if (!s->ctx) return -1;
    for (pwvm_tracked *t = s->tracked; t; t = t->next)  /* one record per memory (not per padding bytes) */
        if (t->mem.store_id == m->store_id && t->mem.private1 == m->private1 && t->mem.private2 == m->private2)
            return t->index;
    pwvm_tracked *t = calloc(1, sizeof *t);
    if (!t) return -1;
    t->mem = *m;
    t->index = s->ntracked++;
    t->info.gen = 1;  /* Python starts at generation 0: its first access builds the buffer */
    t->next = s->tracked;
    s->tracked = t;
    refresh_tracked(s);
    return t->index;
}

pwvm_meminfo *pwvm_mem_info(pwvm_store *s, int32_t index) {
    for (pwvm_tracked *t = s->tracked; t; t = t->next)
        if (t->index == index) return &t->info;
    return NULL;
}

static int32_t caller_mem_index(pwvm_store *s) {
    wasmtime_memory_t m;
    if (!s->caller) return -1;
    if (!pwvm_caller_memory(s, &m)) return -2;
    int32_t i = pwvm_mem_track(s, &m);
    return i < 0 ? -3 : i;
}

int32_t pwvm_caller_mem_index(pwvm_store *s) {
    int32_t i = caller_mem_index(s);
    if (s->caller) {
        s->caller_mem = i;
        if (s->cur_env) s->cur_env->wants_memory = 1;
    }
    return i;
}

wasmtime_error_t *pwvm_mem_grow(pwvm_store *s, const wasmtime_memory_t *m, uint64_t delta, uint64_t *prev) {
    wasmtime_error_t *err = s->api->wasmtime_memory_grow(s->ctx, m, delta, prev);
    refresh_tracked(s);
    return err;
}

int pwvm_caller_memory(pwvm_store *s, wasmtime_memory_t *out) {
    wasmtime_extern_t ext;
    if (!s->caller || !s->api->wasmtime_caller_export_get(s->caller, "memory", 6, &ext) || ext.kind != 3)
        return 0;
    *out = ext.of.memory;
    return 1;
}
