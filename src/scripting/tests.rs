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
