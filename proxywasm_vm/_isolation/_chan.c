/* The wake-up half of the worker channel: real atomics, a bounded spin, then a
 * blocking poll on an eventfd plus a death descriptor (the peer's pidfd, or a
 * pipe whose other end only the peer holds).
 *
 * Layout of a direction's control words (in the shared mapping):
 *   seq       incremented (release) by the sender after the payload is written
 *   sleeping  set by the receiver before it blocks; the sender writes the
 *             receiver's eventfd only when it is set (Dekker-style: both sides
 *             use sequentially consistent operations between their store and load)
 *   cpu       the word after ``sleeping``: 1 + the CPU its side last waited on (0: not known)
 *
 * A waiter spins only while its peer runs on another CPU. When both sides share one CPU
 * (the scheduler put them there, or the other CPUs are busy), the peer cannot answer
 * while the waiter spins, and a sched_yield does not hand the CPU over: the scheduler
 * keeps the two fair, so the spinner burns as much CPU as the peer works, and each
 * crossing waits for a time slice. Blocking at once gives the CPU to the peer in one
 * switch. Each side notes its CPU in its ``cpu`` word when it starts waiting (and after
 * it was woken); the spin loop compares the peer's with its own now and then.
 *
 * Every function here runs with the GIL released (cffi API mode), so the other
 * Python threads of the process keep running while one waits.
 */
#include "_chan_shared.h"
#include <poll.h>
#include <pthread.h>
#include <string.h>

/* Publish one message: seq += 1 (after the payload), then wake the peer if it sleeps. */
void pwvm_chan_post(uint32_t *seq, uint32_t *peer_sleeping, int peer_efd) { post_message(seq, peer_sleeping, peer_efd); }

/* Copy a message that fits into the mailbox at ``box`` (u32 length, u32 flags, payload), then post it. */
void pwvm_chan_send(uint8_t *box, const uint8_t *data, uint32_t len, uint32_t *seq, uint32_t *peer_sleeping,
                    int peer_efd) {
    uint32_t head[2] = {len, 0};
    memcpy(box, head, sizeof head);
    memcpy(box + sizeof head, data, len);
    pwvm_chan_post(seq, peer_sleeping, peer_efd);
}

uint32_t pwvm_chan_load(uint32_t *word) { return __atomic_load_n(word, __ATOMIC_ACQUIRE); }

void pwvm_chan_store(uint32_t *word, uint32_t value) { __atomic_store_n(word, value, __ATOMIC_RELEASE); }

#define PWVM_YIELD_NS 4000

/* Threads of this process spinning right now, and how many may: one. A spinning waiter keeps a
 * core busy; with several threads waiting at once (many parent threads with a request in flight,
 * several idle worker threads) their spins would take the cores the peer needs to answer, so
 * past the first one a waiter blocks at once (its wake-up then costs a system call). */
static int spinners;
#define PWVM_MAX_SPINNERS 1

static int spin_begin(void) {
    if (__atomic_add_fetch(&spinners, 1, __ATOMIC_RELAXED) <= PWVM_MAX_SPINNERS) return 1;
    __atomic_sub_fetch(&spinners, 1, __ATOMIC_RELAXED);
    return 0;
}

static void spin_end(void) { __atomic_sub_fetch(&spinners, 1, __ATOMIC_RELAXED); }

/* The index of the first of the n words seqs[i] that differs from lasts[i], or -1. */
static int find_any(uint32_t **seqs, const uint32_t *lasts, int n, int from) {
    for (int k = 0; k < n; k++) {
        int i = (from + k) % n;
        if (__atomic_load_n(seqs[i], __ATOMIC_ACQUIRE) != lasts[i]) return i;
    }
    return -1;
}

/* Spin until one of seqs[i] != lasts[i] (its index) or spin_ns passed since start (-1), or the
 * peer (its sleeping word ``peer_sleeping``) is found on this thread's CPU (-1: block, see the top). */
static int spin_any(uint32_t **seqs, const uint32_t *lasts, int n, int from, int64_t start, int64_t spin_ns,
                    const uint32_t *peer_sleeping) {
    int64_t end = start + spin_ns, next_yield = start + PWVM_YIELD_NS;
    for (unsigned i = 1;; i++) {
        int got = find_any(seqs, lasts, n, from);
        if (got >= 0) return got;
        PWVM_PAUSE();
        if ((i & 31) == 0) {
            int64_t t = now_ns();
            if (t >= end) return -1;
            if (t >= next_yield) {
                if (on_cpu(peer_sleeping, cpu_word())) return -1;
                sched_yield();
                next_yield = t + PWVM_YIELD_NS;
            }
        }
    }
}

/* Wait until *seq != last.
 * Returns 0: a message came while spinning; 4: a message came after blocking;
 * 1: death_fd became readable (peer gone) and no message came; 2: timeout_ns
 * elapsed (< 0: none); 3: interrupted by a signal (the caller lets Python run
 * its handlers, then waits again).
 *
 * The spin is a pause-loop of at most spin_ns that yields the core every few
 * microseconds: when more threads want to run than there are cores (the peer
 * among them), sched_yield hands the core over instead of burning the slice the
 * peer needs; on an idle core it returns at once. */
int pwvm_chan_wait(uint32_t *seq, uint32_t last, uint32_t *sleeping, const uint32_t *peer_sleeping, int efd,
                   int death_fd, int64_t spin_ns, int64_t timeout_ns) {
    int64_t start = now_ns();
    if (__atomic_load_n(seq, __ATOMIC_ACQUIRE) != last) return 0;
    uint32_t cpu = cpu_word();
    note_cpu(sleeping, cpu);
    if (spin_ns > 0 && !on_cpu(peer_sleeping, cpu) && spin_begin()) {
        int got = spin_any(&seq, &last, 1, 0, start, spin_ns, peer_sleeping);
        spin_end();
        if (got >= 0) return 0;
    }
    for (;;) {
        __atomic_store_n(sleeping, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(seq, __ATOMIC_SEQ_CST) != last) {
            __atomic_store_n(sleeping, 0, __ATOMIC_SEQ_CST);
            return 4;
        }
        int ms = -1;
        if (timeout_ns >= 0) {
            int64_t left = start + timeout_ns - now_ns();
            if (left <= 0) {
                __atomic_store_n(sleeping, 0, __ATOMIC_SEQ_CST);
                return __atomic_load_n(seq, __ATOMIC_ACQUIRE) != last ? 4 : 2;
            }
            ms = (int)((left + 999999) / 1000000);
        }
        struct pollfd fds[2] = {{efd, POLLIN, 0}, {death_fd, POLLIN, 0}};
        int n = poll(fds, death_fd >= 0 ? 2 : 1, ms);
        __atomic_store_n(sleeping, 0, __ATOMIC_SEQ_CST);
        note_cpu(sleeping, cpu_word());  /* (woken maybe on another CPU) */
        if (n < 0) {
            if (errno == EINTR) return __atomic_load_n(seq, __ATOMIC_ACQUIRE) != last ? 4 : 3;
            return 1;
        }
        if (fds[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(efd, &v, sizeof v);
            (void)r;
        }
        if (__atomic_load_n(seq, __ATOMIC_ACQUIRE) != last) return 4;
        if (n > 0 && death_fd >= 0 && fds[1].revents) return 1;
    }
}

/* In the worker: one thread serving several lanes (the remote-object lanes, or every lane of a
 * runtime whose objects are bound to one thread) waits for a request on any of them. Wait until
 * one of the n words seqs[i] differs from lasts[i] and return its index (the lanes are scanned
 * from ``from``, so that a busy lane does not starve the others); the message itself is then
 * received from that lane as usual. Returns -1: death_fd became readable; -3: interrupted by a
 * signal. Spins first as pwvm_chan_wait does, then sets every lane's ``sleeping`` word and
 * blocks in poll on every lane's eventfd (lanes may share one). At most PWVM_MAX_LANES lanes (the
 * parent makes no more, see _conn.MAX_LANES). The peer whose CPU decides whether to spin is the
 * one of the lane served last (before ``from``): the parent thread most likely to ask next. */
#define PWVM_MAX_LANES 64
int pwvm_chan_wait_any(uint32_t **seqs, const uint32_t *lasts, uint32_t **sleeping, uint32_t **peer_sleeping,
                       const int *efds, int n, int from, int death_fd, int64_t spin_ns) {
    if (n <= 0 || n > PWVM_MAX_LANES) return -1;
    int got = find_any(seqs, lasts, n, from);
    if (got >= 0) return got;
    uint32_t cpu = cpu_word();
    for (int i = 0; i < n; i++) note_cpu(sleeping[i], cpu);
    const uint32_t *peer = peer_sleeping[(from + n - 1) % n];
    if (spin_ns > 0 && !on_cpu(peer, cpu) && spin_begin()) {
        got = spin_any(seqs, lasts, n, from, now_ns(), spin_ns, peer);
        spin_end();
        if (got >= 0) return got;
    }
    struct pollfd fds[PWVM_MAX_LANES + 1];
    for (;;) {
        for (int i = 0; i < n; i++) __atomic_store_n(sleeping[i], 1, __ATOMIC_SEQ_CST);
        got = find_any(seqs, lasts, n, from);  /* posted before it saw our sleeping word? */
        if (got < 0) {
            for (int i = 0; i < n; i++) fds[i] = (struct pollfd){efds[i], POLLIN, 0};
            fds[n] = (struct pollfd){death_fd, POLLIN, 0};
            int m = poll(fds, death_fd >= 0 ? n + 1 : n, -1);
            int err = errno;
            for (int i = 0; m > 0 && i < n; i++) {
                if (fds[i].revents & POLLIN) {
                    uint64_t v;
                    ssize_t r = read(efds[i], &v, sizeof v);
                    (void)r;
                }
            }
            got = find_any(seqs, lasts, n, from);
            if (got < 0) {
                if (m < 0) got = err == EINTR ? -3 : -1;
                else if (m > 0 && death_fd >= 0 && fds[n].revents) got = -1;
                else got = -2;  /* a stale wake-up: wait again */
            }
        }
        for (int i = 0; i < n; i++) __atomic_store_n(sleeping[i], 0, __ATOMIC_SEQ_CST);
        cpu = cpu_word();  /* (woken maybe on another CPU) */
        for (int i = 0; i < n; i++) note_cpu(sleeping[i], cpu);
        if (got != -2) return got;
    }
}

/* In the worker: exit at once when the parent goes away, even while wasm runs
 * with the GIL held (wasmer) or the main thread is stuck. */
static void *watchdog(void *arg) {
    int fd = (int)(intptr_t)arg;
    struct pollfd p = {fd, POLLIN, 0};
    for (;;) {
        int n = poll(&p, 1, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n != 0) _exit(70);
    }
    return NULL;
}

int pwvm_chan_watch_parent(int fd) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int rc = pthread_create(&t, &attr, watchdog, (void *)(intptr_t)fd);
    pthread_attr_destroy(&attr);
    return rc;
}
