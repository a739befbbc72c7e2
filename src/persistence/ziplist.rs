//! Decoders for the legacy blobs a Redis 7.0 RDB may still contain: ziplists
//! (lists, hashes and sorted sets written by Redis before 7.0) and zipmaps
//! (hashes written by Redis before 2.6). Redis 7.0 never writes these, so
//! only reading is provided; integers come back in decimal form.

use super::{Pairs, RdbError};

fn zl_corrupt() -> RdbError {
    RdbError::Corrupt("ziplist integrity check failed")
}

fn zm_corrupt() -> RdbError {
    RdbError::Corrupt("zipmap integrity check failed")
}

/// Decodes and validates a ziplist:
/// `<zlbytes u32><zltail u32><zllen u16> <entry>... <0xFF>`, each entry
/// `<prevlen 1|5 bytes> <encoding> <data>`.
pub fn decode(zl: &[u8]) -> Result<Vec<Vec<u8>>, RdbError> {
    const HDR: usize = 10;
    if zl.len() < HDR + 1 {
        return Err(zl_corrupt());
    }
    let zlbytes = u32::from_le_bytes([zl[0], zl[1], zl[2], zl[3]]) as usize;
    let zltail = u32::from_le_bytes([zl[4], zl[5], zl[6], zl[7]]) as usize;
    let zllen = u16::from_le_bytes([zl[8], zl[9]]) as usize;
    if zlbytes != zl.len() || zl[zl.len() - 1] != 0xff {
        return Err(zl_corrupt());
    }
    let end = zl.len() - 1;
    let get = |from: usize, n: usize| -> Result<&[u8], RdbError> {
        if from + n <= end {
            Ok(&zl[from..from + n])
        } else {
            Err(zl_corrupt())
        }
    };
    let mut out = Vec::new();
    let (mut p, mut prev_len, mut last) = (HDR, 0usize, HDR);
    while p < end {
        let start = p;
        // prevlen
        let b = get(p, 1)?[0];
        let stored_prev = if b < 254 {
            p += 1;
            b as usize
        } else if b == 254 {
            let x = get(p + 1, 4)?;
            p += 5;
            u32::from_le_bytes([x[0], x[1], x[2], x[3]]) as usize
        } else {
            return Err(zl_corrupt());
        };
        if stored_prev != prev_len {
            return Err(zl_corrupt());
        }
        let enc = get(p, 1)?[0];
        let item = match enc >> 6 {
            0 => {
                let n = (enc & 0x3f) as usize;
                let s = get(p + 1, n)?;
                p += 1 + n;
                s.to_vec()
            }
            1 => {
                let x = get(p + 1, 1)?;
                let n = (((enc & 0x3f) as usize) << 8) | x[0] as usize;
                let s = get(p + 2, n)?;
                p += 2 + n;
                s.to_vec()
            }
            2 => {
                if enc != 0x80 {
                    return Err(zl_corrupt());
                }
                let x = get(p + 1, 4)?;
                let n = u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as usize;
                let s = get(p + 5, n)?;
                p += 5 + n;
                s.to_vec()
            }
            _ => {
                let (v, n): (i64, usize) = match enc {
                    0xc0 => {
                        let x = get(p + 1, 2)?;
                        (i16::from_le_bytes([x[0], x[1]]) as i64, 2)
                    }
                    0xd0 => {
                        let x = get(p + 1, 4)?;
                        (i32::from_le_bytes([x[0], x[1], x[2], x[3]]) as i64, 4)
                    }
                    0xe0 => {
                        let x = get(p + 1, 8)?;
                        (i64::from_le_bytes(x.try_into().expect("8 bytes")), 8)
                    }
                    0xf0 => {
                        let x = get(p + 1, 3)?;
                        ((i32::from_le_bytes([0, x[0], x[1], x[2]]) >> 8) as i64, 3)
                    }
                    0xfe => (get(p + 1, 1)?[0] as i8 as i64, 1),
                    0xf1..=0xfd => ((enc & 0x0f) as i64 - 1, 0),
                    _ => return Err(zl_corrupt()),
                };
                p += 1 + n;
                itoa::Buffer::new().format(v).as_bytes().to_vec()
            }
        };
        out.push(item);
        last = start;
        prev_len = p - start;
    }
    let tail_ok = if out.is_empty() {
        zltail == HDR
    } else {
        zltail == last
    };
    if p != end || !tail_ok || (zllen != u16::MAX as usize && zllen != out.len()) {
        return Err(zl_corrupt());
    }
    Ok(out)
}

/// Decodes and validates a zipmap (Redis < 2.6 small hashes):
/// `<zmlen u8> (<len>field<len><free u8>value<free bytes>)... <0xFF>`, where
/// `<len>` is one byte below 254 or 254 followed by a u32 LE.
pub fn decode_zipmap(zm: &[u8]) -> Result<Pairs, RdbError> {
    if zm.len() < 2 || zm[zm.len() - 1] != 0xff {
        return Err(zm_corrupt());
    }
    let end = zm.len() - 1;
    let get = |from: usize, n: usize| -> Result<&[u8], RdbError> {
        if from + n <= end {
            Ok(&zm[from..from + n])
        } else {
            Err(zm_corrupt())
        }
    };
    let read_len = |p: &mut usize| -> Result<usize, RdbError> {
        let b = get(*p, 1)?[0];
        if b < 254 {
            *p += 1;
            Ok(b as usize)
        } else if b == 254 {
            let x = get(*p + 1, 4)?;
            *p += 5;
            Ok(u32::from_le_bytes([x[0], x[1], x[2], x[3]]) as usize)
        } else {
            Err(zm_corrupt())
        }
    };
    let mut out = Vec::new();
    let mut p = 1;
    while p < end {
        let flen = read_len(&mut p)?;
        let field = get(p, flen)?.to_vec();
        p += flen;
        let vlen = read_len(&mut p)?;
        let free = get(p, 1)?[0] as usize;
        p += 1;
        let value = get(p, vlen)?.to_vec();
        p += vlen;
        get(p, free)?;
        p += free;
        out.push((field, value));
    }
    if p != end {
        return Err(zm_corrupt());
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a ziplist the way Redis < 7.0 did, for tests.
    pub(crate) fn build(items: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        let (mut prev, mut last) = (0usize, 10usize);
        for it in items {
            let start = 10 + body.len();
            let mut e = Vec::new();
            if prev < 254 {
                e.push(prev as u8);
            } else {
                e.push(254);
                e.extend_from_slice(&(prev as u32).to_le_bytes());
            }
            match crate::parse::parse_i64(it) {
                Some(v @ 0..=12) => e.push(0xf1 + v as u8),
                Some(v) if i8::try_from(v).is_ok() => e.extend_from_slice(&[0xfe, v as u8]),
                Some(v) if i16::try_from(v).is_ok() => {
                    e.push(0xc0);
                    e.extend_from_slice(&(v as i16).to_le_bytes());
                }
                Some(v) if (-8388608..8388608).contains(&v) => {
                    e.push(0xf0);
                    e.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
                }
                Some(v) if i32::try_from(v).is_ok() => {
                    e.push(0xd0);
                    e.extend_from_slice(&(v as i32).to_le_bytes());
                }
                Some(v) => {
                    e.push(0xe0);
                    e.extend_from_slice(&v.to_le_bytes());
                }
                None if it.len() < 64 => {
                    e.push(it.len() as u8);
                    e.extend_from_slice(it);
                }
                None if it.len() < 16384 => {
                    e.extend_from_slice(&[0x40 | (it.len() >> 8) as u8, it.len() as u8]);
                    e.extend_from_slice(it);
                }
                None => {
                    e.push(0x80);
                    e.extend_from_slice(&(it.len() as u32).to_be_bytes());
                    e.extend_from_slice(it);
                }
            }
            prev = e.len();
            last = start;
            body.extend(e);
        }
        let mut zl = Vec::new();
        zl.extend_from_slice(&((11 + body.len()) as u32).to_le_bytes());
        zl.extend_from_slice(&(last as u32).to_le_bytes());
        zl.extend_from_slice(&(items.len() as u16).to_le_bytes());
        zl.extend(body);
        zl.push(0xff);
        zl
    }

    #[test]
    fn ziplist_roundtrip() {
        let long = vec![b'q'; 300];
        let items: Vec<&[u8]> = vec![
            b"a",
            b"0",
            b"12",
            b"13",
            b"-100",
            b"1000",
            b"100000",
            b"3000000000",
            b"-9223372036854775808",
            &long,
            b"hello",
            b"",
        ];
        let zl = build(&items);
        let got = decode(&zl).unwrap();
        let want: Vec<Vec<u8>> = items.iter().map(|s| s.to_vec()).collect();
        assert_eq!(got, want);
        for cut in 0..zl.len() {
            assert!(decode(&zl[..cut]).is_err());
        }
        assert_eq!(decode(&build(&[])).unwrap(), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn zipmap() {
        // {"foo": "bar", "hello": "world"} with 2 free bytes after "bar".
        let zm = b"\x02\x03foo\x03\x02barXY\x05hello\x05\x00world\xff";
        let got = decode_zipmap(zm).unwrap();
        assert_eq!(
            got,
            vec![
                (b"foo".to_vec(), b"bar".to_vec()),
                (b"hello".to_vec(), b"world".to_vec())
            ]
        );
        assert!(decode_zipmap(&zm[..zm.len() - 3]).is_err());
    }
}
