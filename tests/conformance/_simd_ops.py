"""Every SIMD (Wasm 2.0 fixed-width SIMD) instruction, as a tiny module computing one value.

``MODULES`` maps an instruction name to the WAT of a module whose export ``run`` executes the
instruction on fixed operands and stores the result at address 0 of its memory (a v128 as 16
bytes, a scalar as its little-endian bytes); ``NAN_LANES`` says which results hold float lanes
(f32 or f64), where runtimes may differ in NaN bits (the spec leaves an arithmetic NaN's payload
to the implementation), so comparisons treat any NaN lane as equal.
"""

from __future__ import annotations

# operands: bytes with sign and saturation edges; floats with signs, fractions and large values
_A = "v128.const i8x16 0x80 0x7f 0x01 0xff 0x10 0x20 0xfe 0x00 0x33 0x44 0x81 0x02 0x90 0x7e 0x05 0xc0"
_B = "v128.const i8x16 0x01 0x02 0xff 0x80 0x7f 0x30 0x02 0x00 0x11 0x55 0x7f 0x03 0x10 0x82 0x06 0x40"
_C = "v128.const i8x16 0xff 0x00 0xf0 0x0f 0xaa 0x55 0x00 0xff 0x0f 0xf0 0xcc 0x33 0x01 0x80 0x7f 0xfe"
_F32A = "v128.const f32x4 1.5 -2.25 3e9 -0.5"
_F32B = "v128.const f32x4 -0.75 2.25 4.5e9 0.5"
_F64A = "v128.const f64x2 1.5 -3e10"
_F64B = "v128.const f64x2 -2.5 7e10"

_INT_SHAPES = ("i8x16", "i16x8", "i32x4", "i64x2")
_CMP = {
    "i8x16": "eq ne lt_s lt_u gt_s gt_u le_s le_u ge_s ge_u",
    "i16x8": "eq ne lt_s lt_u gt_s gt_u le_s le_u ge_s ge_u",
    "i32x4": "eq ne lt_s lt_u gt_s gt_u le_s le_u ge_s ge_u",
    "i64x2": "eq ne lt_s gt_s le_s ge_s",
    "f32x4": "eq ne lt gt le ge",
    "f64x2": "eq ne lt gt le ge",
}
_BINARY = {
    "v128": "and andnot or xor",
    "i8x16": "narrow_i16x8_s narrow_i16x8_u add add_sat_s add_sat_u sub sub_sat_s sub_sat_u min_s min_u max_s max_u "
             "avgr_u swizzle",
    "i16x8": "q15mulr_sat_s narrow_i32x4_s narrow_i32x4_u add add_sat_s add_sat_u sub sub_sat_s sub_sat_u mul min_s "
             "min_u max_s max_u avgr_u extmul_low_i8x16_s extmul_high_i8x16_s extmul_low_i8x16_u extmul_high_i8x16_u",
    "i32x4": "add sub mul min_s min_u max_s max_u dot_i16x8_s extmul_low_i16x8_s extmul_high_i16x8_s "
             "extmul_low_i16x8_u extmul_high_i16x8_u",
    "i64x2": "add sub mul extmul_low_i32x4_s extmul_high_i32x4_s extmul_low_i32x4_u extmul_high_i32x4_u",
    "f32x4": "add sub mul div min max pmin pmax",
    "f64x2": "add sub mul div min max pmin pmax",
}
_UNARY = {
    "v128": "not",
    "i8x16": "abs neg popcnt",
    "i16x8": "extadd_pairwise_i8x16_s extadd_pairwise_i8x16_u abs neg extend_low_i8x16_s extend_high_i8x16_s "
             "extend_low_i8x16_u extend_high_i8x16_u",
    "i32x4": "extadd_pairwise_i16x8_s extadd_pairwise_i16x8_u abs neg extend_low_i16x8_s extend_high_i16x8_s "
             "extend_low_i16x8_u extend_high_i16x8_u trunc_sat_f32x4_s trunc_sat_f32x4_u trunc_sat_f64x2_s_zero "
             "trunc_sat_f64x2_u_zero",
    "i64x2": "abs neg extend_low_i32x4_s extend_high_i32x4_s extend_low_i32x4_u extend_high_i32x4_u",
    "f32x4": "ceil floor trunc nearest abs neg sqrt demote_f64x2_zero convert_i32x4_s convert_i32x4_u",
    "f64x2": "ceil floor trunc nearest abs neg sqrt promote_low_f32x4 convert_low_i32x4_s convert_low_i32x4_u",
}
_TEST = {"v128": "any_true", "i8x16": "all_true bitmask", "i16x8": "all_true bitmask",
         "i32x4": "all_true bitmask", "i64x2": "all_true bitmask"}
_SHIFT = "shl shr_s shr_u"
_SCALAR = {"i8x16": "i32", "i16x8": "i32", "i32x4": "i32", "i64x2": "i64", "f32x4": "f32", "f64x2": "f64"}
_LANES = {"i8x16": 16, "i16x8": 8, "i32x4": 4, "i64x2": 2, "f32x4": 4, "f64x2": 2}
_SCALAR_VALUE = {"i32": "i32.const -1234567", "i64": "i64.const 0x123456789abcdef0", "f32": "f32.const -6.5",
                 "f64": "f64.const 1e300"}


def _operand(shape: str, which: int, op: str) -> str:
    """A v128 operand suited to ``shape.op`` (float lanes for float operations)."""
    src = shape
    if "_f32x4" in op or op == "promote_low_f32x4":
        src = "f32x4"
    elif "_f64x2" in op:
        src = "f64x2"
    elif op.startswith("convert") or op.startswith("trunc_sat"):
        src = "i32x4" if shape.startswith("f") else src
    if src == "f32x4":
        return (_F32A, _F32B)[which]
    if src == "f64x2":
        return (_F64A, _F64B)[which]
    return (_A, _B, _C)[which]


def _module(body: str, result: str = "v128") -> str:
    store = {"v128": "v128.store", "i32": "i32.store", "i64": "i64.store", "f32": "f32.store", "f64": "f64.store"}[result]
    data = '(data (i32.const 32) "\\01\\82\\03\\f4\\05\\06\\07\\88\\09\\0a\\8b\\0c\\0d\\0e\\0f\\10\\91\\12\\13\\14")'
    return (f'(module (memory (export "memory") 1) {data}\n'
            f'  (func (export "run") (local $v v128) i32.const 0 {body} {store}))')


def _all() -> dict[str, tuple[str, bool]]:
    """name -> (WAT, whether the result has float lanes)."""
    out: dict[str, tuple[str, bool]] = {}

    def add(name: str, body: str, result: str = "v128", floats: bool | None = None) -> None:
        if floats is None:
            floats = name.split(".")[0] in ("f32x4", "f64x2") and result == "v128" and "convert" not in name \
                or result in ("f32", "f64")
            floats = floats or name.startswith("f32x4.demote") or name.startswith("f64x2.promote") \
                or "convert" in name
        out[name] = (_module(body, result), floats)

    for shape, ops in _BINARY.items():
        for op in ops.split():
            add(f"{shape}.{op}", f"({shape}.{op} ({_operand(shape, 0, op)}) ({_operand(shape, 1, op)}))")
    for shape, ops in _CMP.items():
        for op in ops.split():
            add(f"{shape}.{op}", f"({shape}.{op} ({_operand(shape, 0, op)}) ({_operand(shape, 1, op)}))", floats=False)
    for shape, ops in _UNARY.items():
        for op in ops.split():
            add(f"{shape}.{op}", f"({shape}.{op} ({_operand(shape, 0, op)}))")
    for shape, ops in _TEST.items():
        for op in ops.split():
            add(f"{shape}.{op}", f"({shape}.{op} ({_operand(shape, 0, op)}))", "i32")
    for shape in _INT_SHAPES:
        for op in _SHIFT.split():
            add(f"{shape}.{op}", f"({shape}.{op} ({_A}) (i32.const 3))")
    for shape, scalar in _SCALAR.items():
        value = _SCALAR_VALUE[scalar]
        add(f"{shape}.splat", f"({shape}.splat ({value}))")
        lane = _LANES[shape] - 1
        suffixes = ("_s", "_u") if shape in ("i8x16", "i16x8") else ("",)
        for sfx in suffixes:
            add(f"{shape}.extract_lane{sfx}", f"({shape}.extract_lane{sfx} {lane} ({_operand(shape, 0, '')}))",
                "i32" if scalar == "i32" else scalar)
        add(f"{shape}.replace_lane", f"({shape}.replace_lane {lane} ({_operand(shape, 0, '')}) ({value}))")
    add("v128.const", f"({_A})", floats=False)
    add("v128.bitselect", f"(v128.bitselect ({_A}) ({_B}) ({_C}))", floats=False)
    add("i8x16.shuffle", f"(i8x16.shuffle 0 17 2 19 4 21 31 7 8 25 10 11 28 13 14 16 ({_A}) ({_B}))", floats=False)
    for load in ("v128.load", "v128.load8x8_s", "v128.load8x8_u", "v128.load16x4_s", "v128.load16x4_u",
                 "v128.load32x2_s", "v128.load32x2_u", "v128.load8_splat", "v128.load16_splat", "v128.load32_splat",
                 "v128.load64_splat", "v128.load32_zero", "v128.load64_zero"):
        add(load, f"({load} offset=1 (i32.const 32))", floats=False)
    for bits, lane in (("8", 15), ("16", 7), ("32", 3), ("64", 1)):
        add(f"v128.load{bits}_lane", f"(v128.load{bits}_lane offset=2 {lane} (i32.const 32) ({_A}))", floats=False)
        # store_lane writes the lane at 0 and the whole result is read back from memory
        out[f"v128.store{bits}_lane"] = (
            '(module (memory (export "memory") 1)\n'
            f'  (func (export "run") (v128.store{bits}_lane offset=3 {lane} (i32.const 0) ({_B}))))', False)
    out["v128.store"] = ('(module (memory (export "memory") 1)\n'
                         f'  (func (export "run") (v128.store offset=5 (i32.const 0) ({_C}))))', False)
    return out


MODULES: dict[str, tuple[str, bool]] = _all()
