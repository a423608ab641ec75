// proxywasm-vm V8 shim: a wasm.h-shaped C surface (see _shim.h) over the
// public C++ API of the V8 inside Debian's libnode (V8 10.2 / Node 18 and
// V8 11.3 / Node 20; only API both share is used).
//
// Model
// - One v8::Platform per process, created by pwv8_init and never disposed.
// - pwv8_engine: owns a private "compile" store; modules are compiled there
//   once and shared with every store as v8::CompiledWasmModule (V8's
//   NativeModule is process-wide, FromCompiledModule is cheap).
// - pwv8_store: stores share an isolate and its context (struct Shared): one
//   per engine and creating thread, made with the thread's first store and
//   kept while the thread runs and the engine lives (idle when its stores
//   are all closed, for the thread's next store).  An isolate of its own costs a store
//   ~1.7 ms and ~500 KiB, a context of its own ~0.3-0.6 ms and ~190 KiB (both
//   measured); a store in a shared context costs its handle table.  Stores
//   stay apart because nothing of one is reachable from another: no JS but
//   our own runs, wasm reaches only its imports, and every object a store
//   uses is in its own handle table (closing a store releases it: its objects
//   become garbage of the isolate).  Each store keeps its limits and deadline.
// - No v8::Locker (it costs 250-500 ns per call): a per-isolate mutex, and the
//   stack limit retargeted when the isolate is entered from another thread
//   (see retarget_stack).  With signal-based traps, an isolate entered from a
//   thread other than its creator switches to v8::Locker for good (see Entry
//   and go_locking).  Stores made by one thread take turns: a call into one of
//   them from another thread waits while the isolate runs a call.
// - Refs: a store's objects live in its handle table (v8::Global), addressed
//   by small integers.  Import/export *types* are not in V8's API; the Python
//   side parses the module and passes value kinds to each call.
#include "_shim.h"

#include <libplatform/libplatform.h>
#include <v8-locker.h>
#include <v8.h>

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <map>
#include <unordered_map>
#include <vector>

namespace v8 {
// Public V8 API (upstream include/v8-wasm-trap-handler-posix.h); Debian's
// libnode-dev does not ship that header but libnode exports the symbol.
V8_EXPORT bool TryHandleWebAssemblyTrapPosix(int sig_code, siginfo_t* info,
                                             void* context);
}  // namespace v8

using v8::Array;
using v8::ArrayBuffer;
using v8::BigInt;
using v8::Context;
using v8::External;
using v8::Function;
using v8::FunctionCallbackInfo;
using v8::Global;
using v8::HandleScope;
using v8::Integer;
using v8::Isolate;
using v8::Local;
using v8::MaybeLocal;
using v8::Number;
using v8::Object;
using v8::String;
using v8::TryCatch;
using v8::Value;

// ---------------------------------------------------------------- process

static v8::Platform* g_platform;            // leaked on purpose: never disposed
static ArrayBuffer::Allocator* g_allocator;  // shared by all isolates
static std::once_flag g_init_once;
static int32_t g_init_rc = PWV8_ERROR;
static bool g_signal_traps;
static pwv8_host0_cb g_h0;
static pwv8_host1_cb g_h1;
static pwv8_host2_cb g_h2;
static pwv8_host3_cb g_h3;
static pwv8_host6_cb g_h6;
static pwv8_host_raw_cb g_host_raw;
static std::atomic<uint64_t> g_module_serial{1};
static thread_local std::string t_error;
static thread_local uintptr_t t_stack_lo;

static int32_t fail(int32_t code, const std::string& msg) {
  t_error = msg;
  return code;
}

int64_t pwv8_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// ------------------------------------------------------------ SIGSEGV chain
//
// With guard-page bounds checks, an out-of-bounds wasm access faults and
// v8::TryHandleWebAssemblyTrapPosix rewrites the context so the thread
// resumes at V8's trap landing pad.  V8's *own* handler uninstalls itself on
// the first foreign fault; with wasmtime (which uses the same technique) in
// the process that is fatal, so we install our own handler that asks V8
// first and otherwise passes the signal to whoever was installed before us.
// Wasmtime, if loaded later, does the same with us.  Only SIGSEGV: on Linux
// V8 reports out-of-bounds accesses as SIGSEGV, never SIGBUS.

static struct sigaction g_prev_segv;
// Not thread_local: first use of dynamic TLS may allocate, not signal-safe.
static std::atomic<int> g_chain_depth{0};

static void segv_handler(int sig, siginfo_t* info, void* uctx) {
  if (v8::TryHandleWebAssemblyTrapPosix(sig, info, uctx)) return;
  // A signal sent with kill()/raise() (si_code <= 0) can loop between two
  // handlers that each re-raise (faulthandler does); the second time round,
  // die.  Real faults never loop here and may be handled by a handler that
  // longjmps, so they are not counted.
  bool sent = info == nullptr || info->si_code <= 0;
  if (sent && g_chain_depth.load() > 0) {
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  const struct sigaction prev = g_prev_segv;
  if (sent) g_chain_depth++;
  if ((prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction != nullptr) {
    prev.sa_sigaction(sig, info, uctx);
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN &&
             !(prev.sa_flags & SA_SIGINFO)) {
    prev.sa_handler(sig);
  } else {
    // Default action: on a real fault the instruction re-executes and the
    // process dies as it would have without us; a sent signal is re-raised.
    signal(sig, SIG_DFL);
    if (sent) raise(sig);
  }
  if (sent) g_chain_depth--;
}

static void install_segv_handler() {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = segv_handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &g_prev_segv);
}

int32_t pwv8_ensure_signal_handler(void) {
  if (!g_signal_traps) return 0;
  struct sigaction cur;
  sigaction(SIGSEGV, nullptr, &cur);
  if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == segv_handler) return 0;
  // Only go back on top of handlers that cannot be chaining SA_SIGINFO
  // handlers (faulthandler's, SIG_DFL): a SA_SIGINFO handler installed
  // after us (wasmtime's) already passes foreign faults on to us.
  if (cur.sa_flags & SA_SIGINFO) return 0;
  install_segv_handler();
  return 1;
}

int32_t pwv8_init(const char* flags, int32_t signal_traps) {
  std::call_once(g_init_once, [&] {
    g_signal_traps = signal_traps != 0;
    // Flags must be set before Initialize (V8 11 freezes them afterwards).
    // Type reflection gives WebAssembly.Function (host functions usable as
    // funcref) and Function.prototype.type() (signatures of funcref values).
    std::string f = "--experimental-wasm-type-reflection ";
    if (flags) f += flags;
    v8::V8::SetFlagsFromString(f.data(), f.size());
    g_platform = v8::platform::NewDefaultPlatform().release();
    v8::V8::InitializePlatform(g_platform);
    // false: do not let V8 install its own (self-uninstalling) handler.
    if (g_signal_traps && !v8::V8::EnableWebAssemblyTrapHandler(false))
      g_signal_traps = false;  // unsupported: V8 falls back to explicit checks
    if (!v8::V8::Initialize()) {
      t_error = "v8::V8::Initialize failed";
      return;
    }
    if (g_signal_traps) install_segv_handler();
    g_allocator = ArrayBuffer::Allocator::NewDefaultAllocator();
    g_init_rc = PWV8_OK;
  });
  if (g_init_rc != PWV8_OK) t_error = "V8 initialisation failed";
  return g_init_rc;
}

const char* pwv8_version(void) { return v8::V8::GetVersion(); }
void pwv8_set_host_callbacks(pwv8_host0_cb h0, pwv8_host1_cb h1, pwv8_host2_cb h2,
                             pwv8_host3_cb h3, pwv8_host6_cb h6, pwv8_host_raw_cb raw) {
  g_h0 = h0, g_h1 = h1, g_h2 = h2, g_h3 = h3, g_h6 = h6, g_host_raw = raw;
}
const char* pwv8_last_error(void) { return t_error.c_str(); }

// ------------------------------------------------------------------ types

// A futex mutex (Drepper's "mutex 2"): uncontended lock and unlock are one
// atomic operation each, cheaper than pthread_mutex on the per-call path.
class FutexLock {
 public:
  void lock() {
    int c = 0;
    if (v_.compare_exchange_strong(c, 1, std::memory_order_acquire)) return;
    if (c != 2) c = v_.exchange(2, std::memory_order_acquire);
    while (c != 0) {
      syscall(SYS_futex, reinterpret_cast<int*>(&v_), FUTEX_WAIT_PRIVATE, 2, nullptr, nullptr, 0);
      c = v_.exchange(2, std::memory_order_acquire);
    }
  }
  // lock(), giving up after timeout_ns: false if it was not had by then.
  bool lock_for(int64_t timeout_ns) {
    int c = 0;
    if (v_.compare_exchange_strong(c, 1, std::memory_order_acquire)) return true;
    int64_t end = pwv8_now_ns() + timeout_ns;
    if (c != 2) c = v_.exchange(2, std::memory_order_acquire);
    while (c != 0) {
      int64_t left = end - pwv8_now_ns();
      if (left <= 0) return false;  // (v_ stays 2: the holder's unlock wakes for nothing)
      struct timespec ts = {time_t(left / 1000000000), long(left % 1000000000)};
      syscall(SYS_futex, reinterpret_cast<int*>(&v_), FUTEX_WAIT_PRIVATE, 2, &ts, nullptr, 0);
      c = v_.exchange(2, std::memory_order_acquire);
    }
    return true;
  }
  void unlock() {
    if (v_.exchange(0, std::memory_order_release) == 2)
      syscall(SYS_futex, reinterpret_cast<int*>(&v_), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  }

 private:
  std::atomic<int> v_{0};  // 0 free, 1 locked, 2 locked and maybe waited for
};

struct HostFunc {
  pwv8_store* store;
  uint64_t id;
  bool fast;           // the ints trampoline
  std::string pk, rk;  // param / result kinds
  uint32_t wasm_ref;   // its WebAssembly.Function, made when first used as a funcref
};

// meta bits of a ref: the integer signature (pwv8_func_sig) and host functions.
static const uint16_t kMetaSig = 0x8000, kMetaHost = 0x4000;

struct Tracked {
  uint32_t ref;  // a ref of the memory object
  pwv8_meminfo info;
};

struct pwv8_module {
  v8::CompiledWasmModule compiled;
  uint64_t serial;
  std::vector<std::pair<std::string, std::string>> imports;  // module, name
  explicit pwv8_module(v8::CompiledWasmModule c) : compiled(std::move(c)) {}
};

// The isolate and context stores share (see the header comment): one per
// engine and creating thread, made with that thread's first store and
// kept while the thread runs and the engine lives.  What V8 keeps per isolate lives here
// (the lock, the Locker switch, the stack limit, the sticky HandleScope, the
// cached JS objects); a store keeps its handle table, limits and deadline.
struct pwv8_store;
struct Shared {
  Isolate* iso = nullptr;
  Global<Context> ctx;
  // The isolate's lock: a call into any of its stores holds it; owner is the
  // holding thread (recursive entries on that thread skip the lock).
  FutexLock mu;
  std::atomic<uintptr_t> owner{0};
  uintptr_t creator = 0;  // pthread_self() of the thread that made the isolate
  pid_t creator_tid = 0;  // and its kernel id (to see whether it still runs)
  bool locking = false;   // every outermost entry takes a v8::Locker (go_locking)
  // The stack limit in force: set for thread limit_owner, entered at limit_sp,
  // for a store allowing limit_max bytes of stack.
  uintptr_t limit_owner = 0, limit_sp = 0, limit = 0;
  uint64_t limit_max = 0;
  unsigned pump_counter = 0;
  // The store whose call is the innermost one running (the watchdog terminates
  // only that one; see try_terminate).  Written by the lock holder.
  std::atomic<pwv8_store*> running{nullptr};
  // Cached JS objects of the context.
  Global<Function> f_instantiate, c_memory, c_global, c_table, c_runtime_error, c_function;
  Global<Function> f_table_get, f_table_set, f_table_grow, f_mem_grow;
  Global<Function> f_mod_imports, f_validate, f_func_type;
  Global<Object> host_marker;
  Global<String> s_value, s_length, s_exports, s_parameters, s_results;
  // A HandleScope open for the isolate's whole life, holding one handle, so
  // that per-call scopes reuse its handle block instead of malloc+free.
  alignas(HandleScope) unsigned char sticky_mem[sizeof(HandleScope)];
  HandleScope* sticky = nullptr;
  // Guarded by g_reg_mu: stores not closed yet and store structs pointing here
  // (this struct is freed when that drops to 0 after the isolate went: a
  // closed store still locks mu).  An isolate whose stores all closed stays,
  // idle, for the thread's next store (see pwv8_store_close).
  int open = 0, structs = 0;
  size_t gc_base = 0;  // heap + external bytes after the last collection (see collect_garbage)
  bool registered = false;  // in g_shared under key (an engine's compile isolate never is)
  std::pair<uint64_t, uint64_t> key;
};

struct pwv8_store {
  explicit pwv8_store(Shared* sh)
      : h(sh), ctx(sh->ctx), f_instantiate(sh->f_instantiate), c_memory(sh->c_memory),
        c_global(sh->c_global), c_table(sh->c_table), c_runtime_error(sh->c_runtime_error),
        c_function(sh->c_function), f_table_get(sh->f_table_get), f_table_set(sh->f_table_set),
        f_table_grow(sh->f_table_grow), f_mem_grow(sh->f_mem_grow),
        f_mod_imports(sh->f_mod_imports), f_validate(sh->f_validate),
        f_func_type(sh->f_func_type), host_marker(sh->host_marker), s_value(sh->s_value),
        s_length(sh->s_length), s_exports(sh->s_exports), s_parameters(sh->s_parameters),
        s_results(sh->s_results) {}
  Shared* h;
  pwv8_state state = {0, 0};
  uint64_t id = 0;
  Isolate* iso = nullptr;  // h->iso while the store is open, nullptr once closed
  int depth = 0;           // nesting of entries into this store (its thread holds h->mu)
  uint64_t max_stack = 1 << 20;
  // Handle table; slot 0 is never used (0 = null).
  std::vector<Global<Value>> refs;
  std::vector<uint16_t> meta;  // per ref: integer call signature (pwv8_func_sig)
  // Deadlines (see the watchdog below).
  int64_t timeout_ns = 0;
  bool watched = false;
  std::atomic<int64_t> deadline{0};
  std::atomic<int> active{0}, intr_busy{0}, term_requested{0};
  // The shared context and its cached objects (references into h).
  Global<Context>& ctx;
  Global<Function>&f_instantiate, &c_memory, &c_global, &c_table, &c_runtime_error, &c_function;
  Global<Function>&f_table_get, &f_table_set, &f_table_grow, &f_mem_grow;
  Global<Function>&f_mod_imports, &f_validate, &f_func_type;
  Global<Object>& host_marker;
  Global<String>&s_value, &s_length, &s_exports, &s_parameters, &s_results;
  std::unordered_map<uint64_t, Global<Object>> modules;  // serial -> module
  std::vector<std::unique_ptr<HostFunc>> hostfuncs;
  std::unordered_map<uint32_t, HostFunc*> host_by_ref;
  std::vector<std::unique_ptr<Tracked>> tracked;

  Local<Value> get(uint32_t r) { return refs[r].Get(iso); }
  uint32_t add(Local<Value> v) {
    refs.emplace_back(iso, v);
    meta.push_back(0);
    return uint32_t(refs.size() - 1);
  }
  bool valid(uint32_t r) { return r > 0 && r < refs.size() && !refs[r].IsEmpty(); }
};

struct pwv8_engine {
  pwv8_store* compiler;
  uint64_t serial;  // never reused: the key of its shared isolates
};

// ------------------------------------------------------------- stack limit
//
// V8 keeps one stack limit per isolate, computed for the thread that created
// it.  Without v8::Locker (which would re-archive per-thread state on every
// switch), entering from another thread leaves a limit pointing into the
// creator's stack: every call would overflow, or none would.  So on the
// outermost entry we set the limit below the current stack pointer whenever
// the thread changed, the entry point moved by more than 16 KiB or the store
// allows another stack size, keeping 256 KiB of the thread's stack free below
// the limit for V8's runtime and for Python host functions called from deep
// wasm recursion.  A store entered while a call into another store of the
// isolate is under it (force) gets its own limit for the time of its call.

static const uintptr_t kStackSlack = 256 << 10;

static void retarget_stack(Shared* h, uint64_t max_stack, uintptr_t me, bool force) {
  uintptr_t sp = uintptr_t(__builtin_frame_address(0));
  if (!force && h->limit_owner == me && h->limit_max == max_stack && sp + 16384 > h->limit_sp &&
      sp < h->limit_sp + 16384)
    return;
  if (t_stack_lo == 0) {
    pthread_attr_t attr;
    void* addr = nullptr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      pthread_attr_getstack(&attr, &addr, &size);
      pthread_attr_destroy(&attr);
    }
    t_stack_lo = addr ? uintptr_t(addr) : sp - (8u << 20);
  }
  uintptr_t limit = sp > max_stack ? sp - max_stack : 0;
  if (limit < t_stack_lo + kStackSlack) limit = t_stack_lo + kStackSlack;
  h->iso->SetStackLimit(limit);
  h->limit_owner = me;
  h->limit_sp = sp;
  h->limit = limit;
  h->limit_max = max_stack;
}

// ---------------------------------------------------------------- watchdog
//
// One thread for the process sleeps until the earliest armed deadline and
// calls TerminateExecution (callable from any thread) on stores whose
// outermost call is past it.  Arming is two atomic stores; the thread is only
// woken when a deadline is earlier than its planned wake-up.  The race
// between "terminate" and "the call just returned" is closed Dekker-style:
// the terminator raises intr_busy before reading active, the exiting call
// clears active before reading intr_busy, and whoever is second sees the
// other; a termination that lands after the call returned is cancelled.

struct Watchdog {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<pwv8_store*> stores;
  std::atomic<int64_t> next_wake{INT64_MAX};  // 0 while scanning
  bool started = false;
};
static Watchdog* g_wd = new Watchdog;  // leaked: the thread never stops

static bool try_terminate(pwv8_store* s) {
  s->intr_busy.store(1);
  bool running = s->active.load() != 0;
  if (running) {
    s->term_requested.store(1);
    // Only while this store's call is the innermost one: a call into another
    // store of the isolate, made from one of our host functions, runs to its
    // end, and Run::finish terminates ours then.
    if (s->h->running.load() == s) s->iso->TerminateExecution();
  }
  s->intr_busy.store(0);
  return running;
}

static void watchdog_loop() {
  std::unique_lock<std::mutex> lk(g_wd->mu);
  for (;;) {
    g_wd->next_wake.store(0);
    int64_t now = pwv8_now_ns(), next = INT64_MAX;
    for (pwv8_store* s : g_wd->stores) {
      int64_t d = s->deadline.load();
      if (d == 0) continue;
      if (d <= now) {
        if (try_terminate(s)) s->deadline.compare_exchange_strong(d, 0);
      } else if (d < next) {
        next = d;
      }
    }
    g_wd->next_wake.store(next);
    if (next == INT64_MAX)
      g_wd->cv.wait(lk);
    else
      g_wd->cv.wait_for(lk, std::chrono::nanoseconds(next - now));
  }
}

static void watch(pwv8_store* s) {
  if (s->watched) return;
  std::lock_guard<std::mutex> lk(g_wd->mu);
  g_wd->stores.push_back(s);
  s->watched = true;
  if (!g_wd->started) {
    std::thread(watchdog_loop).detach();
    g_wd->started = true;
  }
}

static void unwatch(pwv8_store* s) {
  if (!s->watched) return;
  std::lock_guard<std::mutex> lk(g_wd->mu);
  auto& v = g_wd->stores;
  for (size_t i = 0; i < v.size(); i++)
    if (v[i] == s) {
      v.erase(v.begin() + i);
      break;
    }
  s->watched = false;
}

// ------------------------------------------------------------------ entry

// An isolate entered from a thread other than its creator, with signal-based
// traps: the wasm code V8 generated marks "this thread is in wasm" through a
// flag address the isolate took from its *creating* thread, while the SIGSEGV
// handler reads the faulting thread's own flag, so an out-of-bounds access in
// the other thread would not be recognised as a trap and would kill the
// process.  v8::Locker makes V8 set up its per-thread state (that flag address
// included) for whichever thread locks, as V8 requires for isolates used by
// several threads.  Once an isolate was shared it always locks (a locker-using
// isolate cannot go back), which costs each outermost entry ~0.3 µs; isolates
// used by one thread never pay it.  The isolate-long HandleScope goes first:
// its handle block is per-thread state the top-level Locker frees on exit.
// Called with h->mu held and the isolate not entered.
static void go_locking(Shared* h) {
  if (h->sticky != nullptr) {
    h->iso->Enter();
    h->sticky->~HandleScope();
    h->sticky = nullptr;
    h->iso->Exit();
  }
  h->locking = true;
}

// Enters a store: recursive on the thread holding its isolate (host function
// -> Python -> call into the same store or another store of the isolate),
// exclusive across threads.  outer() is true for the outermost entry into
// *this store* (its call arms the deadline); the isolate's lock, Locker and
// Enter are taken by the outermost entry into the isolate.
class Entry {
 public:
  // may_give_up: a store with a deadline waits for its isolate no longer than
  // that (operations that cannot fail, such as setting the limits, wait).
  explicit Entry(pwv8_store* s, bool may_give_up = true) : s_(s) {
    uintptr_t me = uintptr_t(pthread_self());  // no TLS lookup: reads %fs
    Shared* h = s->h;
    if (h->owner.load(std::memory_order_relaxed) == me) {  // this thread holds the isolate
      if (s->iso == nullptr) {  // closed: the caller returns PWV8_CLOSED
        closed_ = true;
        return;
      }
      outer_ = s->depth++ == 0;
      if (outer_) {  // a call into another store is under us: our own stack limit meanwhile
        saved_owner_ = h->limit_owner, saved_sp_ = h->limit_sp, saved_limit_ = h->limit;
        saved_max_ = h->limit_max;
        retarget_stack(h, s->max_stack, me, true);
      }
      return;
    }
    // The outermost entry into the isolate on this thread: take its lock.  If
    // another thread holds it, a store with a deadline waits no longer than
    // that: the holder may be a host function waiting for this very call
    // (stores one thread made share its isolate), and both threads would
    // deadlock.  The call then fails as a deadline trap (see not_entered).
    int64_t wait_ns = may_give_up ? s->timeout_ns : 0;
    if (wait_ns > 0 ? !h->mu.lock_for(wait_ns) : (h->mu.lock(), false)) {
      busy_ = closed_ = true;  // (not entered: the destructor has nothing to undo)
      return;
    }
    locked_ = outer_ = true;
    if (s->iso == nullptr) {
      closed_ = true;
      return;
    }
    if (!h->locking && me != h->creator && g_signal_traps) go_locking(h);
    h->owner.store(me, std::memory_order_relaxed);
    s->depth = 1;
    if (h->locking) {
      locker_ = ::new (static_cast<void*>(locker_mem_)) v8::Locker(h->iso);
      h->limit_owner = 0;  // the Locker reset this thread's stack limit: set ours again
    }
    h->iso->Enter();
    retarget_stack(h, s->max_stack, me, false);
  }
  ~Entry() {
    Shared* h = s_->h;
    if (!locked_) {
      if (closed_) return;
      if (--s_->depth == 0) {  // back to the store under us, and to its stack limit
        h->iso->SetStackLimit(saved_limit_);
        h->limit_owner = saved_owner_, h->limit_sp = saved_sp_, h->limit = saved_limit_;
        h->limit_max = saved_max_;
      }
      return;
    }
    if (closed_) {
      h->mu.unlock();
      return;
    }
    // Now and then run the platform's foreground tasks for this isolate
    // (GC finalisation and the like): no one else ever pumps them.
    if ((++h->pump_counter & 63) == 0)
      while (v8::platform::PumpMessageLoop(g_platform, h->iso)) {
      }
    h->iso->Exit();
    if (locker_ != nullptr) locker_->~Locker();
    s_->depth = 0;
    h->owner.store(0, std::memory_order_relaxed);
    h->mu.unlock();
  }
  bool outer() const { return outer_; }
  bool ok() const { return !closed_; }
  bool busy() const { return busy_; }

 private:
  pwv8_store* s_;
  bool outer_ = false, locked_ = false, closed_ = false, busy_ = false;
  uintptr_t saved_owner_ = 0, saved_sp_ = 0, saved_limit_ = 0;
  uint64_t saved_max_ = 0;
  v8::Locker* locker_ = nullptr;
  alignas(v8::Locker) unsigned char locker_mem_[sizeof(v8::Locker)];
};

static int32_t closed(pwv8_store* s) {
  s->state.status = PWV8_CLOSED;
  return fail(PWV8_CLOSED, "the store is closed");
}

// Why an Entry did not enter: the store is closed, or its isolate stayed busy
// in another thread past the store's deadline (see Entry).
static int32_t not_entered(pwv8_store* s, const Entry& e) {
  if (!e.busy()) return closed(s);
  s->state.status = PWV8_TRAP_DEADLINE;
  return fail(PWV8_TRAP_DEADLINE,
              "the call could not start within its deadline: the V8 isolate this store shares with the "
              "other stores its thread made was busy in another thread all along (a host function "
              "waiting for this call? make the store in the thread that calls it)");
}

// Wraps code that may run wasm: deadline arming and termination bookkeeping
// on the store's outermost call, which is the isolate's running store while
// it lasts (a call into another store of the isolate, from a host function,
// is the running one for its duration).
class Run {
 public:
  Run(pwv8_store* s, bool outer) : s_(s), outer_(outer) {
    if (!outer) return;
    if (s->timeout_ns > 0) {
      int64_t d = pwv8_now_ns() + s->timeout_ns;
      s->deadline.store(d);
      int64_t nw = g_wd->next_wake.load();
      if (nw == 0 || nw > d) {
        std::lock_guard<std::mutex> lk(g_wd->mu);
        g_wd->cv.notify_one();
      }
    }
    prev_ = s->h->running.load(std::memory_order_relaxed);
    s->h->running.store(s);
    s->active.store(1);
  }
  int32_t finish(int32_t rc) {
    if (!outer_) return rc;
    s_->active.store(0);
    while (s_->intr_busy.load()) std::this_thread::yield();
    s_->deadline.store(0, std::memory_order_relaxed);
    if (s_->term_requested.load(std::memory_order_relaxed) && s_->term_requested.exchange(0)) {
      // No JS of this call is on the stack any more: clear the termination so
      // the next call (or the call under us) goes on clean.  A call that
      // completed anyway keeps its result.
      s_->iso->CancelTerminateExecution();
      if (rc == PWV8_TRAP_HOST || rc == PWV8_ERROR) {
        t_error = "execution terminated (deadline or interrupt)";
        rc = PWV8_TRAP_DEADLINE;
      }
    }
    // Back to the call under us; if its deadline passed meanwhile, the
    // watchdog left the termination to us (Dekker with try_terminate:
    // running is written before term_requested is read, and the other way
    // round there).
    s_->h->running.store(prev_);
    if (prev_ != nullptr && prev_->term_requested.load()) s_->iso->TerminateExecution();
    return rc;
  }

 private:
  pwv8_store* s_;
  pwv8_store* prev_ = nullptr;
  bool outer_;
};

// Everything a store operation needs, in destruction order.  Calls pass the
// context to Function::Call, which enters it only if needed: ENTER_CALL
// saves the Context::Scope.
#define ENTER_OR(s, ret)                  \
  Entry entry_(s);                        \
  if (!entry_.ok()) return ret;           \
  Isolate* iso = (s)->iso;                \
  HandleScope hs_(iso);                   \
  Local<Context> ctx = (s)->ctx.Get(iso); \
  TryCatch tc(iso)
#define ENTER_CALL(s) ENTER_OR(s, not_entered(s, entry_))
#define ENTER(s)     \
  ENTER_OR(s, not_entered(s, entry_)); \
  Context::Scope cs_(ctx)

// ------------------------------------------------------------ conversions

static Local<Value> host_as_wasm(pwv8_store* s, Isolate* iso, uint32_t ref);

static inline Local<Value> to_js(pwv8_store* s, Isolate* iso, char kind,
                                 const pwv8_val& v) {
  switch (kind) {
    case PWV8_I32:
      return Integer::New(iso, v.i32);
    case PWV8_I64:  // i64 crosses the JS boundary as BigInt
      return BigInt::New(iso, v.i64);
    case PWV8_F32:  // f32 travels as a double
      return Number::New(iso, double(v.f32));
    case PWV8_F64:
      return Number::New(iso, v.f64);
    case PWV8_EXTERNREF:  // the caller's id wrapped in a v8::External
      if (v.ref == 0) return v8::Null(iso);
      return External::New(iso, reinterpret_cast<void*>(uintptr_t(v.ref)));
    default:  // funcref
      if (v.ref == 0 || !s->valid(uint32_t(v.ref))) return v8::Null(iso);
      if (s->meta[v.ref] & kMetaHost) return host_as_wasm(s, iso, uint32_t(v.ref));
      return s->get(uint32_t(v.ref));
  }
}

static inline pwv8_val from_js(pwv8_store* s, Local<Context> ctx, char kind,
                               Local<Value> v) {
  pwv8_val r;
  r.i64 = 0;
  switch (kind) {
    case PWV8_I32:
      r.i32 = v->IsInt32() ? v.As<v8::Int32>()->Value()
                           : v->Int32Value(ctx).FromMaybe(0);
      break;
    case PWV8_I64:
      if (v->IsBigInt()) r.i64 = v.As<BigInt>()->Int64Value();
      break;
    case PWV8_F32:
      r.f32 = float(v->IsNumber() ? v.As<Number>()->Value() : 0.0);
      break;
    case PWV8_F64:
      r.f64 = v->IsNumber() ? v.As<Number>()->Value() : 0.0;
      break;
    case PWV8_EXTERNREF:
      r.ref = v->IsExternal() ? uint64_t(uintptr_t(v.As<External>()->Value())) : 0;
      break;
    default:
      r.ref = (v->IsNull() || v->IsUndefined()) ? 0 : s->add(v);
  }
  return r;
}

static const char* kind_name(int32_t k) {
  static const char* names[] = {"i32", "i64", "f32", "f64", "externref", "anyfunc"};
  return k >= 0 && k <= 5 ? names[k] : "i32";
}

static Local<String> str(Isolate* iso, const std::string& s) {
  return String::NewFromUtf8(iso, s.data(), v8::NewStringType::kNormal, int(s.size()))
      .ToLocalChecked();
}

static std::string to_std(Isolate* iso, Local<Value> v) {
  String::Utf8Value u(iso, v);
  return *u ? std::string(*u, u.length()) : std::string("?");
}

static void refresh_tracked(pwv8_store* s) {
  for (auto& t : s->tracked) {
    if (t->ref == 0) continue;
    Local<ArrayBuffer> b = s->get(t->ref).As<v8::WasmMemoryObject>()->Buffer();
    t->info.data = static_cast<uint8_t*>(b->Data());
    t->info.size = b->ByteLength();
  }
}

// Map a caught exception to a code; the message goes to pwv8_last_error.
static int32_t classify(pwv8_store* s, Isolate* iso, Local<Context> ctx, TryCatch& tc) {
  Context::Scope cs(ctx);  // ToString needs an entered context (ENTER_CALL has none)
  if (tc.HasTerminated() || s->term_requested.load())
    return fail(PWV8_TRAP_DEADLINE, "execution terminated (deadline or interrupt)");
  Local<Value> ex = tc.Exception();
  if (ex.IsEmpty()) return fail(PWV8_ERROR, "unknown V8 failure");
  if (ex->StrictEquals(s->host_marker.Get(iso)))
    return fail(PWV8_TRAP_HOST, "host function failed");
  std::string m = to_std(iso, ex);
  t_error = m;
  auto has = [&](const char* x) { return m.find(x) != std::string::npos; };
  if (has("Maximum call stack size exceeded")) return PWV8_TRAP_STACK_OVERFLOW;
  if (!ex->IsObject() ||
      !ex.As<Object>()->InstanceOf(ctx, s->c_runtime_error.Get(iso)).FromMaybe(false))
    return PWV8_ERROR;
  if (has("unreachable")) return PWV8_TRAP_UNREACHABLE;
  if (has("memory access out of bounds") || has("data segment")) return PWV8_TRAP_MEMORY_OOB;
  if (has("by zero")) return PWV8_TRAP_DIV_BY_ZERO;
  if (has("divide result unrepresentable")) return PWV8_TRAP_INT_OVERFLOW;
  if (has("float unrepresentable")) return PWV8_TRAP_BAD_CONVERSION;
  if (has("signature mismatch")) return PWV8_TRAP_BAD_SIGNATURE;
  if (has("unaligned")) return PWV8_TRAP_MISALIGNED;
  if (has("table") || has("element segment")) return PWV8_TRAP_TABLE_OOB;
  if (has("null")) return PWV8_TRAP_NULL_REFERENCE;
  return PWV8_TRAP_OTHER;
}

static int32_t api_error(Isolate* iso, TryCatch& tc, const char* what) {
  if (tc.HasCaught() && !tc.Exception().IsEmpty())
    return fail(PWV8_ERROR, to_std(iso, tc.Exception()));
  return fail(PWV8_ERROR, what);
}

// ------------------------------------------------------------- host calls

// Marks the store's host failure and lets the exception (or a termination
// already under way) unwind the wasm frames.
static void host_failed(pwv8_store* s, Isolate* iso) {
  int32_t why = s->state.host_failed;
  s->state.host_failed = 0;
  if (iso->IsExecutionTerminating()) return;
  if (why == PWV8_HOST_NOT_RUN)  // Python's stack is exhausted: report it as the stack overflow it is
    iso->ThrowException(v8::Exception::RangeError(
        v8::String::NewFromUtf8Literal(iso, "Maximum call stack size exceeded (host function could not be called)")));
  else
    iso->ThrowException(s->host_marker.Get(iso));
}

static void host_call(const FunctionCallbackInfo<Value>& info) {
  HostFunc* hf = static_cast<HostFunc*>(info.Data().As<External>()->Value());
  pwv8_store* s = hf->store;
  Isolate* iso = info.GetIsolate();
  Local<Context> ctx = iso->GetCurrentContext();
  uint32_t np = uint32_t(hf->pk.size()), nr = uint32_t(hf->rk.size());
  refresh_tracked(s);  // wasm may have grown memory before calling us
  if (hf->fast) {
    int64_t a[6] = {0, 0, 0, 0, 0, 0};
    for (uint32_t i = 0; i < np; i++) {
      Local<Value> v = info[int(i)];
      a[i] = hf->pk[i] == PWV8_I64 ? v.As<BigInt>()->Int64Value()
                                   : int64_t(v.As<v8::Int32>()->Value());
    }
    int64_t r;
    switch (np) {  // one trampoline per arity: Python gets no padding to unpack
      case 0: r = g_h0(hf->id); break;
      case 1: r = g_h1(hf->id, a[0]); break;
      case 2: r = g_h2(hf->id, a[0], a[1]); break;
      case 3: r = g_h3(hf->id, a[0], a[1], a[2]); break;
      default: r = g_h6(hf->id, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    if (r == PWV8_FAIL) {  // cffi's error value, unless Python said it is the real result
      if (s->state.host_failed == PWV8_HOST_GENUINE_FAIL) s->state.host_failed = 0;
      else if (!s->state.host_failed) s->state.host_failed = PWV8_HOST_NOT_RUN;
    }
    if (s->state.host_failed) return host_failed(s, iso);
    if (nr == 0) return;
    if (hf->rk[0] == PWV8_I32)
      info.GetReturnValue().Set(int32_t(r));
    else
      info.GetReturnValue().Set(BigInt::New(iso, r));
    return;
  }
  pwv8_val small[16];
  std::vector<pwv8_val> big;
  pwv8_val* vals = small;
  if (np > 16 || nr > 16) {
    big.resize(np > nr ? np : nr);
    vals = big.data();
  }
  for (uint32_t i = 0; i < np; i++) vals[i] = from_js(s, ctx, hf->pk[i], info[int(i)]);
  if (g_host_raw(hf->id, s->id, vals, np) != 0 && !s->state.host_failed)
    s->state.host_failed = PWV8_HOST_NOT_RUN;  // cffi's error value: the callback did not run
  if (s->state.host_failed) return host_failed(s, iso);
  if (nr == 1) {
    info.GetReturnValue().Set(to_js(s, iso, hf->rk[0], vals[0]));
  } else if (nr > 1) {  // multi-value: an array, which the wasm wrapper unpacks
    Local<Array> a = Array::New(iso, int(nr));
    for (uint32_t i = 0; i < nr; i++)
      a->Set(ctx, i, to_js(s, iso, hf->rk[i], vals[i])).FromMaybe(false);
    info.GetReturnValue().Set(a);
  }
}

// ------------------------------------------------------------------ store

static Local<Function> fn_prop(Local<Context> ctx, Local<Object> o, const char* name) {
  Isolate* iso = ctx->GetIsolate();
  return o->Get(ctx, String::NewFromUtf8(iso, name).ToLocalChecked())
      .ToLocalChecked()
      .As<Function>();
}

// An isolate and its context with the cached objects (the caller registers it).
static Shared* shared_new() {
  auto* h = new Shared();
  Isolate::CreateParams params;
  params.array_buffer_allocator = g_allocator;
  h->iso = Isolate::New(params);
  Isolate* iso = h->iso;
  // No promises here: skip the microtask checkpoint after every call.
  iso->SetMicrotasksPolicy(v8::MicrotasksPolicy::kExplicit);
  iso->Enter();
  {
    HandleScope hs(iso);
    Local<Context> ctx = Context::New(iso);
    Context::Scope cs(ctx);
    h->ctx.Reset(iso, ctx);
    Local<Object> wa = fn_prop(ctx, ctx->Global(), "WebAssembly").As<Object>();
    // Instantiate from a JS frame: called straight from C++, V8 10/11 drop
    // an exception thrown by the start function and return the instance.
    Local<String> src = String::NewFromUtf8Literal(
        iso, "(function(m, i) { return new WebAssembly.Instance(m, i); })");
    h->f_instantiate.Reset(iso, v8::Script::Compile(ctx, src)
                                    .ToLocalChecked()
                                    ->Run(ctx)
                                    .ToLocalChecked()
                                    .As<Function>());
    h->c_memory.Reset(iso, fn_prop(ctx, wa, "Memory"));
    h->c_global.Reset(iso, fn_prop(ctx, wa, "Global"));
    h->c_table.Reset(iso, fn_prop(ctx, wa, "Table"));
    h->c_runtime_error.Reset(iso, fn_prop(ctx, wa, "RuntimeError"));
    h->c_function.Reset(iso, fn_prop(ctx, wa, "Function"));
    h->f_func_type.Reset(iso, fn_prop(ctx, h->c_function.Get(iso), "type"));
    h->f_validate.Reset(iso, fn_prop(ctx, wa, "validate"));
    Local<Function> mod = fn_prop(ctx, wa, "Module");
    h->f_mod_imports.Reset(iso, fn_prop(ctx, mod, "imports"));
    Local<Object> tp = fn_prop(ctx, h->c_table.Get(iso), "prototype").As<Object>();
    h->f_table_get.Reset(iso, fn_prop(ctx, tp, "get"));
    h->f_table_set.Reset(iso, fn_prop(ctx, tp, "set"));
    h->f_table_grow.Reset(iso, fn_prop(ctx, tp, "grow"));
    Local<Object> mp = fn_prop(ctx, h->c_memory.Get(iso), "prototype").As<Object>();
    h->f_mem_grow.Reset(iso, fn_prop(ctx, mp, "grow"));
    // Thrown by failing host functions; recognised by identity.
    h->host_marker.Reset(
        iso, v8::Exception::Error(String::NewFromUtf8Literal(iso, "host function failed"))
                 .As<Object>());
    h->s_value.Reset(iso, String::NewFromUtf8Literal(iso, "value"));
    h->s_length.Reset(iso, String::NewFromUtf8Literal(iso, "length"));
    h->s_exports.Reset(iso, String::NewFromUtf8Literal(iso, "exports"));
    h->s_parameters.Reset(iso, String::NewFromUtf8Literal(iso, "parameters"));
    h->s_results.Reset(iso, String::NewFromUtf8Literal(iso, "results"));
  }
  // Placement new: HandleScope forbids operator new, and this scope must
  // outlive the function (closed in shared_dispose, innermost-last).
  h->sticky = ::new (static_cast<void*>(h->sticky_mem)) HandleScope(iso);
  Integer::New(iso, 0);
  iso->Exit();
  h->creator = uintptr_t(pthread_self());
  h->creator_tid = pid_t(syscall(SYS_gettid));
  return h;
}

// Dispose of the isolate of h, whose last store was closed.
static void shared_dispose(Shared* h) {
  Isolate* iso = h->iso;
  {
    std::lock_guard<FutexLock> lk(h->mu);
    std::unique_ptr<v8::Locker> locker(h->locking ? new v8::Locker(iso) : nullptr);
    iso->Enter();
    // Every Global must be reset before Dispose (their destructors would touch
    // the freed isolate).
    Global<Function>* fs[] = {&h->f_instantiate, &h->c_memory,      &h->c_global,
                              &h->c_table,       &h->c_runtime_error, &h->c_function,
                              &h->f_table_get,   &h->f_table_set,   &h->f_table_grow,
                              &h->f_mem_grow,    &h->f_mod_imports,
                              &h->f_validate,    &h->f_func_type};
    for (auto* f : fs) f->Reset();
    Global<String>* ss[] = {&h->s_value, &h->s_length, &h->s_exports, &h->s_parameters,
                            &h->s_results};
    for (auto* x : ss) x->Reset();
    h->host_marker.Reset();
    h->ctx.Reset();
    if (h->sticky != nullptr) h->sticky->~HandleScope();
    h->sticky = nullptr;
    iso->Exit();
  }
  // The default platform keeps a foreground task runner per isolate, keyed by the
  // isolate's address, until it is told the isolate goes ("has to be called for all
  // Isolates which are deleted", libplatform.h).  Without this, an isolate created
  // later at the same address inherits the old runner and its pending tasks, which
  // point into the freed isolate: after many stores were made and closed, the heap
  // was corrupted ("malloc(): unaligned tcache chunk detected" in a later
  // Isolate::New).  NotifyIsolateShutdown dereferences the runner without checking
  // that there is one: asking for it first makes sure.
  g_platform->GetForegroundTaskRunner(iso);
  v8::platform::NotifyIsolateShutdown(g_platform, iso);
  iso->Dispose();
  h->iso = nullptr;
}

// The shared isolates by (engine serial, thread serial).  Serials are never
// reused, so a new thread that gets a dead thread's pthread_t gets its own.
static std::mutex g_reg_mu;
static std::map<std::pair<uint64_t, uint64_t>, Shared*> g_shared;
static std::atomic<uint64_t> g_serial{1};
static thread_local uint64_t t_serial;

// Whether the thread that made h's isolate has ended (a kernel id reused by a
// new thread since only delays the answer).
static bool thread_gone(Shared* h) {
  return syscall(SYS_tgkill, getpid(), h->creator_tid, 0) != 0 && errno == ESRCH;
}

// Called with g_reg_mu held (or on a Shared no one else sees yet).
static pwv8_store* store_on(Shared* h, uint64_t id) {
  h->open++;
  h->structs++;
  auto* s = new pwv8_store(h);
  s->id = id;
  s->iso = h->iso;
  s->refs.emplace_back();  // slot 0 = null
  s->meta.push_back(0);
  return s;
}

// The store's objects become garbage of the shared isolate: its handle table
// and module objects are released (called with the isolate held).
static void release_store(pwv8_store* s) {
  for (auto& r : s->refs) r.Reset();
  for (auto& kv : s->modules) kv.second.Reset();
  s->iso = nullptr;
  for (auto& t : s->tracked) t->info = {nullptr, 0};  // Python sees an empty memory
}

// A closed store's objects are garbage of the isolate, much of it in the old
// generation (a host function's template and shared info) and outside the heap
// (its memories' pages), which V8 on its own collects late: its incremental
// marking is driven by foreground tasks no one runs here, so under store churn
// the heap grew by ~1 KiB per closed store and kept it.  So a close collects
// (a full GC, ~1-5 ms) when the heap and external bytes grew by 16 MiB and by
// half since the last collection: amortised, well under 1 µs per close.
// Called with the isolate held, not entered.
static void collect_garbage(Shared* h) {
  static const size_t kGcSlack = 16 << 20;
  v8::HeapStatistics st;
  h->iso->GetHeapStatistics(&st);
  size_t cur = st.used_heap_size() + st.external_memory();
  if (cur < h->gc_base + kGcSlack + h->gc_base / 2) return;
  h->iso->Enter();
  h->iso->LowMemoryNotification();
  h->iso->Exit();
  h->iso->GetHeapStatistics(&st);
  h->gc_base = st.used_heap_size() + st.external_memory();
}

// Release the store's objects now; the isolate goes with its last store.  The
// struct stays (with iso == nullptr, which every entry checks) until
// pwv8_store_delete, so stale objects fail cleanly.
int32_t pwv8_store_close(pwv8_store* s) {
  Shared* h = s->h;
  bool inside = h->owner.load(std::memory_order_relaxed) == uintptr_t(pthread_self());
  if (inside && s->depth > 0) return -1;  // inside a call into this store
  unwatch(s);
  if (inside) {  // from a call into another store of the isolate: this thread holds it
    if (s->iso == nullptr) return 0;
    release_store(s);
  } else {
    std::lock_guard<FutexLock> lk(h->mu);
    if (s->iso == nullptr) return 0;
    // (a shared isolate is locked like any entry)
    std::unique_ptr<v8::Locker> locker(h->locking ? new v8::Locker(s->iso) : nullptr);
    release_store(s);
    collect_garbage(h);
  }
  bool dispose;
  {
    std::lock_guard<std::mutex> lk(g_reg_mu);
    // inside: the store whose call holds the isolate is open, so this is never the last.
    // The last store's isolate stays for its thread's next store (a store made and closed
    // over and over would otherwise pay a new isolate each time), unless no thread will
    // make one there: the engine went (not registered) or the thread ended.
    dispose = --h->open == 0 && !inside && (!h->registered || thread_gone(h));
    if (dispose && h->registered) {
      g_shared.erase(h->key);
      h->registered = false;
    }
  }
  if (dispose) shared_dispose(h);
  return 0;
}

// Disposes of (and frees, if no store struct points there) the idle isolates
// the test picks, taking them out of the registry.  Called with g_reg_mu held.
template <class Pick>
static void drop_idle(Pick pick) {
  for (auto it = g_shared.begin(); it != g_shared.end();) {
    Shared* h = it->second;
    if (!pick(h)) {
      ++it;
      continue;
    }
    it = g_shared.erase(it);
    h->registered = false;
    if (h->open > 0) continue;  // (the engine went: its last store's close disposes of it)
    shared_dispose(h);
    if (h->structs == 0) delete h;
  }
}

static std::atomic<int32_t> g_share{1};
void pwv8_set_isolate_sharing(int32_t share) { g_share.store(share != 0 ? 1 : 0); }

pwv8_store* pwv8_store_new(pwv8_engine* e, uint64_t store_id) {
  if (g_init_rc != PWV8_OK) return nullptr;
  if (t_serial == 0) t_serial = g_serial.fetch_add(1);
  std::lock_guard<std::mutex> lk(g_reg_mu);
  if (!g_share.load()) {  // an isolate of its own, in no registry: it goes with the store
    pwv8_ensure_signal_handler();
    return store_on(shared_new(), store_id);
  }
  auto key = std::make_pair(e->serial, t_serial);
  auto it = g_shared.find(key);
  Shared* h;
  if (it != g_shared.end()) {
    h = it->second;
  } else {  // this thread's first store of the engine (the lock is held ~2 ms, once)
    // and the time to let go of the idle isolates of threads that ended
    drop_idle([](Shared* x) { return x->open == 0 && thread_gone(x); });
    h = shared_new();
    h->registered = true;
    h->key = key;
    g_shared[key] = h;
  }
  pwv8_ensure_signal_handler();  // (each new store puts our SIGSEGV handler back on top)
  return store_on(h, store_id);
}

pwv8_state* pwv8_store_state(pwv8_store* s) { return &s->state; }

void pwv8_store_delete(pwv8_store* s) {
  if (!s) return;
  // Inside a call into this store on this thread (the Python side holds a store while
  // it calls into it, so this is not expected), close refuses: freeing the struct would
  // pull it from under that call, whose exit still writes to it, and leave it on the
  // watchdog's list.  Leak it instead.
  if (pwv8_store_close(s) != 0) return;
  Shared* h = s->h;
  delete s;
  bool free_h;
  {
    std::lock_guard<std::mutex> lk(g_reg_mu);
    free_h = --h->structs == 0 && h->iso == nullptr;
  }
  if (free_h) delete h;
}

void pwv8_store_set_limits(pwv8_store* s, int64_t timeout_ns, uint64_t max_stack) {
  Entry e(s, false);
  s->timeout_ns = timeout_ns > 0 ? timeout_ns : 0;
  s->max_stack = max_stack ? max_stack : (1 << 20);  // (the next outermost entry applies it)
  if (s->timeout_ns) watch(s);
}

int32_t pwv8_store_interrupt(pwv8_store* s) { return try_terminate(s) ? 1 : 0; }

// ----------------------------------------------------------------- engine

pwv8_engine* pwv8_engine_new(void) {
  if (g_init_rc != PWV8_OK) return nullptr;
  auto* e = new pwv8_engine();
  e->serial = g_serial.fetch_add(1);
  e->compiler = store_on(shared_new(), 0);  // a private isolate, in no registry
  return e;
}

void pwv8_engine_delete(pwv8_engine* e) {
  if (!e) return;
  {
    std::lock_guard<std::mutex> lk(g_reg_mu);
    uint64_t serial = e->serial;
    drop_idle([serial](Shared* x) { return x->key.first == serial; });
  }
  pwv8_store_delete(e->compiler);
  delete e;
}

static Local<v8::Uint8Array> wrap_bytes(Isolate* iso, const uint8_t* b, size_t n) {
  // No copy: the ArrayBuffer points at the caller's bytes for this call only.
  std::shared_ptr<v8::BackingStore> bs = ArrayBuffer::NewBackingStore(
      const_cast<uint8_t*>(b), n, [](void*, size_t, void*) {}, nullptr);
  return v8::Uint8Array::New(ArrayBuffer::New(iso, bs), 0, n);
}

int32_t pwv8_module_validate(pwv8_engine* e, const uint8_t* bytes, size_t len) {
  pwv8_store* s = e->compiler;
  ENTER(s);
  Local<Value> arg = wrap_bytes(iso, bytes, len);
  Local<Value> r;
  if (!s->f_validate.Get(iso)->Call(ctx, v8::Undefined(iso), 1, &arg).ToLocal(&r))
    return api_error(iso, tc, "validate failed");
  return r->IsTrue() ? PWV8_OK : fail(PWV8_ERROR, "invalid module");
}

static std::string prop_str(Local<Context> ctx, Local<Value> o, const char* k) {
  Isolate* iso = ctx->GetIsolate();
  return to_std(iso, o.As<Object>()
                         ->Get(ctx, String::NewFromUtf8(iso, k).ToLocalChecked())
                         .ToLocalChecked());
}

int32_t pwv8_module_new(pwv8_engine* e, const uint8_t* bytes, size_t len,
                        pwv8_module** out) {
  pwv8_store* s = e->compiler;
  ENTER(s);
  Local<v8::WasmModuleObject> mo;
  if (!v8::WasmModuleObject::Compile(iso, v8::MemorySpan<const uint8_t>(bytes, len))
           .ToLocal(&mo))
    return api_error(iso, tc, "compile failed");
  auto* m = new pwv8_module(mo->GetCompiledModule());
  m->serial = g_module_serial.fetch_add(1);
  // Names (not types) of the imports, in order: the instantiation's keys.
  Local<Value> arg = mo, r;
  if (s->f_mod_imports.Get(iso)->Call(ctx, v8::Undefined(iso), 1, &arg).ToLocal(&r)) {
    Local<Array> a = r.As<Array>();
    for (uint32_t i = 0; i < a->Length(); i++) {
      Local<Value> d = a->Get(ctx, i).ToLocalChecked();
      m->imports.emplace_back(prop_str(ctx, d, "module"), prop_str(ctx, d, "name"));
    }
  }
  *out = m;
  return PWV8_OK;
}

uint32_t pwv8_module_num_imports(pwv8_module* m) { return uint32_t(m->imports.size()); }
void pwv8_module_delete(pwv8_module* m) { delete m; }

// ------------------------------------------------------ instance and funcs

int32_t pwv8_instantiate(pwv8_store* s, pwv8_module* m, const uint32_t* imports,
                         uint32_t nimports, uint32_t* out_instance) {
  ENTER(s);
  if (nimports != m->imports.size()) return fail(PWV8_ERROR, "wrong number of imports");
  Local<Object> mo;
  auto it = s->modules.find(m->serial);
  if (it != s->modules.end()) {
    mo = it->second.Get(iso);
  } else {
    Local<v8::WasmModuleObject> w;
    if (!v8::WasmModuleObject::FromCompiledModule(iso, m->compiled).ToLocal(&w))
      return api_error(iso, tc, "cannot use the module in this store");
    mo = w;
    s->modules[m->serial].Reset(iso, w);
  }
  // The imports object {module: {name: value}}.  One value per
  // (module, name): a module importing the same name twice gets it twice.
  Local<Object> imp = Object::New(iso);
  for (uint32_t i = 0; i < nimports; i++) {
    if (!s->valid(imports[i])) return fail(PWV8_ERROR, "invalid import ref");
    Local<String> mn = str(iso, m->imports[i].first);
    Local<Value> sub;
    if (!imp->Get(ctx, mn).ToLocal(&sub) || !sub->IsObject()) {
      sub = Object::New(iso);
      imp->Set(ctx, mn, sub).FromMaybe(false);
    }
    sub.As<Object>()->Set(ctx, str(iso, m->imports[i].second), s->get(imports[i])).FromMaybe(false);
  }
  Local<Value> argv[2] = {mo, imp};
  Run run(s, entry_.outer());
  Local<Value> inst;  // the start function, if any, runs here
  int32_t rc = PWV8_OK;
  if (!s->f_instantiate.Get(iso)->Call(ctx, v8::Undefined(iso), 2, argv).ToLocal(&inst))
    rc = classify(s, iso, ctx, tc);
  else
    *out_instance = s->add(inst);
  refresh_tracked(s);
  return run.finish(rc);
}

static int32_t extern_kind(pwv8_store* s, Isolate* iso, Local<Context> ctx, Local<Value> v) {
  if (v->IsFunction()) return PWV8_EXTERN_FUNC;
  if (v->IsWasmMemoryObject()) return PWV8_EXTERN_MEMORY;
  if (v->IsObject() && v.As<Object>()->InstanceOf(ctx, s->c_global.Get(iso)).FromMaybe(false))
    return PWV8_EXTERN_GLOBAL;
  return PWV8_EXTERN_TABLE;
}

int32_t pwv8_instance_export(pwv8_store* s, uint32_t instance, const char* name, size_t len,
                             int32_t* kind, uint32_t* ref) {
  ENTER(s);
  if (!s->valid(instance)) return fail(PWV8_ERROR, "invalid instance ref");
  Local<Value> ex, v;
  if (!s->get(instance).As<Object>()->Get(ctx, s->s_exports.Get(iso)).ToLocal(&ex) ||
      !ex.As<Object>()->Get(ctx, str(iso, std::string(name, len))).ToLocal(&v))
    return api_error(iso, tc, "export lookup failed");
  if (v->IsUndefined()) return fail(PWV8_ERROR, "no such export");
  *kind = extern_kind(s, iso, ctx, v);
  *ref = s->add(v);
  return PWV8_OK;
}

static Local<Array> kind_names(Isolate* iso, Local<Context> ctx, const std::string& kinds) {
  Local<Array> a = Array::New(iso, int(kinds.size()));
  for (size_t i = 0; i < kinds.size(); i++)
    a->Set(ctx, uint32_t(i), String::NewFromUtf8(iso, kind_name(kinds[i])).ToLocalChecked())
        .FromMaybe(false);
  return a;
}

// Host functions are plain API functions (creating a WebAssembly.Function
// compiles a wrapper: ~0.2 ms each, too much for ~40 imports per instance).
int32_t pwv8_func_new(pwv8_store* s, uint64_t host_id, const char* pk, uint32_t np,
                      const char* rk, uint32_t nr, int32_t fast, uint32_t* out) {
  ENTER(s);
  auto hf = std::make_unique<HostFunc>();
  hf->store = s;
  hf->id = host_id;
  hf->fast = fast != 0;
  hf->pk.assign(pk ? pk : "", np);
  hf->rk.assign(rk ? rk : "", nr);
  hf->wasm_ref = 0;
  Local<Function> f;
  if (!Function::New(ctx, host_call, External::New(iso, hf.get()), int(np)).ToLocal(&f))
    return api_error(iso, tc, "cannot create host function");
  *out = s->add(f);
  s->meta[*out] |= kMetaHost;
  s->host_by_ref[*out] = hf.get();
  s->hostfuncs.push_back(std::move(hf));
  return PWV8_OK;
}

// A host function as a funcref value must be a wasm function: wrap it once in
// new WebAssembly.Function({parameters, results}, f) (type reflection).
static Local<Value> host_as_wasm(pwv8_store* s, Isolate* iso, uint32_t ref) {
  HostFunc* hf = s->host_by_ref[ref];
  if (hf->wasm_ref == 0) {
    Local<Context> ctx = s->ctx.Get(iso);
    Context::Scope cs(ctx);  // creating objects needs one (ENTER_CALL has none)
    Local<Object> d = Object::New(iso);
    d->Set(ctx, s->s_parameters.Get(iso), kind_names(iso, ctx, hf->pk)).FromMaybe(false);
    d->Set(ctx, s->s_results.Get(iso), kind_names(iso, ctx, hf->rk)).FromMaybe(false);
    Local<Value> argv[2] = {d, s->get(ref)};
    Local<Object> w;
    if (!s->c_function.Get(iso)->NewInstance(ctx, 2, argv).ToLocal(&w)) return s->get(ref);
    hf->wasm_ref = s->add(w);
  }
  return s->get(hf->wasm_ref);
}

static int kind_of(const std::string& n) {
  static const char* names[] = {"i32", "i64", "f32", "f64", "externref", "anyfunc", "funcref"};
  for (int i = 0; i < 7; i++)
    if (n == names[i]) return i == 6 ? PWV8_FUNCREF : i;
  // v128 never crosses a call here (Python calls such a function through a generated adapter),
  // but a funcref's type may name it: reported as kind 6 (proxywasm_vm/backends/v8/_values.py)
  // (V8 10.2's type reflection names it "s128", later versions "v128")
  if (n == "v128" || n == "s128") return 6;
  return -1;
}

int32_t pwv8_func_type(pwv8_store* s, uint32_t func, char* pk, uint32_t* np, char* rk,
                       uint32_t* nr, uint32_t cap) {
  ENTER(s);
  if (!s->valid(func) || !s->get(func)->IsFunction()) return fail(PWV8_ERROR, "not a function");
  Local<Value> f = s->get(func), t;  // WebAssembly.Function.type(f)
  if (!s->f_func_type.Get(iso)->Call(ctx, v8::Undefined(iso), 1, &f).ToLocal(&t) || !t->IsObject())
    return api_error(iso, tc, "not a wasm function");
  Local<String> keys[2] = {s->s_parameters.Get(iso), s->s_results.Get(iso)};
  char* outs[2] = {pk, rk};
  uint32_t* counts[2] = {np, nr};
  for (int j = 0; j < 2; j++) {
    Local<Value> a;
    if (!t.As<Object>()->Get(ctx, keys[j]).ToLocal(&a) || !a->IsArray())
      return fail(PWV8_ERROR, "bad function type");
    uint32_t n = a.As<Array>()->Length();
    if (n > cap) return fail(PWV8_ERROR, "too many parameters or results");
    for (uint32_t i = 0; i < n; i++) {
      std::string name = to_std(iso, a.As<Array>()->Get(ctx, i).ToLocalChecked());
      int k = kind_of(name);
      if (k < 0) return fail(PWV8_ERROR, "unsupported value type in function type: " + name);
      outs[j][i] = char(k);
    }
    *counts[j] = n;
  }
  return PWV8_OK;
}

int32_t pwv8_func_call(pwv8_store* s, uint32_t func, const char* pk, uint32_t np,
                       const char* rk, uint32_t nr, pwv8_val* vals) {
  ENTER_CALL(s);
  if (!s->valid(func)) return fail(PWV8_ERROR, "invalid function ref");
  Local<Value> fv = s->get(func);
  Local<Value> small[16];
  std::vector<Local<Value>> big;
  Local<Value>* argv = small;
  if (np > 16) {
    big.resize(np);
    argv = big.data();
  }
  for (uint32_t i = 0; i < np; i++) argv[i] = to_js(s, iso, pk[i], vals[i]);
  Run run(s, entry_.outer());
  Local<Value> r;
  int32_t rc = PWV8_OK;
  if (!fv.As<Function>()->Call(ctx, v8::Undefined(iso), int(np), argv).ToLocal(&r)) {
    rc = classify(s, iso, ctx, tc);
  } else if (nr == 1) {
    vals[0] = from_js(s, ctx, rk[0], r);
  } else if (nr > 1) {  // multi-value comes back as an array
    if (!r->IsArray()) {
      rc = fail(PWV8_ERROR, "expected an array of results");
    } else {
      for (uint32_t i = 0; i < nr; i++) {
        Local<Value> v;
        if (!r.As<Array>()->Get(ctx, i).ToLocal(&v)) v = v8::Undefined(iso);
        vals[i] = from_js(s, ctx, rk[i], v);
      }
    }
  }
  refresh_tracked(s);
  return run.finish(rc);
}

int32_t pwv8_func_sig(pwv8_store* s, uint32_t func, uint32_t nargs, uint32_t i64mask,
                      int32_t rkind) {
  Entry e(s, false);
  if (!s->valid(func) || nargs > 6) return fail(PWV8_ERROR, "invalid function ref");
  s->meta[func] = uint16_t((s->meta[func] & kMetaHost) | kMetaSig | nargs | (i64mask & 63) << 3 |
                          (rkind + 1) << 9);
  return PWV8_OK;
}

// The integer fast path behind pwv8_call0..6.
static int64_t call_ints(pwv8_store* s, uint32_t func, uint32_t n, const int64_t* a) {
  ENTER_OR(s, (not_entered(s, entry_), PWV8_FAIL));
  uint32_t m = func < s->meta.size() ? s->meta[func] : 0;
  if (!(m & kMetaSig) || (m & 7) != n) {
    s->state.status = fail(PWV8_ERROR, "pwv8_func_sig was not called for this function");
    return PWV8_FAIL;
  }
  int rk = int((m >> 9) & 3) - 1;
  Local<Value> argv[6];
  for (uint32_t i = 0; i < n; i++) {
    if ((m >> (3 + i)) & 1) {
      argv[i] = BigInt::New(iso, a[i]);
    } else if (a[i] < INT32_MIN || a[i] > int64_t(UINT32_MAX)) {  // u32 is fine
      s->state.status = fail(PWV8_RANGE, std::to_string(a[i]) + " does not fit in i32");
      return PWV8_FAIL;
    } else {
      argv[i] = Integer::New(iso, int32_t(a[i]));
    }
  }
  Run run(s, entry_.outer());
  Local<Value> r;
  int32_t rc = PWV8_OK;
  int64_t out = 0;
  if (!s->get(func).As<Function>()->Call(ctx, v8::Undefined(iso), int(n), argv).ToLocal(&r))
    rc = classify(s, iso, ctx, tc);
  else if (rk == PWV8_I32)
    out = r->IsInt32() ? r.As<v8::Int32>()->Value() : r->Int32Value(ctx).FromMaybe(0);
  else if (rk == PWV8_I64)
    out = r->IsBigInt() ? r.As<BigInt>()->Int64Value() : 0;
  refresh_tracked(s);
  rc = run.finish(rc);
  if (rc != PWV8_OK) {
    s->state.status = rc;
    return PWV8_FAIL;
  }
  return out;
}

int64_t pwv8_call0(pwv8_store* s, uint32_t f) { return call_ints(s, f, 0, nullptr); }
int64_t pwv8_call1(pwv8_store* s, uint32_t f, int64_t a0) { return call_ints(s, f, 1, &a0); }
int64_t pwv8_call2(pwv8_store* s, uint32_t f, int64_t a0, int64_t a1) {
  const int64_t a[] = {a0, a1};
  return call_ints(s, f, 2, a);
}
int64_t pwv8_call3(pwv8_store* s, uint32_t f, int64_t a0, int64_t a1, int64_t a2) {
  const int64_t a[] = {a0, a1, a2};
  return call_ints(s, f, 3, a);
}
int64_t pwv8_call4(pwv8_store* s, uint32_t f, int64_t a0, int64_t a1, int64_t a2, int64_t a3) {
  const int64_t a[] = {a0, a1, a2, a3};
  return call_ints(s, f, 4, a);
}
int64_t pwv8_call5(pwv8_store* s, uint32_t f, int64_t a0, int64_t a1, int64_t a2, int64_t a3,
                   int64_t a4) {
  const int64_t a[] = {a0, a1, a2, a3, a4};
  return call_ints(s, f, 5, a);
}
int64_t pwv8_call6(pwv8_store* s, uint32_t f, int64_t a0, int64_t a1, int64_t a2, int64_t a3,
                   int64_t a4, int64_t a5) {
  const int64_t a[] = {a0, a1, a2, a3, a4, a5};
  return call_ints(s, f, 6, a);
}

// ----------------------------------------------------------------- memory
//
// A memory's bytes are the ArrayBuffer backing store of its current
// `buffer`.  memory.grow (from wasm or from us) detaches that ArrayBuffer and
// makes a new one, so data/size must be fetched again after any call; with
// guard regions the base usually stays put, but only the size is certain to
// change.  pwv8_memory_track keeps a struct up to date for the Python side.

static Local<Object> limits_desc(Isolate* iso, Local<Context> ctx, const char* k, Local<Value> kv,
                                 uint32_t initial, int64_t maximum) {
  Local<Object> d = Object::New(iso);
  d->Set(ctx, String::NewFromUtf8(iso, k).ToLocalChecked(), kv).FromMaybe(false);
  d->Set(ctx, String::NewFromUtf8Literal(iso, "initial"), Number::New(iso, initial)).FromMaybe(false);
  if (maximum >= 0)
    d->Set(ctx, String::NewFromUtf8Literal(iso, "maximum"),
                 Number::New(iso, double(maximum))).FromMaybe(false);
  return d;
}

int32_t pwv8_memory_new(pwv8_store* s, uint32_t initial, int64_t maximum, uint32_t* out) {
  ENTER(s);
  Local<Value> d = limits_desc(iso, ctx, "shared", v8::False(iso), initial, maximum);
  Local<Object> mem;
  if (!s->c_memory.Get(iso)->NewInstance(ctx, 1, &d).ToLocal(&mem))
    return api_error(iso, tc, "cannot create memory");
  *out = s->add(mem);
  return PWV8_OK;
}

int32_t pwv8_memory_track(pwv8_store* s, uint32_t mem, pwv8_meminfo** out) {
  ENTER(s);
  if (!s->valid(mem) || !s->get(mem)->IsWasmMemoryObject())
    return fail(PWV8_ERROR, "not a memory");
  Local<Value> v = s->get(mem);
  for (auto& t : s->tracked)  // one record per memory object, whatever the ref
    if (t->ref != 0 && s->get(t->ref)->StrictEquals(v)) {
      *out = &t->info;
      return PWV8_OK;
    }
  s->tracked.push_back(std::make_unique<Tracked>());
  s->tracked.back()->ref = mem;
  refresh_tracked(s);
  *out = &s->tracked.back()->info;
  return PWV8_OK;
}

int32_t pwv8_memory_grow(pwv8_store* s, uint32_t mem, uint32_t delta, uint32_t* old_pages) {
  ENTER(s);
  if (!s->valid(mem)) return fail(PWV8_ERROR, "invalid memory ref");
  Local<Value> arg = Number::New(iso, delta), r;
  if (!s->f_mem_grow.Get(iso)->Call(ctx, s->get(mem), 1, &arg).ToLocal(&r))
    return api_error(iso, tc, "memory.grow failed");
  *old_pages = r->Uint32Value(ctx).FromMaybe(0);
  refresh_tracked(s);
  return PWV8_OK;
}

// ---------------------------------------------------------------- globals

int32_t pwv8_global_new(pwv8_store* s, int32_t kind, int32_t mutable_, const pwv8_val* init,
                        uint32_t* out) {
  ENTER(s);
  Local<Object> d = Object::New(iso);
  d->Set(ctx, String::NewFromUtf8Literal(iso, "value"),
               String::NewFromUtf8(iso, kind_name(kind)).ToLocalChecked()).FromMaybe(false);
  d->Set(ctx, String::NewFromUtf8Literal(iso, "mutable"), v8::Boolean::New(iso, mutable_)).FromMaybe(false);
  Local<Value> argv[2] = {d, to_js(s, iso, char(kind), *init)};
  Local<Object> g;
  if (!s->c_global.Get(iso)->NewInstance(ctx, 2, argv).ToLocal(&g))
    return api_error(iso, tc, "cannot create global");
  *out = s->add(g);
  return PWV8_OK;
}

int32_t pwv8_global_get(pwv8_store* s, uint32_t g, int32_t kind, pwv8_val* out) {
  ENTER(s);
  if (!s->valid(g)) return fail(PWV8_ERROR, "invalid global ref");
  Local<Value> v;
  if (!s->get(g).As<Object>()->Get(ctx, s->s_value.Get(iso)).ToLocal(&v))
    return api_error(iso, tc, "global get failed");
  *out = from_js(s, ctx, char(kind), v);
  return PWV8_OK;
}

int32_t pwv8_global_set(pwv8_store* s, uint32_t g, int32_t kind, const pwv8_val* v) {
  ENTER(s);
  if (!s->valid(g)) return fail(PWV8_ERROR, "invalid global ref");
  if (s->get(g).As<Object>()->Set(ctx, s->s_value.Get(iso), to_js(s, iso, char(kind), *v))
          .IsNothing())
    return api_error(iso, tc, "global set failed");
  return PWV8_OK;
}

// ----------------------------------------------------------------- tables

int32_t pwv8_table_new(pwv8_store* s, int32_t kind, uint32_t initial, int64_t maximum,
                       const pwv8_val* init, uint32_t* out) {
  ENTER(s);
  Local<Value> k = String::NewFromUtf8(iso, kind_name(kind)).ToLocalChecked();
  Local<Value> d = limits_desc(iso, ctx, "element", k, initial, maximum);
  Local<Object> t;
  if (!s->c_table.Get(iso)->NewInstance(ctx, 1, &d).ToLocal(&t))
    return api_error(iso, tc, "cannot create table");
  // Fill explicitly: an externref table would otherwise hold `undefined`.
  Local<Function> set = s->f_table_set.Get(iso);
  Local<Value> iv = to_js(s, iso, char(kind), *init);
  for (uint32_t i = 0; i < initial; i++) {
    Local<Value> argv[2] = {Integer::NewFromUnsigned(iso, i), iv};
    if (set->Call(ctx, t, 2, argv).IsEmpty()) return api_error(iso, tc, "table init failed");
  }
  *out = s->add(t);
  return PWV8_OK;
}

int32_t pwv8_table_size(pwv8_store* s, uint32_t t, uint32_t* size) {
  ENTER(s);
  if (!s->valid(t)) return fail(PWV8_ERROR, "invalid table ref");
  Local<Value> v;
  if (!s->get(t).As<Object>()->Get(ctx, s->s_length.Get(iso)).ToLocal(&v))
    return api_error(iso, tc, "table length failed");
  *size = v->Uint32Value(ctx).FromMaybe(0);
  return PWV8_OK;
}

int32_t pwv8_table_get(pwv8_store* s, uint32_t t, int32_t kind, uint32_t index, pwv8_val* out) {
  ENTER(s);
  if (!s->valid(t)) return fail(PWV8_ERROR, "invalid table ref");
  Local<Value> arg = Integer::NewFromUnsigned(iso, index), r;
  if (!s->f_table_get.Get(iso)->Call(ctx, s->get(t), 1, &arg).ToLocal(&r))
    return api_error(iso, tc, "table.get failed");
  *out = from_js(s, ctx, char(kind), r);
  return PWV8_OK;
}

int32_t pwv8_table_set(pwv8_store* s, uint32_t t, int32_t kind, uint32_t index,
                       const pwv8_val* v) {
  ENTER(s);
  if (!s->valid(t)) return fail(PWV8_ERROR, "invalid table ref");
  Local<Value> argv[2] = {Integer::NewFromUnsigned(iso, index), to_js(s, iso, char(kind), *v)};
  if (s->f_table_set.Get(iso)->Call(ctx, s->get(t), 2, argv).IsEmpty())
    return api_error(iso, tc, "table.set failed");
  return PWV8_OK;
}

int32_t pwv8_table_grow(pwv8_store* s, uint32_t t, int32_t kind, uint32_t delta,
                        const pwv8_val* init, uint32_t* old_size) {
  ENTER(s);
  if (!s->valid(t)) return fail(PWV8_ERROR, "invalid table ref");
  Local<Value> argv[2] = {Integer::NewFromUnsigned(iso, delta), to_js(s, iso, char(kind), *init)};
  Local<Value> r;
  if (!s->f_table_grow.Get(iso)->Call(ctx, s->get(t), 2, argv).ToLocal(&r))
    return api_error(iso, tc, "table.grow failed");
  *old_size = r->Uint32Value(ctx).FromMaybe(0);
  return PWV8_OK;
}
