//! The `cmsgpack` library (lua-cmsgpack 0.4.0 as shipped with Redis 7.0):
//! MessagePack encoding of Lua values and decoding of MessagePack streams,
//! with the same type choices, nesting limit, stack limits and error texts.
//!
//! Stack use mirrors the C module push for push, so the "stack overflow"
//! errors of huge or deeply nested inputs trigger at the same sizes.

use std::ffi::{CStr, c_int};

use crate::scripting::convert::c_double_to_i64;
use crate::scripting::ffi::*;
use crate::scripting::sandbox::unwrap_proxy;

/// Tables at this depth (the packed value being at 0) are packed as nil,
/// which also stops cyclic tables.
const MAX_NESTING: c_int = 16;

/// Pushes the `cmsgpack` table.
pub(crate) unsafe fn open(l: L) {
    unsafe {
        lua_newtable(l);
        for (name, f) in [
            (c"pack", pack as lua_CFunction),
            (c"unpack", unpack),
            (c"unpack_one", unpack_one),
            (c"unpack_limit", unpack_limit),
        ] {
            set_fn(l, name, f);
        }
        for (name, value) in [
            (c"_NAME", c"cmsgpack"),
            (c"_VERSION", c"lua-cmsgpack 0.4.0"),
            (c"_COPYRIGHT", c"Copyright (C) 2012, Salvatore Sanfilippo"),
            (c"_DESCRIPTION", c"MessagePack C implementation for Lua"),
        ] {
            push_cstr(l, value);
            rawset_str(l, -2, name);
        }
    }
}

/// Raises `luaL_checkstack`'s error ("stack overflow (...)").
unsafe fn raise_stack_overflow(l: L, what: &CStr) -> ! {
    let mut msg = b"stack overflow (".to_vec();
    msg.extend_from_slice(what.to_bytes());
    msg.push(b')');
    unsafe {
        // The stack is full and nothing on it is needed any more: clear it
        // so the message can be pushed.
        lua_settop(l, 0);
        raise_where(l, msg)
    }
}

/// `lua_checkstack`, with the context of the failing check as the error.
unsafe fn need_stack(l: L, n: c_int, what: &'static CStr) -> Result<(), &'static CStr> {
    if unsafe { lua_checkstack(l, n) } != 0 {
        Ok(())
    } else {
        Err(what)
    }
}

// ===== Encoding =====

/// Appends a header: `fix | n` when `n` is at most `fix_max`, else the
/// 8-bit form (if any), the 16-bit one, or the 32-bit one (`op16 + 1`).
fn header(out: &mut Vec<u8>, n: usize, fix: u8, fix_max: usize, op8: Option<u8>, op16: u8) {
    if n <= fix_max {
        out.push(fix | n as u8);
    } else if let Some(op8) = op8.filter(|_| n <= 0xff) {
        out.extend_from_slice(&[op8, n as u8]);
    } else if n <= 0xffff {
        out.push(op16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(op16 + 1);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn encode_int(out: &mut Vec<u8>, n: i64) {
    match n {
        -32..=127 => out.push(n as u8),
        128..=0xff => out.extend_from_slice(&[0xcc, n as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        0x1_0000_0000.. => {
            out.push(0xcf);
            out.extend_from_slice(&n.to_be_bytes());
        }
        -128..=-33 => out.extend_from_slice(&[0xd0, n as u8]),
        -32768..=-129 => {
            out.push(0xd1);
            out.extend_from_slice(&(n as i16).to_be_bytes());
        }
        -2_147_483_648..=-32769 => {
            out.push(0xd2);
            out.extend_from_slice(&(n as i32).to_be_bytes());
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// Numbers that are exactly an `int64_t` are packed as integers; others as
/// float32 when that is lossless, else float64.
fn encode_number(out: &mut Vec<u8>, n: f64) {
    if !n.is_infinite() && c_double_to_i64(n) as f64 == n {
        encode_int(out, n as i64);
    } else if (n as f32) as f64 == n {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// C's `(int)d` on x86-64: out of range and NaN give `INT_MIN`.
fn c_double_to_i32(d: f64) -> i32 {
    if d > -2_147_483_649.0 && d < 2_147_483_648.0 {
        d as i32
    } else {
        i32::MIN
    }
}

/// Whether the table on top has exactly the keys 1..n (an empty table
/// counts as an array).
unsafe fn is_array(l: L) -> bool {
    unsafe {
        let (mut count, mut max) = (0i32, 0i32);
        lua_pushnil(l);
        while lua_next(l, -2) != 0 {
            lua_pop(l, 1);
            let n = lua_tonumber(l, -1);
            if lua_type(l, -1) != LUA_TNUMBER || n <= 0.0 || c_double_to_i32(n) as f64 != n {
                lua_pop(l, 1);
                return false;
            }
            max = max.max(n as i32);
            count += 1;
        }
        max == count
    }
}

/// Appends the value on top of the stack and pops it. Errors are the
/// context of a failed stack check.
unsafe fn encode(l: L, out: &mut Vec<u8>, level: c_int) -> Result<(), &'static CStr> {
    unsafe {
        match lua_type(l, -1) {
            LUA_TSTRING => {
                let s = to_bytes(l, -1).unwrap_or_default();
                header(out, s.len(), 0xa0, 31, Some(0xd9), 0xda);
                out.extend_from_slice(s);
            }
            LUA_TBOOLEAN => out.push(if lua_toboolean(l, -1) != 0 {
                0xc3
            } else {
                0xc2
            }),
            LUA_TNUMBER => encode_number(out, lua_tonumber(l, -1)),
            LUA_TTABLE if level < MAX_NESTING => {
                need_stack(l, 2, c"in function table_is_an_array")?;
                // Library tables are read-only proxies; pack the real ones.
                unwrap_proxy(l, -1);
                if is_array(l) {
                    let len = lua_objlen(l, -1);
                    header(out, len, 0x90, 15, None, 0xdc);
                    need_stack(l, 1, c"in function mp_encode_lua_table_as_array")?;
                    for i in 1..=len {
                        lua_rawgeti(l, -1, i as i64);
                        encode(l, out, level + 1)?;
                    }
                } else {
                    need_stack(l, 3, c"in function mp_encode_lua_table_as_map")?;
                    let mut len = 0;
                    lua_pushnil(l);
                    while lua_next(l, -2) != 0 {
                        lua_pop(l, 1);
                        len += 1;
                    }
                    header(out, len, 0x80, 15, None, 0xde);
                    lua_pushnil(l);
                    while lua_next(l, -2) != 0 {
                        lua_pushvalue(l, -2);
                        encode(l, out, level + 1)?;
                        encode(l, out, level + 1)?;
                    }
                }
            }
            // Nil, functions, userdata, threads, and tables nested too deep.
            _ => out.push(0xc0),
        }
        lua_pop(l, 1);
        Ok(())
    }
}

/// Packs arguments 1..=nargs, pushing one string per argument as the C
/// module does.
unsafe fn pack_args(l: L, nargs: c_int, out: &mut Vec<u8>) -> Result<(), &'static CStr> {
    unsafe {
        for i in 1..=nargs {
            need_stack(l, 1, c"in function mp_check")?;
            lua_pushvalue(l, i);
            encode(l, out, 0)?;
            push_bytes(l, out);
            out.clear();
        }
        Ok(())
    }
}

/// `cmsgpack.pack(...)`: the arguments packed one after the other.
unsafe extern "C-unwind" fn pack(l: L) -> c_int {
    unsafe {
        let nargs = lua_gettop(l);
        if nargs == 0 {
            luaL_argerror(l, 0, c"MessagePack pack needs input.".as_ptr());
        }
        if lua_checkstack(l, nargs) == 0 {
            luaL_argerror(l, 0, c"Too many arguments for MessagePack pack.".as_ptr());
        }
        let mut out = Vec::new();
        let r = pack_args(l, nargs, &mut out);
        drop(out);
        if let Err(what) = r {
            raise_stack_overflow(l, what);
        }
        lua_concat(l, nargs);
        1
    }
}

// ===== Decoding =====

/// Why decoding stopped.
enum Fail {
    /// The input ends inside a value.
    Eof,
    /// A type byte the module does not know (bin, ext, 0xc1).
    BadFormat,
    /// A failed stack check, with its context.
    Stack(&'static CStr),
    /// A map key that Lua tables refuse (nil or NaN).
    BadKey(&'static str),
}

/// The input and the read position.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    /// The next `n` bytes, consumed.
    fn take(&mut self, n: usize) -> Result<&[u8], Fail> {
        if self.left() < n {
            return Err(Fail::Eof);
        }
        self.pos += n;
        Ok(&self.data[self.pos - n..self.pos])
    }

    /// The `N` bytes after the type byte, consumed with it.
    fn after_type<const N: usize>(&mut self) -> Result<[u8; N], Fail> {
        let mut b = [0; N];
        b.copy_from_slice(&self.take(1 + N)?[1..]);
        Ok(b)
    }

    /// A big-endian length of `n` bytes after the type byte, consumed with it.
    fn len(&mut self, n: usize) -> Result<usize, Fail> {
        let b = self.take(1 + n)?;
        Ok(b[1..].iter().fold(0, |a, &c| (a << 8) | c as usize))
    }
}

/// Decodes a number of type `t`; None if `t` is not a number type.
fn decode_number(c: &mut Cursor, t: u8) -> Result<Option<f64>, Fail> {
    let n = match t {
        0x00..=0x7f | 0xe0..=0xff => {
            c.pos += 1;
            t as i8 as f64
        }
        0xcc => c.after_type::<1>()?[0] as f64,
        0xd0 => c.after_type::<1>()?[0] as i8 as f64,
        0xcd => u16::from_be_bytes(c.after_type()?) as f64,
        0xd1 => i16::from_be_bytes(c.after_type()?) as f64,
        0xce => u32::from_be_bytes(c.after_type()?) as f64,
        0xd2 => i32::from_be_bytes(c.after_type()?) as f64,
        // Pushed through a signed integer: 2^63 and above wrap.
        0xcf => u64::from_be_bytes(c.after_type()?) as i64 as f64,
        0xd3 => i64::from_be_bytes(c.after_type()?) as f64,
        0xca => f32::from_be_bytes(c.after_type()?) as f64,
        0xcb => f64::from_be_bytes(c.after_type()?),
        _ => return Ok(None),
    };
    Ok(Some(n))
}

/// A container being filled.
struct Level {
    map: bool,
    /// Items (arrays) or pairs (maps) still to read.
    left: usize,
    /// Next array index.
    index: f64,
    /// A map key is on the stack, waiting for its value.
    has_key: bool,
}

/// Decodes the value at the cursor: pushes a scalar and returns None, or
/// pushes an empty table and returns the container to fill.
unsafe fn decode_head(l: L, c: &mut Cursor) -> Result<Option<Level>, Fail> {
    unsafe {
        let Some(&t) = c.data.get(c.pos) else {
            return Err(Fail::Eof);
        };
        need_stack(
            l,
            1,
            c"too many return values at once; use unpack_one or unpack_limit instead.",
        )
        .map_err(Fail::Stack)?;
        let (map, len) = match t {
            0xc0 => {
                c.pos += 1;
                lua_pushnil(l);
                return Ok(None);
            }
            0xc2 | 0xc3 => {
                c.pos += 1;
                lua_pushboolean(l, (t == 0xc3) as c_int);
                return Ok(None);
            }
            0xa0..=0xbf | 0xd9..=0xdb => {
                let len = if t <= 0xbf {
                    c.pos += 1;
                    (t & 0x1f) as usize
                } else {
                    c.len(1 << (t - 0xd9))?
                };
                push_bytes(l, c.take(len)?);
                return Ok(None);
            }
            0x80..=0x9f => {
                c.pos += 1;
                (t < 0x90, (t & 0xf) as usize)
            }
            0xdc | 0xde => (t == 0xde, c.len(2)?),
            0xdd | 0xdf => (t == 0xdf, c.len(4)?),
            _ => {
                let n = decode_number(c, t)?.ok_or(Fail::BadFormat)?;
                lua_pushnumber(l, n);
                return Ok(None);
            }
        };
        lua_newtable(l);
        if !map {
            need_stack(l, 1, c"in function mp_decode_to_lua_array").map_err(Fail::Stack)?;
        }
        Ok(Some(Level {
            map,
            left: len,
            index: 1.0,
            has_key: false,
        }))
    }
}

/// Decodes one top-level value and leaves it on the stack. Nesting is
/// tracked in `levels` rather than by recursion, as it is bounded only by
/// the Lua stack (about 8000 levels).
unsafe fn decode_value(l: L, c: &mut Cursor, levels: &mut Vec<Level>) -> Result<(), Fail> {
    levels.clear();
    'value: loop {
        // True when a complete value is on top of the stack.
        let mut done = match unsafe { decode_head(l, c)? } {
            Some(level) => {
                levels.push(level);
                false
            }
            None => true,
        };
        loop {
            let Some(top) = levels.last_mut() else {
                return Ok(());
            };
            if done {
                if top.map && !top.has_key {
                    top.has_key = true;
                    continue 'value;
                }
                // Stack: table, key (or index), value.
                if top.map {
                    match unsafe { lua_type(l, -2) } {
                        LUA_TNIL => return Err(Fail::BadKey("table index is nil")),
                        LUA_TNUMBER if unsafe { lua_tonumber(l, -2) }.is_nan() => {
                            return Err(Fail::BadKey("table index is NaN"));
                        }
                        _ => {}
                    }
                    top.has_key = false;
                }
                unsafe { lua_rawset(l, -3) };
            }
            if top.left == 0 {
                levels.pop();
                done = true;
                continue;
            }
            top.left -= 1;
            if !top.map {
                unsafe { lua_pushnumber(l, top.index) };
                top.index += 1.0;
            }
            continue 'value;
        }
    }
}

/// Decodes up to `limit` values at the cursor; returns how many.
unsafe fn decode_values(l: L, c: &mut Cursor, limit: i64) -> Result<c_int, Fail> {
    let mut levels = Vec::new();
    let mut count = 0;
    while c.left() > 0 && (count as i64) < limit {
        unsafe { decode_value(l, c, &mut levels)? };
        count += 1;
    }
    Ok(count)
}

/// `mp_unpack_full`: the data is argument 1; `limit` 0 with `offset` 0
/// decodes everything and returns only the values, otherwise the next
/// offset (-1 at the end) comes first.
unsafe fn unpack_full(l: L, limit: i64, offset: i64) -> c_int {
    unsafe {
        let mut len = 0;
        let s = luaL_checklstring(l, 1, &mut len);
        if offset < 0 || limit < 0 {
            // The C module prints the input length as the limit.
            raise_where(
                l,
                format!(
                    "Invalid request to unpack with offset of {} and limit of {}.",
                    offset as i32, len as i32
                ),
            );
        }
        if offset as u64 > len as u64 {
            raise_where(
                l,
                format!(
                    "Start offset {} greater than input length {}.",
                    offset as i32, len as i32
                ),
            );
        }
        let all = limit == 0 && offset == 0;
        let mut c = Cursor {
            data: std::slice::from_raw_parts(s as *const u8, len),
            pos: offset as usize,
        };
        let count = match decode_values(l, &mut c, if all { i32::MAX as i64 } else { limit }) {
            Ok(n) => n,
            Err(fail) => {
                // The stack may be full: clear it so the message can be
                // pushed.
                lua_settop(l, 0);
                match fail {
                    Fail::Eof => raise_where(l, "Missing bytes in input."),
                    Fail::BadFormat => raise_where(l, "Bad data format in input."),
                    Fail::Stack(what) => raise_stack_overflow(l, what),
                    Fail::BadKey(msg) => raise_plain(l, msg),
                }
            }
        };
        if all {
            return count;
        }
        if lua_checkstack(l, 1) == 0 {
            raise_stack_overflow(l, c"in function mp_unpack_full");
        }
        let next = if c.left() == 0 { -1.0 } else { c.pos as f64 };
        lua_pushnumber(l, next);
        lua_insert(l, 2);
        count + 1
    }
}

/// `cmsgpack.unpack(data)`: every value in `data`.
unsafe extern "C-unwind" fn unpack(l: L) -> c_int {
    unsafe { unpack_full(l, 0, 0) }
}

/// `cmsgpack.unpack_one(data [, offset])`: the next offset and one value.
unsafe extern "C-unwind" fn unpack_one(l: L) -> c_int {
    unsafe {
        let offset = luaL_optinteger(l, 2, 0) as i64;
        lua_settop(l, lua_gettop(l).min(1));
        unpack_full(l, 1, offset)
    }
}

/// `cmsgpack.unpack_limit(data, limit [, offset])`: the next offset and up
/// to `limit` values.
unsafe extern "C-unwind" fn unpack_limit(l: L) -> c_int {
    unsafe {
        let limit = luaL_checkinteger(l, 2) as i64;
        let offset = luaL_optinteger(l, 3, 0) as i64;
        lua_settop(l, lua_gettop(l).min(1));
        unpack_full(l, limit, offset)
    }
}
