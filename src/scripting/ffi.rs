//! Small helpers over the raw Lua 5.1 C API (`mlua::ffi`).
//!
//! The engine drives Lua through its C API rather than mlua's safe layer
//! because Redis's behaviour depends on details that layer hides: errors are
//! plain Lua values (strings, or `{err=...}` tables) that scripts can catch,
//! and library functions must raise Lua's own `bad argument` messages.
//!
//! Lua raises errors with `longjmp`, which skips Rust destructors. Every C
//! function in this module tree therefore follows one rule: a Lua error is
//! raised only from a frame that owns no value with a destructor (argument
//! checks run before anything is allocated, and computed errors are returned
//! to the outermost frame, which drops everything before raising). The only
//! exception is a Lua out-of-memory error while building a result, which can
//! at worst leak the Rust values being converted.

use std::ffi::{CStr, c_char, c_int};

pub(crate) use mlua::ffi::*;

/// A Lua state pointer.
pub(crate) type L = *mut lua_State;

/// Pushes a byte string.
#[inline]
pub(crate) unsafe fn push_bytes(l: L, b: &[u8]) {
    unsafe { lua_pushlstring(l, b.as_ptr() as *const c_char, b.len()) };
}

/// Pushes a static C string.
#[inline]
pub(crate) unsafe fn push_cstr(l: L, s: &CStr) {
    unsafe { lua_pushstring(l, s.as_ptr()) };
}

/// The bytes of the value at `idx` when it is a string or a number (which Lua
/// converts in place, like `lua_tolstring`). The slice lives as long as the
/// value stays on the stack.
#[inline]
pub(crate) unsafe fn to_bytes<'a>(l: L, idx: c_int) -> Option<&'a [u8]> {
    let mut len = 0usize;
    let p = unsafe { lua_tolstring(l, idx, &mut len) };
    if p.is_null() {
        None
    } else {
        Some(unsafe { std::slice::from_raw_parts(p as *const u8, len) })
    }
}

/// The bytes of the value at `idx` only when it is a string (no conversion,
/// so it is safe on keys during `lua_next`).
#[inline]
pub(crate) unsafe fn str_bytes<'a>(l: L, idx: c_int) -> Option<&'a [u8]> {
    if unsafe { lua_type(l, idx) } == LUA_TSTRING {
        unsafe { to_bytes(l, idx) }
    } else {
        None
    }
}

/// `t[k]` without metamethods, for a table at `idx`; pushes the value.
#[inline]
pub(crate) unsafe fn rawget_str(l: L, idx: c_int, k: &CStr) -> c_int {
    let idx = unsafe { lua_absindex(l, idx) };
    unsafe {
        push_cstr(l, k);
        lua_rawget(l, idx)
    }
}

/// `t[k] = top` without metamethods, for a table at `idx`; pops the value.
#[inline]
pub(crate) unsafe fn rawset_str(l: L, idx: c_int, k: &CStr) {
    let idx = unsafe { lua_absindex(l, idx) };
    unsafe {
        push_cstr(l, k);
        lua_insert(l, -2);
        lua_rawset(l, idx);
    }
}

/// Sets field `k` of the table on top of the stack to a C function.
pub(crate) unsafe fn set_fn(l: L, k: &CStr, f: lua_CFunction) {
    unsafe {
        lua_pushcfunction(l, f);
        rawset_str(l, -2, k);
    }
}

/// Sets field `k` of the table on top of the stack to a number.
pub(crate) unsafe fn set_num(l: L, k: &CStr, n: f64) {
    unsafe {
        lua_pushnumber(l, n);
        rawset_str(l, -2, k);
    }
}

/// Raises `msg` prefixed with the position of the calling Lua code, as
/// `luaL_error` does. `msg` is dropped before the jump.
pub(crate) unsafe fn raise_where<M: AsRef<[u8]>>(l: L, msg: M) -> ! {
    unsafe {
        luaL_where(l, 1);
        push_bytes(l, msg.as_ref());
        drop(msg);
        lua_concat(l, 2);
        lua_error(l)
    }
}

/// Raises `msg` as is (Lua's own errors raised inside C functions, such as
/// the read-only table error, carry no position).
pub(crate) unsafe fn raise_plain<M: AsRef<[u8]>>(l: L, msg: M) -> ! {
    unsafe {
        push_bytes(l, msg.as_ref());
        drop(msg);
        lua_error(l)
    }
}

/// Pushes a Redis error table `{err="CODE message"}` built like Redis's
/// `luaPushErrorBuff`: a leading `-` means the text carries its own error
/// code up to the first space; otherwise `ERR` is prepended. CR and LF are
/// trimmed from both ends of the message.
pub(crate) unsafe fn push_error_table(l: L, text: &[u8]) {
    let (code, msg): (&[u8], &[u8]) = match text.strip_prefix(b"-") {
        Some(rest) => match rest.iter().position(|&c| c == b' ') {
            Some(sp) => (&rest[..sp], &rest[sp + 1..]),
            None => (b"ERR", rest),
        },
        None => (b"ERR", text),
    };
    let msg = trim_crlf(msg);
    let mut full = Vec::with_capacity(code.len() + 1 + msg.len());
    full.extend_from_slice(code);
    full.push(b' ');
    full.extend_from_slice(msg);
    unsafe {
        lua_createtable(l, 0, 1);
        push_bytes(l, &full);
        drop(full);
        rawset_str(l, -2, c"err");
    }
}

/// Raises a Redis error table (see [`push_error_table`]).
pub(crate) unsafe fn raise_error_table(l: L, text: &[u8]) -> ! {
    unsafe {
        push_error_table(l, text);
        lua_error(l)
    }
}

/// Strips CR and LF from both ends, like `sdstrim(s, "\r\n")`.
pub(crate) fn trim_crlf(mut s: &[u8]) -> &[u8] {
    while let [b'\r' | b'\n', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_like_sdstrim() {
        assert_eq!(trim_crlf(b"\r\nab\r\n\n"), b"ab");
        assert_eq!(trim_crlf(b"\n"), b"");
        assert_eq!(trim_crlf(b"a\nb"), b"a\nb");
    }
}
