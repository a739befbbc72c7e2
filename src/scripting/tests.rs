//! Engine tests against outputs observed from redis-server 7.0.15.

use super::*;

/// A host that records calls and answers from a script of canned replies.
#[derive(Default)]
struct FakeHost {
    calls: Vec<Vec<Bytes>>,
    replies: HashMap<Vec<u8>, Reply>,
    ticks: u32,
    kill_after: Option<u32>,
    logs: Vec<(i32, String)>,
}

impl ScriptHost for FakeHost {
    fn call(&mut self, args: Vec<Bytes>) -> Reply {
        let name = args[0].to_ascii_lowercase();
        self.calls.push(args);
        self.replies
            .get(&name)
            .cloned()
            .unwrap_or(Reply::StaticError(
                "ERR Unknown Redis command called from script",
            ))
    }
    fn tick(&mut self) -> bool {
        self.ticks += 1;
        self.kill_after.is_some_and(|n| self.ticks >= n)
    }
    fn log(&mut self, level: i32, msg: &str) {
        self.logs.push((level, msg.to_string()));
    }
    fn set_repl(&mut self, _flags: i32) {}
    fn acl_check_cmd(&mut self, args: &[Bytes]) -> Option<bool> {
        (&args[0][..] == b"get").then_some(true)
    }
}

fn eval_with(e: &mut Engine, h: &mut FakeHost, body: &str) -> Reply {
    match e.load_script(body.as_bytes()) {
        Ok(sha) => e.run_script(&sha, &[], &[], h),
        Err(r) => r,
    }
}

fn eval(body: &str) -> Reply {
    eval_with(&mut Engine::new(), &mut FakeHost::default(), body)
}

fn err(r: Reply) -> String {
    String::from_utf8_lossy(r.error_text().expect("an error")).into_owned()
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn return_values() {
    assert_eq!(
        eval("return {1,2,3,'x',true,false,{ok='o'},{err='e'}, 3.99, -3.99}"),
        Reply::Array(vec![
            Reply::Int(1),
            Reply::Int(2),
            Reply::Int(3),
            bulk("x"),
            Reply::Int(1),
            Reply::Nil,
            Reply::Status("o".into()),
            Reply::Error("e".into()),
            Reply::Int(3),
            Reply::Int(-3),
        ])
    );
    assert_eq!(eval("return 1/0"), Reply::Int(i64::MIN));
    assert_eq!(
        eval("return {1,2,nil,4}"),
        Reply::Array(vec![Reply::Int(1), Reply::Int(2)])
    );
    assert_eq!(eval("return {a=1}"), Reply::Array(vec![]));
    assert_eq!(eval("return nil"), Reply::Nil);
}

/// Error replies end with the script's sha and the failing line.
fn err_of(body: &str) -> String {
    let sha = api::sha1_hex(body.as_bytes());
    err(eval(body)).replace(&sha, "<sha>")
}

#[test]
fn error_texts() {
    assert_eq!(
        err_of("return x"),
        "ERR user_script:1: Script attempted to access nonexistent global variable 'x' script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("x = 1"),
        "ERR user_script:1: Attempt to modify a readonly table script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("rawset(_G, 'x', 1)"),
        "ERR Attempt to modify a readonly table script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("string.foo = 1; return 1"),
        "ERR user_script:1: Attempt to modify a readonly table script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("setmetatable(_G, nil)"),
        "ERR Attempt to modify a readonly table script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("getmetatable('').__index = nil"),
        "ERR user_script:1: Attempt to modify a readonly table script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("table.insert(string, 1)"),
        "ERR Attempt to modify a readonly table script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("error({err='x'})"),
        "x script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("error('hello')"),
        "ERR user_script:1: hello script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("error(nil)"),
        "ERR nil script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("error(12)"),
        "ERR user_script:1: 12 script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("return +"),
        "ERR Error compiling script (new function): user_script:1: unexpected symbol near '+'"
    );
    assert_eq!(
        err_of("return 1 end"),
        "ERR Error compiling script (new function): user_script:1: '<eof>' expected near 'end'"
    );
    assert_eq!(
        err_of("#!lua\nreturn x"),
        "ERR user_script:2: Script attempted to access nonexistent global variable 'x' script: <sha>, on @user_script:2."
    );
    assert_eq!(
        err_of("local function f() return 1 + f() end return f()"),
        "ERR user_script:1: stack overflow script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("local t = setmetatable({}, {__index=function(t,k) return t[k] end}) return t.x"),
        "ERR user_script:1: C stack overflow script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("return loadstring('error({err=\"x\"})')()"),
        "x script: <sha>, on error({err=\"x\"}):1."
    );
    assert_eq!(
        err_of("error(setmetatable({}, {__newindex=function() error('boom') end}))"),
        "ERR user_script:1: boom script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("return math.random(3,1)"),
        "ERR user_script:1: bad argument #2 to 'random' (interval is empty) script: <sha>, on @user_script:1."
    );
    assert_eq!(
        err_of("return cjson.decode({})"),
        "ERR user_script:1: bad argument #1 to 'decode' (string expected, got table) script: <sha>, on @user_script:1."
    );
}

#[test]
fn sandbox_globals() {
    for name in [
        "print", "os", "io", "loadfile", "dofile", "debug", "getfenv", "newproxy", "require",
    ] {
        let body = format!("return {name}");
        assert!(
            err_of(&body).contains(&format!("nonexistent global variable '{name}'")),
            "{name}"
        );
    }
    assert_eq!(
        eval(
            "local t = {} for k,v in pairs(_G) do t[#t+1]=k end table.sort(t) return table.concat(t, ' ')"
        ),
        bulk(
            "ARGV KEYS _G _VERSION __redis__err__handler assert bit cjson collectgarbage coroutine error gcinfo getmetatable ipairs load loadstring math next pairs pcall rawequal rawget rawset redis select setmetatable string struct table tonumber tostring type unpack xpcall"
        )
    );
    assert_eq!(
        eval(
            "local t = {} for k,v in pairs(redis) do t[#t+1]=k end table.sort(t) return table.concat(t, ' ')"
        ),
        bulk(
            "LOG_DEBUG LOG_NOTICE LOG_VERBOSE LOG_WARNING REDIS_VERSION REDIS_VERSION_NUM REPL_ALL REPL_AOF REPL_NONE REPL_REPLICA REPL_SLAVE acl_check_cmd breakpoint call debug error_reply log pcall replicate_commands set_repl setresp sha1hex status_reply"
        )
    );
    assert_eq!(
        eval("local n = 0 for k,v in pairs(string) do n = n + 1 end return n"),
        Reply::Int(15)
    );
    assert_eq!(eval("KEYS[1] = 'x'; return KEYS[1]"), bulk("x"));
    assert_eq!(eval("return rawget(_G, 'string') ~= nil"), Reply::Int(1));
    assert_eq!(eval("return getmetatable(string)"), Reply::Nil);
    assert_eq!(eval("return ('abc'):upper()"), bulk("ABC"));
    assert_eq!(
        eval("return getmetatable('').__index == string"),
        Reply::Int(1)
    );
    assert_eq!(
        eval("return redis.REDIS_VERSION .. ' ' .. redis.REDIS_VERSION_NUM"),
        bulk("7.0.15 458767")
    );
    // Bytecode goes through the text parser, as in Redis.
    assert_eq!(
        eval("return select(2, loadstring(string.dump(function() return 1 end)))"),
        bulk("[string \"\x1bLuaQ\"]:1: unexpected symbol near 'char(27)'")
    );
    assert_eq!(
        eval("return {pcall()}"),
        Reply::Array(vec![Reply::Nil, bulk("attempt to call a boolean value")])
    );
}

#[test]
fn bit_library() {
    assert_eq!(
        eval(
            "return {bit.tobit(0xffffffff), bit.tobit(2^32+5), bit.bnot(0), bit.band(0xff, 0x0f, 0x3), bit.bor(1,2,4), bit.bxor(7,2), bit.lshift(1,31), bit.rshift(-1, 28), bit.arshift(-256, 4), bit.rol(0x12345678, 8), bit.ror(0x12345678, 8), bit.bswap(0x12345678), bit.tohex(255), bit.tohex(-1, -4), bit.tohex(0x1234abcd, 3), bit.tobit(1.5), bit.tobit(2.5)}"
        ),
        Reply::Array(vec![
            Reply::Int(-1),
            Reply::Int(5),
            Reply::Int(-1),
            Reply::Int(3),
            Reply::Int(7),
            Reply::Int(5),
            Reply::Int(-2147483648),
            Reply::Int(15),
            Reply::Int(-16),
            Reply::Int(878082066),
            Reply::Int(2014458966),
            Reply::Int(2018915346),
            bulk("000000ff"),
            bulk("FFFF"),
            bulk("bcd"),
            Reply::Int(2),
            Reply::Int(2),
        ])
    );
    assert!(err_of("return bit.tohex()").starts_with(
        "ERR user_script:1: bad argument #1 to 'tohex' (number expected, got no value) script:"
    ));
    assert!(err_of("return bit.band(1, 'x', 2)").starts_with(
        "ERR user_script:1: bad argument #2 to 'band' (number expected, got string) script:"
    ));
}

#[test]
fn struct_library() {
    let b = |s: &[u8]| Reply::Bulk(Bytes::copy_from_slice(s));
    assert_eq!(
        eval(
            "return {struct.pack('>i2<HbB', 258, 258, -1, 255), struct.pack('!4bi', 1, 2), struct.pack('s', 'ab'), struct.pack('c3', 'abcdef'), struct.pack('d', 1.5), struct.size('!8bd'), struct.size('i3H')}"
        ),
        Reply::Array(vec![
            b(b"\x01\x02\x02\x01\xff\xff"),
            b(b"\x01\x00\x00\x00\x02\x00\x00\x00"),
            b(b"ab\x00"),
            b(b"abc"),
            b(b"\x00\x00\x00\x00\x00\x00\xf8?"),
            Reply::Int(16),
            Reply::Int(5),
        ])
    );
    assert_eq!(
        eval("return {struct.unpack('>i2<Hbs', struct.pack('>i2<Hbs', -2, 513, -7, 'hi'))}"),
        Reply::Array(vec![
            Reply::Int(-2),
            Reply::Int(513),
            Reply::Int(-7),
            bulk("hi"),
            Reply::Int(9)
        ])
    );
    assert_eq!(
        eval("return {struct.unpack('bc0', '\\3abcd')}"),
        Reply::Array(vec![bulk("abc"), Reply::Int(5)])
    );
    for (body, msg) in [
        (
            "return struct.pack('y', 1)",
            "bad argument #1 to 'pack' (invalid format option 'y')",
        ),
        (
            "return struct.pack('c5', 'ab')",
            "bad argument #3 to 'pack' (string too short)",
        ),
        (
            "return struct.unpack('i4', 'ab')",
            "bad argument #2 to 'unpack' (data string too short)",
        ),
        (
            "return struct.size('s')",
            "bad argument #1 to 'size' (option 's' has no fixed size)",
        ),
        (
            "return struct.pack('!3i', 1)",
            "alignment 3 is not a power of 2",
        ),
        (
            "return struct.pack('i33', 1)",
            "integral size 33 is larger than limit of 32",
        ),
        (
            "return {struct.unpack('i', struct.pack('i', 1), 9)}",
            "bad argument #2 to 'unpack' (data string too short)",
        ),
    ] {
        assert!(
            err_of(body).starts_with(&format!("ERR user_script:1: {msg} script:")),
            "{body}: {}",
            err_of(body)
        );
    }
}

#[test]
fn cjson_library() {
    let b = |s: &[u8]| Reply::Bulk(Bytes::copy_from_slice(s));
    for (body, out) in [
        ("return cjson.encode({1,2,{a=1}})", &b"[1,2,{\"a\":1}]"[..]),
        ("return cjson.encode({})", b"{}"),
        (
            "return cjson.encode({d='\"\\\\\\n\\r\\t\\b\\f\\1\\127\\128\\255/'})",
            b"{\"d\":\"\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u007f\x80\xff\\/\"}",
        ),
        ("return cjson.encode(1/3)", b"0.33333333333333"),
        (
            "return cjson.encode(123456789012345678)",
            b"1.2345678901235e+17",
        ),
        ("return cjson.encode(-0.0)", b"-0"),
        ("return cjson.encode(nil)", b"null"),
        ("return cjson.encode(cjson.null)", b"null"),
        ("return cjson.encode({[1]=1,[2]=2,[4]=4})", b"[1,2,null,4]"),
        (
            "return cjson.encode({[1]=1,[10]=2})",
            b"[1,null,null,null,null,null,null,null,null,2]",
        ),
        ("return cjson.encode({1, x=2})", b"{\"1\":1,\"x\":2}"),
        ("return cjson.encode({[1.5]=1})", b"{\"1.5\":1}"),
        (
            "return cjson.encode(cjson.decode('{\"a\":{\"b\":[]}}'))",
            b"{\"a\":{\"b\":{}}}",
        ),
        (
            "return cjson.decode('\"\\\\u00e9\\\\ud83d\\\\ude00\"')",
            "é😀".as_bytes(),
        ),
        ("return cjson.decode('\"\\\\u0000\"')", b"\x00"),
        ("return cjson._NAME .. cjson._VERSION", b"cjson2.1.0"),
    ] {
        assert_eq!(eval(body), b(out), "{body}");
    }
    assert_eq!(
        eval("return cjson.decode('[1,2,{\"a\":null}]')[3].a == cjson.null"),
        Reply::Int(1)
    );
    assert_eq!(
        eval("return cjson.decode('{\"a\":[1,2,3.5,\"x\",true,false,null]}').a"),
        Reply::Array(vec![
            Reply::Int(1),
            Reply::Int(2),
            Reply::Int(3),
            bulk("x"),
            Reply::Int(1),
            Reply::Nil,
            Reply::Nil
        ])
    );
    assert_eq!(eval("return cjson.decode('0x10')"), Reply::Int(16));
    assert_eq!(
        eval("return cjson.decode('[Infinity]')"),
        Reply::Array(vec![Reply::Int(i64::MIN)])
    );
    assert_eq!(
        eval(
            "return {cjson.encode_max_depth(), cjson.decode_max_depth(), cjson.encode_number_precision(), cjson.encode_sparse_array(), cjson.encode_invalid_numbers(), cjson.decode_invalid_numbers(), cjson.encode_keep_buffer()}"
        ),
        Reply::Array(vec![
            Reply::Int(1000),
            Reply::Int(1000),
            Reply::Int(14),
            Reply::Nil,
            Reply::Nil,
            Reply::Int(1),
            Reply::Int(1)
        ])
    );
    for (body, msg) in [
        (
            "return cjson.encode(1/0)",
            "Cannot serialise number: must not be NaN or Inf",
        ),
        (
            "return cjson.encode(function() end)",
            "Cannot serialise function: type not supported",
        ),
        (
            "return cjson.encode({[1]=1,[11]=2})",
            "Cannot serialise table: excessively sparse array",
        ),
        (
            "return cjson.encode({[true]=1})",
            "Cannot serialise boolean: table key must be a number or string",
        ),
        (
            "return cjson.encode()",
            "bad argument #1 to 'encode' (expected 1 argument)",
        ),
        (
            "local t = {} t[1] = t return cjson.encode(t)",
            "Cannot serialise, excessive nesting (1001)",
        ),
        (
            "return cjson.decode('\"\\\\ud83d\"')",
            "Expected value but found invalid unicode escape code at character 2",
        ),
        (
            "return cjson.decode('[1,2')",
            "Expected comma or array end but found T_END at character 5",
        ),
        (
            "return cjson.decode('{\"a\":1,}')",
            "Expected object key string but found T_OBJ_END at character 8",
        ),
        (
            "return cjson.decode('')",
            "Expected value but found T_END at character 1",
        ),
        (
            "return cjson.decode('nul')",
            "Expected value but found invalid token at character 1",
        ),
        (
            "return cjson.decode('1 2')",
            "Expected the end but found T_NUMBER at character 3",
        ),
        (
            "return cjson.decode('[.5]')",
            "Expected value but found invalid token at character 2",
        ),
        (
            "return cjson.decode('{\"a\" 1}')",
            "Expected colon but found T_NUMBER at character 6",
        ),
        (
            "return cjson.decode('\"abc')",
            "Expected value but found unexpected end of string at character 5",
        ),
        (
            "return cjson.decode('-')",
            "Expected value but found invalid number at character 1",
        ),
        (
            "return cjson.decode('[1e]')",
            "Expected comma or array end but found invalid token at character 3",
        ),
        (
            "return cjson.decode(string.rep('[', 1001) .. string.rep(']', 1001))",
            "Found too many nested data structures (1001) at character 1001",
        ),
    ] {
        assert!(
            err_of(body).starts_with(&format!("ERR user_script:1: {msg} script:")),
            "{body}: {}",
            err_of(body)
        );
    }
}
