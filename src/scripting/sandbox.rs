//! The sandbox: which globals exist, and Redis 7.0's read-only globals.
//!
//! Redis patches its Lua so tables can be flagged read-only, then flags the
//! globals and every library table: assigning a global or a library field
//! fails with "Attempt to modify a readonly table", and reading an unknown
//! global fails with "Script attempted to access nonexistent global
//! variable". Stock Lua 5.1 has no such flag, so each protected table is
//! replaced by an empty *proxy* whose metatable reads through to the real
//! table and refuses writes. The base functions that bypass metatables
//! (`rawset`, `rawget`, `next`, `pairs`, `getmetatable`, `setmetatable`,
//! `table.insert`, `table.foreach`) are replaced by versions that see through
//! proxies, so scripts observe what they would in Redis.

use std::ffi::{c_char, c_int};

use super::ffi::*;

/// Registry key of the table mapping each proxy to its real table.
static PROXIES: u8 = 0;
/// Registry key of the table mapping a metatable to what `getmetatable`
/// reports for values that have it (`false` for "no metatable").
static VIRTUAL_MT: u8 = 0;
/// Registry key of the unprotected globals table.
static REAL_GLOBALS: u8 = 0;

const READONLY: &[u8] = b"Attempt to modify a readonly table";

unsafe fn push_key(l: L, key: &'static u8) {
    unsafe { lua_pushlightuserdata(l, key as *const u8 as *mut _) };
}

/// Pushes the registry table stored under `key`.
unsafe fn registry_table(l: L, key: &'static u8) {
    unsafe {
        push_key(l, key);
        lua_rawget(l, LUA_REGISTRYINDEX);
    }
}

/// Pushes the unprotected globals table, where KEYS and ARGV are set.
pub(crate) unsafe fn push_real_globals(l: L) {
    unsafe { registry_table(l, &REAL_GLOBALS) };
}

/// Loads the libraries scripts get and removes what Redis keeps out.
pub(crate) unsafe fn open_libs(l: L) {
    unsafe {
        for (name, open) in [
            (c"", luaopen_base as lua_CFunction),
            (c"table", luaopen_table),
            (c"string", luaopen_string),
            (c"math", luaopen_math),
        ] {
            lua_pushcfunction(l, open);
            push_cstr(l, name);
            lua_call(l, 1, 0);
        }
        super::libs::open(l);
        for name in [
            c"print",
            c"dofile",
            c"loadfile",
            c"getfenv",
            c"setfenv",
            c"newproxy",
        ] {
            lua_pushnil(l);
            lua_setglobal(l, name.as_ptr());
        }
        for (name, f) in [
            (c"pcall", pcall as lua_CFunction),
            (c"loadstring", loadstring),
            (c"load", load),
            (c"getmetatable", getmetatable),
            (c"setmetatable", setmetatable),
            (c"rawset", rawset),
            (c"rawget", rawget),
        ] {
            lua_pushcfunction(l, f);
            lua_setglobal(l, name.as_ptr());
        }
        lua_pushcfunction(l, next);
        lua_pushvalue(l, -1);
        lua_setglobal(l, c"next".as_ptr());
        lua_pushcclosure(l, pairs, 1);
        lua_setglobal(l, c"pairs".as_ptr());
        lua_getglobal(l, c"table".as_ptr());
        set_fn(l, c"insert", table_insert);
        set_fn(l, c"foreach", table_foreach);
        lua_pop(l, 1);
        for key in [&PROXIES, &VIRTUAL_MT] {
            push_key(l, key);
            lua_newtable(l);
            lua_rawset(l, LUA_REGISTRYINDEX);
        }
    }
}

/// Replaces the table on top of the stack by a read-only proxy of it.
pub(crate) unsafe fn make_proxy(l: L) {
    unsafe {
        let real = lua_gettop(l);
        lua_newtable(l); // proxy
        lua_createtable(l, 0, 2); // its metatable
        lua_pushvalue(l, real);
        rawset_str(l, -2, c"__index");
        lua_pushcfunction(l, readonly_newindex);
        rawset_str(l, -2, c"__newindex");
        // getmetatable(proxy) is nil, as for the library tables in Redis.
        registry_table(l, &VIRTUAL_MT);
        lua_pushvalue(l, -2);
        lua_pushboolean(l, 0);
        lua_rawset(l, -3);
        lua_pop(l, 1);
        lua_setmetatable(l, -2);
        registry_table(l, &PROXIES);
        lua_pushvalue(l, -2);
        lua_pushvalue(l, real);
        lua_rawset(l, -3);
        lua_pop(l, 1);
        lua_replace(l, real);
    }
}

/// Gives the table on top of the stack Redis's error metatable: reading a
/// missing key raises "Script attempted to access nonexistent global
/// variable".
pub(crate) unsafe fn set_error_metatable(l: L) {
    unsafe {
        lua_createtable(l, 0, 1);
        set_fn(l, c"__index", nonexistent_global);
        lua_setmetatable(l, -2);
    }
}

/// Protects the globals: every table in them becomes a proxy, unknown
/// globals raise, and the thread's globals become a read-only proxy whose
/// reads go to `lookup` (the table on top of the stack, popped), so loaded
/// chunks see the protected view. Leaves the metatable of that proxy on the
/// stack, so the functions engine can retarget its reads.
pub(crate) unsafe fn protect_globals(l: L) {
    unsafe {
        let lookup = lua_gettop(l);
        lua_pushvalue(l, LUA_GLOBALSINDEX);
        let real = lua_gettop(l);
        // Proxy every library table (assigning existing fields while
        // traversing is allowed).
        lua_pushnil(l);
        while lua_next(l, real) != 0 {
            if lua_type(l, -1) == LUA_TTABLE && lua_rawequal(l, -1, real) == 0 {
                make_proxy(l);
                lua_pushvalue(l, -2);
                lua_insert(l, -2);
                lua_rawset(l, real);
            } else {
                lua_pop(l, 1);
            }
        }
        // Strings' metatable reads through the proxy of `string`, and is
        // itself read-only.
        push_cstr(l, c"");
        lua_getmetatable(l, -1);
        lua_getglobal(l, c"string".as_ptr());
        rawset_str(l, -2, c"__index");
        registry_table(l, &VIRTUAL_MT);
        lua_pushvalue(l, -2);
        lua_pushvalue(l, -1);
        make_proxy(l);
        lua_rawset(l, -3);
        lua_settop(l, real);
        set_error_metatable(l);
        push_key(l, &REAL_GLOBALS);
        lua_pushvalue(l, real);
        lua_rawset(l, LUA_REGISTRYINDEX);
        // The globals proxy.
        lua_newtable(l);
        let proxy = lua_gettop(l);
        lua_createtable(l, 0, 2);
        let mt = lua_gettop(l);
        lua_pushvalue(l, lookup);
        rawset_str(l, mt, c"__index");
        lua_pushcfunction(l, readonly_newindex);
        rawset_str(l, mt, c"__newindex");
        lua_pushvalue(l, mt);
        lua_setmetatable(l, proxy);
        // getmetatable(_G) shows a read-only error metatable, as in Redis.
        registry_table(l, &VIRTUAL_MT);
        lua_pushvalue(l, mt);
        lua_newtable(l);
        set_fn(l, c"__index", nonexistent_global);
        make_proxy(l);
        lua_rawset(l, -3);
        lua_pop(l, 1);
        registry_table(l, &PROXIES);
        lua_pushvalue(l, proxy);
        lua_pushvalue(l, real);
        lua_rawset(l, -3);
        lua_pop(l, 1);
        lua_pushvalue(l, proxy);
        rawset_str(l, real, c"_G");
        lua_pushvalue(l, proxy);
        lua_replace(l, LUA_GLOBALSINDEX);
        // Leave only the metatable.
        lua_replace(l, lookup);
        lua_settop(l, lookup);
    }
}

/// If the value at `idx` is a proxy, replaces it with its real table. Uses
/// two free stack slots.
pub(crate) unsafe fn unwrap_proxy(l: L, idx: c_int) -> bool {
    unsafe {
        if lua_type(l, idx) != LUA_TTABLE {
            return false;
        }
        let idx = lua_absindex(l, idx);
        registry_table(l, &PROXIES);
        lua_pushvalue(l, idx);
        lua_rawget(l, -2);
        if lua_type(l, -1) == LUA_TTABLE {
            lua_replace(l, idx);
            lua_pop(l, 1);
            true
        } else {
            lua_pop(l, 2);
            false
        }
    }
}

/// True when the value at `idx` is read-only.
unsafe fn is_readonly(l: L, idx: c_int) -> bool {
    unsafe {
        lua_pushvalue(l, idx);
        let r = unwrap_proxy(l, -1);
        lua_pop(l, 1);
        r
    }
}

/// Pushes a copy of the value at `idx`, unwrapped if it is a proxy (for
/// Rust code that walks tables, such as the encoders).
pub(crate) unsafe fn push_unwrapped(l: L, idx: c_int) {
    unsafe {
        lua_pushvalue(l, idx);
        unwrap_proxy(l, -1);
    }
}

unsafe extern "C-unwind" fn readonly_newindex(l: L) -> c_int {
    unsafe { raise_where(l, READONLY) }
}

/// Redis's `luaProtectedTableError`.
unsafe extern "C-unwind" fn nonexistent_global(l: L) -> c_int {
    unsafe {
        if lua_gettop(l) != 2 {
            raise_where(l, "Wrong number of arguments to luaProtectedTableError");
        }
        if lua_isstring(l, -1) == 0 {
            raise_where(
                l,
                "Second argument to luaProtectedTableError must be a string or number",
            );
        }
        let name = to_bytes(l, -1).unwrap_or_default();
        // Redis formats a C string: the name stops at a NUL byte.
        let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
        let mut msg = b"Script attempted to access nonexistent global variable '".to_vec();
        msg.extend_from_slice(name);
        msg.push(b'\'');
        raise_where(l, msg)
    }
}

/// Redis's `pcall`: like Lua's, but an error table `{err=...}` is returned
/// as its message.
unsafe extern "C-unwind" fn pcall(l: L) -> c_int {
    unsafe {
        let argc = lua_gettop(l);
        lua_pushboolean(l, 1);
        lua_insert(l, 1);
        if lua_pcall(l, argc - 1, LUA_MULTRET, 0) != 0 {
            lua_remove(l, 1);
            if lua_type(l, -1) == LUA_TTABLE {
                lua_getfield(l, -1, c"err".as_ptr());
                if lua_isstring(l, -1) != 0 {
                    lua_replace(l, -2);
                } else {
                    lua_pop(l, 1);
                }
            }
            lua_pushboolean(l, 0);
            lua_insert(l, 1);
        }
        lua_gettop(l)
    }
}

/// Redis's Lua never loads precompiled chunks: they go through the text
/// parser, which stops at the leading ESC. Feeding `" \x1b"` under the same
/// chunk name reproduces that error exactly.
const BINARY_SUBSTITUTE: &[u8] = b" \x1b";

/// `loadstring(s [, chunkname])`, refusing precompiled chunks.
unsafe extern "C-unwind" fn loadstring(l: L) -> c_int {
    unsafe {
        let mut len = 0;
        let s = luaL_checklstring(l, 1, &mut len);
        let chunkname = luaL_optlstring(l, 2, s, std::ptr::null_mut());
        let code = std::slice::from_raw_parts(s as *const u8, len);
        let code = if code.first() == Some(&0x1b) {
            BINARY_SUBSTITUTE
        } else {
            code
        };
        load_result(
            l,
            luaL_loadbuffer(l, code.as_ptr() as *const c_char, code.len(), chunkname),
        )
    }
}

/// `load(func [, chunkname])`: the pieces are gathered first (errors in the
/// reader are reported like Lua's), then parsed like `loadstring`.
unsafe extern "C-unwind" fn load(l: L) -> c_int {
    unsafe {
        luaL_checktype(l, 1, LUA_TFUNCTION);
        let chunkname = luaL_optlstring(l, 2, c"=(load)".as_ptr(), std::ptr::null_mut());
        lua_settop(l, 2);
        let mut pieces = 0;
        loop {
            lua_pushvalue(l, 1);
            if lua_pcall(l, 0, 1, 0) != 0 {
                lua_pushnil(l);
                lua_insert(l, -2);
                return 2;
            }
            if lua_isnil(l, -1) != 0 {
                lua_pop(l, 1);
                break;
            }
            if lua_isstring(l, -1) == 0 {
                lua_pushnil(l);
                push_cstr(l, c"reader function must return a string");
                return 2;
            }
            if lua_objlen(l, -1) == 0 {
                lua_pop(l, 1);
                break;
            }
            pieces += 1;
        }
        lua_concat(l, pieces);
        let code = to_bytes(l, -1).unwrap_or_default();
        let code = if code.first() == Some(&0x1b) {
            BINARY_SUBSTITUTE
        } else {
            code
        };
        load_result(
            l,
            luaL_loadbuffer(l, code.as_ptr() as *const c_char, code.len(), chunkname),
        )
    }
}

unsafe fn load_result(l: L, status: c_int) -> c_int {
    unsafe {
        if status == 0 {
            1
        } else {
            lua_pushnil(l);
            lua_insert(l, -2);
            2
        }
    }
}

unsafe extern "C-unwind" fn getmetatable(l: L) -> c_int {
    unsafe {
        luaL_checkany(l, 1);
        if lua_getmetatable(l, 1) == 0 {
            lua_pushnil(l);
            return 1;
        }
        registry_table(l, &VIRTUAL_MT);
        lua_pushvalue(l, -2);
        lua_rawget(l, -2);
        match lua_type(l, -1) {
            LUA_TNIL => {
                lua_pop(l, 2);
                luaL_getmetafield(l, 1, c"__metatable".as_ptr());
            }
            LUA_TBOOLEAN => lua_pushnil(l),
            _ => {}
        }
        1
    }
}

unsafe extern "C-unwind" fn setmetatable(l: L) -> c_int {
    unsafe {
        let t = lua_type(l, 2);
        luaL_checktype(l, 1, LUA_TTABLE);
        if t != LUA_TNIL && t != LUA_TTABLE {
            luaL_argerror(l, 2, c"nil or table expected".as_ptr());
        }
        if luaL_getmetafield(l, 1, c"__metatable".as_ptr()) != 0 {
            raise_where(l, "cannot change a protected metatable");
        }
        if is_readonly(l, 1) {
            raise_plain(l, READONLY);
        }
        lua_settop(l, 2);
        lua_setmetatable(l, 1);
        1
    }
}

unsafe extern "C-unwind" fn rawset(l: L) -> c_int {
    unsafe {
        luaL_checktype(l, 1, LUA_TTABLE);
        luaL_checkany(l, 2);
        luaL_checkany(l, 3);
        if is_readonly(l, 1) {
            raise_plain(l, READONLY);
        }
        lua_settop(l, 3);
        lua_rawset(l, 1);
        1
    }
}

unsafe extern "C-unwind" fn rawget(l: L) -> c_int {
    unsafe {
        luaL_checktype(l, 1, LUA_TTABLE);
        luaL_checkany(l, 2);
        lua_settop(l, 2);
        unwrap_proxy(l, 1);
        lua_rawget(l, 1);
        1
    }
}

unsafe extern "C-unwind" fn next(l: L) -> c_int {
    unsafe {
        luaL_checktype(l, 1, LUA_TTABLE);
        lua_settop(l, 2);
        unwrap_proxy(l, 1);
        if lua_next(l, 1) != 0 {
            2
        } else {
            lua_pushnil(l);
            1
        }
    }
}

/// `pairs(t)`: returns the proxy-aware `next` (upvalue 1), `t`, nil.
unsafe extern "C-unwind" fn pairs(l: L) -> c_int {
    unsafe {
        luaL_checktype(l, 1, LUA_TTABLE);
        lua_pushvalue(l, lua_upvalueindex(1));
        lua_pushvalue(l, 1);
        lua_pushnil(l);
        3
    }
}

/// Lua 5.1's `table.insert`, refusing read-only tables.
unsafe extern "C-unwind" fn table_insert(l: L) -> c_int {
    unsafe {
        luaL_checktype(l, 1, LUA_TTABLE);
        let mut e = lua_objlen(l, 1) as i64 + 1;
        let pos = match lua_gettop(l) {
            2 => e,
            3 => {
                let pos = luaL_checkinteger(l, 2) as i64;
                if pos > e {
                    e = pos;
                }
                pos
            }
            _ => raise_where(l, "wrong number of arguments to 'insert'"),
        };
        if is_readonly(l, 1) {
            raise_plain(l, READONLY);
        }
        let mut i = e;
        while i > pos {
            lua_rawgeti(l, 1, i - 1);
            lua_rawseti(l, 1, i);
            i -= 1;
        }
        lua_rawseti(l, 1, pos);
        0
    }
}

/// Lua 5.1's `table.foreach`, iterating a proxy's real table.
unsafe extern "C-unwind" fn table_foreach(l: L) -> c_int {
    unsafe {
        luaL_checktype(l, 1, LUA_TTABLE);
        luaL_checktype(l, 2, LUA_TFUNCTION);
        lua_settop(l, 2);
        unwrap_proxy(l, 1);
        lua_pushnil(l);
        while lua_next(l, 1) != 0 {
            lua_pushvalue(l, 2);
            lua_pushvalue(l, -3);
            lua_pushvalue(l, -3);
            lua_call(l, 2, 1);
            if lua_isnil(l, -1) == 0 {
                return 1;
            }
            lua_pop(l, 2);
        }
        0
    }
}
