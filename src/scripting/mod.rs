//! Lua scripting (EVAL and FUNCTION) with Redis 7.0's behaviour.
//!
//! This module is the Lua side only: the command layer implements
//! [`ScriptHost`] (running commands for `redis.call`, deciding when a script
//! must be killed) and calls an [`Engine`], one per shard thread.
//!
//! As in Redis, EVAL scripts and function libraries live in two separate
//! interpreters: SCRIPT FLUSH resets the first, and FUNCTION LOAD runs
//! library code in an environment that only offers `redis.register_function`,
//! `redis.log` and the version fields. Both interpreters have Redis's
//! sandbox: read-only globals and library tables, no `io`/`os`/`print`/
//! `loadfile`/`dofile`, no bytecode loading, Redis's `math.random`, and the
//! `cjson`, `struct`, `cmsgpack` and `bit` libraries.
//!
//! Replies are protocol-independent [`Reply`] values: a script's return
//! value is converted once (its booleans follow the protocol the script
//! chose with `redis.setresp`) and the caller encodes it for its own
//! connection, which gives what Redis sends to RESP2 and RESP3 clients.

mod api;
mod convert;
mod ffi;
mod functions;
mod libs;
mod sandbox;
mod state;

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;

use crate::parse::split_args;
use crate::reply::Reply;
use ffi::*;
use state::{LRAND48_INIT, LuaState, error_from};

pub use functions::{FunctionInfo, LibraryInfo};

/// What a running script can ask of the server. Implemented by the command
/// layer; the engine calls it only while a script runs.
pub trait ScriptHost {
    /// Runs one command (`args[0]` is its name) for `redis.call` /
    /// `redis.pcall` and returns its reply. The host does everything Redis's
    /// `scriptCall` does: command lookup ("Unknown Redis command called from
    /// script"), arity ("Wrong number of args calling Redis command from
    /// script"), commands denied in scripts ("This Redis command is not
    /// allowed from script"), the script's flags (no-writes: "Write commands
    /// are not allowed from read-only scripts"), ACL, OOM, cluster checks.
    /// Error replies are raised in Lua by `redis.call`.
    fn call(&mut self, args: Vec<Bytes>) -> Reply;
    /// Called every 100000 Lua instructions. Returning true kills the
    /// script (SCRIPT KILL, FUNCTION KILL, shutdown): it fails with
    /// "ERR Script killed by user with SCRIPT KILL..." and cannot catch it.
    fn tick(&mut self) -> bool;
    /// `redis.log(level, ...)`: `level` is 0 (debug) to 3 (warning); the
    /// host filters by its verbosity.
    fn log(&mut self, level: i32, msg: &str);
    /// `redis.set_repl(flags)`: bit 1 AOF, bit 2 replicas.
    fn set_repl(&mut self, flags: i32);
    /// `redis.acl_check_cmd(...)`: whether the calling user may run this
    /// command with these arguments; None for an unknown command.
    fn acl_check_cmd(&mut self, args: &[Bytes]) -> Option<bool>;
}

/// Flags of a script (its `#!lua flags=...` shebang) or of a function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScriptFlags {
    /// `no-writes`
    pub no_writes: bool,
    /// `allow-oom`
    pub allow_oom: bool,
    /// `allow-stale`
    pub allow_stale: bool,
    /// `no-cluster`
    pub no_cluster: bool,
    /// `allow-cross-slot-keys`
    pub allow_cross_slot_keys: bool,
    /// An EVAL script without a shebang: Redis's compatibility mode, where
    /// the flags above do not apply and the old checks (e.g. writes denied
    /// under OOM only when a write is attempted) are used instead.
    pub eval_compat: bool,
}

/// Flag names in Redis's order (FUNCTION LIST prints them in it).
const FLAG_NAMES: [&str; 5] = [
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
];

impl ScriptFlags {
    fn flag_mut(&mut self, i: usize) -> &mut bool {
        match i {
            0 => &mut self.no_writes,
            1 => &mut self.allow_oom,
            2 => &mut self.allow_stale,
            3 => &mut self.no_cluster,
            _ => &mut self.allow_cross_slot_keys,
        }
    }

    /// Sets the flag called `name` (case-sensitive for shebangs,
    /// case-insensitive for functions); false if there is none.
    fn set(&mut self, name: &[u8], ignore_case: bool) -> bool {
        let found = FLAG_NAMES.iter().position(|f| {
            if ignore_case {
                f.as_bytes().eq_ignore_ascii_case(name)
            } else {
                f.as_bytes() == name
            }
        });
        match found {
            Some(i) => {
                *self.flag_mut(i) = true;
                true
            }
            None => false,
        }
    }

    /// Names of the flags that are set, in Redis's order.
    pub fn names(&self) -> Vec<&'static str> {
        let set = [
            self.no_writes,
            self.allow_oom,
            self.allow_stale,
            self.no_cluster,
            self.allow_cross_slot_keys,
        ];
        FLAG_NAMES
            .iter()
            .zip(set)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect()
    }
}

/// A script cached by EVAL / SCRIPT LOAD.
struct Script {
    flags: ScriptFlags,
    body: Bytes,
    /// Registry reference of the compiled chunk.
    func_ref: i32,
}

/// The EVAL interpreter and its script cache.
struct EvalEngine {
    st: LuaState,
    scripts: HashMap<String, Script, ahash::RandomState>,
}

impl EvalEngine {
    fn new(rand: Rc<Cell<u64>>) -> EvalEngine {
        let st = LuaState::new(rand);
        let l = st.raw();
        unsafe {
            sandbox::open_libs(l);
            api::push_redis_table(l);
            lua_setglobal(l, c"redis".as_ptr());
            api::replace_math_random(l);
            st.push_handler();
            lua_setglobal(l, c"__redis__err__handler".as_ptr());
            // Globals are read through the real table itself.
            lua_pushvalue(l, LUA_GLOBALSINDEX);
            sandbox::protect_globals(l);
            lua_pop(l, 1);
        }
        EvalEngine {
            st,
            scripts: HashMap::default(),
        }
    }
}

/// Parses an EVAL script's shebang line (`#!lua flags=a,b`); returns the
/// flags and the length of the line (without its newline).
fn parse_shebang(body: &[u8]) -> Result<(ScriptFlags, usize), Reply> {
    let mut flags = ScriptFlags::default();
    if !body.starts_with(b"#!") {
        flags.eval_compat = true;
        return Ok((flags, 0));
    }
    let Some(len) = body.iter().position(|&c| c == b'\n') else {
        return Err(Reply::StaticError("ERR Invalid script shebang"));
    };
    let parts = match split_args(&body[..len]) {
        Some(p) if !p.is_empty() => p,
        _ => return Err(Reply::StaticError("ERR Invalid engine in script shebang")),
    };
    if &parts[0][..] != b"#!lua" {
        let mut text = b"ERR Unexpected engine in script shebang: ".to_vec();
        text.extend_from_slice(&parts[0]);
        return Err(error_from(text));
    }
    for part in &parts[1..] {
        if let Some(list) = part.strip_prefix(b"flags=") {
            if list.is_empty() {
                continue;
            }
            for flag in list.split(|&c| c == b',') {
                if !flags.set(flag, false) {
                    let mut text = b"ERR Unexpected flag in script shebang: ".to_vec();
                    text.extend_from_slice(flag);
                    return Err(error_from(text));
                }
            }
        } else {
            let mut text = b"ERR Unknown lua shebang option: ".to_vec();
            text.extend_from_slice(part);
            return Err(error_from(text));
        }
    }
    Ok((flags, len))
}

/// The scripting engine of one shard thread: the EVAL interpreter with its
/// script cache, and the FUNCTION interpreter with its libraries. Not `Send`.
pub struct Engine {
    eval: EvalEngine,
    functions: functions::FunctionsEngine,
    /// `math.random` state, shared by both interpreters as in Redis.
    rand: Rc<Cell<u64>>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// A new engine with empty script cache and no libraries.
    pub fn new() -> Engine {
        let rand = Rc::new(Cell::new(LRAND48_INIT));
        Engine {
            eval: EvalEngine::new(rand.clone()),
            functions: functions::FunctionsEngine::new(rand.clone()),
            rand,
        }
    }

    /// Compiles and caches an EVAL body (SCRIPT LOAD); returns its SHA1 in
    /// lowercase hex. A cached body is not compiled again. Errors are Redis's:
    /// shebang errors ("ERR Unexpected flag in script shebang: x", ...) and
    /// "ERR Error compiling script (new function): user_script:1: ...".
    pub fn load_script(&mut self, body: &[u8]) -> Result<String, Reply> {
        let sha = api::sha1_hex(body);
        if self.eval.scripts.contains_key(&sha) {
            return Ok(sha);
        }
        let (flags, shebang_len) = parse_shebang(body)?;
        // The shebang line is dropped but its newline kept, so line numbers
        // in errors match the script's.
        let code = &body[shebang_len..];
        let l = self.eval.st.raw();
        let func_ref = unsafe {
            let status = luaL_loadbuffer(
                l,
                code.as_ptr() as *const std::ffi::c_char,
                code.len(),
                c"@user_script".as_ptr(),
            );
            if status != 0 {
                let mut text = b"ERR Error compiling script (new function): ".to_vec();
                text.extend_from_slice(to_bytes(l, -1).unwrap_or_default());
                lua_pop(l, 1);
                return Err(error_from(trim_crlf(&text).to_vec()));
            }
            luaL_ref(l, LUA_REGISTRYINDEX)
        };
        self.eval.scripts.insert(
            sha.clone(),
            Script {
                flags,
                body: Bytes::copy_from_slice(body),
                func_ref,
            },
        );
        Ok(sha)
    }

    /// True if the script is cached (SCRIPT EXISTS). `sha` is matched
    /// case-insensitively, as Redis does.
    pub fn has_script(&self, sha: &str) -> bool {
        self.eval.scripts.contains_key(&*lower(sha))
    }

    /// The body of a cached script (to propagate EVALSHA as EVAL).
    pub fn script_body(&self, sha: &str) -> Option<&Bytes> {
        self.eval.scripts.get(&*lower(sha)).map(|s| &s.body)
    }

    /// Flags of a cached script.
    pub fn script_flags(&self, sha: &str) -> Option<ScriptFlags> {
        self.eval.scripts.get(&*lower(sha)).map(|s| s.flags)
    }

    /// Number of cached scripts (INFO `number_of_cached_scripts`).
    pub fn script_count(&self) -> usize {
        self.eval.scripts.len()
    }

    /// SCRIPT FLUSH: drops every script and, like Redis, starts a fresh EVAL
    /// interpreter.
    pub fn flush_scripts(&mut self) {
        self.eval = EvalEngine::new(self.rand.clone());
    }

    /// Runs a cached script with KEYS and ARGV set. Errors come back as
    /// Redis words them, e.g. "ERR user_script:1: Script attempted to access
    /// nonexistent global variable 'x' script: <sha>, on @user_script:1.";
    /// an unknown sha gives the NOSCRIPT error.
    pub fn run_script(
        &mut self,
        sha: &str,
        keys: &[Bytes],
        argv: &[Bytes],
        host: &mut dyn ScriptHost,
    ) -> Reply {
        let sha = lower(sha);
        let Some(script) = self.eval.scripts.get(&*sha) else {
            return Reply::StaticError("NOSCRIPT No matching script. Please use EVAL.");
        };
        let l = self.eval.st.raw();
        unsafe {
            sandbox::push_real_globals(l);
            push_array(l, keys);
            rawset_str(l, -2, c"KEYS");
            push_array(l, argv);
            rawset_str(l, -2, c"ARGV");
            lua_pop(l, 1);
            self.eval.st.push_handler();
            lua_rawgeti(l, LUA_REGISTRYINDEX, script.func_ref as _);
        }
        self.eval.st.run(0, &sha, host)
    }

    /// FUNCTION LOAD: loads a library (`#!lua name=mylib` then code calling
    /// `redis.register_function`) and returns its name. With `replace` an
    /// existing library of that name is replaced. Errors are Redis 7.0's
    /// ("ERR Library 'x' already exists", "ERR Function f already exists",
    /// "ERR No functions registered", "ERR Error registering functions: ...").
    pub fn function_load(&mut self, code: &[u8], replace: bool) -> Result<String, Reply> {
        self.functions.load(code, replace)
    }

    /// FUNCTION DELETE; "ERR Library not found" if there is none.
    pub fn function_delete(&mut self, lib: &str) -> Result<(), Reply> {
        self.functions.delete(lib)
    }

    /// FUNCTION FLUSH: drops every library.
    pub fn function_flush(&mut self) {
        self.functions.flush();
    }

    /// The libraries with their functions and code (FUNCTION LIST / DUMP).
    pub fn libraries(&self) -> Vec<LibraryInfo> {
        self.functions.libraries()
    }

    /// Flags of a function (names are case-insensitive); None if unknown.
    pub fn function_flags(&self, name: &str) -> Option<ScriptFlags> {
        self.functions.get(name).map(|(_, f)| f.flags)
    }

    /// Name of the library that owns a function.
    pub fn function_library(&self, name: &str) -> Option<&str> {
        self.functions.get(name).map(|(lib, _)| lib)
    }

    /// FCALL: runs a function with its keys and arguments (passed to it as
    /// two tables). "ERR Function not found" if unknown.
    pub fn run_function(
        &mut self,
        name: &str,
        keys: &[Bytes],
        argv: &[Bytes],
        host: &mut dyn ScriptHost,
    ) -> Reply {
        self.functions.run(name, keys, argv, host)
    }

    /// Bytes used by the EVAL interpreter (INFO `used_memory_lua`).
    pub fn eval_memory(&self) -> usize {
        self.eval.st.used_memory()
    }

    /// Bytes used by the FUNCTION interpreter
    /// (INFO `used_memory_vm_functions`).
    pub fn functions_memory(&self) -> usize {
        self.functions.used_memory()
    }
}

/// `s` in lowercase, copied only when it has uppercase letters (SHAs
/// usually arrive in lowercase).
fn lower(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Pushes a Lua array of byte strings.
unsafe fn push_array(l: L, items: &[Bytes]) {
    unsafe {
        lua_createtable(l, items.len() as i32, 0);
        for (i, it) in items.iter().enumerate() {
            push_bytes(l, it);
            lua_rawseti(l, -2, i as i64 + 1);
        }
    }
}

#[cfg(test)]
mod tests;
