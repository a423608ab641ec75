/* The system calls of proxywasm_vm._guard's enter/leave in one C call each.
 *
 * In a worker, every outermost call into wasmer is bracketed by the guard (see
 * _guard.py): RLIMIT_DATA set to the process's private writable memory now plus
 * the room the store's memories have left, and ITIMER_REAL set to the deadline;
 * both undone when the call returns. Made from Python that is five calls (a
 * read of /proc/self/statm and its parsing, two setrlimit, two setitimer) and
 * about 4 us per wasm call; here the same system calls cost about 1.5 us.
 * Same calls, same values, same order as the Python path: only the
 * interpreter's share is gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

static int statm_fd = -1;
static long page_size = 4096;
static int armed_cap, armed_timer;  /* what the last enter set, for leave to undo */

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
    if (usec > 0) {
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

/* The call armed by pwvm_guard_enter returned: disarm the timer first (a SIGALRM
 * now would end a process whose call is over), then lift the memory limit. */
void pwvm_guard_leave(void) {
    if (armed_timer) {
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
