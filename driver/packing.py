"""Bit-packing of accelerator I/O, bit-identical to FINN's finn.util.data_packing, in plain numpy.

FINN streams the innermost (folded) dimension of a tensor as one word: with
reverse_inner=True and reverse_endian=True (what FINN's PYNQ driver uses), element
0 sits in the least significant bits and the word is stored little-endian, padded
to whole bytes at the top. The other three flag combinations are that layout with
the elements and/or the bytes reversed. FINN builds the word bit by bit
(np.unpackbits / np.packbits on 8x the data); here values are shifted into
64-bit words, lcm(bits, 8) bits at a time, so packing costs a few integer
operations per value. Works on numpy 1.x (PYNQ images) and 2.x; imports nothing else.

Datatypes: INTn / UINTn (n <= 64), BINARY, BIPOLAR, FLOAT32 (names as FINN's DataType).
`unpack` returns float32 like FINN where float32 is exact (INTn up to n = 25, UINTn up to n = 24,
BINARY, BIPOLAR, FLOAT32) and exact integers beyond: int64 (uint64 for UINT64); FINN's own
unpacking goes through float32 there and rounds values above 2**24.
"""
from __future__ import annotations

import math
import re

import numpy as np


class DType:
    """The few facts of a FINN datatype name the packer needs."""

    def __init__(self, name: str):
        self.name = str(name)
        m = re.fullmatch(r"(U?INT)(\d+)", self.name)
        if m:
            self.bits, self.signed, self.kind = int(m.group(2)), m.group(1) == "INT", "int"
        elif self.name == "BINARY":
            self.bits, self.signed, self.kind = 1, False, "int"
        elif self.name == "BIPOLAR":
            self.bits, self.signed, self.kind = 1, False, "bipolar"
        elif self.name == "FLOAT32":
            self.bits, self.signed, self.kind = 32, True, "float"
        else:
            raise ValueError(f"unsupported datatype {self.name!r} (INTn, UINTn, BINARY, BIPOLAR, FLOAT32)")
        if not 1 <= self.bits <= 64:
            raise ValueError(f"unsupported bit width in {self.name!r}")

    def __repr__(self):
        return f"DType({self.name!r})"


def packed_bytes(n_values: int, dtype) -> int:
    return math.ceil(n_values * DType(str(dtype)).bits / 8)


def _container(bits: int) -> int:
    """Smallest native unsigned width (8/16/32/64) holding `bits` bits."""
    return 8 if bits <= 8 else 16 if bits <= 16 else 32 if bits <= 32 else 64


def _codes(x: np.ndarray, dt: DType, width: int) -> np.ndarray:
    """Values -> their dt.bits-wide two's-complement bit patterns, in uint`width`."""
    ut = np.dtype(f"u{width // 8}")
    if dt.kind == "bipolar":
        return (np.asarray(x) > 0).astype(ut)
    vb = _container(dt.bits)
    v = np.asarray(x)
    st = np.dtype(f"{'i' if dt.signed else 'u'}{vb // 8}")
    if v.dtype != st:
        v = v.astype(st)
    u = v.view(f"u{vb // 8}")
    if vb != width:
        u = u.astype(ut)
    if dt.signed and dt.bits < width:
        u = u & ut.type((1 << dt.bits) - 1)
    return u


FLOAT32_EXACT_BITS = 24  # float32 has a 24-bit significand: every integer of magnitude <= 2**24 is exact


def value_dtype(dtype) -> np.dtype:
    """The numpy type `unpack` returns for a FINN datatype: float32 where float32 holds every value
    exactly (FINN's own choice), int64 for wider integers, uint64 for UINT64."""
    dt = DType(str(dtype))
    if dt.kind != "int" or dt.bits - (1 if dt.signed else 0) <= FLOAT32_EXACT_BITS:
        return np.dtype(np.float32)
    return np.dtype(np.uint64 if dt.bits == 64 and not dt.signed else np.int64)


def _values(codes: np.ndarray, dt: DType) -> np.ndarray:
    """Bit patterns -> values (sign-extended for signed types, -1/+1 for BIPOLAR), as value_dtype(dt)."""
    out = value_dtype(dt.name)
    if dt.kind == "bipolar":
        return codes.astype(np.float32) * 2 - 1
    if dt.signed and dt.bits == 64:
        return np.ascontiguousarray(codes.astype(np.uint64)).view(np.int64)
    if dt.signed:
        it = np.dtype(f"i{_container(dt.bits + 1) // 8}")
        sign = it.type(1 << (dt.bits - 1))
        return ((codes.astype(it) ^ sign) - sign).astype(out)
    return codes.astype(out)


def _layout(b: int):
    """(values per group, bytes per group, container bits) of byte-aligned groups of b-bit values."""
    span = b * 8 // math.gcd(b, 8)  # lcm(b, 8)
    return span // b, span // 8, (_container(span) if span <= 64 else 128)


def _pack_lsb(x: np.ndarray, dt: DType) -> np.ndarray:
    """Element 0 in the lowest bits, little-endian bytes."""
    lead, n = x.shape[:-1], x.shape[-1]
    nbytes = math.ceil(n * dt.bits / 8)
    if dt.kind == "float":
        return np.ascontiguousarray(np.asarray(x, "<f4")).view(np.uint8).reshape(*lead, nbytes)
    b = dt.bits
    per, gbytes, width = _layout(b)
    if width > 64:
        return _pack_bits(_codes(x, dt, 64), b, lead, n, nbytes)
    codes = _codes(x, dt, width)
    groups = -(-n // per)
    if groups * per != n:
        codes = np.concatenate([codes, np.zeros((*lead, groups * per - n), codes.dtype)], axis=-1)
    codes = codes.reshape(*lead, groups, per)
    words = codes[..., 0].copy()
    for k in range(1, per):
        words |= codes[..., k] << codes.dtype.type(k * b)
    out = np.ascontiguousarray(words.astype(f"<u{width // 8}")).view(np.uint8)
    out = out.reshape(*lead, groups, width // 8)[..., :gbytes]
    return out.reshape(*lead, groups * gbytes)[..., :nbytes]


def _pack_bits(codes, b, lead, n, nbytes):
    """Fallback for widths whose byte-aligned groups exceed 64 bits: explicit bit planes."""
    bit = (codes[..., None] >> np.arange(b, dtype=np.uint64)) & np.uint64(1)  # LSB first
    bits = bit.reshape(*lead, n * b).astype(np.uint8)
    pad = nbytes * 8 - n * b
    if pad:
        bits = np.concatenate([bits, np.zeros((*lead, pad), np.uint8)], axis=-1)
    return np.packbits(bits.reshape(*lead, nbytes, 8), axis=-1, bitorder="little")[..., 0]


def _unpack_lsb(p: np.ndarray, dt: DType, n: int) -> np.ndarray:
    lead = p.shape[:-1]
    if dt.kind == "float":
        return np.ascontiguousarray(p[..., : n * 4]).view("<f4").astype(np.float32).reshape(*lead, n)
    b = dt.bits
    per, gbytes, width = _layout(b)
    if width > 64:
        bits = np.unpackbits(p[..., :, None], axis=-1, bitorder="little").reshape(*lead, -1)[..., : n * b]
        bits = bits.reshape(*lead, n, b).astype(np.uint64)
        return _values(np.bitwise_or.reduce(bits << np.arange(b, dtype=np.uint64), axis=-1), dt)
    groups = -(-n // per)
    need = groups * gbytes
    if p.shape[-1] < need:
        p = np.concatenate([p, np.zeros((*lead, need - p.shape[-1]), np.uint8)], axis=-1)
    raw = p[..., :need].reshape(*lead, groups, gbytes)
    if gbytes < width // 8:
        raw = np.concatenate([raw, np.zeros((*lead, groups, width // 8 - gbytes), np.uint8)], axis=-1)
    ut = np.dtype(f"u{width // 8}")
    words = np.ascontiguousarray(raw).view(f"<u{width // 8}").astype(ut)[..., 0]
    mask = ut.type((1 << b) - 1) if b < width else ut.type(np.iinfo(ut).max)
    codes = np.empty((*lead, groups, per), ut)
    for k in range(per):
        codes[..., k] = (words >> ut.type(k * b)) & mask
    return _values(codes.reshape(*lead, groups * per)[..., :n], dt)


def pack(x: np.ndarray, dtype, reverse_inner: bool = True, reverse_endian: bool = True) -> np.ndarray:
    """finnpy_to_packed_bytearray: pack the innermost dimension of `x` into uint8 words."""
    dt = DType(str(dtype))
    x = np.asarray(x)
    if x.ndim == 0:
        x = x.reshape(1)
    if not reverse_inner:
        x = x[..., ::-1]
    out = _pack_lsb(x, dt)
    if not reverse_endian:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def unpack(p: np.ndarray, dtype, shape, reverse_inner: bool = True, reverse_endian: bool = True) -> np.ndarray:
    """packed_bytearray_to_finnpy: uint8 words back to values of `shape` (dtype: value_dtype(dtype))."""
    dt = DType(str(dtype))
    p = np.asarray(p)
    if p.dtype != np.uint8:
        raise ValueError(f"packed data must be uint8, got {p.dtype}")
    n = int(shape[-1])
    if p.shape[-1] != packed_bytes(n, dt.name):
        raise ValueError(f"packed innermost size {p.shape[-1]} does not fit {n} x {dt.name}")
    if not reverse_endian:
        p = p[..., ::-1]
    v = _unpack_lsb(np.ascontiguousarray(p), dt, n)
    if not reverse_inner:
        v = v[..., ::-1]
    return np.ascontiguousarray(v).reshape(tuple(shape))
