//! String commands: GET, SET and the rest of the string family.

use super::{CommandSpec, Ctx, Handler, err, flags::*, keys};
use crate::server::client::Client;
use crate::server::resp::{OK, Reply};
use crate::shard::value::Value;
use bytes::Bytes;
use futures::future::LocalBoxFuture;

/// The string family's commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "get",
        2,
        READONLY | FAST,
        keys(1, 1, 1),
        "string",
        "1.0.0",
        "Returns the string value of a key.",
        Handler::Keyed(get),
    ),
    CommandSpec::new(
        "set",
        -3,
        WRITE | DENYOOM,
        keys(1, 1, 1),
        "string",
        "1.0.0",
        "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
        Handler::Keyed(set),
    ),
    CommandSpec::new(
        "mget",
        -2,
        READONLY | FAST,
        keys(1, -1, 1),
        "string",
        "1.0.0",
        "Atomically returns the string values of one or more keys.",
        Handler::Async(mget),
    ),
];

fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (now, touch) = (ctx.now_ms, ctx.touch);
    match ctx.db().lookup(&args[1], now, touch) {
        None => Reply::Nil,
        Some(e) => match e.value.as_string() {
            Some(s) => Reply::Bulk(s.to_bytes()),
            None => err::WRONGTYPE,
        },
    }
}

fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if args.len() != 3 {
        return err::SYNTAX;
    }
    let now = ctx.now_ms;
    ctx.db().set(&args[1], Value::from_bytes(&args[2]), 0, now);
    OK
}

fn mget(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let keys: Vec<Bytes> = args[1..].to_vec();
        let tx = c.lock_keys(&keys).await;
        let mut out = vec![Reply::Nil; keys.len()];
        let groups = c.group_by_shard(&keys);
        let futs = groups.into_iter().map(|(shard, idx)| {
            let ks: Vec<Bytes> = idx.iter().map(|&i| keys[i].clone()).collect();
            let tx = &tx;
            async move {
                let replies = tx
                    .run(shard, move |ctx| {
                        ks.iter()
                            .map(|k| {
                                let (now, touch) = (ctx.now_ms, ctx.touch);
                                match ctx
                                    .db()
                                    .lookup(k, now, touch)
                                    .and_then(|e| e.value.as_string().map(|s| s.to_bytes()))
                                {
                                    Some(b) => Reply::Bulk(b),
                                    None => Reply::Nil,
                                }
                            })
                            .collect::<Vec<_>>()
                    })
                    .await;
                (idx, replies)
            }
        });
        for (idx, replies) in futures::future::join_all(futs).await {
            for (i, r) in idx.into_iter().zip(replies) {
                out[i] = r;
            }
        }
        drop(tx);
        Reply::Array(out)
    })
}
