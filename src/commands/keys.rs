//! Generic key commands: DEL, EXISTS, TYPE, KEYS, SCAN, RENAME...

use super::CommandSpec;

/// The generic family's commands.
pub static COMMANDS: &[CommandSpec] = &[];
