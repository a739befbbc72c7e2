//! Engine tests against outputs observed from redis-server 7.0.15.

use super::functions::BAD_NAME;
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
            "ARGV KEYS _G _VERSION __redis__err__handler assert bit cjson cmsgpack collectgarbage coroutine error gcinfo getmetatable ipairs load loadstring math next pairs pcall rawequal rawget rawset redis select setmetatable string struct table tonumber tostring type unpack xpcall"
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
        eval(
            "local s = string.dump(function() return 1 end) local i = 0 return select(2, load(function() i = i + 1 if i == 1 then return s end return nil end))"
        ),
        bulk("(load):1: unexpected symbol near 'char(27)'")
    );
    assert_eq!(eval("return loadstring('return 1 + 1')()"), Reply::Int(2));
    assert_eq!(
        eval("local f = load(function() return nil end) return type(f)"),
        bulk("function")
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

#[test]
fn cmsgpack_pack() {
    let b = |s: &[u8]| Reply::Bulk(Bytes::copy_from_slice(s));
    for (body, out) in [
        ("return cmsgpack.pack({1,2,3})", &b"\x93\x01\x02\x03"[..]),
        // Integers take the smallest type.
        (
            "return cmsgpack.pack(-33, -32, -1, 0, 127, 128, 255, 256, 65535, 65536, 2^32-1, 2^32)",
            b"\xd0\xdf\xe0\xff\x00\x7f\xcc\x80\xcc\xff\xcd\x01\x00\xcd\xff\xff\xce\x00\x01\x00\x00\xce\xff\xff\xff\xff\xcf\x00\x00\x00\x01\x00\x00\x00\x00",
        ),
        (
            "return cmsgpack.pack(-128, -129, -32768, -32769, -2^31, -2^31-1)",
            b"\xd0\x80\xd1\xff\x7f\xd1\x80\x00\xd2\xff\xff\x7f\xff\xd2\x80\x00\x00\x00\xd3\xff\xff\xff\xff\x7f\xff\xff\xff",
        ),
        ("return cmsgpack.pack(2^40)", b"\xcf\x00\x00\x01\x00\x00\x00\x00\x00"),
        ("return cmsgpack.pack(2^53+1)", b"\xcf\x00\x20\x00\x00\x00\x00\x00\x00"),
        ("return cmsgpack.pack(-2^63)", b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00"),
        ("return cmsgpack.pack(-0.0)", b"\x00"),
        // Other numbers: float32 when lossless, else float64.
        ("return cmsgpack.pack(1.5)", b"\xca\x3f\xc0\x00\x00"),
        ("return cmsgpack.pack(0.1)", b"\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a"),
        ("return cmsgpack.pack(2^63)", b"\xca\x5f\x00\x00\x00"),
        ("return cmsgpack.pack(2^64)", b"\xca\x5f\x80\x00\x00"),
        (
            "return cmsgpack.pack(-2^63-4096)",
            b"\xcb\xc3\xe0\x00\x00\x00\x00\x00\x02",
        ),
        ("return cmsgpack.pack(1/0, -1/0)", b"\xca\x7f\x80\x00\x00\xca\xff\x80\x00\x00"),
        ("return cmsgpack.pack(0/0)", b"\xcb\xff\xf8\x00\x00\x00\x00\x00\x00"),
        ("return cmsgpack.pack(2^-149)", b"\xca\x00\x00\x00\x01"),
        ("return cmsgpack.pack(true, false, nil)", b"\xc3\xc2\xc0"),
        (
            "return cmsgpack.pack(function() end, coroutine.create(function() end), cmsgpack.null)",
            b"\xc0\xc0\xc0",
        ),
        ("return cmsgpack.pack('abc', '')", b"\xa3abc\xa0"),
        // Tables are arrays when their keys are exactly 1..n, else maps.
        (
            "return cmsgpack.pack({}, {a=1}, {1,nil,3}, {[0]=1}, {[1.5]=1}, {1,2,x=3})",
            b"\x90\x81\xa1a\x01\x82\x01\x01\x03\x03\x81\x00\x01\x81\xca\x3f\xc0\x00\x00\x01\x83\x01\x01\x02\x02\xa1x\x03",
        ),
        (
            "return cmsgpack.pack({[2^31]=1}, {[-1]=1}, {['1']=1})",
            b"\x81\xce\x80\x00\x00\x00\x01\x81\xff\x01\x81\xa11\x01",
        ),
        (
            "local t = {} for i=1,16 do t[i]=i end return cmsgpack.pack(t)",
            b"\xdc\x00\x10\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10",
        ),
        (
            "local t = {} for i=1,65536 do t[i]=0 end return cmsgpack.pack(t):sub(1,6)",
            b"\xdd\x00\x01\x00\x00\x00",
        ),
        (
            "local t = {} for i=1,16 do t['k'..i]=i end return cmsgpack.pack(t):sub(1,4)",
            b"\xde\x00\x10\xa3",
        ),
        (
            "local t = {} for i=1,65536 do t['k'..i]=i end return cmsgpack.pack(t):sub(1,6)",
            b"\xdf\x00\x01\x00\x00\xa6",
        ),
        // Tables below 16 levels are packed as nil, which also stops cycles.
        (
            "local t = {} t[1] = t return cmsgpack.pack(t)",
            b"\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\xc0",
        ),
        (
            "local t = {} t[t] = 1 return cmsgpack.pack(t)",
            b"\x81\x81\x81\x81\x81\x81\x81\x81\x81\x81\x81\x81\x81\x81\x81\x81\xc0\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01",
        ),
        // Library tables are packed with their contents.
        ("return cmsgpack.pack({{string}}):sub(1,3)", b"\x91\x91\x8f"),
        (
            "return cmsgpack._NAME .. ' ' .. cmsgpack._VERSION .. ' ' .. cmsgpack._COPYRIGHT .. ' ' .. cmsgpack._DESCRIPTION",
            b"cmsgpack lua-cmsgpack 0.4.0 Copyright (C) 2012, Salvatore Sanfilippo MessagePack C implementation for Lua",
        ),
    ] {
        assert_eq!(eval(body), b(out), "{body}");
    }
    // Strings: fixstr, str8, str16, str32.
    for (len, head) in [
        (31, &b"\xbfx"[..]),
        (32, b"\xd9\x20x"),
        (255, b"\xd9\xffx"),
        (256, b"\xda\x01\x00x"),
        (65535, b"\xda\xff\xffx"),
        (65536, b"\xdb\x00\x01\x00\x00x"),
    ] {
        let body = format!(
            "local s = cmsgpack.pack(string.rep('x', {len})) return {{#s, s:sub(1, {})}}",
            head.len()
        );
        assert_eq!(
            eval(&body),
            Reply::Array(vec![Reply::Int((len + head.len() - 1) as i64), b(head)]),
            "{len}"
        );
    }
    assert_eq!(
        eval(
            "local t = {} for k in pairs(cmsgpack) do t[#t+1] = k end table.sort(t) return table.concat(t, ' ')"
        ),
        bulk("_COPYRIGHT _DESCRIPTION _NAME _VERSION pack unpack unpack_limit unpack_one")
    );
    // Each argument takes stack slots: 4000 fit, then tables need more.
    assert_eq!(
        eval(
            "local a = {} for i = 1, 3999 do a[i] = 1 end a[3999] = {1} return #cmsgpack.pack(unpack(a))"
        ),
        Reply::Int(4000)
    );
    for (body, msg) in [
        (
            "return cmsgpack.pack()",
            "bad argument #0 to 'pack' (MessagePack pack needs input.)",
        ),
        (
            "local a = {} for i = 1, 4001 do a[i] = 1 end return cmsgpack.pack(unpack(a))",
            "bad argument #0 to 'pack' (Too many arguments for MessagePack pack.)",
        ),
        (
            "local a = {} for i = 1, 4000 do a[i] = 1 end a[4000] = {} return cmsgpack.pack(unpack(a))",
            "stack overflow (in function table_is_an_array)",
        ),
        (
            "local a = {} for i = 1, 3999 do a[i] = 1 end a[3999] = {x=1} return cmsgpack.pack(unpack(a))",
            "stack overflow (in function mp_encode_lua_table_as_map)",
        ),
        ("cmsgpack.pack = 1", "Attempt to modify a readonly table"),
    ] {
        assert_eq!(
            err_of(body),
            format!("ERR user_script:1: {msg} script: <sha>, on @user_script:1."),
            "{body}"
        );
    }
}

#[test]
fn cmsgpack_unpack() {
    let ints = |v: &[i64]| Reply::Array(v.iter().map(|&n| Reply::Int(n)).collect());
    for (body, out) in [
        (
            "return {cmsgpack.unpack(cmsgpack.pack(-33, -32, -1, 0, 127, 128, 255, 256, 65535, 65536, 2^32-1, 2^32))}",
            ints(&[
                -33, -32, -1, 0, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296,
            ]),
        ),
        (
            "return {cmsgpack.unpack(cmsgpack.pack(-128, -129, -32768, -32769, -2^31, -2^31-1, 2^53))}",
            ints(&[
                -128,
                -129,
                -32768,
                -32769,
                -2147483648,
                -2147483649,
                1 << 53,
            ]),
        ),
        // uint64 goes through a signed integer.
        (
            "return {cmsgpack.unpack('\\207\\255\\255\\255\\255\\255\\255\\255\\255\\209\\128\\1')}",
            ints(&[-1, -32767]),
        ),
        (
            "return {tostring(cmsgpack.unpack('\\207\\128\\0\\0\\0\\0\\0\\0\\1')), tostring(cmsgpack.unpack('\\202\\63\\192\\0\\0')), tostring(cmsgpack.unpack('\\203\\63\\185\\153\\153\\153\\153\\153\\154'))}",
            Reply::Array(vec![bulk("-9.2233720368548e+18"), bulk("1.5"), bulk("0.1")]),
        ),
        (
            "return {cmsgpack.unpack(cmsgpack.pack(1, 'a', {1, 2}, true, false))}",
            Reply::Array(vec![
                Reply::Int(1),
                bulk("a"),
                ints(&[1, 2]),
                Reply::Int(1),
                Reply::Nil,
            ]),
        ),
        (
            "return cmsgpack.unpack(cmsgpack.pack({a={1,2,{b='c'}}})).a[3].b",
            bulk("c"),
        ),
        (
            "local t = cmsgpack.unpack(cmsgpack.pack({[1]=1,[3]=3,x='y'})) return {t[1], t[3], t.x}",
            Reply::Array(vec![Reply::Int(1), Reply::Int(3), bulk("y")]),
        ),
        (
            "return #cmsgpack.unpack(cmsgpack.pack(string.rep('y', 300)))",
            Reply::Int(300),
        ),
        (
            "return {cmsgpack.unpack('\\217\\3abc\\218\\0\\1d\\219\\0\\0\\0\\1e\\220\\0\\1\\1\\221\\0\\0\\0\\1\\2')}",
            Reply::Array(vec![
                bulk("abc"),
                bulk("d"),
                bulk("e"),
                ints(&[1]),
                ints(&[2]),
            ]),
        ),
        (
            "return {cmsgpack.unpack('\\222\\0\\1\\1\\2')[1], cmsgpack.unpack('\\223\\0\\0\\0\\1\\1\\3')[1]}",
            ints(&[2, 3]),
        ),
        // Nil array items leave holes; a nil map value drops the pair.
        (
            "local t = cmsgpack.unpack('\\146\\192\\1') return {t[1] == nil, t[2], next(cmsgpack.unpack('\\129\\1\\192')) == nil}",
            Reply::Array(vec![Reply::Int(1), Reply::Int(1), Reply::Int(1)]),
        ),
        ("return select('#', cmsgpack.unpack(''))", Reply::Int(0)),
        // Numbers are taken as strings; extra arguments are ignored.
        ("return {cmsgpack.unpack(5)}", ints(&[53])),
        ("return {cmsgpack.unpack('a', 'extra')}", ints(&[97])),
        // unpack_one and unpack_limit return the next offset first, -1 at
        // the end.
        (
            "return {cmsgpack.unpack_one(cmsgpack.pack(1,2,3))}",
            ints(&[1, 1]),
        ),
        (
            "return {cmsgpack.unpack_one(cmsgpack.pack(1,2,3), 1)}",
            ints(&[2, 2]),
        ),
        (
            "return {cmsgpack.unpack_one(cmsgpack.pack(1,2,3), 2)}",
            ints(&[-1, 3]),
        ),
        (
            "return {cmsgpack.unpack_one(cmsgpack.pack(1,2,3), 3)}",
            ints(&[-1]),
        ),
        (
            "return {cmsgpack.unpack_one(cmsgpack.pack(1,2,3), 1.9)}",
            ints(&[2, 2]),
        ),
        ("return {cmsgpack.unpack_one('')}", ints(&[-1])),
        ("return {cmsgpack.unpack_one('\\1\\193')}", ints(&[1, 1])),
        (
            "return {cmsgpack.unpack_limit(cmsgpack.pack(1,2,3), 2)}",
            ints(&[2, 1, 2]),
        ),
        (
            "return {cmsgpack.unpack_limit(cmsgpack.pack(1,2,3), 5, 1)}",
            ints(&[-1, 2, 3]),
        ),
        // A limit and offset of 0 decodes everything, without an offset.
        (
            "return {cmsgpack.unpack_limit(cmsgpack.pack(1,2,3), 0)}",
            ints(&[1, 2, 3]),
        ),
        (
            "return {cmsgpack.unpack_limit(cmsgpack.pack(1,2,3), 0, 1)}",
            ints(&[1]),
        ),
        (
            "return {cmsgpack.unpack_limit('abc', 2, 0, 'extra')}",
            ints(&[2, 97, 98]),
        ),
        // Values are pushed on the Lua stack, which ends at 8000 slots.
        (
            "return #{cmsgpack.unpack(string.rep('\\0', 7999))}",
            Reply::Int(7999),
        ),
        (
            "return #{cmsgpack.unpack_limit(string.rep('\\0', 8000), 7998)}",
            Reply::Int(7999),
        ),
        (
            "return type(cmsgpack.unpack(string.rep('\\145', 3999) .. '\\0'))",
            bulk("table"),
        ),
        (
            "return type(cmsgpack.unpack(string.rep('\\129\\0', 3999) .. '\\0'))",
            bulk("table"),
        ),
    ] {
        assert_eq!(eval(body), out, "{body}");
    }
    let sha_err = |body: &str, msg: &str| {
        assert_eq!(
            err_of(body),
            format!("ERR {msg} script: <sha>, on @user_script:1."),
            "{body}"
        );
    };
    for (body, msg) in [
        (
            "return cmsgpack.unpack('\\193')",
            "Bad data format in input.",
        ),
        (
            "return cmsgpack.unpack('\\196\\1a')",
            "Bad data format in input.",
        ),
        (
            "return cmsgpack.unpack('\\199\\1\\1a')",
            "Bad data format in input.",
        ),
        (
            "return cmsgpack.unpack('\\212\\1\\1')",
            "Bad data format in input.",
        ),
        (
            "return cmsgpack.unpack('\\1\\193')",
            "Bad data format in input.",
        ),
        (
            "return cmsgpack.unpack('\\146\\1')",
            "Missing bytes in input.",
        ),
        (
            "return cmsgpack.unpack('\\130\\1\\2\\3')",
            "Missing bytes in input.",
        ),
        (
            "return cmsgpack.unpack('\\205\\1')",
            "Missing bytes in input.",
        ),
        (
            "return cmsgpack.unpack('\\163ab')",
            "Missing bytes in input.",
        ),
        (
            "return cmsgpack.unpack('\\217\\3ab')",
            "Missing bytes in input.",
        ),
        (
            "return cmsgpack.unpack('\\219\\0\\0\\0\\4abc')",
            "Missing bytes in input.",
        ),
        (
            "return cmsgpack.unpack()",
            "bad argument #1 to 'unpack' (string expected, got no value)",
        ),
        (
            "return cmsgpack.unpack({})",
            "bad argument #1 to 'unpack' (string expected, got table)",
        ),
        (
            "return cmsgpack.unpack_one('ab', 'x')",
            "bad argument #2 to 'unpack_one' (number expected, got string)",
        ),
        (
            "return cmsgpack.unpack_limit('ab')",
            "bad argument #2 to 'unpack_limit' (number expected, got no value)",
        ),
        (
            "return cmsgpack.unpack_limit(nil, 1)",
            "bad argument #1 to 'unpack_limit' (string expected, got nil)",
        ),
        (
            "return cmsgpack.unpack_one('abc', 4)",
            "Start offset 4 greater than input length 3.",
        ),
        (
            "return cmsgpack.unpack_one('abc', 2^40)",
            "Start offset 0 greater than input length 3.",
        ),
        // The C module prints the input length as the limit.
        (
            "return cmsgpack.unpack_one('abc', -1)",
            "Invalid request to unpack with offset of -1 and limit of 3.",
        ),
        (
            "return cmsgpack.unpack_limit('abc', -1, 5)",
            "Invalid request to unpack with offset of 5 and limit of 3.",
        ),
        (
            "return cmsgpack.unpack(string.rep('\\0', 8000))",
            "stack overflow (too many return values at once; use unpack_one or unpack_limit instead.)",
        ),
        (
            "return cmsgpack.unpack_limit(string.rep('\\0', 8000), 7999)",
            "stack overflow (in function mp_unpack_full)",
        ),
        (
            "return cmsgpack.unpack(string.rep('\\145', 4000) .. '\\0')",
            "stack overflow (in function mp_decode_to_lua_array)",
        ),
        (
            "return cmsgpack.unpack(string.rep('\\129', 100000) .. '\\0')",
            "stack overflow (too many return values at once; use unpack_one or unpack_limit instead.)",
        ),
    ] {
        sha_err(body, &format!("user_script:1: {msg}"));
    }
    // Lua's own errors for map keys, without a position.
    sha_err(
        "return cmsgpack.unpack('\\129\\192\\1')",
        "table index is nil",
    );
    sha_err(
        "return cmsgpack.unpack('\\129\\203\\255\\248\\0\\0\\0\\0\\0\\0\\1')",
        "table index is NaN",
    );
}

fn host_with(replies: &[(&str, Reply)]) -> FakeHost {
    let mut h = FakeHost::default();
    for (name, r) in replies {
        h.replies.insert(name.as_bytes().to_vec(), r.clone());
    }
    h
}

#[test]
fn redis_call_and_conversions() {
    let mut e = Engine::new();
    let mut h = host_with(&[
        (
            "incr",
            Reply::StaticError("ERR value is not an integer or out of range"),
        ),
        ("set", Reply::Simple("OK")),
        ("mget", Reply::Array(vec![bulk("a"), Reply::Nil])),
        ("hgetall", Reply::Map(vec![(bulk("f"), bulk("v"))])),
        ("smembers", Reply::Set(vec![bulk("m")])),
        ("zscore", Reply::Double(1.5)),
        ("exists", Reply::Bool(true)),
    ]);
    let body = "return redis.call('incr','s')";
    let sha = api::sha1_hex(body.as_bytes());
    assert_eq!(
        err(eval_with(&mut e, &mut h, body)),
        format!("ERR value is not an integer or out of range script: {sha}, on @user_script:1.")
    );
    assert_eq!(
        eval_with(&mut e, &mut h, "return redis.pcall('incr','s')"),
        Reply::Error("ERR value is not an integer or out of range".into())
    );
    assert_eq!(
        eval_with(&mut e, &mut h, "return {pcall(redis.call,'incr','s')}"),
        Reply::Array(vec![
            Reply::Nil,
            bulk("ERR value is not an integer or out of range")
        ])
    );
    assert_eq!(
        eval_with(
            &mut e,
            &mut h,
            "local t = redis.pcall('incr','s') local n = {} for k in pairs(t) do n[#n+1] = k end table.sort(n) return n"
        ),
        Reply::Array(vec![bulk("err"), bulk("ignore_error_stats_update")])
    );
    // Numbers are sent with %.17g.
    h.calls.clear();
    eval_with(
        &mut e,
        &mut h,
        "return redis.call('set', 'k', 0.1, 1e20, 3)",
    );
    assert_eq!(
        h.calls[0],
        vec![
            bulk_bytes("set"),
            bulk_bytes("k"),
            bulk_bytes("0.10000000000000001"),
            bulk_bytes("1e+20"),
            bulk_bytes("3")
        ]
    );
    // RESP2 view of replies.
    assert_eq!(
        eval_with(
            &mut e,
            &mut h,
            "return {redis.call('set','k','v').ok, redis.call('mget','a','b')[2] == false, redis.call('hgetall','h')[2], redis.call('smembers','s')[1], redis.call('zscore','z','m'), redis.call('exists','k')}"
        ),
        Reply::Array(vec![
            bulk("OK"),
            Reply::Int(1),
            bulk("v"),
            bulk("m"),
            bulk("1.5"),
            Reply::Int(1)
        ])
    );
    // RESP3 view after redis.setresp(3).
    assert_eq!(
        eval_with(
            &mut e,
            &mut h,
            "redis.setresp(3) return {redis.call('mget','a','b')[2] == nil, redis.call('hgetall','h').map.f, next(redis.call('smembers','s').set), redis.call('zscore','z','m').double, redis.call('exists','k') == true}"
        ),
        Reply::Array(vec![
            Reply::Bool(true),
            bulk("v"),
            bulk("m"),
            Reply::Int(1),
            Reply::Bool(true)
        ])
    );
    // Return conversions of RESP3 types.
    assert_eq!(
        eval_with(
            &mut e,
            &mut h,
            "redis.setresp(3); return {true,false,{double=3.5},{map={a=1}},{set={x=true}}, {big_number='123'}, {verbatim_string={format='txt',string='hi'}}}"
        ),
        Reply::Array(vec![
            Reply::Bool(true),
            Reply::Bool(false),
            Reply::Double(3.5),
            Reply::Map(vec![(bulk("a"), Reply::Int(1))]),
            Reply::Set(vec![bulk("x")]),
            bulk("123"),
            Reply::Verbatim("hi".into()),
        ])
    );
    // setresp is reset for each run.
    assert_eq!(
        eval_with(&mut e, &mut h, "return {true,false}"),
        Reply::Array(vec![Reply::Int(1), Reply::Nil])
    );
    assert!(
        matches!(eval_with(&mut e, &mut h, "return {double=0/0}"), Reply::DoubleText(s) if s == "-nan")
    );
}

fn bulk_bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn redis_api_errors() {
    for (body, msg) in [
        (
            "return redis.call()",
            "ERR Please specify at least one argument for this redis lib call",
        ),
        (
            "return redis.call({})",
            "ERR Lua redis lib command arguments must be strings or integers",
        ),
        (
            "return redis.call('set','k',true)",
            "ERR Lua redis lib command arguments must be strings or integers",
        ),
        ("return redis.sha1hex()", "ERR wrong number of arguments"),
        (
            "return redis.log()",
            "ERR redis.log() requires two arguments or more.",
        ),
        (
            "return redis.log('x', 'y')",
            "ERR First argument must be a number (log level).",
        ),
        ("return redis.log(99, 'y')", "ERR Invalid debug level."),
        (
            "return redis.setresp()",
            "ERR redis.setresp() requires one argument.",
        ),
        (
            "return redis.setresp(4)",
            "ERR RESP version must be 2 or 3.",
        ),
        (
            "return redis.set_repl()",
            "ERR redis.set_repl() requires two arguments.",
        ),
        (
            "return redis.set_repl(7)",
            "ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
        ),
        (
            "return redis.acl_check_cmd('nosuch')",
            "ERR Invalid command passed to redis.acl_check_cmd()",
        ),
        (
            "return math.random(1,2,3)",
            "ERR user_script:1: wrong number of arguments",
        ),
    ] {
        assert_eq!(
            err_of(body),
            format!("{msg} script: <sha>, on @user_script:1."),
            "{body}"
        );
    }
    assert_eq!(
        err(eval("return redis.pcall({})")),
        "ERR Lua redis lib command arguments must be strings or integers"
    );
    assert_eq!(
        err(eval("return redis.error_reply('My Error')")),
        "My Error"
    );
    assert_eq!(
        err(eval("return redis.error_reply('NOSPACE')")),
        "ERR NOSPACE"
    );
    assert_eq!(err(eval("return redis.error_reply('')")), "ERR ");
    assert_eq!(
        err(eval("return redis.error_reply(1)")),
        "ERR wrong number or type of arguments"
    );
    assert_eq!(
        eval("return redis.status_reply('FINE')"),
        Reply::Status("FINE".into())
    );
    assert_eq!(
        eval("return redis.sha1hex('')"),
        bulk("da39a3ee5e6b4b0d3255bfef95601890afd80709")
    );
    assert_eq!(
        eval("return redis.sha1hex(1)"),
        bulk("356a192b7913b04c54574d18c28d46e6395428ab")
    );
    assert_eq!(eval("return redis.acl_check_cmd('get','x')"), Reply::Int(1));
    assert_eq!(
        eval("return {redis.replicate_commands(), redis.breakpoint()}"),
        Reply::Array(vec![Reply::Int(1), Reply::Nil])
    );
    let mut h = FakeHost::default();
    eval_with(
        &mut Engine::new(),
        &mut h,
        "redis.log(redis.LOG_WARNING, 'a', 1, nil, {}, 'b')",
    );
    assert_eq!(h.logs, vec![(3, "a 1 b".to_string())]);
}

#[test]
fn math_random_sequence() {
    // The generator is shared and never reseeded per run, as in Redis 7.0.
    let mut e = Engine::new();
    let mut h = FakeHost::default();
    let body = "return {tostring(math.random()), math.random(100), math.random(5,10)}";
    assert_eq!(
        eval_with(&mut e, &mut h, body),
        Reply::Array(vec![
            bulk("0.39646477363839"),
            Reply::Int(85),
            Reply::Int(7)
        ])
    );
    assert_eq!(
        eval_with(&mut e, &mut h, body),
        Reply::Array(vec![
            bulk("0.44658343468168"),
            Reply::Int(32),
            Reply::Int(10)
        ])
    );
    assert_eq!(
        eval_with(
            &mut e,
            &mut h,
            "math.randomseed(42) return {tostring(math.random()), math.random(100)}"
        ),
        Reply::Array(vec![bulk("0.74452500033403"), Reply::Int(35)])
    );
}

#[test]
fn kill_and_deep_recursion() {
    let mut e = Engine::new();
    let mut h = FakeHost {
        kill_after: Some(3),
        ..Default::default()
    };
    let body = "local n = 0 while true do local ok, e = pcall(function() while true do end end) n = n + 1 end";
    let sha = api::sha1_hex(body.as_bytes());
    assert_eq!(
        err(eval_with(&mut e, &mut h, body)),
        format!("ERR Script killed by user with SCRIPT KILL... script: {sha}, on @user_script:1.")
    );
    // The engine works again afterwards.
    h.kill_after = None;
    assert_eq!(eval_with(&mut e, &mut h, "return 1"), Reply::Int(1));
    // Too deeply nested replies end with Redis's error element (at a
    // smaller depth than Redis, see convert::MAX_DEPTH).
    let r = eval_with(
        &mut e,
        &mut h,
        "local t = {} local c = t for i=1,3000 do c[1] = {} c = c[1] end return t",
    );
    let mut depth = 0;
    let mut cur = &r;
    while let Reply::Array(items) = cur {
        depth += 1;
        cur = &items[0];
    }
    assert!(matches!(
        cur,
        Reply::StaticError("ERR reached lua stack limit")
    ));
    assert_eq!(depth, 1001);
}

#[test]
fn script_cache_and_shebang() {
    let mut e = Engine::new();
    let sha = e.load_script(b"return 1").unwrap();
    assert_eq!(sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    assert!(e.has_script(&sha.to_uppercase()));
    assert_eq!(
        e.script_flags(&sha),
        Some(ScriptFlags {
            eval_compat: true,
            ..Default::default()
        })
    );
    let sha2 = e
        .load_script(b"#!lua flags=no-writes,allow-oom\nreturn 2")
        .unwrap();
    assert_eq!(
        e.script_flags(&sha2),
        Some(ScriptFlags {
            no_writes: true,
            allow_oom: true,
            ..Default::default()
        })
    );
    let sha3 = e.load_script(b"#!lua  flags=\nreturn 2").unwrap();
    assert_eq!(e.script_flags(&sha3), Some(ScriptFlags::default()));
    for (body, msg) in [
        (
            "#!lua flags=no-writes,,allow-oom\nreturn 1",
            "ERR Unexpected flag in script shebang: ",
        ),
        (
            "#!lua flags=NO-WRITES\nreturn 1",
            "ERR Unexpected flag in script shebang: NO-WRITES",
        ),
        (
            "#!lua foo=bar\nreturn 1",
            "ERR Unknown lua shebang option: foo=bar",
        ),
        (
            "#!luajit\nreturn 1",
            "ERR Unexpected engine in script shebang: #!luajit",
        ),
        (
            "#! lua\nreturn 1",
            "ERR Unexpected engine in script shebang: #!",
        ),
        ("#!lua", "ERR Invalid script shebang"),
    ] {
        assert_eq!(err(e.load_script(body.as_bytes()).unwrap_err()), msg);
    }
    e.flush_scripts();
    assert!(!e.has_script(&sha));
    let mut h = FakeHost::default();
    assert_eq!(
        err(e.run_script(&sha, &[], &[], &mut h)),
        "NOSCRIPT No matching script. Please use EVAL."
    );
    let sha = e
        .load_script(b"return {KEYS[1], ARGV[1], #KEYS, #ARGV}")
        .unwrap();
    assert_eq!(
        e.run_script(
            &sha,
            &[bulk_bytes("k")],
            &[bulk_bytes("a"), bulk_bytes("b")],
            &mut h
        ),
        Reply::Array(vec![bulk("k"), bulk("a"), Reply::Int(1), Reply::Int(2)])
    );
}

fn lib(name: &str, body: &str) -> String {
    format!("#!lua name={name}\n{body}")
}

#[test]
fn function_libraries() {
    let mut e = Engine::new();
    let mut h = host_with(&[(
        "incr",
        Reply::StaticError("ERR value is not an integer or out of range"),
    )]);
    assert_eq!(
        e.function_load(
            lib(
                "CaseLib",
                "redis.register_function('Foo', function(keys, args) return {keys[1], args[1]} end)"
            )
            .as_bytes(),
            false
        ),
        Ok("CaseLib".to_string())
    );
    assert_eq!(
        e.run_function("foo", &[bulk_bytes("k")], &[bulk_bytes("a")], &mut h),
        Reply::Array(vec![bulk("k"), bulk("a")])
    );
    assert_eq!(e.function_library("FOO"), Some("CaseLib"));
    e.function_load(
        lib(
            "lib2",
            "redis.register_function('f2', function() return KEYS end)",
        )
        .as_bytes(),
        false,
    )
    .unwrap();
    assert_eq!(
        err(e.run_function("f2", &[], &[], &mut h)),
        "ERR user_function:2: Script attempted to access nonexistent global variable 'KEYS' script: f2, on @user_function:2."
    );
    e.function_load(
        lib(
            "lib3",
            "local x = 0\nredis.register_function('f3', function() x = x + 1 return x end)",
        )
        .as_bytes(),
        false,
    )
    .unwrap();
    assert_eq!(e.run_function("f3", &[], &[], &mut h), Reply::Int(1));
    assert_eq!(e.run_function("f3", &[], &[], &mut h), Reply::Int(2));
    e.function_load(
        lib(
            "lib4",
            "redis.register_function('f4', function() return redis.call('incr','s') end)",
        )
        .as_bytes(),
        false,
    )
    .unwrap();
    assert_eq!(
        err(e.run_function("f4", &[], &[], &mut h)),
        "ERR value is not an integer or out of range script: f4, on @user_function:2."
    );
    e.function_load(lib("lib6", "redis.register_function('f6', function() return redis.register_function('a', function() end) end)").as_bytes(), false).unwrap();
    assert_eq!(
        err(e.run_function("f6", &[], &[], &mut h)),
        "ERR user_function:2: attempt to call field 'register_function' (a nil value) script: f6, on @user_function:2."
    );
    e.function_load(
        lib("z", "redis.register_function{function_name='g', callback=function() return 1 end, flags={'no-writes','allow-oom','allow-stale','no-cluster','allow-cross-slot-keys'}, description='desc'}").as_bytes(),
        false,
    )
    .unwrap();
    let info = e.libraries().into_iter().find(|l| l.name == "z").unwrap();
    assert_eq!(info.functions[0].description, Some(bulk_bytes("desc")));
    assert_eq!(info.functions[0].flags.names(), FLAG_NAMES.to_vec());
    assert_eq!(
        err(e.run_function("nosuch", &[], &[], &mut h)),
        "ERR Function not found"
    );
    assert_eq!(e.function_delete("z"), Ok(()));
    assert_eq!(
        e.function_delete("z"),
        Err(Reply::StaticError("ERR Library not found"))
    );
    // Library code sees cmsgpack only when its functions run.
    assert_eq!(
        e.function_load(lib("mp", "return cmsgpack.pack(1)").as_bytes(), false),
        Err(Reply::Error(
            "ERR Error registering functions: ERR user_function:2: Script attempted to access nonexistent global variable 'cmsgpack'".into()
        ))
    );
    e.function_load(
        lib(
            "mp",
            "redis.register_function('mp', function() return cmsgpack.pack({1,'a'}) end)",
        )
        .as_bytes(),
        false,
    )
    .unwrap();
    assert_eq!(
        e.run_function("mp", &[], &[], &mut h),
        Reply::Bulk(Bytes::from_static(b"\x92\x01\xa1a"))
    );
    e.function_flush();
    assert!(e.libraries().is_empty());
}

#[test]
fn function_load_errors() {
    let mut e = Engine::new();
    e.function_load(
        lib("x", "redis.register_function('f', function() return 1 end)").as_bytes(),
        false,
    )
    .unwrap();
    let reg = "Error registering functions: ERR ";
    for (code, msg) in [
        (
            "return 1".to_string(),
            "ERR Missing library metadata".to_string(),
        ),
        ("#!lua".into(), "ERR Invalid library metadata".into()),
        (
            "#!lua name=x foo=bar\nreturn 1".into(),
            "ERR Invalid metadata value given: foo=bar".into(),
        ),
        (
            "#!lu name=y\nreturn 1".into(),
            "ERR Engine 'lu' not found".into(),
        ),
        (
            "#!lua\nreturn 1".into(),
            "ERR Library name was not given".into(),
        ),
        (
            "#!lua name=z3 name=z4\nreturn 1".into(),
            "ERR Invalid metadata value, name argument was given multiple times".into(),
        ),
        ("#!lua  name=\nreturn 1".into(), format!("ERR {BAD_NAME}")),
        (
            lib("x", "redis.register_function('f', function() return 1 end)"),
            "ERR Library 'x' already exists".into(),
        ),
        (
            lib("y", "redis.register_function('F', function() return 1 end)"),
            "ERR Function F already exists".into(),
        ),
        (
            lib(
                "y",
                "redis.register_function('f-1', function() return 1 end)",
            ),
            format!("ERR {reg}{BAD_NAME}"),
        ),
        (
            lib(
                "y",
                "redis.register_function('g', function() end)\nredis.register_function('g', function() end)",
            ),
            format!("ERR {reg}Function already exists in the library"),
        ),
        (
            lib("y", "redis.register_function('g')"),
            format!(
                "ERR {reg}calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments)."
            ),
        ),
        (
            lib("y", "redis.register_function()"),
            format!("ERR {reg}wrong number of arguments to redis.register_function"),
        ),
        (
            lib("y", "redis.register_function('g', 2)"),
            format!("ERR {reg}second argument to redis.register_function must be a function"),
        ),
        (
            lib(
                "y",
                "redis.register_function{function_name='g', callback=function() end, flags={'no-writes','bad'}}",
            ),
            format!("ERR {reg}unknown flag given"),
        ),
        (
            lib(
                "y",
                "redis.register_function{function_name='g', callback=function() end, flags='no-writes'}",
            ),
            format!(
                "ERR {reg}flags argument to redis.register_function must be a table representing function flags"
            ),
        ),
        (
            lib(
                "y",
                "redis.register_function{function_name='g', callback=function() end, foo=1}",
            ),
            format!("ERR {reg}unknown argument given to redis.register_function"),
        ),
        (
            lib("y", "redis.register_function{function_name='g'}"),
            format!("ERR {reg}redis.register_function must get a callback argument"),
        ),
        (
            lib("y", "redis.register_function{}"),
            format!("ERR {reg}redis.register_function must get a function name argument"),
        ),
        (
            lib(
                "y",
                "redis.register_function{function_name='g', callback=function() end, description={}}",
            ),
            format!(
                "ERR {reg}description argument given to redis.register_function must be a string"
            ),
        ),
        (
            lib("y", "redis.call('ping')"),
            format!(
                "ERR {reg}user_function:2: Script attempted to access nonexistent global variable 'call'"
            ),
        ),
        (
            lib("y", "return math.random()"),
            format!(
                "ERR {reg}user_function:2: Script attempted to access nonexistent global variable 'math'"
            ),
        ),
        (
            lib("y", "x = 1"),
            format!("ERR {reg}user_function:2: Attempt to modify a readonly table"),
        ),
        (
            lib("y", "local a ="),
            "ERR Error compiling function: user_function:2: unexpected symbol near '<eof>'".into(),
        ),
        (
            lib("y", "return redis.log(redis.LOG_WARNING, 'hi')"),
            "ERR No functions registered".into(),
        ),
        (
            lib("y", "while true do end"),
            format!("ERR {reg}FUNCTION LOAD timeout"),
        ),
    ] {
        assert_eq!(
            err(e.function_load(code.as_bytes(), false).unwrap_err()),
            msg,
            "{code}"
        );
    }
    // Failed loads leave nothing behind; REPLACE swaps the library.
    assert_eq!(e.libraries().len(), 1);
    assert_eq!(
        e.function_load(
            lib("x", "redis.register_function('f', function() return 2 end)").as_bytes(),
            true
        ),
        Ok("x".into())
    );
    assert_eq!(
        e.run_function("f", &[], &[], &mut FakeHost::default()),
        Reply::Int(2)
    );
    // A number is accepted as a function name, as Redis reads it as a string.
    assert_eq!(
        e.function_load(
            lib(
                "n",
                "redis.register_function{function_name=1, callback=function() end}"
            )
            .as_bytes(),
            false
        ),
        Ok("n".into())
    );
}
