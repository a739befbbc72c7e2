//! Glob-style pattern matching with Redis's rules (`stringmatchlen` in
//! Redis 7.0's util.c), used by KEYS, SCAN MATCH, CONFIG GET and others.
//!
//! `*` matches any run of bytes, `?` any one byte, `[abc]`, `[^abc]` and
//! `[a-z]` a class (a reversed range such as `[z-a]` works too), and `\x` the
//! byte `x` literally. This is a faithful port, quirks included:
//! - an empty string only matches an empty pattern (so `*` does not match the
//!   empty key; KEYS and SCAN special-case the pattern `*` themselves);
//! - an unterminated `[` class ends at the end of the pattern;
//! - a `-` just before the closing `]` makes a range ending at `]` (`[a-]`).
//!
//! Like Redis, once the rest of a pattern after a `*` has failed at every
//! position, earlier stars do not retry longer matches, which keeps the work
//! polynomial. The recursion (one level per `*` group) is capped at
//! [`MAX_NESTING`] levels, as newer Redis versions do, so a pattern made of
//! many stars cannot exhaust a shard's stack; deeper patterns do not match.

/// Deepest `*` nesting explored before a match is given up.
pub const MAX_NESTING: usize = 1000;

/// True if `s` matches `pattern`; `nocase` compares ASCII letters
/// case-insensitively.
pub fn matches(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    let mut skip_longer = false;
    match_impl(pattern, s, nocase, &mut skip_longer, 0)
}

#[inline]
fn lower(c: u8, nocase: bool) -> u8 {
    if nocase { c.to_ascii_lowercase() } else { c }
}

/// The byte at `i`, or 0 past the end (C strings read their terminator).
#[inline]
fn at(p: &[u8], i: usize) -> u8 {
    p.get(i).copied().unwrap_or(0)
}

fn match_impl(
    pattern: &[u8],
    string: &[u8],
    nocase: bool,
    skip_longer: &mut bool,
    nesting: usize,
) -> bool {
    if nesting > MAX_NESTING {
        // Give up on the whole match, not just this branch.
        *skip_longer = true;
        return false;
    }
    // Indices into pattern/string; `pi` may step one past a class's end and
    // back, exactly as the C pointer arithmetic does.
    let (mut pi, mut si) = (0usize, 0usize);
    while pi < pattern.len() && si < string.len() {
        match pattern[pi] {
            b'*' => {
                while pi + 1 < pattern.len() && pattern[pi + 1] == b'*' {
                    pi += 1;
                }
                if pi + 1 == pattern.len() {
                    return true;
                }
                while si < string.len() {
                    if match_impl(
                        &pattern[pi + 1..],
                        &string[si..],
                        nocase,
                        skip_longer,
                        nesting + 1,
                    ) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    si += 1;
                }
                *skip_longer = true;
                return false;
            }
            b'?' => si += 1,
            b'[' => {
                pi += 1;
                let not = at(pattern, pi) == b'^';
                if not {
                    pi += 1;
                }
                let c = string[si];
                let mut matched = false;
                loop {
                    let rest = pattern.len().saturating_sub(pi);
                    let p0 = at(pattern, pi);
                    if p0 == b'\\' && rest >= 2 {
                        pi += 1;
                        if pattern[pi] == c {
                            matched = true;
                        }
                    } else if p0 == b']' {
                        break;
                    } else if rest == 0 {
                        // Unterminated class: step back so the common
                        // advance below lands on the pattern's end.
                        pi -= 1;
                        break;
                    } else if rest >= 3 && pattern[pi + 1] == b'-' {
                        let (mut start, mut end) = (pattern[pi], pattern[pi + 2]);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        let (start, end, ch) =
                            (lower(start, nocase), lower(end, nocase), lower(c, nocase));
                        pi += 2;
                        if ch >= start && ch <= end {
                            matched = true;
                        }
                    } else if lower(p0, nocase) == lower(c, nocase) {
                        matched = true;
                    }
                    pi += 1;
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                si += 1;
            }
            p0 => {
                let lit = if p0 == b'\\' && pattern.len() - pi >= 2 {
                    pi += 1;
                    pattern[pi]
                } else {
                    p0
                };
                if lower(lit, nocase) != lower(string[si], nocase) {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
        if si == string.len() {
            while pi < pattern.len() && pattern[pi] == b'*' {
                pi += 1;
            }
            break;
        }
    }
    pi >= pattern.len() && si == string.len()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_rules() {
        assert!(matches(b"h?llo", b"hello", false));
        assert!(matches(b"h*llo", b"heeeello", false));
        assert!(matches(b"h[ae]llo", b"hallo", false));
        assert!(!matches(b"h[^e]llo", b"hello", false));
        assert!(matches(b"h[a-b]llo", b"hbllo", false));
        assert!(matches(b"h[b-a]llo", b"hbllo", false));
        assert!(matches(b"h\\*llo", b"h*llo", false));
        assert!(!matches(b"h\\*llo", b"hallo", false));
        assert!(matches(b"HELLO", b"hello", true));
        assert!(matches(b"a*b*c", b"axxbyyc", false));
        assert!(!matches(b"a*b*c", b"axxbyy", false));
        assert!(matches(b"a*", b"a", false));
        assert!(matches(b"a**", b"a", false));
    }

    #[test]
    fn redis_quirks() {
        // Checked against redis-server 7.0.15 with KEYS.
        assert!(!matches(b"*", b"", false));
        assert!(!matches(b"**", b"", false));
        assert!(matches(b"", b"", false));
        assert!(matches(b"[a", b"a", false));
        assert!(!matches(b"[", b"a", false));
        assert!(matches(b"[a-]", b"a", false));
        assert!(!matches(b"[a-]", b"a]", false));
        assert!(matches(b"[a-]]", b"a", false));
        assert!(matches(b"a[b-]c", b"a]", false));
        assert!(!matches(b"a[b-]c", b"a]c", false));
        assert!(matches(b"a[\\]]c", b"a]c", false));
        assert!(!matches(b"a[\\]]c", b"a]]c", false));
        assert!(matches(b"a[^a]c", b"abc", false));
        assert!(matches(b"\\a*", b"abc", false));
        assert!(!matches(b"a\\", b"a", false));
        assert!(matches(b"a\\", b"a\\", false));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let s = vec![b'a'; 5000];
        let mut p = b"*a".repeat(200);
        p.push(b'b');
        assert!(!matches(&p, &s, false));
        let stars = b"*a".repeat(100_000);
        assert!(!matches(&stars, &s, false));
    }
}
