//! Replies: built as [`Reply`] values (which are `Send`, so they can travel
//! between shards) and encoded for the connection's protocol version, RESP2
//! or RESP3, by [`Reply::encode`].

use bytes::{BufMut, Bytes, BytesMut};

/// A reply, independent of protocol version until it is encoded.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+OK`
    Simple(&'static str),
    /// A status line built at run time (`+...`).
    Status(String),
    /// An error line; the text includes its code (`ERR ...`, `WRONGTYPE ...`).
    Error(String),
    /// A static error line.
    StaticError(&'static str),
    /// An error line that quotes raw client bytes, which need not be UTF-8
    /// (Redis copies them as they are: `expected '$', got '\xff'`, unknown
    /// command names). CR and LF are replaced by spaces when encoded.
    ErrorBytes(Bytes),
    /// `:n`
    Int(i64),
    /// `$n` bulk string.
    Bulk(Bytes),
    /// Null bulk string (`$-1` / `_`).
    Nil,
    /// Null array (`*-1` / `_`).
    NilArray,
    /// `*n`
    Array(Vec<Reply>),
    /// RESP3 map; a flat array in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// RESP3 set; an array in RESP2.
    Set(Vec<Reply>),
    /// RESP3 double; a bulk string in RESP2. Formatted like Redis 7.0 (`%.17g`).
    Double(f64),
    /// RESP3 double with preformatted digits; a bulk string in RESP2
    /// (Redis's addReplyHumanLongDouble).
    DoubleText(String),
    /// RESP3 boolean; an integer in RESP2.
    Bool(bool),
    /// RESP3 verbatim string (`=n\r\ntxt:...`); a bulk string in RESP2.
    Verbatim(String),
    /// RESP3 push message; an array in RESP2.
    Push(Vec<Reply>),
}

/// Shorthand for the most common replies.
pub const OK: Reply = Reply::Simple("OK");

impl Reply {
    /// A bulk reply copied from a byte slice.
    pub fn bulk(b: &[u8]) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(b))
    }

    /// An `ERR`-less error: `text` must start with its error code.
    pub fn err(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }

    /// True for error replies.
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            Reply::Error(_) | Reply::StaticError(_) | Reply::ErrorBytes(_)
        )
    }

    /// The text of an error reply, without the leading `-`.
    pub fn error_text(&self) -> Option<&[u8]> {
        match self {
            Reply::Error(s) => Some(s.as_bytes()),
            Reply::StaticError(s) => Some(s.as_bytes()),
            Reply::ErrorBytes(b) => Some(b),
            _ => None,
        }
    }

    /// Encodes the reply for protocol version 2 or 3.
    pub fn encode(&self, out: &mut BytesMut, resp3: bool) {
        match self {
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            Reply::Status(s) => line(out, b'+', s.as_bytes()),
            Reply::Error(s) => line(out, b'-', s.as_bytes()),
            Reply::StaticError(s) => line(out, b'-', s.as_bytes()),
            Reply::ErrorBytes(b) => line(out, b'-', b),
            Reply::Int(n) => int_line(out, b':', *n),
            Reply::Bulk(b) => bulk(out, b),
            Reply::Nil => out.put_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" }),
            Reply::NilArray => out.put_slice(if resp3 { b"_\r\n" } else { b"*-1\r\n" }),
            Reply::Array(items) => {
                int_line(out, b'*', items.len() as i64);
                for r in items {
                    r.encode(out, resp3);
                }
            }
            Reply::Map(pairs) => {
                if resp3 {
                    int_line(out, b'%', pairs.len() as i64);
                } else {
                    int_line(out, b'*', 2 * pairs.len() as i64);
                }
                for (k, v) in pairs {
                    k.encode(out, resp3);
                    v.encode(out, resp3);
                }
            }
            Reply::Set(items) | Reply::Push(items) => {
                let tag = match (resp3, self) {
                    (false, _) => b'*',
                    (true, Reply::Set(_)) => b'~',
                    _ => b'>',
                };
                int_line(out, tag, items.len() as i64);
                for r in items {
                    r.encode(out, resp3);
                }
            }
            Reply::Double(d) => {
                let s = format_double(*d);
                if resp3 {
                    line(out, b',', s.as_bytes());
                } else {
                    bulk(out, s.as_bytes());
                }
            }
            Reply::DoubleText(s) => {
                if resp3 {
                    line(out, b',', s.as_bytes());
                } else {
                    bulk(out, s.as_bytes());
                }
            }
            Reply::Bool(b) => {
                if resp3 {
                    out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" });
                } else {
                    out.put_slice(if *b { b":1\r\n" } else { b":0\r\n" });
                }
            }
            Reply::Verbatim(s) => {
                if resp3 {
                    int_line(out, b'=', s.len() as i64 + 4);
                    out.put_slice(b"txt:");
                    out.put_slice(s.as_bytes());
                    out.put_slice(b"\r\n");
                } else {
                    bulk(out, s.as_bytes());
                }
            }
        }
    }
}

fn line(out: &mut BytesMut, tag: u8, s: &[u8]) {
    out.reserve(s.len() + 3);
    out.put_u8(tag);
    // Error and status lines must not break the framing.
    if s.iter().any(|&c| c == b'\r' || c == b'\n') {
        for &c in s {
            out.put_u8(if c == b'\r' || c == b'\n' { b' ' } else { c });
        }
    } else {
        out.put_slice(s);
    }
    out.put_slice(b"\r\n");
}

fn int_line(out: &mut BytesMut, tag: u8, n: i64) {
    let mut b = itoa::Buffer::new();
    let s = b.format(n);
    out.reserve(s.len() + 3);
    out.put_u8(tag);
    out.put_slice(s.as_bytes());
    out.put_slice(b"\r\n");
}

fn bulk(out: &mut BytesMut, b: &[u8]) {
    int_line(out, b'$', b.len() as i64);
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

/// Formats a double as Redis 7.0's `addReplyDouble` does: `%.17g`, with
/// `inf`/`-inf`/`nan`.
pub fn format_double(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d.is_nan() {
        return "nan".into();
    }
    printf_g(d, 17)
}

/// Formats `d` with C's `%.<prec>g`, through the C library so the digits are
/// exactly the ones Redis prints.
pub fn printf_g(d: f64, prec: i32) -> String {
    let mut buf = [0u8; 64];
    // SAFETY: the buffer is large enough for any %.17g output and the format
    // string is NUL-terminated; snprintf always NUL-terminates.
    let n = unsafe {
        libc::snprintf(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            c"%.*g".as_ptr(),
            prec as libc::c_int,
            d,
        )
    };
    String::from_utf8_lossy(&buf[..(n.max(0) as usize).min(buf.len() - 1)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::format_double;

    #[test]
    fn doubles_like_redis() {
        assert_eq!(format_double(0.1), "0.10000000000000001");
        assert_eq!(format_double(1.0), "1");
        assert_eq!(format_double(1e20), "1e+20");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
    }
}
