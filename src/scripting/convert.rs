//! Conversions between replies and Lua values, as Redis 7.0's script_lua.c
//! does them.
//!
//! Reply -> Lua (what `redis.call` returns) depends on the protocol the script
//! chose with `redis.setresp`: in RESP2 a map is a flat array, a double a
//! string, null `false`; in RESP3 they become `{map=...}`, `{double=n}`, nil.
//!
//! Lua -> Reply (what a script returns) yields a protocol-independent
//! [`Reply`]; booleans depend on the script's protocol (RESP2 scripts return
//! `true` as 1 and `false` as null).

use std::ffi::c_int;

use bytes::Bytes;

use super::ffi::*;
use crate::reply::{Reply, format_double, printf_g};

/// Pushes a command reply converted for a script speaking RESP3 (`resp3`)
/// or RESP2.
pub(crate) unsafe fn push_reply(l: L, r: &Reply, resp3: bool) {
    unsafe {
        if lua_checkstack(l, 4) == 0 {
            // Deeper than Lua allows: Redis gives up the same way.
            push_error_table(l, b"reached lua stack limit");
            return;
        }
        match r {
            Reply::Simple(s) => push_single(l, c"ok", s.as_bytes()),
            Reply::Status(s) => push_single(l, c"ok", s.as_bytes()),
            Reply::Error(_) | Reply::StaticError(_) | Reply::ErrorBytes(_) => {
                let text = r.error_text().unwrap_or_default();
                let mut buf = Vec::with_capacity(text.len() + 1);
                buf.push(b'-');
                buf.extend_from_slice(text);
                push_error_table(l, &buf);
                drop(buf);
                // The error was already counted when the command ran.
                lua_pushboolean(l, 1);
                rawset_str(l, -2, c"ignore_error_stats_update");
            }
            Reply::Int(n) => lua_pushnumber(l, *n as f64),
            Reply::Bulk(b) => push_bytes(l, b),
            Reply::Nil | Reply::NilArray => {
                if resp3 {
                    lua_pushnil(l)
                } else {
                    lua_pushboolean(l, 0)
                }
            }
            Reply::Array(items) | Reply::Push(items) => push_array(l, items, resp3),
            Reply::Map(pairs) => {
                if resp3 {
                    lua_createtable(l, 0, 1);
                    lua_createtable(l, 0, pairs.len() as c_int);
                    for (k, v) in pairs {
                        push_reply(l, k, resp3);
                        push_reply(l, v, resp3);
                        lua_rawset(l, -3);
                    }
                    rawset_str(l, -2, c"map");
                } else {
                    lua_createtable(l, (2 * pairs.len()) as c_int, 0);
                    for (i, (k, v)) in pairs.iter().enumerate() {
                        push_reply(l, k, resp3);
                        lua_rawseti(l, -2, 2 * i as i64 + 1);
                        push_reply(l, v, resp3);
                        lua_rawseti(l, -2, 2 * i as i64 + 2);
                    }
                }
            }
            Reply::Set(items) => {
                if resp3 {
                    lua_createtable(l, 0, 1);
                    lua_createtable(l, 0, items.len() as c_int);
                    for it in items {
                        push_reply(l, it, resp3);
                        lua_pushboolean(l, 1);
                        lua_rawset(l, -3);
                    }
                    rawset_str(l, -2, c"set");
                } else {
                    push_array(l, items, resp3)
                }
            }
            Reply::Double(d) => {
                if resp3 {
                    push_double(l, *d)
                } else {
                    push_bytes(l, format_double(*d).as_bytes())
                }
            }
            Reply::DoubleText(s) => {
                if resp3 {
                    push_double(l, parse_double(s))
                } else {
                    push_bytes(l, s.as_bytes())
                }
            }
            Reply::Bool(b) => {
                if resp3 {
                    lua_pushboolean(l, *b as c_int)
                } else {
                    lua_pushnumber(l, *b as u8 as f64)
                }
            }
            Reply::Verbatim(s) => {
                if resp3 {
                    lua_createtable(l, 0, 1);
                    lua_createtable(l, 0, 2);
                    push_bytes(l, s.as_bytes());
                    rawset_str(l, -2, c"string");
                    push_cstr(l, c"txt");
                    rawset_str(l, -2, c"format");
                    rawset_str(l, -2, c"verbatim_string");
                } else {
                    push_bytes(l, s.as_bytes())
                }
            }
        }
    }
}

unsafe fn push_single(l: L, field: &std::ffi::CStr, text: &[u8]) {
    unsafe {
        lua_createtable(l, 0, 1);
        push_bytes(l, text);
        rawset_str(l, -2, field);
    }
}

unsafe fn push_array(l: L, items: &[Reply], resp3: bool) {
    unsafe {
        lua_createtable(l, items.len() as c_int, 0);
        for (i, it) in items.iter().enumerate() {
            push_reply(l, it, resp3);
            lua_rawseti(l, -2, i as i64 + 1);
        }
    }
}

unsafe fn push_double(l: L, d: f64) {
    unsafe {
        lua_createtable(l, 0, 1);
        lua_pushnumber(l, d);
        rawset_str(l, -2, c"double");
    }
}

/// `strtod` of a RESP3 double's text (`inf`, `-inf`, `nan` included).
fn parse_double(s: &str) -> f64 {
    s.parse().unwrap_or(match s {
        "inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        _ => f64::NAN,
    })
}

/// C's `(long long)d` on x86-64: NaN and out-of-range values become
/// `i64::MIN` instead of saturating.
pub(crate) fn c_double_to_i64(d: f64) -> i64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    // NaN is in no range.
    if !(-TWO_63..TWO_63).contains(&d) {
        i64::MIN
    } else {
        d as i64
    }
}

/// Deepest nesting converted from a script's return value. Redis stops
/// where the Lua stack ends (about 8000 levels); replies are converted,
/// encoded and dropped recursively in Rust, so a lower limit keeps them
/// within a thread's stack. Deeper values get the same error element.
const MAX_DEPTH: usize = 1000;

/// Converts and pops the value on top of the stack, the return value of a
/// script. `script_resp3` is the protocol the script selected.
pub(crate) unsafe fn lua_to_reply(l: L, script_resp3: bool) -> Reply {
    unsafe {
        let r = value(l, script_resp3, 0);
        lua_pop(l, 1);
        r
    }
}

/// Converts the value on top of the stack without popping it.
unsafe fn value(l: L, resp3: bool, depth: usize) -> Reply {
    unsafe {
        if depth > MAX_DEPTH || lua_checkstack(l, 4) == 0 {
            return Reply::StaticError("ERR reached lua stack limit");
        }
        match lua_type(l, -1) {
            LUA_TSTRING => Reply::Bulk(Bytes::copy_from_slice(to_bytes(l, -1).unwrap_or_default())),
            LUA_TBOOLEAN => {
                let b = lua_toboolean(l, -1) != 0;
                match (resp3, b) {
                    (true, _) => Reply::Bool(b),
                    (false, true) => Reply::Int(1),
                    (false, false) => Reply::Nil,
                }
            }
            LUA_TNUMBER => Reply::Int(c_double_to_i64(lua_tonumber(l, -1))),
            LUA_TTABLE => table(l, resp3, depth + 1),
            _ => Reply::Nil,
        }
    }
}

/// Reads field `k` of the table on top (raw) when it has type `ty`; the
/// field stays pushed on success.
unsafe fn field(l: L, k: &std::ffi::CStr, ty: c_int) -> bool {
    unsafe {
        if rawget_str(l, -1, k) == ty {
            true
        } else {
            lua_pop(l, 1);
            false
        }
    }
}

unsafe fn table(l: L, resp3: bool, depth: usize) -> Reply {
    unsafe {
        if field(l, c"err", LUA_TSTRING) {
            let text = to_bytes(l, -1).unwrap_or_default().to_vec();
            lua_pop(l, 1);
            return super::state::error_from(text);
        }
        if field(l, c"ok", LUA_TSTRING) {
            let text = String::from_utf8_lossy(to_bytes(l, -1).unwrap_or_default()).into_owned();
            lua_pop(l, 1);
            return Reply::Status(text);
        }
        if field(l, c"double", LUA_TNUMBER) {
            let d = lua_tonumber(l, -1);
            lua_pop(l, 1);
            // Redis prints NaN with its sign ("-nan"), which `Double` cannot.
            return if d.is_nan() {
                Reply::DoubleText(printf_g(d, 17))
            } else {
                Reply::Double(d)
            };
        }
        if field(l, c"big_number", LUA_TSTRING) {
            let text: Vec<u8> = to_bytes(l, -1)
                .unwrap_or_default()
                .iter()
                .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c })
                .collect();
            lua_pop(l, 1);
            return Reply::Bulk(text.into());
        }
        if field(l, c"verbatim_string", LUA_TTABLE) {
            if field(l, c"format", LUA_TSTRING) {
                let is_txt = to_bytes(l, -1).unwrap_or_default().starts_with(b"txt");
                lua_pop(l, 1);
                if field(l, c"string", LUA_TSTRING) {
                    let s = to_bytes(l, -1).unwrap_or_default().to_vec();
                    lua_pop(l, 2);
                    return match String::from_utf8(s) {
                        Ok(s) if is_txt => Reply::Verbatim(s),
                        Ok(s) => Reply::Bulk(s.into()),
                        Err(e) => Reply::Bulk(e.into_bytes().into()),
                    };
                }
            }
            lua_pop(l, 1);
        }
        if field(l, c"map", LUA_TTABLE) {
            let mut pairs = Vec::new();
            lua_pushnil(l);
            while lua_next(l, -2) != 0 {
                lua_pushvalue(l, -2);
                let k = value(l, resp3, depth);
                lua_pop(l, 1);
                let v = value(l, resp3, depth);
                lua_pop(l, 1);
                pairs.push((k, v));
            }
            lua_pop(l, 1);
            return Reply::Map(pairs);
        }
        if field(l, c"set", LUA_TTABLE) {
            let mut items = Vec::new();
            lua_pushnil(l);
            while lua_next(l, -2) != 0 {
                lua_pop(l, 1);
                items.push(value(l, resp3, depth));
            }
            lua_pop(l, 1);
            return Reply::Set(items);
        }
        let mut items = Vec::new();
        let mut j = 1;
        loop {
            if lua_rawgeti(l, -1, j) == LUA_TNIL {
                lua_pop(l, 1);
                break;
            }
            items.push(value(l, resp3, depth));
            lua_pop(l, 1);
            j += 1;
        }
        Reply::Array(items)
    }
}
