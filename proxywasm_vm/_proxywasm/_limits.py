"""Bounds on everything a plugin can make the host hold: :class:`HostLimits`.

A plugin reaches host memory through its host calls (logs, header maps,
bodies the host buffers while it pauses, shared data, queues, callouts,
metrics, timers). Each such store has a bound here, with a default that
protects the host; ``None`` means "no limit" and must be given explicitly.

Past a bound the plugin gets a status code (what Envoy answers where it has
an equivalent, else ``BAD_ARGUMENT``), or, where the stream cannot go on,
what Envoy does at its buffer limit; nothing the host already accepted is
dropped without being counted (see :meth:`ProxyWasmHost.limit_hits
<proxywasm_vm.ProxyWasmHost.limit_hits>`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["HostLimits"]

_KiB = 1 << 10
_MiB = 1 << 20


@dataclass(frozen=True)
class HostLimits:
    """Bounds on what plugins can grow in a :class:`~proxywasm_vm.ProxyWasmHost`.

    Give one to ``ProxyWasmHost(limits=...)``; override single fields with
    :func:`dataclasses.replace` or :meth:`with_`. Every field is a positive
    number, or ``None`` for "no limit" (say it explicitly:
    ``HostLimits(uncompress_max_bytes=None)``); :meth:`unlimited` turns every
    bound off. What a plugin sees past each bound:

    - ``uncompress_max_bytes``: output of the default ``uncompress`` foreign
      function; past it the call answers ``SERIALIZATION_FAILURE`` (the status
      Envoy's ``uncompress`` gives for data it cannot inflate);
    - ``log_max_bytes``: the default :class:`~proxywasm_vm.MemoryLogger` keeps
      at most this many message bytes, dropping (and counting) the oldest
      records; a longer single message is cut to this size;
    - ``header_map_max_pairs`` / ``header_map_max_bytes``: fields and bytes
      (names + values) of one header map, trailer map or gRPC metadata map a
      plugin writes (add, replace, set pairs, local responses, callouts);
      past them the call answers ``BAD_ARGUMENT``;
    - ``body_buffer_max_bytes``: bytes of one body direction (or TCP
      direction) the host holds while the plugin pauses it, and the largest
      buffer ``proxy_set_buffer_bytes`` may leave. As Envoy does at its buffer
      limit (``per_connection_buffer_limit_bytes``, 1 MiB by default): a
      request answers **413** (details ``request_payload_too_large``), a
      response **500** (``response_payload_too_large``), or is reset when its
      headers have already gone downstream; a TCP connection is closed.
      ``proxy_set_buffer_bytes`` past it answers ``BAD_ARGUMENT``;
    - ``shared_data_max_value_bytes`` / ``shared_data_max_keys`` /
      ``shared_data_max_bytes``: one value, the number of keys and the bytes
      (keys + values) of the whole store; past them ``BAD_ARGUMENT``;
    - ``queue_max_items`` / ``queue_max_bytes``: items and bytes waiting in
      one shared queue; an enqueue past them answers ``BAD_ARGUMENT`` (the
      item is refused, nothing queued is dropped); ``queues_max``: shared
      queues one host holds (registering a new one past it: ``BAD_ARGUMENT``);
    - ``name_max_bytes``: the longest metric or shared-queue name a plugin may
      define or register (``BAD_ARGUMENT`` past it);
    - ``callout_response_max_bytes``: body bytes of an HTTP callout response
      and of one gRPC message; a larger one is delivered as a failed call
      (``BROKEN_CONNECTION`` from ``proxy_get_status``, details
      ``response_too_large``) or, for gRPC, closes the call with status 8
      (RESOURCE_EXHAUSTED);
    - ``max_pending_calls``: HTTP and gRPC calls one VM may have in flight
      (Envoy's default circuit breaker allows 1024 requests per cluster);
      past it the call answers ``BAD_ARGUMENT``;
    - ``metrics_max`` / ``histogram_max_values``: metrics one host holds and
      values one histogram keeps (the oldest go, counted in
      :attr:`Metric.dropped <proxywasm_vm.Metric>`); defining past the first
      answers ``BAD_ARGUMENT``;
    - ``tick_min_period_ms``: the shortest tick period; a shorter non-zero
      period is raised to it (each root has one timer, as in the ABI);
    - ``properties_max_bytes``: bytes (names + values) of the properties a plugin
      sets with ``proxy_set_property`` on one context; past it ``BAD_ARGUMENT``.

    >>> HostLimits().body_buffer_max_bytes
    1048576
    >>> HostLimits.unlimited().queue_max_items is None
    True
    """

    uncompress_max_bytes: int | None = 16 * _MiB
    log_max_bytes: int | None = 8 * _MiB
    header_map_max_pairs: int | None = 1024
    header_map_max_bytes: int | None = 1 * _MiB
    body_buffer_max_bytes: int | None = 1 * _MiB
    shared_data_max_value_bytes: int | None = 1 * _MiB
    shared_data_max_keys: int | None = 10_000
    shared_data_max_bytes: int | None = 64 * _MiB
    queue_max_items: int | None = 10_000
    queue_max_bytes: int | None = 16 * _MiB
    queues_max: int | None = 1000
    name_max_bytes: int | None = 1 * _KiB
    callout_response_max_bytes: int | None = 16 * _MiB
    max_pending_calls: int | None = 1024
    metrics_max: int | None = 10_000
    histogram_max_values: int | None = 10_000
    tick_min_period_ms: int | None = 10
    properties_max_bytes: int | None = 1 * _MiB

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"HostLimits.{f.name} must be an int or None (no limit), not {type(v).__name__}")
            if v <= 0:
                raise ValueError(f"HostLimits.{f.name} must be positive (None means no limit), not {v}")

    @classmethod
    def unlimited(cls) -> HostLimits:
        """Every bound off (a trusted plugin on a host with memory to spare)."""
        return cls(**{f.name: None for f in dataclasses.fields(cls)})

    def with_(self, **changes: int | None) -> HostLimits:
        """A copy with some fields changed (``limits.with_(queue_max_items=10)``)."""
        return dataclasses.replace(self, **changes)


def over(limit: int | None, value: int) -> bool:
    """Whether ``value`` is past ``limit`` (``None``: no limit)."""
    return limit is not None and value > limit
