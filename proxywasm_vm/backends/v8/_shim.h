/* proxywasm-vm V8 shim: the C surface over V8's C++ API (see _shim.cpp).
 *
 * This header is also the cffi cdef (backends/v8/_build.py strips the lines
 * starting with '#' and the extern "C" guards), so keep it plain C.
 *
 * Objects living in a store's isolate (functions, memories, globals, tables,
 * instances) are "refs": small integers indexing the store's handle table,
 * 0 meaning null.  Values travel as pwv8_val with a kind byte next to them:
 * kinds 0..5 = i32, i64, f32, f64, externref, funcref.  An externref is the
 * caller's 64-bit id (0 = null); a funcref is a ref (0 = null).
 * Every int32_t result is a pwv8_code; on PWV8_ERROR and on traps,
 * pwv8_last_error() has the message (thread-local).
 */
#ifndef PWV8_SHIM_H
#define PWV8_SHIM_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct pwv8_engine pwv8_engine;
typedef struct pwv8_store pwv8_store;
typedef struct pwv8_module pwv8_module;

typedef union pwv8_val {
  int32_t i32;
  int64_t i64;
  float f32;
  double f64;
  uint64_t ref;
} pwv8_val;

/* A tracked memory's current base and size, refreshed by the shim when a
 * call into the store returns and before each host call (memory.grow inside
 * wasm replaces the ArrayBuffer).  Read it, never write it. */
typedef struct pwv8_meminfo {
  uint8_t *data;
  uint64_t size;
} pwv8_meminfo;

enum pwv8_code {
  PWV8_OK = 0,
  PWV8_ERROR = 1,                 /* not a trap: link/type/compile error */
  PWV8_TRAP_UNREACHABLE = 2,
  PWV8_TRAP_MEMORY_OOB = 3,
  PWV8_TRAP_DIV_BY_ZERO = 4,
  PWV8_TRAP_INT_OVERFLOW = 5,
  PWV8_TRAP_BAD_CONVERSION = 6,
  PWV8_TRAP_STACK_OVERFLOW = 7,
  PWV8_TRAP_BAD_SIGNATURE = 8,    /* V8: "null function or function signature mismatch" */
  PWV8_TRAP_TABLE_OOB = 9,
  PWV8_TRAP_NULL_REFERENCE = 10,
  PWV8_TRAP_DEADLINE = 11,        /* TerminateExecution: timeout or interrupt */
  PWV8_TRAP_HOST = 12,            /* a host function returned an error */
  PWV8_TRAP_OTHER = 13,           /* any other WebAssembly.RuntimeError */
  PWV8_TRAP_MISALIGNED = 14,      /* unaligned atomic access */
  PWV8_RANGE = 15,                /* an i32 argument out of range (not a trap) */
  PWV8_CLOSED = 16                /* the store was closed */
};

enum pwv8_kind {
  PWV8_I32 = 0, PWV8_I64 = 1, PWV8_F32 = 2, PWV8_F64 = 3,
  PWV8_EXTERNREF = 4, PWV8_FUNCREF = 5
};

enum pwv8_extern { PWV8_EXTERN_FUNC = 0, PWV8_EXTERN_GLOBAL = 1,
                   PWV8_EXTERN_TABLE = 2, PWV8_EXTERN_MEMORY = 3 };

/* Per-store outcome slots, read and written by the Python side directly. */
typedef struct pwv8_state {
  int32_t status;      /* pwv8_code of the last failed call */
  int32_t host_failed; /* set by Python when a host function raised */
} pwv8_state;

/* What pwv8_call0..6 return on failure (then state->status is set). */
#define PWV8_FAIL -9223372036854775807
/* state.host_failed: 1 = an exception is parked on the Python Store; 3 = the
 * Python function could not run (cffi returned its error value); 4 = the
 * integer result really is PWV8_FAIL. */
#define PWV8_HOST_NOT_RUN 3
#define PWV8_HOST_GENUINE_FAIL 4

/* Host trampolines (Python).  Integer signatures (<= 6 i32/i64 params,
 * <= 1 i32/i64 result) get scalar arguments (i32 sign-extended) through the
 * trampoline of their arity (0-3; 4-6 use the six-argument one, padded) and
 * return the result; the rest go through raw, vals in/out as for
 * pwv8_func_call.  An error is reported by setting state->host_failed. */
typedef int64_t (*pwv8_host0_cb)(uint64_t host_id);
typedef int64_t (*pwv8_host1_cb)(uint64_t host_id, int64_t a0);
typedef int64_t (*pwv8_host2_cb)(uint64_t host_id, int64_t a0, int64_t a1);
typedef int64_t (*pwv8_host3_cb)(uint64_t host_id, int64_t a0, int64_t a1,
                                 int64_t a2);
typedef int64_t (*pwv8_host6_cb)(uint64_t host_id, int64_t a0, int64_t a1,
                                 int64_t a2, int64_t a3, int64_t a4, int64_t a5);
typedef int32_t (*pwv8_host_raw_cb)(uint64_t host_id, uint64_t store_id,
                                    pwv8_val *vals, uint32_t nargs);

/* Process: once, never torn down.  flags: extra V8 flags (may be NULL);
 * signal_traps: 1 = guard pages + SIGSEGV trap handler, 0 = explicit bounds
 * checks.  Only the first call decides; returns 0 or PWV8_ERROR. */
int32_t pwv8_init(const char *flags, int32_t signal_traps);
const char *pwv8_version(void);
void pwv8_set_host_callbacks(pwv8_host0_cb h0, pwv8_host1_cb h1,
                             pwv8_host2_cb h2, pwv8_host3_cb h3,
                             pwv8_host6_cb h6, pwv8_host_raw_cb raw);
/* Put our chaining SIGSEGV handler back on top if a non-SA_SIGINFO handler
 * (faulthandler's) replaced it.  Returns 1 if it re-installed. */
int32_t pwv8_ensure_signal_handler(void);
const char *pwv8_last_error(void);
int64_t pwv8_now_ns(void);

/* share = 1 (the default): stores an engine's thread makes share that
 * thread's isolate, and take turns when called from several threads; 0: every
 * store made from now on gets an isolate of its own (a worker process, whose
 * threads serve whichever stores the parent's threads call, so its stores
 * must run at the same time whatever thread made them). */
void pwv8_set_isolate_sharing(int32_t share);
pwv8_engine *pwv8_engine_new(void);
void pwv8_engine_delete(pwv8_engine *e);

int32_t pwv8_module_new(pwv8_engine *e, const uint8_t *bytes, size_t len,
                        pwv8_module **out);
int32_t pwv8_module_validate(pwv8_engine *e, const uint8_t *bytes, size_t len);
uint32_t pwv8_module_num_imports(pwv8_module *m);
void pwv8_module_delete(pwv8_module *m);

/* store_id is handed back to the host trampolines. */
pwv8_store *pwv8_store_new(pwv8_engine *e, uint64_t store_id);
void pwv8_store_delete(pwv8_store *s);
/* Free the isolate now; afterwards every call on the store returns
 * PWV8_CLOSED.  -1 (and nothing done) when called from inside a call into the
 * store. */
int32_t pwv8_store_close(pwv8_store *s);
pwv8_state *pwv8_store_state(pwv8_store *s);
/* timeout_ns > 0: each outermost call gets a wall-clock deadline;
 * max_stack: bytes of native stack wasm may use (0 = default 1 MiB). */
void pwv8_store_set_limits(pwv8_store *s, int64_t timeout_ns,
                           uint64_t max_stack);
/* Terminate the call running in this store now (any thread).  Returns 1
 * if a call was running. */
int32_t pwv8_store_interrupt(pwv8_store *s);

/* imports: one ref per import of the module, in order. */
int32_t pwv8_instantiate(pwv8_store *s, pwv8_module *m, const uint32_t *imports,
                         uint32_t nimports, uint32_t *out_instance);
int32_t pwv8_instance_export(pwv8_store *s, uint32_t instance, const char *name,
                             size_t len, int32_t *kind, uint32_t *ref);

/* A host function (a WebAssembly.Function, so it is also a valid funcref);
 * fast = 1 selects the ints trampoline. */
int32_t pwv8_func_new(pwv8_store *s, uint64_t host_id, const char *pkinds,
                      uint32_t np, const char *rkinds, uint32_t nr,
                      int32_t fast, uint32_t *out);
/* The signature of any wasm function (kinds into pk/rk, cap entries each). */
int32_t pwv8_func_type(pwv8_store *s, uint32_t func, char *pk, uint32_t *np,
                       char *rk, uint32_t *nr, uint32_t cap);
/* vals: np arguments in, nr results out (size max(np, nr)). */
int32_t pwv8_func_call(pwv8_store *s, uint32_t func, const char *pkinds,
                       uint32_t np, const char *rkinds, uint32_t nr,
                       pwv8_val *vals);
/* Integer fast path (<= 6 i32/i64 params, <= 1 i32/i64 result).  Register
 * the signature once (rkind -1 none, 0 i32, 1 i64), then call with the
 * function of the right arity: returns the result (0 if none) or PWV8_FAIL
 * with the state's status set (PWV8_RANGE: an i32 argument out of range). */
int32_t pwv8_func_sig(pwv8_store *s, uint32_t func, uint32_t nargs,
                      uint32_t i64mask, int32_t rkind);
int64_t pwv8_call0(pwv8_store *s, uint32_t f);
int64_t pwv8_call1(pwv8_store *s, uint32_t f, int64_t a0);
int64_t pwv8_call2(pwv8_store *s, uint32_t f, int64_t a0, int64_t a1);
int64_t pwv8_call3(pwv8_store *s, uint32_t f, int64_t a0, int64_t a1, int64_t a2);
int64_t pwv8_call4(pwv8_store *s, uint32_t f, int64_t a0, int64_t a1, int64_t a2,
                   int64_t a3);
int64_t pwv8_call5(pwv8_store *s, uint32_t f, int64_t a0, int64_t a1, int64_t a2,
                   int64_t a3, int64_t a4);
int64_t pwv8_call6(pwv8_store *s, uint32_t f, int64_t a0, int64_t a1, int64_t a2,
                   int64_t a3, int64_t a4, int64_t a5);

/* maximum < 0: none. */
int32_t pwv8_memory_new(pwv8_store *s, uint32_t initial, int64_t maximum,
                        uint32_t *out);
/* Keep a pwv8_meminfo up to date for this memory (one per memory object;
 * it lives as long as the store). */
int32_t pwv8_memory_track(pwv8_store *s, uint32_t mem, pwv8_meminfo **out);
/* PWV8_ERROR if the memory cannot grow (maximum reached). */
int32_t pwv8_memory_grow(pwv8_store *s, uint32_t mem, uint32_t delta,
                         uint32_t *old_pages);

int32_t pwv8_global_new(pwv8_store *s, int32_t kind, int32_t mutable_,
                        const pwv8_val *init, uint32_t *out);
int32_t pwv8_global_get(pwv8_store *s, uint32_t g, int32_t kind, pwv8_val *out);
int32_t pwv8_global_set(pwv8_store *s, uint32_t g, int32_t kind,
                        const pwv8_val *v);

int32_t pwv8_table_new(pwv8_store *s, int32_t kind, uint32_t initial,
                       int64_t maximum, const pwv8_val *init, uint32_t *out);
int32_t pwv8_table_size(pwv8_store *s, uint32_t t, uint32_t *size);
int32_t pwv8_table_get(pwv8_store *s, uint32_t t, int32_t kind, uint32_t index,
                       pwv8_val *out);
int32_t pwv8_table_set(pwv8_store *s, uint32_t t, int32_t kind, uint32_t index,
                       const pwv8_val *v);
int32_t pwv8_table_grow(pwv8_store *s, uint32_t t, int32_t kind, uint32_t delta,
                        const pwv8_val *init, uint32_t *old_size);

#ifdef __cplusplus
}
#endif
#endif
