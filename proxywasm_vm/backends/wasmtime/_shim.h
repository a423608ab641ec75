/* Declarations shared by the cffi cdef and the C shim of the wasmtime backend.
 *
 * No registry package ships wasmtime's C headers, so the few types and
 * functions we use are declared here from the public C API (wasm.h and
 * wasmtime.h of wasmtime 50). Struct layouts must match the library exactly:
 * tests/test_wasmtime_layout.py compares every size with the ctypes bindings
 * shipped in the `wasmtime` wheel.
 *
 * This file is read by cffi's cdef parser as well as by the C compiler, so it
 * holds no preprocessor directives other than integer #defines.
 */

typedef struct wasm_engine_t wasm_engine_t;
typedef struct wasm_config_t wasm_config_t;
typedef struct wasm_trap_t wasm_trap_t;
typedef struct wasm_valtype_t wasm_valtype_t;
typedef struct wasm_functype_t wasm_functype_t;
typedef struct wasm_memorytype_t wasm_memorytype_t;
typedef struct wasm_globaltype_t wasm_globaltype_t;
typedef struct wasm_tabletype_t wasm_tabletype_t;
typedef struct wasmtime_error wasmtime_error_t;
typedef struct wasmtime_module wasmtime_module_t;
typedef struct wasmtime_store wasmtime_store_t;
typedef struct wasmtime_context wasmtime_context_t;
typedef struct wasmtime_caller wasmtime_caller_t;
typedef struct wasmtime_linker wasmtime_linker_t;
typedef struct wasmtime_instance_pre wasmtime_instance_pre_t;

typedef struct { size_t size; uint8_t *data; } wasm_byte_vec_t;
typedef struct { size_t size; wasm_valtype_t **data; } wasm_valtype_vec_t;
typedef struct wasm_importtype_t wasm_importtype_t;
typedef struct wasm_exporttype_t wasm_exporttype_t;
typedef struct wasm_externtype_t wasm_externtype_t;
typedef struct { size_t size; wasm_importtype_t **data; } wasm_importtype_vec_t;
typedef struct { size_t size; wasm_exporttype_t **data; } wasm_exporttype_vec_t;
typedef struct { uint32_t min; uint32_t max; } wasm_limits_t;

/* Store-bound handles: plain values, cheap to copy. */
typedef struct { uint64_t store_id; void *private_; } wasmtime_func_t;
/* memory, table and tag nest {store_id, private1} in an anonymous struct (as wasmtime.h does):
 * that makes them 24 bytes with private2 at offset 16, not 16 bytes. */
typedef struct { struct { uint64_t store_id; uint32_t private1; }; uint32_t private2; } wasmtime_memory_t;
typedef struct { struct { uint64_t store_id; uint32_t private1; }; uint32_t private2; } wasmtime_table_t;
typedef struct { uint64_t store_id; uint32_t private1; uint32_t private2; uint32_t private3; } wasmtime_global_t;
typedef struct { struct { uint64_t store_id; uint32_t private1; }; uint32_t private2; } wasmtime_tag_t;
typedef struct { uint64_t store_id; size_t private_; } wasmtime_instance_t;
typedef struct { uint64_t store_id; uint32_t private1; uint32_t private2; void *private3; } wasmtime_externref_t;
typedef struct { uint64_t store_id; uint32_t private1; uint32_t private2; void *private3; } wasmtime_anyref_t;

typedef union {
    wasmtime_func_t func;
    wasmtime_global_t global;
    wasmtime_table_t table;
    wasmtime_memory_t memory;
    void *sharedmemory;
    wasmtime_tag_t tag;
} wasmtime_extern_union_t;

typedef struct { uint8_t kind; wasmtime_extern_union_t of; } wasmtime_extern_t;

typedef union {
    int32_t i32;
    int64_t i64;
    float f32;
    double f64;
    wasmtime_anyref_t anyref;
    wasmtime_externref_t externref;
    wasmtime_anyref_t exnref;
    wasmtime_func_t funcref;
    uint8_t v128[16];
} wasmtime_valunion_t;

typedef struct { uint8_t kind; wasmtime_valunion_t of; } wasmtime_val_t;

typedef union {
    int32_t i32;
    int64_t i64;
    float f32;
    double f64;
    uint8_t v128[16];
    uint32_t anyref;
    uint32_t externref;
    uint32_t exnref;
    void *funcref;
} wasmtime_val_raw_t;

typedef wasm_trap_t *(*wasmtime_func_unchecked_callback_t)(void *env, wasmtime_caller_t *caller,
                                                             wasmtime_val_raw_t *args_and_results, size_t n);

/* Every wasmtime function the backend uses, resolved with dlsym on a handle
 * the backend opened itself (never through the global symbol scope). */
typedef struct pwvm_api {
    wasm_config_t *(*wasm_config_new)(void);
    wasm_engine_t *(*wasm_engine_new_with_config)(wasm_config_t *);
    void (*wasm_engine_delete)(wasm_engine_t *);
    wasm_engine_t *(*wasmtime_engine_clone)(wasm_engine_t *);
    void (*wasmtime_engine_increment_epoch)(wasm_engine_t *);
    void (*wasmtime_config_epoch_interruption_set)(wasm_config_t *, bool);
    void (*wasmtime_config_consume_fuel_set)(wasm_config_t *, bool);
    void (*wasmtime_config_max_wasm_stack_set)(wasm_config_t *, size_t);
    void (*wasmtime_config_signals_based_traps_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_bulk_memory_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_multi_value_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_reference_types_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_simd_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_threads_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_tail_call_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_multi_memory_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_memory64_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_relaxed_simd_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_exceptions_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_function_references_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_gc_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_wide_arithmetic_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_custom_page_sizes_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_component_model_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_stack_switching_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_component_model_async_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_component_model_async_stackful_set)(wasm_config_t *, bool);
    void (*wasmtime_config_wasm_component_model_more_async_builtins_set)(wasm_config_t *, bool);
    void (*wasmtime_config_shared_memory_set)(wasm_config_t *, bool);

    void (*wasm_byte_vec_delete)(wasm_byte_vec_t *);
    void (*wasmtime_error_message)(const wasmtime_error_t *, wasm_byte_vec_t *);
    void (*wasmtime_error_delete)(wasmtime_error_t *);
    void (*wasm_trap_message)(const wasm_trap_t *, wasm_byte_vec_t *);
    void (*wasm_trap_delete)(wasm_trap_t *);
    bool (*wasmtime_trap_code)(const wasm_trap_t *, uint8_t *);
    wasm_trap_t *(*wasmtime_trap_new)(const char *, size_t);

    wasmtime_error_t *(*wasmtime_module_new)(wasm_engine_t *, const uint8_t *, size_t, wasmtime_module_t **);
    void (*wasmtime_module_delete)(wasmtime_module_t *);
    wasmtime_error_t *(*wasmtime_module_validate)(wasm_engine_t *, const uint8_t *, size_t);
    wasmtime_error_t *(*wasmtime_module_serialize)(wasmtime_module_t *, wasm_byte_vec_t *);
    wasmtime_error_t *(*wasmtime_module_deserialize)(wasm_engine_t *, const uint8_t *, size_t, wasmtime_module_t **);
    wasmtime_error_t *(*wasmtime_module_deserialize_file)(wasm_engine_t *, const char *, wasmtime_module_t **);

    wasmtime_store_t *(*wasmtime_store_new)(wasm_engine_t *, void *, void (*)(void *));
    void (*wasmtime_store_delete)(wasmtime_store_t *);
    wasmtime_context_t *(*wasmtime_store_context)(wasmtime_store_t *);
    void (*wasmtime_store_limiter)(wasmtime_store_t *, int64_t, int64_t, int64_t, int64_t, int64_t);
    void *(*wasmtime_context_get_data)(const wasmtime_context_t *);
    wasmtime_error_t *(*wasmtime_context_set_fuel)(wasmtime_context_t *, uint64_t);
    wasmtime_error_t *(*wasmtime_context_get_fuel)(const wasmtime_context_t *, uint64_t *);
    void (*wasmtime_context_set_epoch_deadline)(wasmtime_context_t *, uint64_t);

    wasm_valtype_t *(*wasm_valtype_new)(uint8_t);
    /* wasm_valtype_new(4) and wasm_valtype_kind(v128) abort ("not implemented"): v128 types are made
     * with wasmtime_wasm_valtype_v128 and recognised with wasmtime_wasm_valtype_equal. */
    wasm_valtype_t *(*wasmtime_wasm_valtype_v128)(void);
    bool (*wasmtime_wasm_valtype_equal)(const wasm_valtype_t *, const wasm_valtype_t *);
    void (*wasm_valtype_vec_new)(wasm_valtype_vec_t *, size_t, wasm_valtype_t *const *);
    wasm_functype_t *(*wasm_functype_new)(wasm_valtype_vec_t *, wasm_valtype_vec_t *);
    void (*wasm_functype_delete)(wasm_functype_t *);
    wasm_memorytype_t *(*wasm_memorytype_new)(const wasm_limits_t *);
    void (*wasm_memorytype_delete)(wasm_memorytype_t *);
    wasm_globaltype_t *(*wasm_globaltype_new)(wasm_valtype_t *, uint8_t);
    void (*wasm_globaltype_delete)(wasm_globaltype_t *);
    wasm_tabletype_t *(*wasm_tabletype_new)(wasm_valtype_t *, const wasm_limits_t *);
    void (*wasm_tabletype_delete)(wasm_tabletype_t *);

    void (*wasmtime_func_new_unchecked)(wasmtime_context_t *, const wasm_functype_t *,
                                        wasmtime_func_unchecked_callback_t, void *, void (*)(void *),
                                        wasmtime_func_t *);
    wasmtime_error_t *(*wasmtime_func_call_unchecked)(wasmtime_context_t *, const wasmtime_func_t *,
                                                      wasmtime_val_raw_t *, size_t, wasm_trap_t **);
    void *(*wasmtime_func_to_raw)(wasmtime_context_t *, const wasmtime_func_t *);
    void (*wasmtime_func_from_raw)(wasmtime_context_t *, void *, wasmtime_func_t *);
    wasmtime_context_t *(*wasmtime_caller_context)(wasmtime_caller_t *);
    bool (*wasmtime_caller_export_get)(wasmtime_caller_t *, const char *, size_t, wasmtime_extern_t *);

    wasmtime_error_t *(*wasmtime_instance_new)(wasmtime_context_t *, const wasmtime_module_t *,
                                               const wasmtime_extern_t *, size_t, wasmtime_instance_t *,
                                               wasm_trap_t **);
    bool (*wasmtime_instance_export_get)(wasmtime_context_t *, const wasmtime_instance_t *, const char *,
                                         size_t, wasmtime_extern_t *);

    wasmtime_linker_t *(*wasmtime_linker_new)(wasm_engine_t *);
    void (*wasmtime_linker_delete)(wasmtime_linker_t *);
    void (*wasmtime_linker_allow_shadowing)(wasmtime_linker_t *, bool);
    wasmtime_error_t *(*wasmtime_linker_define_func_unchecked)(wasmtime_linker_t *, const char *, size_t,
                                                               const char *, size_t, const wasm_functype_t *,
                                                               wasmtime_func_unchecked_callback_t, void *,
                                                               void (*)(void *));
    wasmtime_error_t *(*wasmtime_linker_define)(wasmtime_linker_t *, wasmtime_context_t *, const char *, size_t,
                                                const char *, size_t, const wasmtime_extern_t *);
    wasmtime_error_t *(*wasmtime_linker_instantiate_pre)(const wasmtime_linker_t *, const wasmtime_module_t *,
                                                         wasmtime_instance_pre_t **);
    void (*wasmtime_instance_pre_delete)(wasmtime_instance_pre_t *);
    wasmtime_error_t *(*wasmtime_instance_pre_instantiate)(const wasmtime_instance_pre_t *, wasmtime_context_t *,
                                                           wasmtime_instance_t *, wasm_trap_t **);

    wasmtime_error_t *(*wasmtime_memory_new)(wasmtime_context_t *, const wasm_memorytype_t *, wasmtime_memory_t *);
    uint8_t *(*wasmtime_memory_data)(const wasmtime_context_t *, const wasmtime_memory_t *);
    size_t (*wasmtime_memory_data_size)(const wasmtime_context_t *, const wasmtime_memory_t *);
    uint64_t (*wasmtime_memory_size)(const wasmtime_context_t *, const wasmtime_memory_t *);
    wasmtime_error_t *(*wasmtime_memory_grow)(wasmtime_context_t *, const wasmtime_memory_t *, uint64_t, uint64_t *);

    wasmtime_error_t *(*wasmtime_global_new)(wasmtime_context_t *, const wasm_globaltype_t *, const wasmtime_val_t *,
                                             wasmtime_global_t *);
    void (*wasmtime_global_get)(wasmtime_context_t *, const wasmtime_global_t *, wasmtime_val_t *);
    wasmtime_error_t *(*wasmtime_global_set)(wasmtime_context_t *, const wasmtime_global_t *, const wasmtime_val_t *);

    wasmtime_error_t *(*wasmtime_table_new)(wasmtime_context_t *, const wasm_tabletype_t *, const wasmtime_val_t *,
                                            wasmtime_table_t *);
    uint64_t (*wasmtime_table_size)(const wasmtime_context_t *, const wasmtime_table_t *);
    bool (*wasmtime_table_get)(wasmtime_context_t *, const wasmtime_table_t *, uint64_t, wasmtime_val_t *);
    wasmtime_error_t *(*wasmtime_table_set)(wasmtime_context_t *, const wasmtime_table_t *, uint64_t,
                                            const wasmtime_val_t *);
    wasmtime_error_t *(*wasmtime_table_grow)(wasmtime_context_t *, const wasmtime_table_t *, uint64_t,
                                             const wasmtime_val_t *, uint64_t *);

    bool (*wasmtime_externref_new)(wasmtime_context_t *, void *, void (*)(void *), wasmtime_externref_t *);
    void *(*wasmtime_externref_data)(wasmtime_context_t *, const wasmtime_externref_t *);
    uint32_t (*wasmtime_externref_to_raw)(wasmtime_context_t *, const wasmtime_externref_t *);
    void (*wasmtime_externref_from_raw)(wasmtime_context_t *, uint32_t, wasmtime_externref_t *);
    void (*wasmtime_externref_unroot)(wasmtime_externref_t *);
    void (*wasmtime_val_unroot)(wasmtime_val_t *);

    /* type introspection, for externs whose type the module does not tell */
    uint8_t (*wasm_valtype_kind)(const wasm_valtype_t *);
    wasm_functype_t *(*wasmtime_func_type)(const wasmtime_context_t *, const wasmtime_func_t *);
    const wasm_valtype_vec_t *(*wasm_functype_params)(const wasm_functype_t *);
    const wasm_valtype_vec_t *(*wasm_functype_results)(const wasm_functype_t *);
    wasm_memorytype_t *(*wasmtime_memory_type)(const wasmtime_context_t *, const wasmtime_memory_t *);
    uint64_t (*wasmtime_memorytype_minimum)(const wasm_memorytype_t *);
    bool (*wasmtime_memorytype_maximum)(const wasm_memorytype_t *, uint64_t *);
    bool (*wasmtime_memorytype_is64)(const wasm_memorytype_t *);
    wasm_globaltype_t *(*wasmtime_global_type)(const wasmtime_context_t *, const wasmtime_global_t *);
    const wasm_valtype_t *(*wasm_globaltype_content)(const wasm_globaltype_t *);
    uint8_t (*wasm_globaltype_mutability)(const wasm_globaltype_t *);
    wasm_tabletype_t *(*wasmtime_table_type)(const wasmtime_context_t *, const wasmtime_table_t *);
    const wasm_valtype_t *(*wasm_tabletype_element)(const wasm_tabletype_t *);
    const wasm_limits_t *(*wasm_tabletype_limits)(const wasm_tabletype_t *);

    /* a deserialized module's imports and exports (there are no wasm bytes to parse) */
    void (*wasmtime_module_imports)(const wasmtime_module_t *, wasm_importtype_vec_t *);
    void (*wasmtime_module_exports)(const wasmtime_module_t *, wasm_exporttype_vec_t *);
    void (*wasm_importtype_vec_delete)(wasm_importtype_vec_t *);
    void (*wasm_exporttype_vec_delete)(wasm_exporttype_vec_t *);
    const wasm_byte_vec_t *(*wasm_importtype_module)(const wasm_importtype_t *);
    const wasm_byte_vec_t *(*wasm_importtype_name)(const wasm_importtype_t *);
    const wasm_externtype_t *(*wasm_importtype_type)(const wasm_importtype_t *);
    const wasm_byte_vec_t *(*wasm_exporttype_name)(const wasm_exporttype_t *);
    const wasm_externtype_t *(*wasm_exporttype_type)(const wasm_exporttype_t *);
    uint8_t (*wasm_externtype_kind)(const wasm_externtype_t *);
    const wasm_functype_t *(*wasm_externtype_as_functype_const)(const wasm_externtype_t *);
    const wasm_globaltype_t *(*wasm_externtype_as_globaltype_const)(const wasm_externtype_t *);
    const wasm_tabletype_t *(*wasm_externtype_as_tabletype_const)(const wasm_externtype_t *);
    const wasm_memorytype_t *(*wasm_externtype_as_memorytype_const)(const wasm_externtype_t *);
} pwvm_api;

/* A memory that Python reads and writes in place (see pwvm_mem_track): its
 * current base and size, and a generation bumped whenever either changes or
 * the store is closed. Python keeps a buffer over [data, data+size) and
 * rebuilds it when `gen` differs from the one it was made at. */
typedef struct pwvm_meminfo {
    uint8_t *data;
    uint64_t size;
    uint64_t gen;
} pwvm_meminfo;

typedef struct pwvm_tracked pwvm_tracked;

/* Per-store state shared by Python and the shim. Python reads `status`
 * after every call; the shim owns `trap`/`error` until Python takes them. */
typedef struct pwvm_store {
    const pwvm_api *api;
    wasmtime_store_t *store;
    wasmtime_context_t *ctx;
    int64_t handle;            /* key of the Python Store object */
    uint64_t deadline_ticks;   /* epoch ticks per outermost call; 0 = none */
    uint32_t depth;            /* calls into wasm currently on the stack */
    int32_t status;            /* PWVM_OK / PWVM_TRAP / PWVM_ERROR of the last call */
    int32_t host_failed;       /* set by Python when a host function raised */
    wasmtime_caller_t *caller; /* the caller of the running host function */
    wasm_trap_t *trap;
    wasmtime_error_t *error;
    /* While a host function runs: the tracked index of its caller's "memory" export, resolved
     * at entry for host functions that asked for it before (pwvm_hostenv.wants_memory), else
     * PWVM_MEM_UNKNOWN until Python asks (pwvm_caller_mem_index); -1 outside host calls. */
    int64_t caller_mem;
    struct pwvm_hostenv *cur_env; /* the running host function's env */
    pwvm_tracked *tracked;     /* memories Python reads in place (a list), refreshed at every return to Python */
    int32_t ntracked;          /* their count; a record's index never changes */
} pwvm_store;

#define PWVM_MEM_UNKNOWN -4

/* What a host function's trampoline needs; owned by wasmtime (freed by its finalizer). */
typedef struct pwvm_hostenv {
    const pwvm_api *api;
    int64_t id;          /* key of the Python callable */
    uint32_t nparams;
    uint32_t nresults;
    uint8_t kinds[16];   /* param kinds then result kinds (PWVM_K_*), when all fit */
    int32_t ints_only;   /* every param/result is i32 or i64 and there are <= 6/1 */
    int32_t with_caller; /* the Python function takes a Caller first (pwvm_py_hostc<n>) */
    int32_t wants_memory; /* it asked for its Caller's memory: resolved at entry from then on */
} pwvm_hostenv;

/* Value kinds of wasmtime_val_t (also used in pwvm_hostenv.kinds). */
#define PWVM_K_I32 0
#define PWVM_K_I64 1
#define PWVM_K_F32 2
#define PWVM_K_F64 3
#define PWVM_K_V128 4
#define PWVM_K_FUNCREF 5
#define PWVM_K_EXTERNREF 6

#define PWVM_OK 0
#define PWVM_TRAP 1
#define PWVM_ERROR 2
/* pwvm_call_ints: an i32 argument outside -2**31 .. 2**32-1 (nothing was called). */
#define PWVM_RANGE 3
/* The store was closed (Store.close): nothing was called. */
#define PWVM_CLOSED 4
/* What pwvm_call_ints returns on failure when the function has a result. */
#define PWVM_FAIL -9223372036854775807
/* pwvm_store.host_failed: 1 = an exception is parked on the Store; these two
 * are set around the integer host-call path (see pwvm_host_trampoline). */
#define PWVM_HOST_NOT_RUN 3
#define PWVM_HOST_GENUINE_FAIL 4

/* Open the library (in-process with local, deep symbol binding, or with
 * namespace_ != 0 in a new linker namespace) and resolve the table.
 * Returns NULL and fills `err` (256 bytes) on failure. Never closed. */
const pwvm_api *pwvm_open(const char *path, int namespace_, char *err);

pwvm_store *pwvm_store_new(const pwvm_api *api, wasm_engine_t *engine, int64_t handle);
void pwvm_store_delete(pwvm_store *s);
/* Delete the wasmtime store now; the pwvm_store stays (ctx NULL) so stale handles fail cleanly.
 * Returns -1 (and does nothing) while wasm runs in the store. */
int pwvm_store_close(pwvm_store *s);
void pwvm_store_set_deadline(pwvm_store *s, uint64_t ticks);

/* Start (once per engine) a thread that bumps the engine's epoch every `interval_us`. */
int pwvm_ticker_start(const pwvm_api *api, wasm_engine_t *engine, uint32_t interval_us);
void pwvm_ticker_stop(wasm_engine_t *engine);

/* Call into wasm with raw values (args in, results out, `n` slots). Returns the status. */
int pwvm_call(pwvm_store *s, const wasmtime_func_t *f, wasmtime_val_raw_t *buf, size_t n);
/* Typed fast path: up to 6 integer params, one or no integer result, with everything constant
 * for the function in a descriptor that Python allocates and fills (its Func owns it, and keeps
 * the Store, hence the pwvm_store, alive). pwvm_call<n> takes the descriptor and exactly n
 * arguments.
 * nargs: the count in the low 8 bits; bit 8+i set when argument i is an i32
 * (range-checked: PWVM_RANGE when it fits neither i32 nor u32).
 * result_kind: -1 none (returns the status), PWVM_K_I32 or PWVM_K_I64
 * (returns the result, or PWVM_FAIL with s->status set). */
typedef struct pwvm_func {
    pwvm_store *s;
    wasmtime_func_t f;
    uint32_t nargs;
    uint32_t nslots;
    int32_t result_kind;
} pwvm_func;
int64_t pwvm_call0(const pwvm_func *d);
int64_t pwvm_call1(const pwvm_func *d, int64_t a0);
int64_t pwvm_call2(const pwvm_func *d, int64_t a0, int64_t a1);
int64_t pwvm_call3(const pwvm_func *d, int64_t a0, int64_t a1, int64_t a2);
int64_t pwvm_call4(const pwvm_func *d, int64_t a0, int64_t a1, int64_t a2, int64_t a3);
int64_t pwvm_call5(const pwvm_func *d, int64_t a0, int64_t a1, int64_t a2, int64_t a3, int64_t a4);
int64_t pwvm_call6(const pwvm_func *d, int64_t a0, int64_t a1, int64_t a2, int64_t a3, int64_t a4, int64_t a5);

/* Instantiate (directly or through an instance_pre) with the same bookkeeping as a call. */
int pwvm_instantiate(pwvm_store *s, const wasmtime_module_t *m, const wasmtime_extern_t *imports, size_t n,
                     wasmtime_instance_t *out);
int pwvm_instantiate_pre(pwvm_store *s, const wasmtime_instance_pre_t *pre, wasmtime_instance_t *out);

/* Host functions: the trampoline wasmtime calls, and its env. */
pwvm_hostenv *pwvm_hostenv_new(const pwvm_api *api, int64_t id, uint32_t nparams, uint32_t nresults,
                               const uint8_t *kinds, int32_t with_caller);
wasm_trap_t *pwvm_host_trampoline(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *vals, size_t n);
void pwvm_hostenv_free(void *env);
/* Called at interpreter exit: from then on freed host functions do not call into Python. */
void pwvm_python_exiting(void);

/* Memories read in place. pwvm_mem_track: the index of m's record in s (made on first use,
 * one per memory whatever the handle), or -1 (store closed, or out of memory).
 * pwvm_mem_info: the record of an index. The records are refreshed whenever control returns
 * to Python (a call into wasm returns, a host function is entered, pwvm_mem_grow) and emptied
 * when the store is closed; they live as long as the pwvm_store. */
int32_t pwvm_mem_track(pwvm_store *s, const wasmtime_memory_t *m);
pwvm_meminfo *pwvm_mem_info(pwvm_store *s, int32_t index);
/* The tracked index of the calling instance's "memory" export while a host function runs:
 * >= 0, or -1 outside a host call, -2 when the caller exports no such memory, -3 out of memory.
 * Also stored in s->caller_mem, and the running host function marked as wanting it. */
int32_t pwvm_caller_mem_index(pwvm_store *s);
/* wasmtime_memory_grow, then the records refreshed. NULL or the error (the caller deletes it). */
wasmtime_error_t *pwvm_mem_grow(pwvm_store *s, const wasmtime_memory_t *m, uint64_t delta, uint64_t *prev);

/* The calling instance's "memory" export while a host function runs: 1 and
 * `out` filled, or 0 when there is no caller or no such memory. */
int pwvm_caller_memory(pwvm_store *s, wasmtime_memory_t *out);
