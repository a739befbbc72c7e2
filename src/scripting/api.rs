//! The `redis` table scripts see, and Redis's `math.random`.

use std::ffi::c_int;

use bytes::Bytes;

use super::convert;
use super::ffi::*;
use super::state::ctx;
use crate::reply::{Reply, printf_g};

/// Redis's log levels (`LL_DEBUG` .. `LL_WARNING`).
const LOG_LEVELS: [(&std::ffi::CStr, f64); 4] = [
    (c"LOG_DEBUG", 0.0),
    (c"LOG_VERBOSE", 1.0),
    (c"LOG_NOTICE", 2.0),
    (c"LOG_WARNING", 3.0),
];

/// Adds `redis.log`, the log levels and the version fields to the table on
/// top of the stack (the part shared with FUNCTION LOAD's `redis`).
pub(crate) unsafe fn register_common(l: L) {
    unsafe {
        set_fn(l, c"log", log);
        for (name, level) in LOG_LEVELS {
            set_num(l, name, level);
        }
        let version = crate::REDIS_VERSION;
        let num = version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0) & 0xff)
            .fold(0u32, |acc, p| (acc << 8) | p);
        set_num(l, c"REDIS_VERSION_NUM", num as f64);
        push_bytes(l, version.as_bytes());
        rawset_str(l, -2, c"REDIS_VERSION");
    }
}

/// Pushes the full `redis` table of a running script.
pub(crate) unsafe fn push_redis_table(l: L) {
    unsafe {
        lua_newtable(l);
        set_fn(l, c"call", call);
        set_fn(l, c"pcall", pcall);
        register_common(l);
        set_fn(l, c"setresp", setresp);
        set_fn(l, c"sha1hex", sha1hex);
        set_fn(l, c"error_reply", error_reply);
        set_fn(l, c"status_reply", status_reply);
        set_fn(l, c"set_repl", set_repl);
        for (name, v) in [
            (c"REPL_NONE", 0.0),
            (c"REPL_AOF", 1.0),
            (c"REPL_SLAVE", 2.0),
            (c"REPL_REPLICA", 2.0),
            (c"REPL_ALL", 3.0),
        ] {
            set_num(l, name, v);
        }
        set_fn(l, c"acl_check_cmd", acl_check_cmd);
        set_fn(l, c"breakpoint", breakpoint);
        set_fn(l, c"debug", debug);
        set_fn(l, c"replicate_commands", replicate_commands);
    }
}

/// Replaces `math.random` and `math.randomseed` with Redis's, which draw
/// from `redisLrand48` so every platform gives the same sequence.
pub(crate) unsafe fn replace_math_random(l: L) {
    unsafe {
        lua_getglobal(l, c"math".as_ptr());
        set_fn(l, c"random", math_random);
        set_fn(l, c"randomseed", math_randomseed);
        lua_pop(l, 1);
    }
}

/// The arguments of a redis lib call as a command, or the error text.
/// Numbers are formatted with `%.17g`, as Redis does, to keep precision.
unsafe fn command_args(l: L) -> Result<Vec<Bytes>, &'static [u8]> {
    unsafe {
        let argc = lua_gettop(l);
        if argc == 0 {
            return Err(b"Please specify at least one argument for this redis lib call");
        }
        let mut args = Vec::with_capacity(argc as usize);
        for j in 1..=argc {
            let arg = if lua_type(l, j) == LUA_TNUMBER {
                Bytes::from(printf_g(lua_tonumber(l, j), 17))
            } else {
                match to_bytes(l, j) {
                    Some(b) => Bytes::copy_from_slice(b),
                    None => {
                        return Err(b"Lua redis lib command arguments must be strings or integers");
                    }
                }
            };
            args.push(arg);
        }
        lua_settop(l, 0);
        Ok(args)
    }
}

/// `redis.call` and `redis.pcall`.
unsafe fn generic_call(l: L, raise: bool) -> c_int {
    unsafe {
        let ctx = ctx(l);
        if !ctx.running() {
            raise_error_table(
                l,
                b"redis.call/pcall can only be called inside a script invocation",
            );
        }
        let args = match command_args(l) {
            Ok(a) => a,
            Err(msg) => {
                push_error_table(l, msg);
                if raise {
                    lua_error(l);
                }
                return 1;
            }
        };
        let reply = ctx
            .with_host(|h| h.call(args))
            .unwrap_or(Reply::StaticError("ERR script host failed"));
        let failed = reply.is_error();
        convert::push_reply(l, &reply, ctx.resp.get() == 3);
        drop(reply);
        if raise && failed {
            lua_error(l);
        }
        1
    }
}

unsafe extern "C-unwind" fn call(l: L) -> c_int {
    unsafe { generic_call(l, true) }
}

unsafe extern "C-unwind" fn pcall(l: L) -> c_int {
    unsafe { generic_call(l, false) }
}

unsafe extern "C-unwind" fn acl_check_cmd(l: L) -> c_int {
    unsafe {
        let ctx = ctx(l);
        if !ctx.running() {
            raise_error_table(
                l,
                b"redis.acl_check_cmd can only be called inside a script invocation",
            );
        }
        let args = match command_args(l) {
            Ok(a) => a,
            Err(msg) => raise_error_table(l, msg),
        };
        match ctx.with_host(|h| h.acl_check_cmd(&args)) {
            Some(Some(allowed)) => {
                drop(args);
                lua_pushboolean(l, allowed as c_int);
                1
            }
            _ => {
                drop(args);
                raise_error_table(l, b"Invalid command passed to redis.acl_check_cmd()")
            }
        }
    }
}

unsafe extern "C-unwind" fn sha1hex(l: L) -> c_int {
    unsafe {
        if lua_gettop(l) != 1 {
            raise_error_table(l, b"wrong number of arguments");
        }
        let digest = sha1_hex(to_bytes(l, 1).unwrap_or_default());
        push_bytes(l, digest.as_bytes());
        1
    }
}

/// Lowercase hex SHA1, as script names and `redis.sha1hex` use.
pub(crate) fn sha1_hex(data: &[u8]) -> String {
    sha1_smol::Sha1::from(data).digest().to_string()
}

/// The argument check shared by `error_reply` and `status_reply`: on a bad
/// call Redis returns (does not raise) an error table.
unsafe fn single_string_arg(l: L) -> bool {
    unsafe {
        if lua_gettop(l) != 1 || lua_type(l, -1) != LUA_TSTRING {
            push_error_table(l, b"wrong number or type of arguments");
            return false;
        }
        true
    }
}

unsafe extern "C-unwind" fn error_reply(l: L) -> c_int {
    unsafe {
        if !single_string_arg(l) {
            return 1;
        }
        // Redis reads a C string: the text stops at a NUL byte.
        let s = to_bytes(l, 1).unwrap_or_default();
        let s = &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())];
        let mut text = Vec::with_capacity(s.len() + 1);
        if s.first() != Some(&b'-') {
            text.push(b'-');
        }
        text.extend_from_slice(s);
        push_error_table(l, &text);
        1
    }
}

unsafe extern "C-unwind" fn status_reply(l: L) -> c_int {
    unsafe {
        if !single_string_arg(l) {
            return 1;
        }
        lua_createtable(l, 0, 1);
        lua_pushvalue(l, 1);
        rawset_str(l, -2, c"ok");
        1
    }
}

unsafe extern "C-unwind" fn log(l: L) -> c_int {
    unsafe {
        let argc = lua_gettop(l);
        if argc < 2 {
            raise_error_table(l, b"redis.log() requires two arguments or more.");
        }
        if lua_isnumber(l, 1) == 0 {
            raise_error_table(l, b"First argument must be a number (log level).");
        }
        let level = lua_tonumber(l, 1) as i32;
        if !(0..=3).contains(&level) {
            raise_error_table(l, b"Invalid debug level.");
        }
        let mut msg = Vec::new();
        for j in 2..=argc {
            if let Some(s) = to_bytes(l, j) {
                if j != 2 {
                    msg.push(b' ');
                }
                msg.extend_from_slice(s);
            }
        }
        let text = String::from_utf8_lossy(&msg);
        ctx(l).with_host(|h| h.log(level, &text));
        0
    }
}

unsafe extern "C-unwind" fn setresp(l: L) -> c_int {
    unsafe {
        let ctx = ctx(l);
        if !ctx.running() {
            raise_error_table(
                l,
                b"redis.setresp can only be called inside a script invocation",
            );
        }
        if lua_gettop(l) != 1 {
            raise_error_table(l, b"redis.setresp() requires one argument.");
        }
        let resp = lua_tonumber(l, 1) as i32;
        if resp != 2 && resp != 3 {
            raise_error_table(l, b"RESP version must be 2 or 3.");
        }
        ctx.resp.set(resp as u8);
        0
    }
}

unsafe extern "C-unwind" fn set_repl(l: L) -> c_int {
    unsafe {
        let ctx = ctx(l);
        if !ctx.running() {
            raise_error_table(
                l,
                b"redis.set_repl can only be called inside a script invocation",
            );
        }
        if lua_gettop(l) != 1 {
            raise_error_table(l, b"redis.set_repl() requires two arguments.");
        }
        let flags = lua_tonumber(l, -1) as i32;
        if flags & !3 != 0 {
            raise_error_table(
                l,
                b"Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
            );
        }
        ctx.with_host(|h| h.set_repl(flags));
        0
    }
}

/// No debugger session (LDB) is ever active, so `redis.breakpoint` returns
/// false and `redis.debug` logs nothing, as in Redis outside LDB.
unsafe extern "C-unwind" fn breakpoint(l: L) -> c_int {
    unsafe { lua_pushboolean(l, 0) };
    1
}

unsafe extern "C-unwind" fn debug(_l: L) -> c_int {
    0
}

/// Deprecated in Redis 7: always true.
unsafe extern "C-unwind" fn replicate_commands(l: L) -> c_int {
    unsafe { lua_pushboolean(l, 1) };
    1
}

unsafe extern "C-unwind" fn math_random(l: L) -> c_int {
    unsafe {
        let ctx = ctx(l);
        if !ctx.running() {
            raise_where(
                l,
                "math.random can only be called inside a script invocation",
            );
        }
        let r = (ctx.lrand48() % i32::MAX) as f64 / i32::MAX as f64;
        match lua_gettop(l) {
            0 => lua_pushnumber(l, r),
            1 => {
                let u = luaL_checkinteger(l, 1) as c_int;
                if u < 1 {
                    luaL_argerror(l, 1, c"interval is empty".as_ptr());
                }
                lua_pushnumber(l, (r * u as f64).floor() + 1.0);
            }
            2 => {
                let lo = luaL_checkinteger(l, 1) as c_int;
                let hi = luaL_checkinteger(l, 2) as c_int;
                if lo > hi {
                    luaL_argerror(l, 2, c"interval is empty".as_ptr());
                }
                lua_pushnumber(l, (r * (hi as f64 - lo as f64 + 1.0)).floor() + lo as f64);
            }
            _ => raise_where(l, "wrong number of arguments"),
        }
        1
    }
}

unsafe extern "C-unwind" fn math_randomseed(l: L) -> c_int {
    unsafe {
        let ctx = ctx(l);
        if !ctx.running() {
            raise_where(
                l,
                "math.randomseed can only be called inside a script invocation",
            );
        }
        ctx.srand48(luaL_checkinteger(l, 1) as c_int);
        0
    }
}
