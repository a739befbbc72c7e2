//! Intset blobs (Redis's `intset.c`): the encoding of small all-integer sets.
//!
//! ```text
//! <encoding u32 LE: 2, 4 or 8> <length u32 LE> <sorted values, LE>
//! ```

use super::RdbError;

/// Encodes sorted, distinct integers with the narrowest width that fits.
pub fn encode(sorted: &[i64]) -> Vec<u8> {
    let width: usize = if sorted.iter().all(|v| i16::try_from(*v).is_ok()) {
        2
    } else if sorted.iter().all(|v| i32::try_from(*v).is_ok()) {
        4
    } else {
        8
    };
    let mut out = Vec::with_capacity(8 + width * sorted.len());
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
    for v in sorted {
        out.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    out
}

/// Decodes and validates an intset: known width, exact size, strictly
/// ascending values.
pub fn decode(blob: &[u8]) -> Result<Vec<i64>, RdbError> {
    let bad = || RdbError::Corrupt("intset integrity check failed");
    if blob.len() < 8 {
        return Err(bad());
    }
    let width = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
    let len = u32::from_le_bytes([blob[4], blob[5], blob[6], blob[7]]) as usize;
    if !matches!(width, 2 | 4 | 8) || (blob.len() - 8) != width * len {
        return Err(bad());
    }
    let mut out: Vec<i64> = Vec::with_capacity(len);
    for c in blob[8..].chunks_exact(width) {
        let v = match width {
            2 => i16::from_le_bytes([c[0], c[1]]) as i64,
            4 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
            _ => i64::from_le_bytes(c.try_into().expect("8 bytes")),
        };
        if out.last().is_some_and(|&p| p >= v) {
            return Err(bad());
        }
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_bytes() {
        // SADD s 1 2 3 -70000 in redis 7.0 (DUMP s holds this blob).
        let blob = encode(&[-70000, 1, 2, 3]);
        assert_eq!(
            blob,
            b"\x04\x00\x00\x00\x04\x00\x00\x00\x90\xee\xfe\xff\x01\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00"
        );
        assert_eq!(decode(&blob).unwrap(), vec![-70000, 1, 2, 3]);
    }

    #[test]
    fn widths_and_errors() {
        for set in [vec![1i64, 2], vec![-5, 40000], vec![i64::MIN, 0, i64::MAX]] {
            assert_eq!(decode(&encode(&set)).unwrap(), set);
        }
        assert!(decode(&encode(&[1, 2])[..11]).is_err());
        let mut unsorted = encode(&[1, 2]);
        unsorted[8] = 5;
        assert!(decode(&unsorted).is_err());
        let mut width = encode(&[1, 2]);
        width[0] = 3;
        assert!(decode(&width).is_err());
    }
}
