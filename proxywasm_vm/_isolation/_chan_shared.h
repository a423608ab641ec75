/* What the channel's two native helpers share: _chan.c (cffi, runs with the GIL released) and
 * _chanpy.c (a plain CPython extension, runs keeping it). See _chan.c for the channel's layout:
 * each side's ``sleeping`` word is followed by its ``cpu`` word (1 + the CPU it last waited on). */
#ifndef PWVM_CHAN_SHARED_H
#define PWVM_CHAN_SHARED_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* sched_getcpu */
#endif
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define PWVM_PAUSE() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define PWVM_PAUSE() __asm__ __volatile__("yield")
#else
#define PWVM_PAUSE() do { } while (0)
#endif

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* 1 + the CPU the calling thread runs on now (0: not known): a ``cpu`` word's value. */
static inline uint32_t cpu_word(void) {
    int c = sched_getcpu();
    return c < 0 ? 0 : (uint32_t)c + 1;
}

/* Note in this side's cpu word (the word after its sleeping word) where it waits now. */
static inline void note_cpu(uint32_t *sleeping, uint32_t cpu) {
    if (__atomic_load_n(sleeping + 1, __ATOMIC_RELAXED) != cpu)  /* (no store, no cache-line traffic, when unchanged) */
        __atomic_store_n(sleeping + 1, cpu, __ATOMIC_RELAXED);
}

/* Whether the peer whose sleeping word is ``peer_sleeping`` last waited on the CPU ``cpu`` (a cpu word). */
static inline int on_cpu(const uint32_t *peer_sleeping, uint32_t cpu) {
    return cpu != 0 && __atomic_load_n(peer_sleeping + 1, __ATOMIC_RELAXED) == cpu;
}

/* Publish one message: seq += 1 (after the payload), then wake the peer if it sleeps. */
static inline void post_message(uint32_t *seq, uint32_t *peer_sleeping, int peer_efd) {
    __atomic_add_fetch(seq, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(peer_sleeping, __ATOMIC_SEQ_CST)) {
        uint64_t one = 1;
        ssize_t r;
        do { r = write(peer_efd, &one, sizeof one); } while (r < 0 && errno == EINTR);
    }
}

#endif
