//! The `cjson` library (lua-cjson 2.1.0 as shipped with Redis 7.0): JSON
//! encoding of Lua values and decoding to Lua values, with the same array
//! detection, number formatting, escapes, limits and error texts.

use std::ffi::{c_char, c_int};

use crate::reply::printf_g;
use crate::scripting::ffi::*;
use crate::scripting::sandbox::push_unwrapped;

/// Per-module settings (`cjson.new()` makes a module with its own).
#[repr(C)]
struct Config {
    sparse_convert: c_int,
    sparse_ratio: c_int,
    sparse_safe: c_int,
    encode_max_depth: c_int,
    decode_max_depth: c_int,
    encode_invalid_numbers: c_int,
    decode_invalid_numbers: c_int,
    keep_buffer: c_int,
    precision: c_int,
}

/// Pushes a `cjson` module table with default settings.
pub(crate) unsafe extern "C-unwind" fn open(l: L) -> c_int {
    unsafe {
        lua_newtable(l);
        let cfg = lua_newuserdata(l, std::mem::size_of::<Config>()) as *mut Config;
        cfg.write(Config {
            sparse_convert: 0,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_invalid_numbers: 0,
            decode_invalid_numbers: 1,
            keep_buffer: 1,
            precision: 14,
        });
        for (name, f) in [
            (c"encode", encode as lua_CFunction),
            (c"decode", decode),
            (c"encode_sparse_array", cfg_sparse_array),
            (c"encode_max_depth", cfg_encode_max_depth),
            (c"decode_max_depth", cfg_decode_max_depth),
            (c"encode_number_precision", cfg_precision),
            (c"encode_keep_buffer", cfg_keep_buffer),
            (c"encode_invalid_numbers", cfg_encode_invalid),
            (c"decode_invalid_numbers", cfg_decode_invalid),
            (c"new", open),
        ] {
            lua_pushvalue(l, -1);
            lua_pushcclosure(l, f, 1);
            rawset_str(l, -3, name);
        }
        lua_pop(l, 1);
        lua_pushlightuserdata(l, std::ptr::null_mut());
        rawset_str(l, -2, c"null");
        push_cstr(l, c"cjson");
        rawset_str(l, -2, c"_NAME");
        push_cstr(l, c"2.1.0");
        rawset_str(l, -2, c"_VERSION");
        1
    }
}

unsafe fn config<'a>(l: L) -> &'a mut Config {
    unsafe { &mut *(lua_touserdata(l, lua_upvalueindex(1)) as *mut Config) }
}

/// Checks the argument count and pads with nils (`json_arg_init`).
unsafe fn arg_init<'a>(l: L, args: c_int) -> &'a mut Config {
    unsafe {
        if lua_gettop(l) > args {
            luaL_argerror(l, args + 1, c"found too many arguments".as_ptr());
        }
        while lua_gettop(l) < args {
            lua_pushnil(l);
        }
        config(l)
    }
}

unsafe fn integer_option(l: L, idx: c_int, setting: &mut c_int, min: c_int, max: c_int) {
    unsafe {
        if lua_isnil(l, idx) == 0 {
            let v = luaL_checkinteger(l, idx) as c_int;
            if !(min..=max).contains(&v) {
                let msg = format!("expected integer between {min} and {max}\0");
                push_bytes(l, msg.as_bytes());
                drop(msg);
                luaL_argerror(l, 1, lua_tostring(l, -1));
            }
            *setting = v;
        }
        lua_pushinteger(l, *setting as _);
    }
}

/// `json_enum_option`: `options` are the names of the settings; a boolean
/// maps to 0 / `bool_true`.
unsafe fn enum_option(
    l: L,
    idx: c_int,
    setting: &mut c_int,
    options: &[*const c_char],
    bool_true: c_int,
) {
    unsafe {
        if lua_isnil(l, idx) == 0 {
            if lua_isboolean(l, idx) != 0 {
                *setting = lua_toboolean(l, idx) * bool_true;
            } else {
                *setting = luaL_checkoption(l, idx, std::ptr::null(), options.as_ptr());
            }
        }
        if *setting == 0 || *setting == bool_true {
            lua_pushboolean(l, *setting);
        } else {
            lua_pushstring(l, options[*setting as usize]);
        }
    }
}

const ON_OFF: [*const c_char; 3] = [c"off".as_ptr(), c"on".as_ptr(), std::ptr::null()];

unsafe extern "C-unwind" fn cfg_sparse_array(l: L) -> c_int {
    unsafe {
        let cfg = arg_init(l, 3);
        enum_option(l, 1, &mut cfg.sparse_convert, &ON_OFF, 1);
        integer_option(l, 2, &mut cfg.sparse_ratio, 0, c_int::MAX);
        integer_option(l, 3, &mut cfg.sparse_safe, 0, c_int::MAX);
        3
    }
}

unsafe extern "C-unwind" fn cfg_encode_max_depth(l: L) -> c_int {
    unsafe {
        let cfg = arg_init(l, 1);
        integer_option(l, 1, &mut cfg.encode_max_depth, 1, c_int::MAX);
        1
    }
}

unsafe extern "C-unwind" fn cfg_decode_max_depth(l: L) -> c_int {
    unsafe {
        let cfg = arg_init(l, 1);
        integer_option(l, 1, &mut cfg.decode_max_depth, 1, c_int::MAX);
        1
    }
}

unsafe extern "C-unwind" fn cfg_precision(l: L) -> c_int {
    unsafe {
        let cfg = arg_init(l, 1);
        integer_option(l, 1, &mut cfg.precision, 1, 14);
        1
    }
}

unsafe extern "C-unwind" fn cfg_keep_buffer(l: L) -> c_int {
    unsafe {
        let cfg = arg_init(l, 1);
        enum_option(l, 1, &mut cfg.keep_buffer, &ON_OFF, 1);
        1
    }
}

unsafe extern "C-unwind" fn cfg_encode_invalid(l: L) -> c_int {
    unsafe {
        let cfg = arg_init(l, 1);
        let options = [
            c"off".as_ptr(),
            c"on".as_ptr(),
            c"null".as_ptr(),
            std::ptr::null(),
        ];
        enum_option(l, 1, &mut cfg.encode_invalid_numbers, &options, 1);
        1
    }
}

unsafe extern "C-unwind" fn cfg_decode_invalid(l: L) -> c_int {
    unsafe {
        let cfg = arg_init(l, 1);
        enum_option(l, 1, &mut cfg.decode_invalid_numbers, &ON_OFF, 1);
        1
    }
}

// ===== Encoding =====

/// Appends `s` as a JSON string with cjson's escapes (`/` and DEL
/// included; other bytes, UTF-8 or not, are copied).
fn append_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            8 => out.extend_from_slice(b"\\b"),
            9 => out.extend_from_slice(b"\\t"),
            10 => out.extend_from_slice(b"\\n"),
            12 => out.extend_from_slice(b"\\f"),
            13 => out.extend_from_slice(b"\\r"),
            0..=31 | 127 => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

/// Error raised by the encoder (`Cannot serialise ...`).
type EncodeResult = Result<(), Vec<u8>>;

unsafe fn typename(l: L, idx: c_int) -> Vec<u8> {
    unsafe {
        std::ffi::CStr::from_ptr(lua_typename(l, lua_type(l, idx)))
            .to_bytes()
            .to_vec()
    }
}

unsafe fn exception(l: L, idx: c_int, reason: &str) -> Vec<u8> {
    let mut msg = b"Cannot serialise ".to_vec();
    msg.extend_from_slice(&unsafe { typename(l, idx) });
    msg.extend_from_slice(b": ");
    msg.extend_from_slice(reason.as_bytes());
    msg
}

unsafe fn append_number(l: L, cfg: &Config, out: &mut Vec<u8>, idx: c_int) -> EncodeResult {
    let n = unsafe { lua_tonumber(l, idx) };
    if n.is_nan() || n.is_infinite() {
        match cfg.encode_invalid_numbers {
            0 => return Err(unsafe { exception(l, idx, "must not be NaN or Inf") }),
            1 => {
                out.extend_from_slice(if n.is_nan() {
                    b"NaN".as_slice()
                } else if n < 0.0 {
                    b"-Infinity"
                } else {
                    b"Infinity"
                });
                return Ok(());
            }
            _ => {
                out.extend_from_slice(b"null");
                return Ok(());
            }
        }
    }
    out.extend_from_slice(printf_g(n, cfg.precision).as_bytes());
    Ok(())
}

/// Length of the array in the table on top, or None for an object.
unsafe fn array_length(l: L, cfg: &Config) -> Result<Option<usize>, Vec<u8>> {
    unsafe {
        let mut max = 0f64;
        let mut items = 0f64;
        lua_pushnil(l);
        while lua_next(l, -2) != 0 {
            if lua_type(l, -2) == LUA_TNUMBER {
                let k = lua_tonumber(l, -2);
                if k != 0.0 && k.floor() == k && k >= 1.0 {
                    if k > max {
                        max = k;
                    }
                    items += 1.0;
                    lua_pop(l, 1);
                    continue;
                }
            }
            lua_pop(l, 2);
            return Ok(None);
        }
        if cfg.sparse_ratio > 0
            && max > items * cfg.sparse_ratio as f64
            && max > cfg.sparse_safe as f64
        {
            if cfg.sparse_convert == 0 {
                return Err(exception(l, -1, "excessively sparse array"));
            }
            return Ok(None);
        }
        Ok(Some(max as usize))
    }
}

/// Appends the value on top of the stack.
unsafe fn append_value(l: L, cfg: &Config, out: &mut Vec<u8>, depth: c_int) -> EncodeResult {
    unsafe {
        match lua_type(l, -1) {
            LUA_TSTRING => append_string(out, to_bytes(l, -1).unwrap_or_default()),
            LUA_TNUMBER => append_number(l, cfg, out, -1)?,
            LUA_TBOOLEAN => out.extend_from_slice(if lua_toboolean(l, -1) != 0 {
                b"true".as_slice()
            } else {
                b"false"
            }),
            LUA_TNIL => out.extend_from_slice(b"null"),
            LUA_TLIGHTUSERDATA if lua_touserdata(l, -1).is_null() => out.extend_from_slice(b"null"),
            LUA_TTABLE => {
                let depth = depth + 1;
                if depth > cfg.encode_max_depth || lua_checkstack(l, 3) == 0 {
                    return Err(
                        format!("Cannot serialise, excessive nesting ({depth})").into_bytes()
                    );
                }
                push_unwrapped(l, -1);
                let r = append_table(l, cfg, out, depth);
                lua_pop(l, 1);
                r?
            }
            _ => return Err(exception(l, -1, "type not supported")),
        }
        Ok(())
    }
}

unsafe fn append_table(l: L, cfg: &Config, out: &mut Vec<u8>, depth: c_int) -> EncodeResult {
    unsafe {
        if let Some(len) = array_length(l, cfg)?.filter(|&n| n > 0) {
            out.push(b'[');
            for i in 1..=len {
                if i > 1 {
                    out.push(b',');
                }
                lua_rawgeti(l, -1, i as i64);
                let r = append_value(l, cfg, out, depth);
                lua_pop(l, 1);
                r?;
            }
            out.push(b']');
            return Ok(());
        }
        out.push(b'{');
        let mut first = true;
        lua_pushnil(l);
        while lua_next(l, -2) != 0 {
            if !first {
                out.push(b',');
            }
            first = false;
            let r = (|| {
                match lua_type(l, -2) {
                    LUA_TNUMBER => {
                        out.push(b'"');
                        append_number(l, cfg, out, -2)?;
                        out.extend_from_slice(b"\":");
                    }
                    LUA_TSTRING => {
                        append_string(out, str_bytes(l, -2).unwrap_or_default());
                        out.push(b':');
                    }
                    _ => return Err(exception(l, -2, "table key must be a number or string")),
                }
                append_value(l, cfg, out, depth)
            })();
            if r.is_err() {
                lua_pop(l, 2);
                return r;
            }
            lua_pop(l, 1);
        }
        out.push(b'}');
        Ok(())
    }
}

unsafe extern "C-unwind" fn encode(l: L) -> c_int {
    unsafe {
        if lua_gettop(l) != 1 {
            luaL_argerror(l, 1, c"expected 1 argument".as_ptr());
        }
        let cfg = config(l);
        let mut out = Vec::new();
        match append_value(l, cfg, &mut out, 0) {
            Ok(()) => {
                push_bytes(l, &out);
                1
            }
            Err(msg) => {
                drop(out);
                raise_where(l, msg)
            }
        }
    }
}

// ===== Decoding =====

/// A decoded JSON value, built fully before anything is pushed so parse
/// errors leave nothing owned behind.
enum Json {
    Str(Vec<u8>),
    Num(f64),
    Bool(bool),
    Null,
    Arr(Vec<Json>),
    Obj(Vec<(Vec<u8>, Json)>),
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Tok {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str,
    Num,
    Bool,
    Null,
    Colon,
    Comma,
    End,
    Error(&'static str),
}

impl Tok {
    fn name(self) -> &'static str {
        match self {
            Tok::ObjBegin => "T_OBJ_BEGIN",
            Tok::ObjEnd => "T_OBJ_END",
            Tok::ArrBegin => "T_ARR_BEGIN",
            Tok::ArrEnd => "T_ARR_END",
            Tok::Str => "T_STRING",
            Tok::Num => "T_NUMBER",
            Tok::Bool => "T_BOOLEAN",
            Tok::Null => "T_NULL",
            Tok::Colon => "T_COLON",
            Tok::Comma => "T_COMMA",
            Tok::End => "T_END",
            Tok::Error(e) => e,
        }
    }
}

struct Parser<'a> {
    /// The input, NUL-terminated (a Lua string); parsing stops at a NUL.
    data: &'a [u8],
    pos: usize,
    depth: c_int,
    cfg: &'a Config,
    /// Position of the last token, and its value.
    tok_at: usize,
    s: Vec<u8>,
    num: f64,
    boolean: bool,
}

impl Parser<'_> {
    fn at(&self, i: usize) -> u8 {
        self.data.get(i).copied().unwrap_or(0)
    }

    fn is_invalid_number(&self) -> bool {
        let mut p = self.pos;
        if self.at(p) == b'+' {
            return true;
        }
        if self.at(p) == b'-' {
            p += 1;
        }
        if self.at(p) == b'0' {
            let c2 = self.at(p + 1);
            return (c2 | 0x20) == b'x' || c2.is_ascii_digit();
        } else if self.at(p) <= b'9' {
            return false;
        }
        let rest = &self.data[p.min(self.data.len())..];
        rest.len() >= 3
            && (rest[..3].eq_ignore_ascii_case(b"inf") || rest[..3].eq_ignore_ascii_case(b"nan"))
    }

    fn number(&mut self) -> Tok {
        let start = self.data[self.pos..].as_ptr() as *const c_char;
        let mut end: *mut c_char = std::ptr::null_mut();
        // SAFETY: the data is NUL-terminated (it is a Lua string).
        let n = unsafe { libc::strtod(start, &mut end) };
        let used = end as usize - start as usize;
        if used == 0 {
            return Tok::Error("invalid number");
        }
        self.num = n;
        self.pos += used;
        Tok::Num
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let mut v = 0;
        for i in 0..4 {
            v = v * 16 + (self.at(at + i) as char).to_digit(16)?;
        }
        Some(v)
    }

    /// Decodes `\uXXXX` (and a surrogate pair) at `pos`; false on error.
    fn unicode_escape(&mut self) -> bool {
        let Some(mut cp) = self.hex4(self.pos + 2) else {
            return false;
        };
        let mut len = 6;
        if (0xDC00..=0xDFFF).contains(&cp) {
            return false;
        }
        if (0xD800..=0xDBFF).contains(&cp) {
            if self.at(self.pos + 6) != b'\\' || self.at(self.pos + 7) != b'u' {
                return false;
            }
            let Some(lo) = self.hex4(self.pos + 8) else {
                return false;
            };
            if !(0xDC00..=0xDFFF).contains(&lo) {
                return false;
            }
            cp = (((cp & 0x3FF) << 10) | (lo & 0x3FF)) + 0x10000;
            len = 12;
        }
        let Some(ch) = char::from_u32(cp) else {
            return false;
        };
        let mut buf = [0; 4];
        self.s
            .extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        self.pos += len;
        true
    }

    fn string(&mut self) -> Tok {
        self.pos += 1;
        self.s.clear();
        loop {
            let c = self.at(self.pos);
            match c {
                b'"' => break,
                0 => {
                    self.tok_at = self.pos;
                    return Tok::Error("unexpected end of string");
                }
                b'\\' => {
                    let e = match self.at(self.pos + 1) {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b't' => b'\t',
                        b'n' => b'\n',
                        b'f' => 12,
                        b'r' => b'\r',
                        b'u' => {
                            if self.unicode_escape() {
                                continue;
                            }
                            // String errors point inside the string.
                            self.tok_at = self.pos;
                            return Tok::Error("invalid unicode escape code");
                        }
                        _ => {
                            self.tok_at = self.pos;
                            return Tok::Error("invalid escape code");
                        }
                    };
                    self.s.push(e);
                    self.pos += 2;
                }
                _ => {
                    self.s.push(c);
                    self.pos += 1;
                }
            }
        }
        self.pos += 1;
        Tok::Str
    }

    fn next_token(&mut self) -> Tok {
        while matches!(self.at(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        self.tok_at = self.pos;
        let c = self.at(self.pos);
        let simple = match c {
            b'{' => Some(Tok::ObjBegin),
            b'}' => Some(Tok::ObjEnd),
            b'[' => Some(Tok::ArrBegin),
            b']' => Some(Tok::ArrEnd),
            b',' => Some(Tok::Comma),
            b':' => Some(Tok::Colon),
            0 => return Tok::End,
            _ => None,
        };
        if let Some(t) = simple {
            self.pos += 1;
            return t;
        }
        let rest = &self.data[self.pos.min(self.data.len())..];
        match c {
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => {
                if self.cfg.decode_invalid_numbers == 0 && self.is_invalid_number() {
                    Tok::Error("invalid number")
                } else {
                    self.number()
                }
            }
            b'f' | b'i' | b'I' | b'n' | b'N' | b't' => {
                if rest.starts_with(b"true") {
                    self.pos += 4;
                    self.boolean = true;
                    Tok::Bool
                } else if rest.starts_with(b"false") {
                    self.pos += 5;
                    self.boolean = false;
                    Tok::Bool
                } else if rest.starts_with(b"null") {
                    self.pos += 4;
                    Tok::Null
                } else if self.cfg.decode_invalid_numbers != 0 && self.is_invalid_number() {
                    self.number()
                } else {
                    Tok::Error("invalid token")
                }
            }
            _ => Tok::Error("invalid token"),
        }
    }

    fn error(&self, expected: &str, found: Tok) -> String {
        format!(
            "Expected {expected} but found {} at character {}",
            found.name(),
            self.tok_at + 1
        )
    }

    fn descend(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > self.cfg.decode_max_depth {
            return Err(format!(
                "Found too many nested data structures ({}) at character {}",
                self.depth, self.pos
            ));
        }
        Ok(())
    }

    fn value(&mut self, tok: Tok) -> Result<Json, String> {
        Ok(match tok {
            Tok::Str => Json::Str(std::mem::take(&mut self.s)),
            Tok::Num => Json::Num(self.num),
            Tok::Bool => Json::Bool(self.boolean),
            Tok::Null => Json::Null,
            Tok::ObjBegin => {
                self.descend()?;
                let mut fields = Vec::new();
                let mut t = self.next_token();
                if t != Tok::ObjEnd {
                    loop {
                        if t != Tok::Str {
                            return Err(self.error("object key string", t));
                        }
                        let key = std::mem::take(&mut self.s);
                        t = self.next_token();
                        if t != Tok::Colon {
                            return Err(self.error("colon", t));
                        }
                        t = self.next_token();
                        fields.push((key, self.value(t)?));
                        t = self.next_token();
                        if t == Tok::ObjEnd {
                            break;
                        }
                        if t != Tok::Comma {
                            return Err(self.error("comma or object end", t));
                        }
                        t = self.next_token();
                    }
                }
                self.depth -= 1;
                Json::Obj(fields)
            }
            Tok::ArrBegin => {
                self.descend()?;
                let mut items = Vec::new();
                let mut t = self.next_token();
                if t != Tok::ArrEnd {
                    loop {
                        items.push(self.value(t)?);
                        t = self.next_token();
                        if t == Tok::ArrEnd {
                            break;
                        }
                        if t != Tok::Comma {
                            return Err(self.error("comma or array end", t));
                        }
                        t = self.next_token();
                    }
                }
                self.depth -= 1;
                Json::Arr(items)
            }
            other => return Err(self.error("value", other)),
        })
    }
}

fn parse(data: &[u8], cfg: &Config) -> Result<Json, String> {
    if data.len() >= 2 && (data[0] == 0 || data[1] == 0) {
        return Err("JSON parser does not support UTF-16 or UTF-32".into());
    }
    let mut p = Parser {
        data,
        pos: 0,
        depth: 0,
        cfg,
        tok_at: 0,
        s: Vec::new(),
        num: 0.0,
        boolean: false,
    };
    let t = p.next_token();
    let v = p.value(t)?;
    let t = p.next_token();
    if t != Tok::End {
        return Err(p.error("the end", t));
    }
    Ok(v)
}

unsafe fn push_json(l: L, v: &Json) {
    unsafe {
        lua_checkstack(l, 3);
        match v {
            Json::Str(s) => push_bytes(l, s),
            Json::Num(n) => lua_pushnumber(l, *n),
            Json::Bool(b) => lua_pushboolean(l, *b as c_int),
            Json::Null => lua_pushlightuserdata(l, std::ptr::null_mut()),
            Json::Arr(items) => {
                lua_createtable(l, items.len() as c_int, 0);
                for (i, it) in items.iter().enumerate() {
                    push_json(l, it);
                    lua_rawseti(l, -2, i as i64 + 1);
                }
            }
            Json::Obj(fields) => {
                lua_createtable(l, 0, fields.len() as c_int);
                for (k, it) in fields {
                    push_bytes(l, k);
                    push_json(l, it);
                    lua_rawset(l, -3);
                }
            }
        }
    }
}

unsafe extern "C-unwind" fn decode(l: L) -> c_int {
    unsafe {
        if lua_gettop(l) != 1 {
            luaL_argerror(l, 1, c"expected 1 argument".as_ptr());
        }
        let mut len = 0;
        let p = luaL_checklstring(l, 1, &mut len);
        // Include the terminating NUL Lua keeps after every string.
        let data = std::slice::from_raw_parts(p as *const u8, len + 1);
        let cfg = config(l);
        match parse(&data[..len], cfg).map_err(String::into_bytes) {
            Ok(v) => {
                push_json(l, &v);
                drop(v);
                1
            }
            Err(msg) => raise_where(l, msg),
        }
    }
}
