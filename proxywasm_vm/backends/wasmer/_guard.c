/* The system calls of proxywasm_vm._guard's enter/leave in one C call each, and
 * the deadline without any.
 *
 * In a worker, every outermost call into wasmer is bracketed by the guard (see
 * _guard.py): RLIMIT_DATA set to the process's private writable memory now plus
 * the room the store's memories have left (only for memories wasmer does not cap
 * itself, see the adapter's _memory_as_import), and the deadline; both undone when
 * the call returns. Made from Python that is a read of /proc/self/statm, two
 * setrlimit and two setitimer, about 4 us per wasm call.
 *
 * Here the memory limit makes the same system calls, and the deadline is kept by a
 * watchdog thread instead of ITIMER_REAL: arming writes the call's expiry time
 * (CLOCK_MONOTONIC) into a word the watchdog reads, disarming clears it; no system
 * call in the common case. The watchdog sleeps (futex) until the expiry it last saw;
 * on waking it looks again: a call still armed past its expiry gets SIGALRM sent to
 * the process, whose default action ends it, exactly as the itimer did (so the
 * parent reads the death the same way, _guard.limit_trap). Calls that come and go
 * before it wakes just move its next wake-up; with no call armed it sleeps until an
 * arm wakes it (one FUTEX_WAKE, only when its planned wake-up is later than the new
 * expiry: after an idle spell, or a deadline shorter than the last one).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

static int statm_fd = -1;
static long page_size = 4096;
static int armed_cap, armed_timer;  /* what the last enter set, for leave to undo */

/* The watchdog's words (atomics; see the comment at the top). */
static int64_t expiry_ns;          /* the armed call's expiry, CLOCK_MONOTONIC; 0: none armed */
static uint32_t arm_seq;           /* futex word: bumped by every arm */
static int64_t planned_ns;         /* when the watchdog will look next (INT64_MAX: when woken) */
static int watchdog_state;         /* 0 not started, 1 running, -1 could not start (itimer then) */

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *watchdog(void *arg) {
    (void)arg;
    for (;;) {
        uint32_t seq = __atomic_load_n(&arm_seq, __ATOMIC_SEQ_CST);
        int64_t now = mono_ns();  /* (read before the expiry: an expiry read after it and passed
                                     belongs to a call that was still armed past it) */
        int64_t exp = __atomic_load_n(&expiry_ns, __ATOMIC_SEQ_CST);
        if (exp != 0 && now >= exp) {
            kill(getpid(), SIGALRM);  /* default action: the process ends (as the itimer's did) */
            for (;;)
                pause();
        }
        __atomic_store_n(&planned_ns, exp != 0 ? exp : INT64_MAX, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&arm_seq, __ATOMIC_SEQ_CST) != seq)
            continue;  /* armed meanwhile: look again (the arm may not have seen the new plan) */
        struct timespec rel, *timeout = NULL;
        if (exp != 0) {
            int64_t d = exp - now;
            rel.tv_sec = (time_t)(d / 1000000000);
            rel.tv_nsec = (long)(d % 1000000000);
            timeout = &rel;
        }
        syscall(SYS_futex, &arm_seq, FUTEX_WAIT_PRIVATE, seq, timeout, NULL, 0);
    }
    return NULL;
}

/* Start the watchdog once; 0 when it runs. */
static int start_watchdog(void) {
    if (watchdog_state == 0) {
        pthread_attr_t attr;
        pthread_t t;
        sigset_t all, old;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        sigfillset(&all);  /* every signal stays with the threads that expect them */
        pthread_sigmask(SIG_SETMASK, &all, &old);
        __atomic_store_n(&planned_ns, INT64_MAX, __ATOMIC_SEQ_CST);
        watchdog_state = pthread_create(&t, &attr, watchdog, NULL) == 0 ? 1 : -1;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    return watchdog_state == 1 ? 0 : -1;
}

int pwvm_guard_init(void) {
    if (statm_fd < 0) {
        statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
        if (statm_fd < 0)
            return -errno;
        page_size = sysconf(_SC_PAGESIZE);
    }
    return 0;
}

/* The process's private writable memory in bytes (what RLIMIT_DATA counts): the 6th
 * field of /proc/self/statm, in pages. -1 when it cannot be read. */
int64_t pwvm_guard_data_bytes(void) {
    char buf[256];
    ssize_t n = pread(statm_fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *p = buf;
    for (int i = 0; i < 5; i++) {
        p = strchr(p, ' ');
        if (p == NULL)
            return -1;
        p++;
    }
    char *end;
    long long pages = strtoll(p, &end, 10);
    if (end == p)
        return -1;
    return (int64_t)pages * page_size;
}

/* Arm the limits of a call starting now. room >= 0: RLIMIT_DATA = private writable
 * memory now + room (the caller adds the slack); room < 0: no memory limit.
 * seconds > 0: SIGALRM (default action: the process ends) after that long, rounded
 * up to whole microseconds as Python's signal.setitimer does; 0: no deadline.
 * Returns 0, or -errno with nothing left armed. */
int pwvm_guard_enter(int64_t room, double seconds) {
    int64_t usec = 0;
    if (seconds > 0) {
        double us = seconds < 1e9 ? seconds * 1e6 : 1e15;  /* (beyond ~31 years: ~31 years) */
        usec = (int64_t)us;
        if ((double)usec < us)
            usec++;
        if (usec < 1)
            usec = 1;
    }
    armed_cap = armed_timer = 0;
    if (room >= 0) {
        int64_t data = pwvm_guard_data_bytes();
        if (data < 0)
            return -EIO;
        struct rlimit r = {(rlim_t)(data + room), RLIM_INFINITY};
        if (setrlimit(RLIMIT_DATA, &r) != 0)
            return -errno;
        armed_cap = 1;
    }
    if (usec > 0 && start_watchdog() == 0) {
        int64_t exp = mono_ns() + usec * 1000;
        __atomic_store_n(&expiry_ns, exp, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&arm_seq, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&planned_ns, __ATOMIC_SEQ_CST) > exp)  /* it would look too late */
            syscall(SYS_futex, &arm_seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        armed_timer = 2;
    } else if (usec > 0) {  /* no watchdog thread: the kernel's timer */
        struct itimerval t;
        memset(&t, 0, sizeof t);
        t.it_value.tv_sec = (time_t)(usec / 1000000);
        t.it_value.tv_usec = (suseconds_t)(usec % 1000000);
        if (setitimer(ITIMER_REAL, &t, NULL) != 0) {
            int err = errno;
            struct rlimit inf = {RLIM_INFINITY, RLIM_INFINITY};
            if (armed_cap)
                setrlimit(RLIMIT_DATA, &inf);
            armed_cap = 0;
            return -err;
        }
        armed_timer = 1;
    }
    return 0;
}

/* The call armed by pwvm_guard_enter returned: disarm the deadline first (a SIGALRM
 * now would end a process whose call is over), then lift the memory limit. */
void pwvm_guard_leave(void) {
    if (armed_timer == 2) {
        __atomic_store_n(&expiry_ns, 0, __ATOMIC_SEQ_CST);  /* the watchdog finds nothing when it looks */
    } else if (armed_timer) {
        struct itimerval t;
        memset(&t, 0, sizeof t);
        setitimer(ITIMER_REAL, &t, NULL);
    }
    if (armed_cap) {
        struct rlimit inf = {RLIM_INFINITY, RLIM_INFINITY};
        setrlimit(RLIMIT_DATA, &inf);
    }
    armed_cap = armed_timer = 0;
}
