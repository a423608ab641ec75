"""The WASI subset real Proxy-Wasm plugins import (``wasi_snapshot_preview1`` and ``wasi_unstable``).

stdout/stderr go to the plugin log (INFO / ERROR), one record per line (see
``VM.stdio``); environment variables and arguments come from the plugin
configuration, never from the host process; clocks come from the host's clock
(the CPU-time clocks 2 and 3 read its monotonic clock); ``poll_oneoff`` answers
every subscription at once without sleeping; ``proc_exit`` stops the plugin with
a typed failure. Everything else answers ``ENOSYS`` (or ``EBADF`` for file
descriptors, so that wasi-libc start-up code finds no preopened directories).
"""

from __future__ import annotations

import os
import struct
from typing import Any, Callable

from .._types import FuncType, ValType
from ._abi import WASI_BADF, WASI_FAULT, WASI_INVAL, WASI_NOSYS, WASI_NOTSUP, WASI_SPIPE, WASI_SUCCESS
from ._errors import _GuestExit

__all__ = ["register"]

I32, I64 = ValType.I32, ValType.I64
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_FDSTAT = struct.Struct("<BxHxxxxQQ")
# rights of the standard streams: read, fdstat_set_flags, write, poll (no seek/tell: a tty for wasi-libc)
_STD_RIGHTS = (1 << 1) | (1 << 3) | (1 << 6) | (1 << 27)


def fd_write(vm, fd, iovs, n, nwritten_ptr):
    if fd != 1 and fd != 2:
        return WASI_BADF
    if n > 1024:
        return WASI_INVAL
    mem = vm.memory
    vec = struct.unpack("<%dI" % (2 * n), mem.read(iovs, 8 * n)) if n else ()
    data = b"".join([mem.read(vec[i], vec[i + 1]) for i in range(0, len(vec), 2)])
    mem.write(nwritten_ptr, _U32.pack(len(data)))
    if data:
        vm.stdio(fd, data)
    return WASI_SUCCESS


def fd_read(vm, fd, iovs, n, nread_ptr):
    if fd != 0:
        return WASI_BADF
    vm.memory.write_u32(nread_ptr, 0)  # stdin is empty
    return WASI_SUCCESS


def fd_close(vm, fd):
    return WASI_SUCCESS if fd <= 2 else WASI_BADF


def fd_seek(vm, fd, offset, whence, newoffset_ptr):
    return WASI_SPIPE if fd <= 2 else WASI_BADF


def fd_tell(vm, fd, ptr):
    return WASI_SPIPE if fd <= 2 else WASI_BADF


def fd_fdstat_get(vm, fd, ptr):
    if fd > 2:
        return WASI_BADF
    vm.memory.write(ptr, _FDSTAT.pack(2, 0, _STD_RIGHTS, 0))
    return WASI_SUCCESS


def fd_fdstat_set_flags(vm, fd, flags):
    return WASI_SUCCESS if fd <= 2 else WASI_BADF


def fd_prestat_get(vm, fd, ptr):
    return WASI_BADF


def fd_prestat_dir_name(vm, fd, ptr, size):
    return WASI_BADF


def _sizes(items: list) -> tuple[int, int]:
    return len(items), sum(len(x) + 1 for x in items)


def _put_strings(vm, items: list, array_ptr: int, buf_ptr: int) -> int:
    mem = vm.memory
    count, total = _sizes(items)
    if array_ptr + 4 * count > mem.data_size or buf_ptr + total > mem.data_size:
        return WASI_FAULT
    off = buf_ptr
    for i, item in enumerate(items):
        mem.write_u32(array_ptr + 4 * i, off)
        mem.write(off, item + b"\0")
        off += len(item) + 1
    return WASI_SUCCESS


def environ_sizes_get(vm, count_ptr, size_ptr):
    count, total = _sizes(vm.environ)
    mem = vm.memory
    mem.write_u32(count_ptr, count)
    mem.write_u32(size_ptr, total)
    return WASI_SUCCESS


def environ_get(vm, array_ptr, buf_ptr):
    return _put_strings(vm, vm.environ, array_ptr, buf_ptr)


def args_sizes_get(vm, count_ptr, size_ptr):
    count, total = _sizes(vm.args)
    mem = vm.memory
    mem.write_u32(count_ptr, count)
    mem.write_u32(size_ptr, total)
    return WASI_SUCCESS


def args_get(vm, array_ptr, buf_ptr):
    return _put_strings(vm, vm.args, array_ptr, buf_ptr)


# WASI preview1 clock ids: 0 realtime, 1 monotonic, 2 process_cputime_id, 3 thread_cputime_id.
# The CPU-time clocks read the host's *monotonic* clock, as wasi-libc's emulated process clocks
# do: never the host process's own CPU time (which tells a plugin what the host and every other
# plugin did), always non-decreasing in ns, and deterministic under a ManualClock. (Envoy's host
# answers ENOTSUP for 2 and 3; real programs then fail on clock() / times().)
def _clock(vm, clock_id: int) -> int | None:
    if clock_id == 0:
        return vm.host.clock.now_ns()
    if 1 <= clock_id <= 3:
        return vm.host.clock.monotonic_ns()
    return None


def clock_time_get(vm, clock_id, precision, ptr):
    t = _clock(vm, clock_id)
    if t is None:
        return WASI_NOTSUP
    vm.memory.write(ptr, _U64.pack(t & 0xFFFFFFFFFFFFFFFF))
    return WASI_SUCCESS


def clock_res_get(vm, clock_id, ptr):
    if clock_id > 3:
        return WASI_NOTSUP
    vm.memory.write(ptr, _U64.pack(1))
    return WASI_SUCCESS


def random_get(vm, ptr, size):
    if size > (1 << 20):
        return WASI_INVAL
    vm.memory.write(ptr, os.urandom(size))
    return WASI_SUCCESS


def _poll(vm, in_ptr, out_ptr, nsubs, nevents_ptr, sub_size):
    if nsubs == 0 or nsubs > 1024:
        return WASI_INVAL
    mem = vm.memory
    subs = mem.read(in_ptr, sub_size * nsubs)
    out = bytearray(32 * nsubs)
    for i in range(nsubs):
        userdata = subs[i * sub_size:i * sub_size + 8]
        tag = subs[i * sub_size + 8]
        out[i * 32:i * 32 + 8] = userdata
        out[i * 32 + 10] = tag if tag <= 2 else 0
    mem.write(out_ptr, bytes(out))
    mem.write_u32(nevents_ptr, nsubs)
    return WASI_SUCCESS


def poll_oneoff(vm, in_ptr, out_ptr, nsubs, nevents_ptr):
    return _poll(vm, in_ptr, out_ptr, nsubs, nevents_ptr, 48)


def poll_oneoff_unstable(vm, in_ptr, out_ptr, nsubs, nevents_ptr):
    return _poll(vm, in_ptr, out_ptr, nsubs, nevents_ptr, 56)


def sched_yield(vm):
    return WASI_SUCCESS


def proc_exit(vm, code):
    raise _GuestExit(code)


def proc_raise(vm, sig):
    raise _GuestExit(128 + sig, f"proc_raise({sig})")


def _nosys(vm, *a):
    return WASI_NOSYS


def _badf(vm, fd, *a):
    return WASI_BADF if fd > 2 else WASI_NOSYS


# name -> (param types as a string of 'i'/'l', result?, implementation)
_FUNCS: dict[str, tuple[str, bool, Callable[..., Any]]] = {
    "args_get": ("ii", True, args_get),
    "args_sizes_get": ("ii", True, args_sizes_get),
    "environ_get": ("ii", True, environ_get),
    "environ_sizes_get": ("ii", True, environ_sizes_get),
    "clock_res_get": ("ii", True, clock_res_get),
    "clock_time_get": ("ili", True, clock_time_get),
    "fd_advise": ("illi", True, _badf),
    "fd_allocate": ("ill", True, _badf),
    "fd_close": ("i", True, fd_close),
    "fd_datasync": ("i", True, _badf),
    "fd_fdstat_get": ("ii", True, fd_fdstat_get),
    "fd_fdstat_set_flags": ("ii", True, fd_fdstat_set_flags),
    "fd_fdstat_set_rights": ("ill", True, _badf),
    "fd_filestat_get": ("ii", True, _badf),
    "fd_filestat_set_size": ("il", True, _badf),
    "fd_filestat_set_times": ("illi", True, _badf),
    "fd_pread": ("iiili", True, _badf),
    "fd_prestat_get": ("ii", True, fd_prestat_get),
    "fd_prestat_dir_name": ("iii", True, fd_prestat_dir_name),
    "fd_pwrite": ("iiili", True, _badf),
    "fd_read": ("iiii", True, fd_read),
    "fd_readdir": ("iiili", True, _badf),
    "fd_renumber": ("ii", True, _badf),
    "fd_seek": ("ilii", True, fd_seek),
    "fd_sync": ("i", True, _badf),
    "fd_tell": ("ii", True, fd_tell),
    "fd_write": ("iiii", True, fd_write),
    "path_create_directory": ("iii", True, _nosys),
    "path_filestat_get": ("iiiii", True, _nosys),
    "path_filestat_set_times": ("iiiilli", True, _nosys),
    "path_link": ("iiiiiii", True, _nosys),
    "path_open": ("iiiiillii", True, _nosys),
    "path_readlink": ("iiiiii", True, _nosys),
    "path_remove_directory": ("iii", True, _nosys),
    "path_rename": ("iiiiii", True, _nosys),
    "path_symlink": ("iiiii", True, _nosys),
    "path_unlink_file": ("iii", True, _nosys),
    "poll_oneoff": ("iiii", True, poll_oneoff),
    "proc_exit": ("i", False, proc_exit),
    "proc_raise": ("i", True, proc_raise),
    "sched_yield": ("", True, sched_yield),
    "random_get": ("ii", True, random_get),
    "sock_accept": ("iii", True, _nosys),
    "sock_recv": ("iiiiii", True, _nosys),
    "sock_send": ("iiiii", True, _nosys),
    "sock_shutdown": ("ii", True, _nosys),
}


def _ty(sig: str, result: bool) -> FuncType:
    return FuncType([I64 if c == "l" else I32 for c in sig], [I32] if result else [])


def register(define: Callable[..., None]) -> None:
    """Define every WASI function under both module names through ``define(name, type, fn, module, err)``."""
    for module in ("wasi_snapshot_preview1", "wasi_unstable"):
        for name, (sig, result, fn) in _FUNCS.items():
            if module == "wasi_unstable" and name == "sock_accept":
                continue
            impl = poll_oneoff_unstable if (module == "wasi_unstable" and name == "poll_oneoff") else fn
            define(name, _ty(sig, result), impl, module, WASI_FAULT)
