//! Redis's `long double` arithmetic for INCRBYFLOAT and HINCRBYFLOAT.
//!
//! Redis adds in C `long double` (80-bit extended precision on x86-64),
//! parses with `strtold` under `string2ld`'s checks and prints with `%.17Lf`
//! minus trailing zeros. Rust has no such type, so a small C shim
//! (`longdouble.c`, built by `src/build.rs`) does the work and [`LongDouble`]
//! carries the value as an opaque blob.

use super::err;
use crate::reply::Reply;
use std::ffi::{c_char, c_int, c_longlong, c_void};

unsafe extern "C" {
    fn ringkv_ld_parse(s: *const c_char, len: usize, out: *mut c_void) -> c_int;
    fn ringkv_ld_from_i64(n: c_longlong, out: *mut c_void);
    fn ringkv_ld_add(a: *const c_void, b: *const c_void, out: *mut c_void);
    fn ringkv_ld_is_finite(a: *const c_void) -> c_int;
    fn ringkv_ld_format_human(a: *const c_void, out: *mut c_char, cap: usize) -> usize;
}

/// Redis's `MAX_LONG_DOUBLE_CHARS`: room for any formatted long double.
const MAX_CHARS: usize = 5 * 1024;

/// A C `long double`, stored as its raw bytes.
#[derive(Clone, Copy)]
pub struct LongDouble([u8; 16]);

impl LongDouble {
    fn blank() -> LongDouble {
        // The shim copies sizeof(long double) bytes, at most 16 (checked at
        // compile time in longdouble.c).
        LongDouble([0; 16])
    }

    /// Parses with Redis's `string2ld`: no leading space, the whole string
    /// consumed, no NaN, no overflow; `inf` and hex floats are accepted as
    /// `strtold` accepts them.
    pub fn parse(s: &[u8]) -> Option<LongDouble> {
        let mut v = Self::blank();
        // SAFETY: the shim reads `len` bytes of `s` and writes at most 16
        // bytes into `v`.
        let ok = unsafe {
            ringkv_ld_parse(
                s.as_ptr().cast(),
                s.len(),
                v.0.as_mut_ptr().cast::<c_void>(),
            )
        };
        (ok != 0).then_some(v)
    }

    /// The exact value of an integer.
    pub fn from_i64(n: i64) -> LongDouble {
        let mut v = Self::blank();
        // SAFETY: writes at most 16 bytes into `v`.
        unsafe { ringkv_ld_from_i64(n, v.0.as_mut_ptr().cast()) };
        v
    }

    /// False for NaN and the infinities.
    pub fn is_finite(&self) -> bool {
        // SAFETY: reads the 16-byte buffer.
        unsafe { ringkv_ld_is_finite(self.0.as_ptr().cast()) != 0 }
    }

    /// Redis's `ld2string(..., LD_STR_HUMAN)`: `%.17Lf` without trailing
    /// zeros, `-0` printed as `0`, `inf`/`-inf` for infinities.
    pub fn to_human(&self) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_CHARS];
        // SAFETY: the shim writes at most `buf.len()` bytes.
        let n = unsafe {
            ringkv_ld_format_human(self.0.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len())
        };
        buf.truncate(n);
        buf
    }
}

impl std::ops::Add for LongDouble {
    type Output = LongDouble;

    /// The sum, rounded to long double precision.
    fn add(self, other: LongDouble) -> LongDouble {
        let mut v = Self::blank();
        // SAFETY: both inputs and the output are 16-byte buffers.
        unsafe {
            ringkv_ld_add(
                self.0.as_ptr().cast(),
                other.0.as_ptr().cast(),
                v.0.as_mut_ptr().cast(),
            )
        };
        v
    }
}

/// INCRBYFLOAT's arithmetic: parses the current value `a` and the increment
/// `b` (each failing with "value is not a valid float"), adds them and
/// returns the new value as Redis prints it, or "increment would produce NaN
/// or Infinity".
pub fn long_double_add(a: &[u8], b: &[u8]) -> Result<Vec<u8>, Reply> {
    let x = LongDouble::parse(a).ok_or(err::NOT_FLOAT)?;
    let y = LongDouble::parse(b).ok_or(err::NOT_FLOAT)?;
    let sum = x + y;
    if !sum.is_finite() {
        return Err(Reply::StaticError(
            "ERR increment would produce NaN or Infinity",
        ));
    }
    Ok(sum.to_human())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(a: &str, b: &str) -> String {
        String::from_utf8(long_double_add(a.as_bytes(), b.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn formats_like_redis() {
        assert_eq!(add("10.50", "0.1"), "10.6");
        assert_eq!(add("0", "5.0e3"), "5000");
        assert_eq!(add("0", "-0"), "0");
        assert_eq!(add("3", "1.5"), "4.5");
        assert_eq!(add("0", "0.1"), "0.1");
        assert_eq!(LongDouble::from_i64(-7).to_human(), b"-7");
    }

    #[test]
    fn rejects_like_string2ld() {
        for bad in ["", " 1", "1 ", "nan", "abc", "1e99999"] {
            assert!(LongDouble::parse(bad.as_bytes()).is_none(), "{bad}");
        }
        assert!(LongDouble::parse(b"inf").is_some());
        assert!(long_double_add(b"inf", b"1").is_err());
    }
}
