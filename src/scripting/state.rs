//! One Lua interpreter: creation, the per-run context that C functions reach
//! through the allocator's user data, the error handler, the time-limit hook
//! and protected calls that turn Lua errors into Redis error replies.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use super::ScriptHost;
use super::convert;
use super::ffi::*;
use crate::reply::Reply;

/// Instructions between two calls of the time-limit hook (Redis's value).
const HOOK_COUNT: c_int = 100_000;

/// Redis's text for a script stopped by SCRIPT KILL / FUNCTION KILL.
const KILLED: &[u8] = b"Script killed by user with SCRIPT KILL...";

/// A function registered by `redis.register_function` during FUNCTION LOAD.
pub(crate) struct Registered {
    pub name: String,
    pub description: Option<Bytes>,
    pub flags: super::ScriptFlags,
    /// Registry reference of the callback.
    pub func_ref: c_int,
}

/// State of a FUNCTION LOAD in progress.
pub(crate) struct LoadCtx {
    pub deadline: Instant,
    pub functions: Vec<Registered>,
}

/// What C functions need while a script runs. Shared (`&Ctx`) by every C
/// function, so all fields are cells.
pub(crate) struct Ctx {
    /// The host of the running script, or None between runs.
    host: Cell<Option<*mut (dyn ScriptHost + 'static)>>,
    /// Protocol that `redis.call` replies are converted from (`redis.setresp`).
    pub resp: Cell<u8>,
    /// Set once the host asked to kill the script: every later hook call
    /// raises again, so `pcall` cannot swallow the kill.
    pub killed: Cell<bool>,
    /// A panic caught in a host callback, resumed once Lua has unwound.
    panic: Cell<Option<Box<dyn Any + Send>>>,
    /// Bytes allocated by this interpreter.
    used: Cell<usize>,
    /// `math.random` state (Redis's `redisLrand48`), shared by the engine's
    /// interpreters as Redis shares one generator.
    pub rand: Rc<Cell<u64>>,
    /// FUNCTION LOAD in progress.
    pub load: RefCell<Option<LoadCtx>>,
}

/// The context of the interpreter `l`.
///
/// # Safety
/// `l` must belong to a [`LuaState`].
pub(crate) unsafe fn ctx<'a>(l: L) -> &'a Ctx {
    let mut ud: *mut c_void = std::ptr::null_mut();
    unsafe {
        lua_getallocf(l, &mut ud);
        &*(ud as *const Ctx)
    }
}

impl Ctx {
    /// Runs `f` with the host of the running script; None when no script
    /// runs. A panic in the host is kept for [`LuaState::finish_run`] and
    /// turned into a kill so the script stops.
    pub fn with_host<R>(&self, f: impl FnOnce(&mut dyn ScriptHost) -> R) -> Option<R> {
        let host = self.host.get()?;
        // SAFETY: the pointer is set by `LuaState::run` from a `&mut` that
        // outlives the run, and nothing else uses it meanwhile.
        match catch_unwind(AssertUnwindSafe(|| f(unsafe { &mut *host }))) {
            Ok(r) => Some(r),
            Err(p) => {
                self.panic.set(Some(p));
                self.killed.set(true);
                None
            }
        }
    }

    /// True while a script runs.
    pub fn running(&self) -> bool {
        self.host.get().is_some()
    }

    /// Bytes allocated by the interpreter.
    pub fn used_memory(&self) -> usize {
        self.used.get()
    }

    /// Next value of Redis's `redisLrand48` (the 48-bit `lrand48` generator).
    pub fn lrand48(&self) -> i32 {
        let x = self
            .rand
            .get()
            .wrapping_mul(0x5_DEEC_E66D)
            .wrapping_add(0xB)
            & 0xFFFF_FFFF_FFFF;
        self.rand.set(x);
        (x >> 17) as i32
    }

    /// `redisSrand48`.
    pub fn srand48(&self, seed: i32) {
        self.rand.set(((seed as u32 as u64) << 16) | 0x330E);
    }
}

/// Initial state of `redisLrand48`, as in Redis before any seeding.
pub(crate) const LRAND48_INIT: u64 = 0x1234_ABCD_330E;

/// Lua's allocator, routed through Rust's global allocator so script memory
/// is accounted like the rest of the server.
unsafe extern "C" fn alloc(
    ud: *mut c_void,
    ptr: *mut c_void,
    osize: usize,
    nsize: usize,
) -> *mut c_void {
    use std::alloc::{Layout, alloc, dealloc, realloc};
    const ALIGN: usize = 16;
    let ctx = unsafe { &*(ud as *const Ctx) };
    if nsize == 0 {
        if !ptr.is_null() {
            // SAFETY: Lua frees with the size it allocated.
            unsafe {
                dealloc(
                    ptr as *mut u8,
                    Layout::from_size_align_unchecked(osize, ALIGN),
                )
            };
            ctx.used.set(ctx.used.get() - osize);
        }
        return std::ptr::null_mut();
    }
    let Ok(layout) = Layout::from_size_align(nsize, ALIGN) else {
        return std::ptr::null_mut();
    };
    let p = if ptr.is_null() {
        unsafe { alloc(layout) }
    } else {
        unsafe {
            realloc(
                ptr as *mut u8,
                Layout::from_size_align_unchecked(osize, ALIGN),
                nsize,
            )
        }
    };
    if !p.is_null() {
        let old = if ptr.is_null() { 0 } else { osize };
        ctx.used.set(ctx.used.get() - old + nsize);
    }
    p as *mut c_void
}

/// A Lua interpreter with its context. Not `Send`: one per shard thread.
pub(crate) struct LuaState {
    l: L,
    ctx: Box<Ctx>,
    /// Registry reference of the error handler.
    handler: c_int,
    /// Runs since the last incremental GC step.
    runs: u32,
}

impl LuaState {
    /// A bare interpreter (no libraries yet).
    pub fn new(rand: Rc<Cell<u64>>) -> LuaState {
        let ctx = Box::new(Ctx {
            host: Cell::new(None),
            resp: Cell::new(2),
            killed: Cell::new(false),
            panic: Cell::new(None),
            used: Cell::new(0),
            rand,
            load: RefCell::new(None),
        });
        let l = unsafe { lua_newstate(alloc, &*ctx as *const Ctx as *mut c_void) };
        assert!(!l.is_null(), "out of memory creating a Lua state");
        let handler = unsafe {
            lua_pushcfunction(l, error_handler);
            luaL_ref(l, LUA_REGISTRYINDEX)
        };
        LuaState {
            l,
            ctx,
            handler,
            runs: 0,
        }
    }

    /// The raw state.
    pub fn raw(&self) -> L {
        self.l
    }

    /// The context.
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// Pushes the error handler (Redis's `__redis__err__handler`).
    pub fn push_handler(&self) {
        unsafe { lua_rawgeti(self.l, LUA_REGISTRYINDEX, self.handler as _) };
    }

    /// Calls the function below `nargs` arguments on the stack, itself above
    /// the error handler, as a script: installs the host and the time-limit
    /// hook, and converts the outcome. `name` is what error replies call the
    /// script (its sha or the function name).
    pub fn run(&mut self, nargs: c_int, name: &str, host: &mut dyn ScriptHost) -> Reply {
        let l = self.l;
        // SAFETY: the pointer is only used during this call (cleared below).
        let host: *mut (dyn ScriptHost + '_) = host;
        let host: *mut (dyn ScriptHost + 'static) = unsafe { std::mem::transmute(host) };
        self.ctx.host.set(Some(host));
        self.ctx.resp.set(2);
        self.ctx.killed.set(false);
        unsafe { lua_sethook(l, Some(count_hook), LUA_MASKCOUNT, HOOK_COUNT) };
        let status = unsafe { lua_pcall(l, nargs, 1, -(nargs + 2)) };
        unsafe { lua_sethook(l, None, 0, 0) };
        let reply = if status == 0 {
            unsafe { convert::lua_to_reply(l, self.ctx.resp.get() == 3) }
        } else {
            let r = unsafe { error_reply(l, name) };
            unsafe { lua_pop(l, 1) };
            r
        };
        unsafe { lua_pop(l, 1) }; // the error handler
        self.ctx.host.set(None);
        self.gc_step();
        if let Some(p) = self.ctx.panic.take() {
            std::panic::resume_unwind(p);
        }
        reply
    }

    /// Like Redis, a small incremental GC step every 50 runs so no run pays
    /// for a full cycle.
    fn gc_step(&mut self) {
        self.runs += 1;
        if self.runs == 50 {
            self.runs = 0;
            unsafe { lua_gc(self.l, LUA_GCSTEP, 50) };
        }
    }

    /// Bytes allocated by the interpreter.
    pub fn used_memory(&self) -> usize {
        self.ctx.used_memory()
    }
}

impl Drop for LuaState {
    fn drop(&mut self) {
        unsafe { lua_close(self.l) };
    }
}

/// The count hook: asks the host whether to stop, and once told so raises
/// the kill error on every line until the script has unwound.
unsafe extern "C-unwind" fn count_hook(l: L, _ar: *mut lua_Debug) {
    let ctx = unsafe { ctx(l) };
    if !ctx.killed.get() && ctx.with_host(|h| h.tick()).unwrap_or(false) {
        ctx.killed.set(true);
    }
    if ctx.killed.get() {
        unsafe {
            lua_sethook(l, Some(count_hook), LUA_MASKLINE, 0);
            let mut text = b"-ERR ".to_vec();
            text.extend_from_slice(KILLED);
            // Nothing owned may outlive the jump.
            push_error_table(l, &text);
            drop(text);
            lua_error(l)
        }
    }
}

/// FUNCTION LOAD's hook: stops library code running past its deadline.
pub(crate) unsafe extern "C-unwind" fn load_hook(l: L, _ar: *mut lua_Debug) {
    let late = unsafe { ctx(l) }
        .load
        .borrow()
        .as_ref()
        .is_some_and(|lc| Instant::now() > lc.deadline);
    if late {
        unsafe {
            lua_sethook(l, Some(load_hook), LUA_MASKLINE, 0);
            raise_error_table(l, b"FUNCTION LOAD timeout")
        }
    }
}

/// The error handler of script calls: turns any error into a table
/// `{err=..., source=..., line=...}` where the position is the Lua code that
/// raised it (the caller, when a C function such as `redis.call` raised).
unsafe extern "C-unwind" fn error_handler(l: L) -> c_int {
    unsafe {
        let mut ar: lua_Debug = std::mem::zeroed();
        let mut found = lua_getstack(l, 1, &mut ar) != 0;
        if found {
            lua_getinfo(l, c"nSl".as_ptr(), &mut ar);
            if !ar.what.is_null() && std::ffi::CStr::from_ptr(ar.what) == c"C" {
                found = lua_getstack(l, 2, &mut ar) != 0;
                if found {
                    lua_getinfo(l, c"nSl".as_ptr(), &mut ar);
                }
            }
        }
        lua_settop(l, 1);
        if lua_type(l, 1) != LUA_TTABLE {
            push_cstr(l, c"ERR ");
            tostring(l, 1);
            lua_concat(l, 2);
            lua_createtable(l, 0, 3);
            lua_insert(l, -2);
            rawset_str(l, -2, c"err");
            lua_replace(l, 1);
        }
        if found {
            lua_pushstring(l, ar.source);
            lua_setfield(l, 1, c"source".as_ptr());
            lua_pushnumber(l, ar.currentline as f64);
            lua_setfield(l, 1, c"line".as_ptr());
        }
        1
    }
}

/// Pushes `tostring(v)` for the value at `idx` (the global `tostring`
/// function's rules, metamethods included).
pub(crate) unsafe fn tostring(l: L, idx: c_int) {
    unsafe {
        let idx = lua_absindex(l, idx);
        match lua_type(l, idx) {
            LUA_TSTRING => lua_pushvalue(l, idx),
            LUA_TNUMBER => {
                lua_pushvalue(l, idx);
                lua_tolstring(l, -1, std::ptr::null_mut());
            }
            LUA_TNIL => push_cstr(l, c"nil"),
            LUA_TBOOLEAN => push_cstr(
                l,
                if lua_toboolean(l, idx) != 0 {
                    c"true"
                } else {
                    c"false"
                },
            ),
            _ => {
                if luaL_callmeta(l, idx, c"__tostring".as_ptr()) == 0 {
                    let kind = std::ffi::CStr::from_ptr(luaL_typename(l, idx));
                    let p = lua_topointer(l, idx);
                    let text = format!("{}: {:p}", kind.to_string_lossy(), p);
                    push_bytes(l, text.as_bytes());
                }
            }
        }
    }
}

/// The reply for a failed call whose error object is on top of the stack.
unsafe fn error_reply(l: L, name: &str) -> Reply {
    unsafe {
        if lua_type(l, -1) != LUA_TTABLE {
            let msg = match to_bytes(l, -1) {
                Some(b) => &b[..b.len().min(100)],
                None => b"execution failure".as_slice(),
            };
            let mut text = format!("ERR Error running script {name}, ").into_bytes();
            text.extend_from_slice(msg);
            return error_from(trim_crlf(&text).to_vec());
        }
        let field = |k: &std::ffi::CStr| -> Option<Vec<u8>> {
            rawget_str(l, -1, k);
            let v = if lua_isstring(l, -1) != 0 {
                to_bytes(l, -1).map(<[u8]>::to_vec)
            } else {
                None
            };
            lua_pop(l, 1);
            v
        };
        let Some(mut text) = field(c"err") else {
            return Reply::Error(format!(
                "ERR Error running script {name}, execution failure"
            ));
        };
        if let (Some(source), Some(line)) = (field(c"source"), field(c"line")) {
            text.extend_from_slice(format!(" script: {name}, on ").as_bytes());
            text.extend_from_slice(&source);
            text.push(b':');
            text.extend_from_slice(&line);
            text.push(b'.');
        }
        error_from(text)
    }
}

/// An error reply from raw bytes (CR/LF are mapped to spaces when encoded).
pub(crate) fn error_from(text: Vec<u8>) -> Reply {
    match String::from_utf8(text) {
        Ok(s) => Reply::Error(s),
        Err(e) => Reply::ErrorBytes(Bytes::from(e.into_bytes())),
    }
}
