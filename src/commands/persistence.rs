//! SAVE and BGSAVE (LASTSAVE and SHUTDOWN live with the server commands).
//! The work is in [`crate::persistence::save`].

use super::{CommandSpec, Handler, NO_KEYS, err, flags::*, is};
use crate::persistence::save::{self, SaveError};
use crate::reply::{OK, Reply};
use crate::transaction::Client;
use bytes::Bytes;
use futures::future::LocalBoxFuture;

/// The persistence commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new(
        "bgsave",
        -1,
        ADMIN | NOSCRIPT,
        NO_KEYS,
        "server",
        "1.0.0",
        "Asynchronously save the dataset to disk",
        Handler::Async(bgsave),
    )
    .acl(&["dangerous"]),
    CommandSpec::new(
        "bgrewriteaof",
        1,
        ADMIN | NOSCRIPT,
        NO_KEYS,
        "server",
        "1.0.0",
        "Asynchronously rewrite the append-only file",
        Handler::Async(bgrewriteaof),
    )
    .acl(&["dangerous"]),
    CommandSpec::new(
        "save",
        1,
        ADMIN | NOSCRIPT | NO_MULTI,
        NO_KEYS,
        "server",
        "1.0.0",
        "Synchronously save the dataset to disk",
        Handler::Async(save_cmd),
    )
    .acl(&["dangerous"]),
];

/// BGSAVE [SCHEDULE]: replies once the snapshot is taken.
fn bgsave(c: &mut Client, args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let schedule = match args.len() {
            1 => false,
            2 if is(&args[1], "schedule") => true,
            _ => return err::SYNTAX,
        };
        if c.in_transaction() {
            // The EXEC holds the shards a snapshot must lock: snapshot once
            // it ends (what BGSAVE ... EXEC would save in Redis, except for
            // the commands queued after BGSAVE).
            if c.global
                .rdb
                .bgsave_in_progress
                .load(std::sync::atomic::Ordering::Acquire)
            {
                return Reply::StaticError("ERR Background save already in progress");
            }
            let global = c.global;
            glommio::spawn_local(async move {
                let _ = save::bgsave(global, true).await;
            })
            .detach();
            return Reply::Simple("Background saving started");
        }
        match save::bgsave(c.global, schedule).await {
            Ok(msg) => Reply::Status(msg.into()),
            Err(e) => Reply::StaticError(e),
        }
    })
}

/// SAVE: replies once the file is on disk. Other clients keep being served
/// while it runs (the snapshot is of the moment SAVE began).
fn save_cmd(c: &mut Client, _args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        loop {
            return match save::save(c.global, false).await {
                Ok(()) => OK,
                Err(SaveError::BgsaveInProgress) => {
                    Reply::StaticError("ERR Background save already in progress")
                }
                // An AOF rewrite holds the snapshot: save right after it.
                Err(SaveError::OtherSnapshot) => {
                    glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
                Err(SaveError::Failed(_)) => Reply::StaticError("ERR"),
            };
        }
    })
}

/// BGREWRITEAOF: compacts the AOF into a new base in the background; waits
/// for a running BGSAVE first ("scheduled"), as Redis does.
fn bgrewriteaof(c: &mut Client, _args: Vec<Bytes>) -> LocalBoxFuture<'_, Reply> {
    Box::pin(async move {
        let global = c.global;
        if global
            .aof
            .rewrite_in_progress
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Reply::StaticError(
                "ERR Background append only file rewriting already in progress",
            );
        }
        let scheduled = crate::persistence::snapshot::in_progress();
        let enable = global.aof.active.load(std::sync::atomic::Ordering::Acquire);
        glommio::spawn_local(async move {
            let _ = crate::persistence::aof::rewrite(global, enable).await;
        })
        .detach();
        Reply::Status(if scheduled {
            "Background append only file rewriting scheduled".into()
        } else {
            "Background append only file rewriting started".into()
        })
    })
}
