//! The wire protocol: parsing client requests (replies are [`crate::reply`]).
//!
//! Requests are either RESP multibulk arrays (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or
//! telnet-style inline lines (`GET k\r\n`). The parser here is hand-written
//! because it must reproduce Redis's exact protocol error texts, enforce
//! `proto-max-bulk-len` from the bulk header before the body arrives, and parse
//! in place without copying; `benches/hot_paths.rs` compares it against
//! `redis-protocol`'s decoder.

use crate::parse::{parse_i64, split_args};
use crate::reply::Reply;
use bytes::{Buf, Bytes, BytesMut};

/// Longest inline request, and longest header line, Redis accepts (64 KiB).
pub const PROTO_INLINE_MAX_SIZE: usize = 64 * 1024;

/// Limits a connection's parser enforces; they come from the server config.
#[derive(Clone, Copy, Debug)]
pub struct ParseLimits {
    /// `proto-max-bulk-len`: longest accepted bulk string.
    pub max_bulk_len: i64,
    /// True while the connection still has to AUTH; Redis then caps the
    /// multibulk count at 10 and bulk lengths at 16 KiB.
    pub unauthenticated: bool,
}

/// Outcome of one parse attempt.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// A full command: its arguments.
    Command(Vec<Bytes>),
    /// An empty line or `*0`: consumed, nothing to run, no reply.
    Empty,
    /// More bytes are needed.
    Incomplete,
    /// The stream is broken: reply with this error text and close.
    Error(&'static str),
    /// Like `Error`, for the one message that names the offending byte.
    ErrorExpectedDollar(u8),
}

impl Parsed {
    /// The reply Redis sends for a protocol error, byte for byte (the
    /// offending byte of `expected '$'` is copied raw); None unless this is
    /// an error.
    pub fn error_reply(&self) -> Option<Reply> {
        match self {
            Parsed::Error(msg) => Some(Reply::Error(format!("ERR {msg}"))),
            Parsed::ErrorExpectedDollar(c) => {
                let mut text = b"ERR Protocol error: expected '$', got '".to_vec();
                text.push(*c);
                text.push(b'\'');
                Some(Reply::ErrorBytes(text.into()))
            }
            _ => None,
        }
    }
}

/// Parses one request from the front of `buf`, consuming it when complete.
///
/// Arguments are zero-copy slices of `buf`'s storage. This stateless form
/// rescans a partly received request from its start on every call; a
/// connection should keep a [`RequestParser`] instead.
pub fn parse_request(buf: &mut BytesMut, limits: &ParseLimits) -> Parsed {
    RequestParser::default().parse(buf, limits)
}

/// A request parser that remembers how far it got through a partly received
/// multibulk request, so a request arriving over many reads has each header
/// scanned once (as Redis does) rather than once per read. Without it a
/// request of n arguments split over many reads costs O(n^2).
///
/// Contract: between two calls the caller may only append to the buffer; if
/// it drops unparsed bytes it must call [`RequestParser::reset`].
#[derive(Debug, Default)]
pub struct RequestParser {
    partial: Option<Partial>,
}

/// Progress through a multibulk request whose count line has been parsed.
#[derive(Debug)]
struct Partial {
    /// Number of arguments announced.
    count: usize,
    /// Offset in the buffer of the next bulk header.
    pos: usize,
    /// Offsets of the arguments parsed so far.
    spans: Vec<(usize, usize)>,
}

impl RequestParser {
    /// Parses one request from the front of `buf`, consuming it when
    /// complete; see [`parse_request`].
    pub fn parse(&mut self, buf: &mut BytesMut, limits: &ParseLimits) -> Parsed {
        // A state beyond the buffer's end means the caller dropped bytes
        // without `reset`; start over then.
        if let Some(st) = self.partial.take()
            && st.pos <= buf.len()
        {
            return self.multibulk_args(buf, limits, st);
        }
        if buf.is_empty() {
            return Parsed::Incomplete;
        }
        if buf[0] == b'*' {
            self.parse_multibulk(buf, limits)
        } else {
            parse_inline(buf)
        }
    }

    /// Forgets a partly parsed request (after the buffer was cleared).
    pub fn reset(&mut self) {
        self.partial = None;
    }

    /// True while a multibulk request is partly received.
    pub fn in_request(&self) -> bool {
        self.partial.is_some()
    }

    fn parse_multibulk(&mut self, buf: &mut BytesMut, limits: &ParseLimits) -> Parsed {
        let Some(nl) = find_crlf(buf, 1) else {
            return if buf.len() > PROTO_INLINE_MAX_SIZE {
                Parsed::Error("Protocol error: too big mbulk count string")
            } else {
                Parsed::Incomplete
            };
        };
        if nl + 1 >= buf.len() {
            return Parsed::Incomplete;
        }
        let count = match parse_i64(&buf[1..nl]) {
            Some(n) if n <= i32::MAX as i64 => n,
            _ => return Parsed::Error("Protocol error: invalid multibulk length"),
        };
        if count > 10 && limits.unauthenticated {
            return Parsed::Error("Protocol error: unauthenticated multibulk length");
        }
        let pos = nl + 2;
        if count <= 0 {
            buf.advance(pos);
            return Parsed::Empty;
        }
        let count = count as usize;
        let st = Partial {
            count,
            pos,
            spans: Vec::with_capacity(count.min(1024)),
        };
        self.multibulk_args(buf, limits, st)
    }

    /// Parses bulk arguments from `st.pos` on; keeps `st` when more bytes
    /// are needed.
    fn multibulk_args(
        &mut self,
        buf: &mut BytesMut,
        limits: &ParseLimits,
        mut st: Partial,
    ) -> Parsed {
        while st.spans.len() < st.count {
            let pos = st.pos;
            let need_more = 'header: {
                if pos >= buf.len() {
                    break 'header None;
                }
                let Some(nl) = find_crlf(buf, pos) else {
                    if buf.len() - pos > PROTO_INLINE_MAX_SIZE {
                        return Parsed::Error("Protocol error: too big bulk count string");
                    }
                    break 'header None;
                };
                // Like Redis, wait for the '\n' before looking at the line.
                if nl + 1 >= buf.len() {
                    break 'header None;
                }
                if buf[pos] != b'$' {
                    return Parsed::ErrorExpectedDollar(buf[pos]);
                }
                let len = match parse_i64(&buf[pos + 1..nl]) {
                    Some(n) if n >= 0 && n <= limits.max_bulk_len => n as usize,
                    _ => return Parsed::Error("Protocol error: invalid bulk length"),
                };
                if len > 16384 && limits.unauthenticated {
                    return Parsed::Error("Protocol error: unauthenticated bulk length");
                }
                Some((nl + 2, len))
            };
            let Some((start, len)) = need_more else {
                self.partial = Some(st);
                return Parsed::Incomplete;
            };
            let end = start + len;
            if end + 2 > buf.len() {
                // Make room for the whole bulk at once, as Redis does for big
                // arguments. The header is parsed again next time (it is
                // short), which keeps the state to whole arguments.
                if len >= 32 * 1024 {
                    buf.reserve(end + 2 - buf.len());
                }
                self.partial = Some(st);
                return Parsed::Incomplete;
            }
            st.spans.push((start, end));
            st.pos = end + 2;
        }
        let frozen = buf.split_to(st.pos).freeze();
        Parsed::Command(
            st.spans
                .into_iter()
                .map(|(s, e)| frozen.slice(s..e))
                .collect(),
        )
    }
}

/// Finds the `\r` that ends a header line, as Redis's `strchr` does: a NUL
/// byte ends the search, so a header holding one never completes.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    find_before_nul(buf, from, b'\r')
}

/// Position of the first `c` at or after `from`, unless a NUL comes first.
#[inline]
fn find_before_nul(buf: &[u8], from: usize, c: u8) -> Option<usize> {
    let i = memchr::memchr2(c, 0, &buf[from..])? + from;
    (buf[i] == c).then_some(i)
}

fn parse_inline(buf: &mut BytesMut) -> Parsed {
    let Some(nl) = find_before_nul(buf, 0, b'\n') else {
        return if buf.len() > PROTO_INLINE_MAX_SIZE {
            Parsed::Error("Protocol error: too big inline request")
        } else {
            Parsed::Incomplete
        };
    };
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let line = buf.split_to(nl + 1);
    match split_args(&line[..line_end]) {
        Some(args) if args.is_empty() => Parsed::Empty,
        Some(args) => Parsed::Command(args),
        None => Parsed::Error("Protocol error: unbalanced quotes in request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ParseLimits {
        ParseLimits {
            max_bulk_len: 512 * 1024 * 1024,
            unauthenticated: false,
        }
    }

    fn parse(s: &[u8]) -> Parsed {
        let mut b = BytesMut::from(s);
        parse_request(&mut b, &limits())
    }

    #[test]
    fn multibulk_and_inline() {
        assert_eq!(
            parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
            Parsed::Command(vec![Bytes::from("GET"), Bytes::from("k")])
        );
        assert_eq!(parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r"), Parsed::Incomplete);
        assert_eq!(
            parse(b"set a \"b c\\x41\"\r\n"),
            Parsed::Command(vec!["set".into(), "a".into(), "b cA".into()])
        );
        assert_eq!(parse(b"\r\n"), Parsed::Empty);
        assert_eq!(
            parse(b"set \"a\r\n"),
            Parsed::Error("Protocol error: unbalanced quotes in request")
        );
        assert_eq!(parse(b"*1\r\n+x\r\n"), Parsed::ErrorExpectedDollar(b'+'));
        assert_eq!(
            parse(b"*1\r\n$-5\r\n"),
            Parsed::Error("Protocol error: invalid bulk length")
        );
        assert_eq!(
            parse(b"*x\r\n"),
            Parsed::Error("Protocol error: invalid multibulk length")
        );
    }

    #[test]
    fn c_string_quirks() {
        // sdssplitargs reads a C string: a NUL ends the line.
        assert_eq!(
            split_args(b"ECHO a\0b c"),
            Some(vec!["ECHO".into(), "a".into()])
        );
        assert_eq!(split_args(b"\0ECHO"), Some(vec![]));
        // isspace() includes \v and \f.
        assert_eq!(
            split_args(b"\x0bECHO \"a\"\x0bb"),
            Some(vec!["ECHO".into(), "a".into(), "b".into()])
        );
        // strchr stops at a NUL: these lines never complete.
        assert_eq!(parse(b"PING\0\r\n"), Parsed::Incomplete);
        assert_eq!(parse(b"*1\0\r\n$4\r\nPING\r\n"), Parsed::Incomplete);
        assert_eq!(parse(b"*1\r\n$4\0\r\nPING\r\n"), Parsed::Incomplete);
        assert_eq!(
            parse(b"*2\r\n$4\r\nECHO\r\n$3\r\na\0b\r\n"),
            Parsed::Command(vec!["ECHO".into(), Bytes::from_static(b"a\0b")])
        );
        // The '$' is checked only once the whole header line is there.
        assert_eq!(parse(b"*1\r\n+x\r"), Parsed::Incomplete);
    }

    #[test]
    fn protocol_error_replies_copy_raw_bytes() {
        let mut out = BytesMut::new();
        parse(b"*1\r\n\xff\r\n")
            .error_reply()
            .unwrap()
            .encode(&mut out, false);
        assert_eq!(
            &out[..],
            b"-ERR Protocol error: expected '$', got '\xff'\r\n"
        );
        out.clear();
        parse(b"*1\r\n\r\n")
            .error_reply()
            .unwrap()
            .encode(&mut out, false);
        assert_eq!(&out[..], b"-ERR Protocol error: expected '$', got ' '\r\n");
        assert_eq!(parse(b"PING\r\n").error_reply(), None);
    }

    /// Feeding a stream in pieces to one `RequestParser` gives the same
    /// results as parsing it whole.
    #[test]
    fn resumable_parser_matches_whole_parse() {
        let inputs: &[&[u8]] = &[
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING\r\n",
            b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n*0\r\n*1\r\n$4\r\nPING\r\n",
            b"*2\r\n$4\r\nECHO\r\n+x\r\n",
            b"*2\r\n$4\r\nECHO\r\n$-3\r\n",
            b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n",
            b"GET a\r\n*1\r\n$3\r\nGET\r\n",
        ];
        for input in inputs {
            let whole = {
                let mut b = BytesMut::from(&input[..]);
                let mut out = Vec::new();
                loop {
                    let r = parse_request(&mut b, &limits());
                    let stop = !matches!(r, Parsed::Command(_) | Parsed::Empty);
                    out.push(r);
                    if stop {
                        break;
                    }
                }
                (out, b)
            };
            for step in [1, 2, 7] {
                let mut parser = RequestParser::default();
                let mut b = BytesMut::new();
                let mut out = Vec::new();
                let mut fed = 0;
                loop {
                    let r = parser.parse(&mut b, &limits());
                    match r {
                        Parsed::Incomplete if fed < input.len() => {
                            let n = step.min(input.len() - fed);
                            b.extend_from_slice(&input[fed..fed + n]);
                            fed += n;
                        }
                        Parsed::Command(_) | Parsed::Empty => out.push(r),
                        _ => {
                            out.push(r);
                            break;
                        }
                    }
                }
                assert_eq!((&out, &b), (&whole.0, &whole.1), "{input:?} step {step}");
            }
        }
    }

    #[test]
    fn string2ll_rules() {
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"012"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
    }
}
