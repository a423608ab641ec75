"""The transport between a parent and its worker: shared memory, spin-then-block wake-ups.

One anonymous shared mapping (``memfd_create``, handed to the child as a file
descriptor: no name, nothing for a resource tracker to delete) holds one or
more *lanes*; each lane is a conversation between one parent thread and one
worker thread. A conversation is strictly turn-based (a request, then either
its reply or a nested request from the other side), so each direction of a lane
is a mailbox holding one message at a time. A lane at byte ``base``:

    base+0      u32 seq      parent -> worker      (one cache line each)
    base+64     u32 seq      worker -> parent
    base+128    u32 sleeping the worker side is blocked; u32 cpu: 1 + the CPU it last waited on
    base+192    u32 sleeping the parent side is blocked; u32 cpu: the same for the parent side
    base+256    parent -> worker mailbox: u32 length, u32 flags, payload
    base+256+M  worker -> parent mailbox

A sender writes the payload, then increments its ``seq`` with a sequentially
consistent atomic (``_chan.c``) and writes the receiver's eventfd only if the
receiver said it sleeps. A receiver spins on ``seq`` for up to ~50 µs with the
GIL released, yielding its core every few µs (so a peer waiting for that core
gets it; with a single usable core it does not spin at all; nor while the peer
last waited on the receiver's own CPU: it cannot answer before the receiver
lets go of that CPU, see ``_chan.c``), then blocks in
``poll`` on its eventfd *and* a death descriptor:
the child's pidfd in the parent, a pipe only the parent holds in the worker.
Only one thread per process spins at a time: when several wait at once (many
parent threads with a request out, several idle worker threads), the others
block at once, so waiters never take the cores the peer needs to answer.
A worker thread serving several lanes (:class:`LaneGroup`) waits on all of them
at once. Messages larger than a mailbox go in chunks, each acknowledged.

Without a C compiler the helper cannot be built; the channel then skips the
spin and always wakes the peer through its eventfd (a system call on each side,
which is also a full barrier).
"""

from __future__ import annotations

import logging
import mmap
import os
import select
import struct
from typing import Any

__all__ = ["Channel", "LaneGroup", "PeerGone", "Timeout", "close_shared", "create_shared", "load_gil_helper",
           "load_helper", "map_shared"]

HEADER = 256
_U32 = struct.Struct("<I")
_MSG = struct.Struct("<II")
_MORE = 1  # flags: more chunks follow
_ACK = 2  # flags: chunk received, send the next

#: How long a receiver spins before it blocks (seconds). A crossing costs 2-4 µs
#: when the peer answers within the spin, ~10-25 µs after a block.
DEFAULT_SPIN = 50e-6
DEFAULT_MAILBOX = 1 << 20
#: How much of a parent's spin for an answer keeps the GIL (seconds, at most; see _chanpy.c).
GIL_SPIN = 50e-6


class PeerGone(Exception):
    """The other side died (pidfd / pipe became readable) and sent nothing more."""


class Timeout(Exception):
    """No message within the wait's timeout."""


_HELPER: Any = None
_HELPER_ERROR: str | None = None


def load_helper() -> Any:
    """The compiled wake-up helper (``_chan.c``), or ``None`` when it cannot be built here."""
    global _HELPER, _HELPER_ERROR
    if _HELPER is not None or _HELPER_ERROR is not None:
        return _HELPER
    from .._settings import channel_helper_disabled

    if channel_helper_disabled():
        _HELPER_ERROR = "disabled by PWVM_CHANNEL_NO_HELPER"
        _log_fallback(logging.INFO)
        return None
    try:
        from .._native import load_extension
        from . import _build

        _HELPER = load_extension(_build.MODULE, _build.make_builder, _build.SOURCES)
    except Exception as e:  # noqa: BLE001 - no compiler, no cffi: fall back to eventfd-only wake-ups
        _HELPER_ERROR = f"{type(e).__name__}: {e}"
        _log_fallback(logging.WARNING)
    return _HELPER


_GIL_HELPER: Any = None
_GIL_HELPER_ERROR: str | None = None


def load_gil_helper() -> Any:
    """The channel's steps that keep the GIL (``_chanpy.c``), or ``None`` when they cannot be
    built here (the channel then makes those steps through the cffi helper, releasing the GIL)."""
    global _GIL_HELPER, _GIL_HELPER_ERROR
    if _GIL_HELPER is not None or _GIL_HELPER_ERROR is not None:
        return _GIL_HELPER
    if load_helper() is None:  # disabled, or no compiler: neither helper
        _GIL_HELPER_ERROR = _HELPER_ERROR
        return None
    try:
        from .._native import CExtensionBuilder, load_extension
        from . import _build

        _GIL_HELPER = load_extension(_build.GIL_MODULE, lambda: CExtensionBuilder(_build.make_gil_extension(False)),
                                     _build.GIL_SOURCES)
    except Exception as e:  # noqa: BLE001 - setuptools missing, say: the cffi helper does it all
        _GIL_HELPER_ERROR = f"{type(e).__name__}: {e}"
        logging.getLogger("proxywasm_vm").info("worker channels release the GIL on every send (_chanpy.c is not "
                                                "used: %s)", _GIL_HELPER_ERROR)
    return _GIL_HELPER


def _log_fallback(level: int) -> None:
    """The slower path is never taken silently: one record per process says why."""
    logging.getLogger("proxywasm_vm").log(
        level, "worker channels wake their peer with eventfd only (every crossing then costs a system call "
        "and a wake-up more): the wake-up helper _chan.c is not used: %s", _HELPER_ERROR)


def lane_size(mailbox: int) -> int:
    return HEADER + 2 * mailbox


def create_shared(lanes: int = 1, mailbox: int = DEFAULT_MAILBOX) -> tuple[int, int]:
    """A new anonymous shared file (fd, size) holding ``lanes`` channels (header + two mailboxes each)."""
    size = lanes * lane_size(mailbox)
    fd = os.memfd_create("pwvm-channel", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    return fd, size


def map_shared(fd: int, size: int) -> mmap.mmap:
    return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)




class Channel:
    """One side of one lane of the conversation.

    ``side`` is ``"parent"`` or ``"worker"``; the lane starts at byte ``base`` of
    the shared mapping ``mm``. ``efd_in`` is the eventfd this side sleeps on,
    ``efd_out`` the peer's; ``death_fd`` becomes readable when the peer is gone.
    """

    def __init__(self, side: str, mm: mmap.mmap, base: int, mailbox: int, efd_in: int, efd_out: int,
                 death_fd: int, spin: float = DEFAULT_SPIN) -> None:
        self.map = mm
        self.mailbox = mailbox
        parent = side == "parent"
        self._out_seq_off, self._in_seq_off = (base, base + 64) if parent else (base + 64, base)
        self._my_sleep_off, self._peer_sleep_off = (base + 192, base + 128) if parent else (base + 128, base + 192)
        box0, box1 = base + HEADER, base + HEADER + mailbox
        self._out_box, self._in_box = (box0, box1) if parent else (box1, box0)
        self.efd_in, self.efd_out, self.death_fd = efd_in, efd_out, death_fd
        # no spinning where this process has one core: the peer could not run while we spin
        self._can_spin = len(os.sched_getaffinity(0)) > 1
        self.spin_ns = int(spin * 1e9) if self._can_spin else 0
        self._min_spin = 0
        self.group: LaneGroup | None = None  # the lanes one thread serves together (see LaneGroup)
        self.closed = False
        self.helper = load_helper()
        if self.helper is not None:
            ffi = self.helper.ffi
            self._buf = ffi.from_buffer(mm)
            base_ptr = ffi.cast("uint32_t *", self._buf)
            self._base = base_ptr
            self._out_seq = base_ptr + self._out_seq_off // 4
            self._in_seq = base_ptr + self._in_seq_off // 4
            self._my_sleep = base_ptr + self._my_sleep_off // 4
            self._peer_sleep = base_ptr + self._peer_sleep_off // 4
            self._post = self.helper.lib.pwvm_chan_post
            self._wait = self.helper.lib.pwvm_chan_wait
            self._send_c = self.helper.lib.pwvm_chan_send
            self._out_box_ptr = ffi.cast("uint8_t *", self._buf) + self._out_box
        self._gil = load_gil_helper()
        if self._gil is not None:
            addr = int(ffi.cast("uintptr_t", self._buf))
            self._in_seq_addr = addr + self._in_seq_off
            self._out_seq_addr = addr + self._out_seq_off
            self._my_sleep_addr = addr + self._my_sleep_off
            self._peer_sleep_addr = addr + self._peer_sleep_off
            self._out_box_addr = addr + self._out_box
        #: how much of its spin (ns) a receiver spends keeping the GIL, before the wait that lets it
        #: go (see _chanpy.c): the parent's side spins so (``keep_gil``), the worker's does not
        self.gil_spin_ns = 0
        self._last_in = self._load(self._in_seq_off)

    @property
    def min_spin_ns(self) -> int:
        """Never spin less than this (ns) before blocking: set on a lane whose replies come after
        a known, short piece of work in the peer (plugin-level events, see _proxywasm._remote_host); 0 with one core."""
        return self._min_spin

    @min_spin_ns.setter
    def min_spin_ns(self, ns: int) -> None:
        ns = ns if self._can_spin else 0
        group = self.group
        if group is None:
            self._min_spin = ns
            return
        for chan in group.chans:  # the lanes of a group serve the same objects: one setting for all
            chan._min_spin = ns
        group.spin_ns = max(group.spin_ns, ns)

    # -- words -------------------------------------------------------------------
    def _load(self, off: int) -> int:
        if self.helper is not None:
            return self.helper.lib.pwvm_chan_load(self._base + off // 4)
        return _U32.unpack_from(self.map, off)[0]

    def _signal(self) -> None:
        if self.helper is not None:
            self._post(self._out_seq, self._peer_sleep, self.efd_out)
            return
        seq = (_U32.unpack_from(self.map, self._out_seq_off)[0] + 1) & 0xFFFFFFFF
        _U32.pack_into(self.map, self._out_seq_off, seq)
        os.eventfd_write(self.efd_out, 1)  # a system call: a full barrier after the stores above

    def _await(self, timeout: float | None) -> None:
        """Block until the peer posted past ``_last_in``; raise PeerGone / Timeout."""
        last = self._last_in
        if self.helper is not None:
            t = -1 if timeout is None else max(0, int(timeout * 1e9))
            while True:
                rc = self._wait(self._in_seq, last, self._my_sleep, self._peer_sleep, self.efd_in, self.death_fd,
                                max(self.spin_ns, self._min_spin), t)
                if rc == 0 or rc == 4:  # caught while spinning, or after blocking
                    break
                if rc == 1:
                    raise PeerGone()
                if rc == 2:
                    raise Timeout()
                # rc == 3: a signal arrived; Python runs its handler when we return to the loop
                # (a KeyboardInterrupt propagates from here), then we wait again.
        else:
            poller = select.poll()
            poller.register(self.efd_in, select.POLLIN)
            if self.death_fd >= 0:
                poller.register(self.death_fd, select.POLLIN)
            import time

            end = None if timeout is None else time.monotonic() + timeout
            while _U32.unpack_from(self.map, self._in_seq_off)[0] == last:
                ms = None if end is None else max(0, int((end - time.monotonic()) * 1000) + 1)
                events = poller.poll(ms)
                if _U32.unpack_from(self.map, self._in_seq_off)[0] != last:
                    break
                if not events:
                    if end is not None and time.monotonic() >= end:
                        raise Timeout()
                    continue
                for fd, _ in events:
                    if fd == self.efd_in:
                        try:
                            os.eventfd_read(self.efd_in)
                        except BlockingIOError:
                            pass
                    elif _U32.unpack_from(self.map, self._in_seq_off)[0] == last:
                        raise PeerGone()
        self._last_in = (last + 1) & 0xFFFFFFFF

    # -- messages ----------------------------------------------------------------
    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Put ``data`` in the outgoing mailbox and wake the peer (chunked when large)."""
        cap = self.mailbox - _MSG.size
        box = self._out_box
        m = self.map
        if len(data) <= cap:
            if self._gil is not None:  # the common case in one C call that keeps the GIL (see _chanpy.c)
                self._gil.send(self._out_box_addr, data, self._out_seq_addr, self._peer_sleep_addr, self.efd_out)
                return
            if self.helper is not None:  # the same, releasing the GIL
                self._send_c(self._out_box_ptr, data, len(data), self._out_seq, self._peer_sleep, self.efd_out)
                return
            _MSG.pack_into(m, box, len(data), 0)
            m[box + 8:box + 8 + len(data)] = data
            self._signal()
            return
        view = memoryview(data)
        for start in range(0, len(data), cap):
            chunk = view[start:start + cap]
            more = start + cap < len(data)
            _MSG.pack_into(m, box, len(chunk), _MORE if more else 0)
            m[box + 8:box + 8 + len(chunk)] = chunk
            self._signal()
            if more:
                self._await(timeout)  # the peer's acknowledgement
                _, flags = _MSG.unpack_from(m, self._in_box)
                if not flags & _ACK:
                    raise RuntimeError("channel protocol error: expected a chunk acknowledgement")

    def recv(self, timeout: float | None = None, spin: bool = True, gil_spin: bool = True) -> bytes:
        """The next message from the peer (waits; raises PeerGone or Timeout). ``spin=False``:
        block at once (the answer is known to come late) after the part of the spin that keeps
        the GIL (``gil_spin_ns``; ``gil_spin=False``: none either)."""
        if self.helper is not None:  # the common case, without _await's loop
            # a timed wait costs nothing more: the spin reads the clock anyway, and the block is
            # the same poll() with a timeout
            last = self._last_in
            budget = max(self.spin_ns, self._min_spin)
            gil_ns = min(budget, self.gil_spin_ns) if gil_spin and self._gil is not None else 0
            if gil_ns and self._gil.spin(self._in_seq_addr, last, gil_ns, self._my_sleep_addr, self._peer_sleep_addr):
                rc = 0
            else:
                rc = self._wait(self._in_seq, last, self._my_sleep, self._peer_sleep, self.efd_in, self.death_fd,
                                budget - gil_ns if spin else 0, -1 if timeout is None else max(0, int(timeout * 1e9)))
            if rc == 0 or rc == 4:
                self._last_in = (last + 1) & 0xFFFFFFFF
            elif rc == 1:
                raise PeerGone()
            elif rc == 2:
                raise Timeout()
            else:  # a signal: let Python run its handler (in _await's loop; the timeout starts again)
                self._await(timeout)
        else:
            self._await(timeout)
        m = self.map
        box = self._in_box
        n, flags = _MSG.unpack_from(m, box)
        data = m[box + 8:box + 8 + n]
        if not flags & _MORE:
            return data
        parts = [data]
        while flags & _MORE:
            _MSG.pack_into(m, self._out_box, 0, _ACK)
            self._signal()
            self._await(timeout)
            n, flags = _MSG.unpack_from(m, box)
            parts.append(m[box + 8:box + 8 + n])
        return b"".join(parts)

    def close(self) -> None:
        """Forget the mapping (the owner closes it, see :func:`close_shared`)."""
        if self.closed:
            return
        self.closed = True
        if self.helper is not None:
            self._base = self._out_seq = self._in_seq = self._my_sleep = self._peer_sleep = self._out_box_ptr = None
            self._gil = None  # (its addresses point into the mapping)
            try:
                self.helper.ffi.release(self._buf)
            except Exception:  # noqa: BLE001, S110 - at interpreter exit the module may be half torn down
                pass


class LaneGroup:
    """Lanes served together by one thread of the worker: it waits for a request on any of them.

    The remote-object lanes are one group (the objects served there see one thread, whichever
    parent thread calls), and so is every lane of a runtime whose objects are bound to the
    thread that made them (wasmer). The parent's threads each take a lane of the group, so none
    waits for another's round trip to *send*: their requests queue in their own mailboxes, and
    the worker thread takes the next one as soon as it finished the last (in turn, see
    ``pwvm_chan_wait_any``). A group of one lane is that lane's plain receive.
    """

    def __init__(self, chans: list[Channel]) -> None:
        self.chans = chans
        self.spin_ns = max(c.spin_ns for c in chans)
        self._next = 0
        helper = chans[0].helper
        self._helper = helper if len(chans) > 1 else None
        for c in chans:
            c.group = self
        if self._helper is not None:
            ffi = helper.ffi
            self._seqs = ffi.new("uint32_t *[]", [c._in_seq for c in chans])
            self._sleeping = ffi.new("uint32_t *[]", [c._my_sleep for c in chans])
            self._peer_sleeping = ffi.new("uint32_t *[]", [c._peer_sleep for c in chans])
            self._efds = ffi.new("int[]", [c.efd_in for c in chans])
            self._lasts = ffi.new("uint32_t[]", len(chans))
            self._wait_any = helper.lib.pwvm_chan_wait_any

    def wait(self) -> Channel:
        """The next lane holding a message (not received yet); raises PeerGone."""
        chans = self.chans
        if len(chans) == 1:
            return chans[0]
        n = len(chans)
        start = self._next
        if self._helper is not None:
            lasts = self._lasts
            for i, c in enumerate(chans):
                lasts[i] = c._last_in
            while True:
                i = self._wait_any(self._seqs, lasts, self._sleeping, self._peer_sleeping, self._efds, n, start,
                                   chans[0].death_fd, self.spin_ns)
                if i >= 0:
                    break
                if i == -1:
                    raise PeerGone()
                # -3: a signal; Python runs its handler on return, then we wait again
        else:
            i = self._poll_any(start)
        self._next = (i + 1) % n
        return chans[i]

    def _poll_any(self, start: int) -> int:
        """Without the helper: poll every lane's eventfd (each message is posted with a write)."""
        chans = self.chans
        n = len(chans)
        poller = select.poll()
        for c in chans:
            poller.register(c.efd_in, select.POLLIN)
        death = chans[0].death_fd
        if death >= 0:
            poller.register(death, select.POLLIN)
        while True:
            for k in range(n):
                i = (start + k) % n
                c = chans[i]
                if c._load(c._in_seq_off) != c._last_in:
                    return i
            events = poller.poll(None)
            for fd, _ in events:
                if fd == death:
                    if all(c._load(c._in_seq_off) == c._last_in for c in chans):
                        raise PeerGone()
                else:
                    try:
                        os.eventfd_read(fd)
                    except BlockingIOError:
                        pass


def close_shared(mm: mmap.mmap) -> None:
    try:
        mm.close()
    except BufferError:
        pass  # a pointer into the mapping is still alive; the mapping goes with the process
