//! Server commands: COMMAND, INFO, CONFIG, DBSIZE, FLUSHDB, FLUSHALL...

use super::{CommandSpec, Handler, NO_KEYS, flags::*};
use crate::server::client::Client;
use crate::server::resp::{OK, Reply};
use crate::shard::run_on_all;
use bytes::Bytes;
use futures::future::LocalBoxFuture;

/// The server family's commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "flushall",
        -1,
        WRITE,
        NO_KEYS,
        "server",
        "1.0.0",
        "Removes all keys from all databases.",
        Handler::Async(flushall),
    ),
    CommandSpec::new(
        "flushdb",
        -1,
        WRITE,
        NO_KEYS,
        "server",
        "1.0.0",
        "Remove all keys from the current database.",
        Handler::Async(flushdb),
    ),
];

fn flushall(c: &mut Client, _args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let tx = c.lock_all().await;
        run_on_all(c.global, |s| {
            for db in s.dbs.iter_mut() {
                db.clear();
            }
        })
        .await;
        drop(tx);
        OK
    })
}

fn flushdb(c: &mut Client, _args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let db = c.db;
        let tx = c.lock_all().await;
        run_on_all(c.global, move |s| {
            s.dbs[db].clear();
        })
        .await;
        drop(tx);
        OK
    })
}
