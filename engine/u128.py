"""128-bit helpers for numba kernels: numbers as (hi, lo) uint64 limbs.

numba has no 128-bit integer type, but LLVM does. These intrinsics widen the
limbs to i128, let LLVM emit the native instructions (mul/umulh, add/adc,
shrd, tzcnt), and split the result again. They are usable only inside
@njit code.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_I64 = ir.IntType(64)
_I128 = ir.IntType(128)
_PAIR = types.UniTuple(types.uint64, 2)


def _join(builder, hi, lo):
    wide_hi = builder.shl(builder.zext(hi, _I128), ir.Constant(_I128, 64))
    return builder.or_(wide_hi, builder.zext(lo, _I128))


def _split(context, builder, sig, value):
    lo = builder.trunc(value, _I64)
    hi = builder.trunc(builder.lshr(value, ir.Constant(_I128, 64)), _I64)
    return context.make_tuple(builder, sig.return_type, (hi, lo))


@intrinsic
def mul_add_64(_typingctx, a, b, c):
    """a * b + c as a 128-bit (hi, lo) pair (never overflows)."""
    sig = _PAIR(types.uint64, types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        x, y, z = (builder.zext(v, _I128) for v in args)
        return _split(context, builder, signature, builder.add(builder.mul(x, y), z))

    return sig, codegen


@intrinsic
def triple_plus_one(_typingctx, hi, lo):
    """3x + 1 modulo 2**128; callers guard against overflow first."""
    sig = _PAIR(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        x = _join(builder, *args)
        y = builder.add(builder.mul(x, ir.Constant(_I128, 3)), ir.Constant(_I128, 1))
        return _split(context, builder, signature, y)

    return sig, codegen


@intrinsic
def strip_twos(_typingctx, hi, lo):
    """x >> ctz(x) for x != 0: removes every factor of two."""
    sig = _PAIR(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        x = _join(builder, *args)
        tz = builder.cttz(x, ir.Constant(ir.IntType(1), 1))
        return _split(context, builder, signature, builder.lshr(x, tz))

    return sig, codegen


@intrinsic
def shift_right(_typingctx, hi, lo, s):
    """x >> s for 0 <= s < 128."""
    sig = _PAIR(types.uint64, types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        x = _join(builder, args[0], args[1])
        return _split(context, builder, signature, builder.lshr(x, builder.zext(args[2], _I128)))

    return sig, codegen
