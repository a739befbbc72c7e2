//! Key routing: key → hash slot → shard.
//!
//! A key's slot is `CRC16(key) mod 16384`, as in Redis Cluster, where only the
//! part inside the first non-empty `{...}` counts when present, so
//! `{user:1}:name` and `{user:1}:email` share a slot. A [`SlotTable`] maps the
//! 16384 slots to shards; the same table will drive node-level routing.

/// Number of hash slots.
pub const SLOTS: usize = 16384;

/// CRC16-CCITT (XModem), the checksum Redis Cluster uses for slots.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The part of a key that is hashed: the first non-empty `{...}` tag, or the
/// whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&c| c == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&c| c == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The hash slot of a key.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS as u16
}

/// Maps each slot to the shard that owns it.
#[derive(Clone, Debug)]
pub struct SlotTable {
    owners: Vec<u16>,
    shards: usize,
}

impl SlotTable {
    /// Splits the slots into `shards` contiguous ranges of near-equal size.
    pub fn contiguous(shards: usize) -> SlotTable {
        assert!(shards > 0 && shards <= SLOTS);
        let owners = (0..SLOTS).map(|s| (s * shards / SLOTS) as u16).collect();
        SlotTable { owners, shards }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The shard that owns `slot`.
    #[inline]
    pub fn owner(&self, slot: u16) -> usize {
        self.owners[slot as usize] as usize
    }

    /// The shard that owns `key`.
    #[inline]
    pub fn shard_of(&self, key: &[u8]) -> usize {
        if self.shards == 1 {
            0
        } else {
            self.owner(key_slot(key))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from CLUSTER KEYSLOT on redis-server.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
        assert_eq!(key_slot(b"foo{{bar}}zap"), crc16(b"{bar") % 16384);
    }

    #[test]
    fn table_covers_all_shards() {
        let t = SlotTable::contiguous(4);
        assert_eq!(t.owner(0), 0);
        assert_eq!(t.owner(16383), 3);
    }
}
