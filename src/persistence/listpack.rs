//! Listpack blobs (Redis's `listpack.c`): the compact encoding of small
//! hashes, sorted sets, sets (7.2) and quicklist nodes inside RDB values.
//!
//! ```text
//! <total-bytes u32 LE> <num-elements u16 LE> <entry> ... <0xFF>
//! entry = <encoding+data> <backlen: length of encoding+data, 1..5 bytes>
//! ```
//!
//! Strings that are canonical integers are stored as integers, exactly as
//! `lpAppend` does, so blobs built here are byte-identical to Redis's.

use super::RdbError;
use crate::parse::parse_i64;

const HDR: usize = 6;
const EOF: u8 = 0xff;
/// Element count stored when the real count does not fit in 16 bits.
const NUMELE_UNKNOWN: usize = u16::MAX as usize;

/// Length of the backlen field for an entry of `l` bytes.
fn backlen_size(l: usize) -> usize {
    match l {
        0..=127 => 1,
        128..16383 => 2,
        16383..2097151 => 3,
        2097151..268435455 => 4,
        _ => 5,
    }
}

fn push_backlen(out: &mut Vec<u8>, l: usize) {
    let l = l as u64;
    match backlen_size(l as usize) {
        1 => out.push(l as u8),
        2 => out.extend_from_slice(&[(l >> 7) as u8, ((l & 127) | 128) as u8]),
        3 => out.extend_from_slice(&[
            (l >> 14) as u8,
            (((l >> 7) & 127) | 128) as u8,
            ((l & 127) | 128) as u8,
        ]),
        4 => out.extend_from_slice(&[
            (l >> 21) as u8,
            (((l >> 14) & 127) | 128) as u8,
            (((l >> 7) & 127) | 128) as u8,
            ((l & 127) | 128) as u8,
        ]),
        _ => out.extend_from_slice(&[
            (l >> 28) as u8,
            (((l >> 21) & 127) | 128) as u8,
            (((l >> 14) & 127) | 128) as u8,
            (((l >> 7) & 127) | 128) as u8,
            ((l & 127) | 128) as u8,
        ]),
    }
}

/// Bytes of the encoding+data part of an integer entry.
fn int_len(v: i64) -> usize {
    match v {
        0..=127 => 1,
        -4096..=4095 => 2,
        -32768..=32767 => 3,
        -8388608..=8388607 => 4,
        -2147483648..=2147483647 => 5,
        _ => 9,
    }
}

/// Bytes of the encoding+data part of a string entry.
fn str_len(n: usize) -> usize {
    match n {
        0..64 => 1 + n,
        64..4096 => 2 + n,
        _ => 5 + n,
    }
}

/// Bytes `s` takes in a listpack, backlen included.
pub fn entry_size(s: &[u8]) -> usize {
    let l = match parse_i64(s) {
        Some(v) => int_len(v),
        None => str_len(s.len()),
    };
    l + backlen_size(l)
}

/// Builds a listpack by appending elements, like `lpAppend`.
pub struct Builder {
    buf: Vec<u8>,
    count: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// An empty listpack.
    pub fn new() -> Builder {
        Builder {
            buf: vec![0; HDR],
            count: 0,
        }
    }

    /// Appends an element, integer-encoded when it is a canonical integer.
    pub fn push(&mut self, s: &[u8]) {
        match parse_i64(s) {
            Some(v) => self.push_int(v),
            None => self.push_str(s),
        }
    }

    /// Appends an integer element.
    pub fn push_int(&mut self, v: i64) {
        let start = self.buf.len();
        let b = &mut self.buf;
        match int_len(v) {
            1 => b.push(v as u8),
            2 => {
                let u = if v < 0 { (1i64 << 13) + v } else { v } as u64;
                b.extend_from_slice(&[((u >> 8) as u8) | 0xc0, u as u8]);
            }
            3 => {
                b.push(0xf1);
                b.extend_from_slice(&(v as i16).to_le_bytes());
            }
            4 => {
                b.push(0xf2);
                b.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
            }
            5 => {
                b.push(0xf3);
                b.extend_from_slice(&(v as i32).to_le_bytes());
            }
            _ => {
                b.push(0xf4);
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        let l = b.len() - start;
        push_backlen(b, l);
        self.count += 1;
    }

    /// Appends a string element verbatim.
    pub fn push_str(&mut self, s: &[u8]) {
        let start = self.buf.len();
        let b = &mut self.buf;
        let n = s.len();
        if n < 64 {
            b.push(n as u8 | 0x80);
        } else if n < 4096 {
            b.extend_from_slice(&[((n >> 8) as u8) | 0xe0, n as u8]);
        } else {
            b.push(0xf0);
            b.extend_from_slice(&(n as u32).to_le_bytes());
        }
        b.extend_from_slice(s);
        let l = b.len() - start;
        push_backlen(b, l);
        self.count += 1;
    }

    /// Current size in bytes, terminator included (`lpBytes`).
    pub fn bytes(&self) -> usize {
        self.buf.len() + 1
    }

    /// Elements appended so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished blob.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(EOF);
        let total = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&total.to_le_bytes());
        let n = self.count.min(NUMELE_UNKNOWN) as u16;
        self.buf[4..6].copy_from_slice(&n.to_le_bytes());
        self.buf
    }
}

/// Encodes `items` as one listpack.
pub fn encode<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut b = Builder::new();
    for s in items {
        b.push(s);
    }
    b.finish()
}

/// One decoded element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Entry<'a> {
    /// A string.
    Str(&'a [u8]),
    /// An integer.
    Int(i64),
}

impl Entry<'_> {
    /// The element as bytes (integers in decimal).
    pub fn to_vec(&self) -> Vec<u8> {
        match self {
            Entry::Str(s) => s.to_vec(),
            Entry::Int(v) => itoa::Buffer::new().format(*v).as_bytes().to_vec(),
        }
    }
}

fn corrupt() -> RdbError {
    RdbError::Corrupt("listpack integrity check failed")
}

/// Decodes and fully validates a listpack: header, every entry and its
/// backlen, the terminator and the element count.
pub fn decode(lp: &[u8]) -> Result<Vec<Entry<'_>>, RdbError> {
    if lp.len() < HDR + 1 {
        return Err(corrupt());
    }
    let total = u32::from_le_bytes([lp[0], lp[1], lp[2], lp[3]]) as usize;
    let numele = u16::from_le_bytes([lp[4], lp[5]]) as usize;
    if total != lp.len() || lp[lp.len() - 1] != EOF {
        return Err(corrupt());
    }
    let end = lp.len() - 1;
    let mut out = Vec::new();
    let mut p = HDR;
    let get = |from: usize, n: usize| -> Result<&[u8], RdbError> {
        lp.get(from..from + n)
            .filter(|_| from + n <= end)
            .ok_or_else(corrupt)
    };
    while p < end {
        let b = lp[p];
        let (entry, l) = if b & 0x80 == 0 {
            (Entry::Int((b & 0x7f) as i64), 1)
        } else if b & 0xc0 == 0x80 {
            let n = (b & 0x3f) as usize;
            (Entry::Str(get(p + 1, n)?), 1 + n)
        } else if b & 0xe0 == 0xc0 {
            let x = get(p + 1, 1)?;
            let u = (((b & 0x1f) as i64) << 8) | x[0] as i64;
            let v = if u >= 1 << 12 { u - (1 << 13) } else { u };
            (Entry::Int(v), 2)
        } else if b & 0xf0 == 0xe0 {
            let x = get(p + 1, 1)?;
            let n = (((b & 0x0f) as usize) << 8) | x[0] as usize;
            (Entry::Str(get(p + 2, n)?), 2 + n)
        } else {
            match b {
                0xf0 => {
                    let x = get(p + 1, 4)?;
                    let n = u32::from_le_bytes([x[0], x[1], x[2], x[3]]) as usize;
                    (Entry::Str(get(p + 5, n)?), 5 + n)
                }
                0xf1 => {
                    let x = get(p + 1, 2)?;
                    (Entry::Int(i16::from_le_bytes([x[0], x[1]]) as i64), 3)
                }
                0xf2 => {
                    let x = get(p + 1, 3)?;
                    let v = i32::from_le_bytes([0, x[0], x[1], x[2]]) >> 8;
                    (Entry::Int(v as i64), 4)
                }
                0xf3 => {
                    let x = get(p + 1, 4)?;
                    (
                        Entry::Int(i32::from_le_bytes([x[0], x[1], x[2], x[3]]) as i64),
                        5,
                    )
                }
                0xf4 => {
                    let x = get(p + 1, 8)?;
                    let v = i64::from_le_bytes(x.try_into().expect("8 bytes"));
                    (Entry::Int(v), 9)
                }
                _ => return Err(corrupt()),
            }
        };
        // The backlen must encode the entry's length.
        let bl = backlen_size(l);
        let mut expect = Vec::with_capacity(5);
        push_backlen(&mut expect, l);
        if get(p + l, bl)? != expect.as_slice() {
            return Err(corrupt());
        }
        out.push(entry);
        p += l + bl;
    }
    if p != end || (numele != NUMELE_UNKNOWN && numele != out.len()) {
        return Err(corrupt());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_hash_listpack_bytes() {
        // HSET h f1 v1 f2 123 in redis 7.0: the HASH_LISTPACK blob of DUMP h.
        let lp = encode([&b"f1"[..], b"v1", b"f2", b"123"]);
        assert_eq!(
            lp,
            b"\x15\x00\x00\x00\x04\x00\x82f1\x03\x82v1\x03\x82f2\x03{\x01\xff"
        );
        let d = decode(&lp).unwrap();
        assert_eq!(d[3], Entry::Int(123));
    }

    #[test]
    fn every_encoding_roundtrips() {
        let mut items: Vec<Vec<u8>> = [
            0i64,
            127,
            128,
            -1,
            -4096,
            4095,
            4096,
            -32768,
            32767,
            70000,
            -8388608,
            8388607,
            8388608,
            i32::MIN as i64,
            i32::MAX as i64,
            i64::MAX,
            i64::MIN,
        ]
        .iter()
        .map(|v| v.to_string().into_bytes())
        .collect();
        items.push(b"".to_vec());
        items.push(b"007".to_vec());
        items.push(vec![b'x'; 63]);
        items.push(vec![b'y'; 64]);
        items.push(vec![b'z'; 4095]);
        items.push(vec![b'w'; 4096]);
        items.push(vec![b'v'; 20000]);
        let lp = encode(items.iter().map(|v| v.as_slice()));
        let sizes: usize = items.iter().map(|v| entry_size(v)).sum();
        assert_eq!(lp.len(), HDR + sizes + 1);
        let back: Vec<Vec<u8>> = decode(&lp).unwrap().iter().map(|e| e.to_vec()).collect();
        assert_eq!(back, items);
    }

    #[test]
    fn rejects_corruption() {
        let lp = encode([&b"abc"[..], b"12"]);
        for cut in 0..lp.len() {
            assert!(decode(&lp[..cut]).is_err());
        }
        let mut bad = lp.clone();
        bad[HDR + 4] = 9; // wrong backlen
        assert!(decode(&bad).is_err());
        let mut bad = lp.clone();
        bad[4] = 3; // wrong count
        assert!(decode(&bad).is_err());
    }
}
