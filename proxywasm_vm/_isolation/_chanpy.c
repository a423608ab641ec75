/* The worker channel's steps that run with the GIL *held* (a plain CPython extension; the
 * cffi helper _chan.c releases the GIL around every call, which is what a wait needs).
 *
 * Why: when several threads of this process use worker channels, those whose answer came wait
 * for the GIL. Every GIL release wakes one of them (CPython signals the GIL's condition on each
 * release), and when the releasing thread takes the GIL back at once, that waiter was woken for
 * nothing: a context switch each time, twice per crossing (the send, then the first look for the
 * answer). So a send (a copy, an atomic increment and at most one eventfd write: never blocks)
 * and a short spin for an answer that comes within microseconds keep the GIL; only a wait that
 * goes on lets it go (in _chan.c). A thread that keeps the GIL through its whole conversation
 * with a busy worker is also what makes many threads as fast as one: the others queue for the
 * GIL (they could not run anyway: the worker serves one of them at a time), instead of each
 * crossing handing the GIL to another thread and back.
 */
#define PY_SSIZE_T_CLEAN
#define Py_LIMITED_API 0x030A0000
#include <Python.h>

#include "_chan_shared.h"
#include <poll.h>
#include <string.h>

#ifndef PWVM_BUILD_KEY
#define PWVM_BUILD_KEY ""
#endif

/* spin(seq_address, last, ns[, sleeping_address, peer_sleeping_address]) -> bool: whether the u32
 * at seq_address differs from last within ns nanoseconds (an acquire load: the message it
 * announces is then readable). With the two sleeping words, the same-CPU rule of _chan.c: this
 * side notes its CPU in the word after its own sleeping word, and the spin gives up (False) at
 * once, or as soon as it sees it, while the peer last waited on this CPU: the peer cannot answer
 * before this thread lets go of the CPU. */
static PyObject *chan_spin(PyObject *self, PyObject *args) {
    unsigned long long addr, mine = 0, peer = 0;
    unsigned int last;
    long long ns;
    (void)self;
    if (!PyArg_ParseTuple(args, "KIL|KK", &addr, &last, &ns, &mine, &peer)) return NULL;
    uint32_t *seq = (uint32_t *)(uintptr_t)addr;
    if (__atomic_load_n(seq, __ATOMIC_ACQUIRE) != last) Py_RETURN_TRUE;
    if (mine && peer) {
        uint32_t cpu = cpu_word();
        note_cpu((uint32_t *)(uintptr_t)mine, cpu);
        if (on_cpu((const uint32_t *)(uintptr_t)peer, cpu)) Py_RETURN_FALSE;
    }
    int64_t end = now_ns() + ns;
    for (unsigned i = 1;; i++) {
        PWVM_PAUSE();
        if (__atomic_load_n(seq, __ATOMIC_ACQUIRE) != last) Py_RETURN_TRUE;
        if ((i & 31) == 0) {
            if (now_ns() >= end) Py_RETURN_FALSE;
            if (peer && (i & 1023) == 0 && on_cpu((const uint32_t *)(uintptr_t)peer, cpu_word())) Py_RETURN_FALSE;
        }
    }
}

/* send(box_address, data, seq_address, peer_sleeping_address, peer_efd): as pwvm_chan_send
 * (copy a message that fits into the mailbox, publish it, wake the peer if it sleeps). */
static PyObject *chan_send(PyObject *self, PyObject *args) {
    unsigned long long box, seq, sleeping;
    const char *data;
    Py_ssize_t len;
    int efd;
    (void)self;
    if (!PyArg_ParseTuple(args, "Ky#KKi", &box, &data, &len, &seq, &sleeping, &efd)) return NULL;
    uint32_t head[2] = {(uint32_t)len, 0};
    memcpy((uint8_t *)(uintptr_t)box, head, sizeof head);
    memcpy((uint8_t *)(uintptr_t)box + sizeof head, data, (size_t)len);
    post_message((uint32_t *)(uintptr_t)seq, (uint32_t *)(uintptr_t)sleeping, efd);
    Py_RETURN_NONE;
}

/* readable(fd) -> bool: whether fd is readable now (a poll that does not wait). A parent asks its
 * worker's pidfd so once per Proxy-Wasm stream (has the worker died while idle?): through os or
 * select that call would release the GIL, and hand it to another thread, once per request. */
static PyObject *chan_readable(PyObject *self, PyObject *arg) {
    (void)self;
    int fd = (int)PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    struct pollfd p = {fd, POLLIN, 0};
    int n;
    do { n = poll(&p, 1, 0); } while (n < 0 && errno == EINTR);
    if (n < 0) return PyErr_SetFromErrno(PyExc_OSError);
    return PyBool_FromLong(n > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)));
}

static PyMethodDef methods[] = {
    {"readable", chan_readable, METH_O, "readable(fd) -> bool"},
    {"spin", chan_spin, METH_VARARGS, "spin(seq_address, last, ns[, sleeping_address, peer_sleeping_address]) -> bool"},
    {"send", chan_send, METH_VARARGS, "send(box_address, data, seq_address, peer_sleeping_address, peer_efd)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_chanpy_ext", "Worker channel steps that keep the GIL (see _chanpy.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__chanpy_ext(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddStringConstant(m, "BUILD_KEY", PWVM_BUILD_KEY) < 0)
        Py_CLEAR(m);
    return m;
}
