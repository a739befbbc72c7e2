//! The `bit` library (LuaBitOp semantics): 32-bit operations on Lua
//! numbers, results signed.

use std::ffi::c_int;

use crate::scripting::ffi::*;

/// Pushes the `bit` table.
pub(crate) unsafe fn open(l: L) {
    unsafe {
        lua_newtable(l);
        for (name, f) in [
            (c"tobit", tobit as lua_CFunction),
            (c"bnot", bnot),
            (c"band", band),
            (c"bor", bor),
            (c"bxor", bxor),
            (c"lshift", lshift),
            (c"rshift", rshift),
            (c"arshift", arshift),
            (c"rol", rol),
            (c"ror", ror),
            (c"bswap", bswap),
            (c"tohex", tohex),
        ] {
            set_fn(l, name, f);
        }
    }
}

/// Argument `i` as 32 bits: the number is rounded to an integer and taken
/// modulo 2^32 (LuaBitOp's 2^52+2^51 addition trick).
unsafe fn barg(l: L, i: c_int) -> u32 {
    let n = unsafe { luaL_checknumber(l, i) };
    (n + 6_755_399_441_055_744.0).to_bits() as u32
}

unsafe fn ret(l: L, b: u32) -> c_int {
    unsafe { lua_pushnumber(l, b as i32 as f64) };
    1
}

unsafe extern "C-unwind" fn tobit(l: L) -> c_int {
    unsafe { ret(l, barg(l, 1)) }
}

unsafe extern "C-unwind" fn bnot(l: L) -> c_int {
    unsafe { ret(l, !barg(l, 1)) }
}

/// Folds arguments 2..n into argument 1, from the last one down (the order
/// in which LuaBitOp reports bad arguments).
unsafe fn fold(l: L, op: fn(u32, u32) -> u32) -> c_int {
    unsafe {
        let mut b = barg(l, 1);
        let mut i = lua_gettop(l);
        while i > 1 {
            b = op(b, barg(l, i));
            i -= 1;
        }
        ret(l, b)
    }
}

unsafe extern "C-unwind" fn band(l: L) -> c_int {
    unsafe { fold(l, |a, b| a & b) }
}

unsafe extern "C-unwind" fn bor(l: L) -> c_int {
    unsafe { fold(l, |a, b| a | b) }
}

unsafe extern "C-unwind" fn bxor(l: L) -> c_int {
    unsafe { fold(l, |a, b| a ^ b) }
}

unsafe fn shift(l: L, op: fn(u32, u32) -> u32) -> c_int {
    unsafe {
        let b = barg(l, 1);
        let n = barg(l, 2) & 31;
        ret(l, op(b, n))
    }
}

unsafe extern "C-unwind" fn lshift(l: L) -> c_int {
    unsafe { shift(l, |b, n| b << n) }
}

unsafe extern "C-unwind" fn rshift(l: L) -> c_int {
    unsafe { shift(l, |b, n| b >> n) }
}

unsafe extern "C-unwind" fn arshift(l: L) -> c_int {
    unsafe { shift(l, |b, n| ((b as i32) >> n) as u32) }
}

unsafe extern "C-unwind" fn rol(l: L) -> c_int {
    unsafe { shift(l, u32::rotate_left) }
}

unsafe extern "C-unwind" fn ror(l: L) -> c_int {
    unsafe { shift(l, u32::rotate_right) }
}

unsafe extern "C-unwind" fn bswap(l: L) -> c_int {
    unsafe { ret(l, barg(l, 1).swap_bytes()) }
}

unsafe extern "C-unwind" fn tohex(l: L) -> c_int {
    unsafe {
        let b = barg(l, 1);
        let mut n = if lua_isnoneornil(l, 2) != 0 {
            8
        } else {
            barg(l, 2) as i32
        };
        let digits: &[u8; 16] = if n < 0 {
            n = n.wrapping_neg();
            b"0123456789ABCDEF"
        } else {
            b"0123456789abcdef"
        };
        let n = (n as u32).min(8) as usize;
        let mut buf = [0u8; 8];
        let mut v = b;
        for i in (0..n).rev() {
            buf[i] = digits[(v & 15) as usize];
            v >>= 4;
        }
        push_bytes(l, &buf[..n]);
        1
    }
}
