//! FUNCTION LOAD / FCALL: libraries of functions in their own interpreter.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::c_int;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::ffi::*;
use super::state::{LoadCtx, LuaState, Registered, ctx, error_from, load_hook};
use super::{ScriptFlags, ScriptHost, api, sandbox};
use crate::parse::split_args;
use crate::reply::Reply;

/// How long library code may run at FUNCTION LOAD (Redis's 500 ms).
const LOAD_TIMEOUT: Duration = Duration::from_millis(500);

pub(crate) const BAD_NAME: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// A function as FUNCTION LIST shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionInfo {
    /// Name as registered.
    pub name: String,
    /// `description` given to `redis.register_function`.
    pub description: Option<Bytes>,
    /// Its flags.
    pub flags: ScriptFlags,
}

/// A library as FUNCTION LIST shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct LibraryInfo {
    /// Library name (from `#!lua name=...`).
    pub name: String,
    /// Always "LUA".
    pub engine: &'static str,
    /// The code given to FUNCTION LOAD, shebang included.
    pub code: Bytes,
    /// Its functions, in registration order.
    pub functions: Vec<FunctionInfo>,
}

struct Function {
    info: FunctionInfo,
    func_ref: c_int,
}

struct Library {
    name: String,
    code: Bytes,
    functions: Vec<Function>,
}

/// The FUNCTION interpreter and its libraries.
pub(crate) struct FunctionsEngine {
    st: LuaState,
    /// Registry refs: the globals proxy's metatable, and the two tables its
    /// reads go to (the load-time API and the full globals).
    globals_mt: c_int,
    load_api: c_int,
    full_api: c_int,
    libraries: Vec<Library>,
    /// Lowercase function name -> library index is not stable across
    /// deletes, so map to the library name.
    functions: HashMap<String, String>,
}

/// `functionsVerifyName`: `[A-Za-z0-9_]+`.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

impl FunctionsEngine {
    pub fn new(rand: Rc<Cell<u64>>) -> FunctionsEngine {
        let st = LuaState::new(rand);
        let l = st.raw();
        let (globals_mt, load_api, full_api) = unsafe {
            sandbox::open_libs(l);
            api::push_redis_table(l);
            lua_setglobal(l, c"redis".as_ptr());
            api::replace_math_random(l);
            // What library code sees at load time: only `redis` with
            // register_function, log and the version fields.
            lua_newtable(l);
            lua_newtable(l);
            set_fn(l, c"register_function", register_function);
            api::register_common(l);
            sandbox::set_error_metatable(l);
            sandbox::make_proxy(l);
            rawset_str(l, -2, c"redis");
            sandbox::set_error_metatable(l);
            lua_pushvalue(l, -1);
            let load_api = luaL_ref(l, LUA_REGISTRYINDEX);
            sandbox::protect_globals(l);
            let globals_mt = luaL_ref(l, LUA_REGISTRYINDEX);
            sandbox::push_real_globals(l);
            let full_api = luaL_ref(l, LUA_REGISTRYINDEX);
            (globals_mt, load_api, full_api)
        };
        let engine = FunctionsEngine {
            st,
            globals_mt,
            load_api,
            full_api,
            libraries: Vec::new(),
            functions: HashMap::new(),
        };
        engine.set_globals(false);
        engine
    }

    /// Points global reads at the load-time API or the full globals.
    fn set_globals(&self, loading: bool) {
        let l = self.st.raw();
        unsafe {
            lua_rawgeti(l, LUA_REGISTRYINDEX, self.globals_mt as _);
            let target = if loading {
                self.load_api
            } else {
                self.full_api
            };
            lua_rawgeti(l, LUA_REGISTRYINDEX, target as _);
            rawset_str(l, -2, c"__index");
            lua_pop(l, 1);
        }
    }

    pub fn used_memory(&self) -> usize {
        self.st.used_memory()
    }

    /// The library and function called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<(&str, &FunctionInfo)> {
        let lib = self.functions.get(&name.to_ascii_lowercase())?;
        let lib = self.libraries.iter().find(|l| &l.name == lib)?;
        let f = lib
            .functions
            .iter()
            .find(|f| f.info.name.eq_ignore_ascii_case(name))?;
        Some((&lib.name, &f.info))
    }

    pub fn libraries(&self) -> Vec<LibraryInfo> {
        self.libraries
            .iter()
            .map(|lib| LibraryInfo {
                name: lib.name.clone(),
                engine: "LUA",
                code: lib.code.clone(),
                functions: lib.functions.iter().map(|f| f.info.clone()).collect(),
            })
            .collect()
    }

    fn unref_all(&self, funcs: impl IntoIterator<Item = c_int>) {
        for r in funcs {
            unsafe { luaL_unref(self.st.raw(), LUA_REGISTRYINDEX, r) };
        }
    }

    pub fn delete(&mut self, name: &str) -> Result<(), Reply> {
        let Some(i) = self.libraries.iter().position(|l| l.name == name) else {
            return Err(Reply::StaticError("ERR Library not found"));
        };
        let lib = self.libraries.remove(i);
        for f in &lib.functions {
            self.functions.remove(&f.info.name.to_ascii_lowercase());
        }
        self.unref_all(lib.functions.iter().map(|f| f.func_ref));
        Ok(())
    }

    pub fn flush(&mut self) {
        let libs = std::mem::take(&mut self.libraries);
        self.functions.clear();
        self.unref_all(
            libs.iter()
                .flat_map(|l| l.functions.iter().map(|f| f.func_ref)),
        );
    }

    pub fn load(&mut self, code: &[u8], replace: bool) -> Result<String, Reply> {
        if !code.starts_with(b"#!") {
            return Err(Reply::StaticError("ERR Missing library metadata"));
        }
        let Some(shebang_len) = code.iter().position(|&c| c == b'\n') else {
            return Err(Reply::StaticError("ERR Invalid library metadata"));
        };
        let parts = match split_args(&code[..shebang_len]) {
            Some(p) if !p.is_empty() => p,
            _ => return Err(Reply::StaticError("ERR Invalid library metadata")),
        };
        let engine = &parts[0][2..];
        let mut name: Option<&[u8]> = None;
        for part in &parts[1..] {
            if part.len() >= 5 && part[..5].eq_ignore_ascii_case(b"name=") {
                if name.is_some() {
                    return Err(Reply::StaticError(
                        "ERR Invalid metadata value, name argument was given multiple times",
                    ));
                }
                name = Some(&part[5..]);
            } else {
                let mut text = b"ERR Invalid metadata value given: ".to_vec();
                text.extend_from_slice(part);
                return Err(error_from(text));
            }
        }
        let Some(name) = name else {
            return Err(Reply::StaticError("ERR Library name was not given"));
        };
        if !valid_name(name) {
            return Err(Reply::Error(format!("ERR {BAD_NAME}")));
        }
        let name = String::from_utf8_lossy(name).into_owned();
        if !engine.eq_ignore_ascii_case(b"lua") {
            let mut text = b"ERR Engine '".to_vec();
            text.extend_from_slice(engine);
            text.extend_from_slice(b"' not found");
            return Err(error_from(text));
        }
        let old = self.libraries.iter().position(|l| l.name == name);
        if old.is_some() && !replace {
            return Err(Reply::Error(format!("ERR Library '{name}' already exists")));
        }
        let registered = self.run_library(&code[shebang_len..])?;
        if registered.is_empty() {
            return Err(Reply::StaticError("ERR No functions registered"));
        }
        for f in &registered {
            let owner = self.functions.get(&f.name.to_ascii_lowercase());
            if owner.is_some_and(|o| *o != name) {
                let text = format!("ERR Function {} already exists", f.name);
                self.unref_all(registered.iter().map(|f| f.func_ref));
                return Err(Reply::Error(text));
            }
        }
        if let Some(i) = old {
            let lib = self.libraries.remove(i);
            for f in &lib.functions {
                self.functions.remove(&f.info.name.to_ascii_lowercase());
            }
            self.unref_all(lib.functions.iter().map(|f| f.func_ref));
        }
        for f in &registered {
            self.functions
                .insert(f.name.to_ascii_lowercase(), name.clone());
        }
        self.libraries.push(Library {
            name: name.clone(),
            code: Bytes::copy_from_slice(code),
            functions: registered
                .into_iter()
                .map(|r| Function {
                    info: FunctionInfo {
                        name: r.name,
                        description: r.description,
                        flags: r.flags,
                    },
                    func_ref: r.func_ref,
                })
                .collect(),
        });
        Ok(name)
    }

    /// Compiles and runs library code in the load-time environment and
    /// returns what it registered.
    fn run_library(&mut self, code: &[u8]) -> Result<Vec<Registered>, Reply> {
        let l = self.st.raw();
        unsafe {
            if luaL_loadbuffer(
                l,
                code.as_ptr() as *const std::ffi::c_char,
                code.len(),
                c"@user_function".as_ptr(),
            ) != 0
            {
                let mut text = b"ERR Error compiling function: ".to_vec();
                text.extend_from_slice(to_bytes(l, -1).unwrap_or_default());
                lua_pop(l, 1);
                return Err(error_from(text));
            }
            *self.st.ctx().load.borrow_mut() = Some(LoadCtx {
                deadline: Instant::now() + LOAD_TIMEOUT,
                functions: Vec::new(),
            });
            self.set_globals(true);
            lua_sethook(l, Some(load_hook), LUA_MASKCOUNT, 100_000);
            let status = lua_pcall(l, 0, 0, 0);
            lua_sethook(l, None, 0, 0);
            self.set_globals(false);
            let load = self.st.ctx().load.borrow_mut().take();
            let registered = load.map(|lc| lc.functions).unwrap_or_default();
            if status != 0 {
                self.unref_all(registered.iter().map(|f| f.func_ref));
                // Redis's luaExtractErrorInformation: a string is an error
                // message, a table carries it in `err`.
                let msg = if lua_isstring(l, -1) != 0 {
                    let mut m = b"ERR ".to_vec();
                    m.extend_from_slice(to_bytes(l, -1).unwrap_or_default());
                    m
                } else if lua_type(l, -1) == LUA_TTABLE
                    && rawget_str(l, -1, c"err") != LUA_TNIL
                    && lua_isstring(l, -1) != 0
                {
                    let m = to_bytes(l, -1).unwrap_or_default().to_vec();
                    lua_pop(l, 1);
                    m
                } else {
                    if lua_type(l, -1) == LUA_TTABLE {
                        lua_pop(l, 1);
                    }
                    b"(null)".to_vec()
                };
                lua_pop(l, 1);
                let mut text = b"ERR Error registering functions: ".to_vec();
                text.extend_from_slice(&msg);
                return Err(error_from(text));
            }
            Ok(registered)
        }
    }

    pub fn run(
        &mut self,
        name: &str,
        keys: &[Bytes],
        argv: &[Bytes],
        host: &mut dyn ScriptHost,
    ) -> Reply {
        let Some(lib) = self.functions.get(&name.to_ascii_lowercase()) else {
            return Reply::StaticError("ERR Function not found");
        };
        let Some(f) = self
            .libraries
            .iter()
            .find(|l| &l.name == lib)
            .and_then(|lib| {
                lib.functions
                    .iter()
                    .find(|f| f.info.name.eq_ignore_ascii_case(name))
            })
        else {
            return Reply::StaticError("ERR Function not found");
        };
        let l = self.st.raw();
        let fname = f.info.name.clone();
        unsafe {
            self.st.push_handler();
            lua_rawgeti(l, LUA_REGISTRYINDEX, f.func_ref as _);
            super::push_array(l, keys);
            super::push_array(l, argv);
        }
        self.st.run(2, &fname, host)
    }
}

/// The arguments of `redis.register_function`, or the error message.
unsafe fn read_register_args(l: L) -> Result<Registered, &'static str> {
    unsafe {
        let argc = lua_gettop(l);
        if !(1..=2).contains(&argc) {
            return Err("wrong number of arguments to redis.register_function");
        }
        let string_arg = |idx: c_int| -> Option<Vec<u8>> {
            if lua_isstring(l, idx) != 0 {
                to_bytes(l, idx).map(<[u8]>::to_vec)
            } else {
                None
            }
        };
        if argc == 2 {
            let Some(name) = string_arg(1) else {
                return Err("first argument to redis.register_function must be a string");
            };
            if lua_type(l, 2) != LUA_TFUNCTION {
                return Err("second argument to redis.register_function must be a function");
            }
            let func_ref = luaL_ref(l, LUA_REGISTRYINDEX);
            return Ok(Registered {
                name: String::from_utf8_lossy(&name).into_owned(),
                description: None,
                flags: ScriptFlags::default(),
                func_ref,
            });
        }
        if lua_type(l, 1) != LUA_TTABLE {
            return Err(
                "calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).",
            );
        }
        let mut name = None;
        let mut description = None;
        let mut flags = ScriptFlags::default();
        let mut func_ref = None;
        let fail = |func_ref: Option<c_int>, msg: &'static str| {
            if let Some(r) = func_ref {
                luaL_unref(l, LUA_REGISTRYINDEX, r);
            }
            Err(msg)
        };
        lua_pushnil(l);
        while lua_next(l, 1) != 0 {
            let Some(key) = str_bytes(l, -2) else {
                return fail(
                    func_ref,
                    if lua_isstring(l, -2) != 0 {
                        "unknown argument given to redis.register_function"
                    } else {
                        "named argument key given to redis.register_function is not a string"
                    },
                );
            };
            if key.eq_ignore_ascii_case(b"function_name") {
                match string_arg(-1) {
                    Some(n) => name = Some(n),
                    None => {
                        return fail(
                            func_ref,
                            "function_name argument given to redis.register_function must be a string",
                        );
                    }
                }
            } else if key.eq_ignore_ascii_case(b"description") {
                match string_arg(-1) {
                    Some(d) => description = Some(Bytes::from(d)),
                    None => {
                        return fail(
                            func_ref,
                            "description argument given to redis.register_function must be a string",
                        );
                    }
                }
            } else if key.eq_ignore_ascii_case(b"callback") {
                if lua_type(l, -1) != LUA_TFUNCTION {
                    return fail(
                        func_ref,
                        "callback argument given to redis.register_function must be a function",
                    );
                }
                if let Some(old) = func_ref.replace(luaL_ref(l, LUA_REGISTRYINDEX)) {
                    luaL_unref(l, LUA_REGISTRYINDEX, old);
                }
                continue;
            } else if key.eq_ignore_ascii_case(b"flags") {
                if lua_type(l, -1) != LUA_TTABLE {
                    return fail(
                        func_ref,
                        "flags argument to redis.register_function must be a table representing function flags",
                    );
                }
                let mut j = 1;
                loop {
                    lua_rawgeti(l, -1, j);
                    if lua_isnil(l, -1) != 0 {
                        lua_pop(l, 1);
                        break;
                    }
                    let ok = lua_isstring(l, -1) != 0
                        && flags.set(to_bytes(l, -1).unwrap_or_default(), true);
                    lua_pop(l, 1);
                    if !ok {
                        return fail(func_ref, "unknown flag given");
                    }
                    j += 1;
                }
            } else {
                return fail(
                    func_ref,
                    "unknown argument given to redis.register_function",
                );
            }
            lua_pop(l, 1);
        }
        let Some(name) = name else {
            return fail(
                func_ref,
                "redis.register_function must get a function name argument",
            );
        };
        let Some(func_ref) = func_ref else {
            return Err("redis.register_function must get a callback argument");
        };
        Ok(Registered {
            name: String::from_utf8_lossy(&name).into_owned(),
            description,
            flags,
            func_ref,
        })
    }
}

/// `redis.register_function(name, fn)` or `redis.register_function{...}`.
unsafe extern "C-unwind" fn register_function(l: L) -> c_int {
    unsafe {
        let ctx = ctx(l);
        if ctx.load.borrow().is_none() {
            raise_error_table(
                l,
                b"redis.register_function can only be called on FUNCTION LOAD command",
            );
        }
        let err: &'static str = match read_register_args(l) {
            Err(msg) => msg,
            Ok(reg) => {
                let mut load = ctx.load.borrow_mut();
                let Some(lc) = load.as_mut() else {
                    return 0;
                };
                if !valid_name(reg.name.as_bytes()) {
                    luaL_unref(l, LUA_REGISTRYINDEX, reg.func_ref);
                    BAD_NAME
                } else if lc.functions.iter().any(|f| f.name == reg.name) {
                    luaL_unref(l, LUA_REGISTRYINDEX, reg.func_ref);
                    "Function already exists in the library"
                } else {
                    lc.functions.push(reg);
                    return 0;
                }
            }
        };
        raise_error_table(l, err.as_bytes())
    }
}
