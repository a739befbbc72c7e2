//! Glob-style pattern matching with Redis's rules (`stringmatchlen`), used by
//! KEYS, SCAN MATCH, CONFIG GET and others.
//!
//! `*` matches any run of bytes, `?` any one byte, `[abc]`, `[^abc]` and
//! `[a-z]` a class, and `\x` the byte `x` literally. An unterminated `[`
//! class ends at the end of the pattern, as in Redis.

/// True if `s` matches `pattern`.
pub fn matches(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    // Bound the work on pathological patterns the way Redis does: give up
    // after too many backtracking steps.
    let mut budget: u64 = 1 << 20;
    match_at(pattern, s, nocase, &mut budget)
}

fn eq(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

fn match_at(mut p: &[u8], mut s: &[u8], nocase: bool, budget: &mut u64) -> bool {
    while !p.is_empty() {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                for i in 0..=s.len() {
                    if match_at(&p[1..], &s[i..], nocase, budget) {
                        return true;
                    }
                    if *budget == 0 {
                        return false;
                    }
                }
                return false;
            }
            b'?' => {
                if s.is_empty() {
                    return false;
                }
                s = &s[1..];
            }
            b'[' => {
                if s.is_empty() {
                    return false;
                }
                p = &p[1..];
                let not = !p.is_empty() && p[0] == b'^';
                if not {
                    p = &p[1..];
                }
                let mut matched = false;
                loop {
                    if p.is_empty() {
                        break;
                    }
                    if p[0] == b'\\' && p.len() >= 2 {
                        p = &p[1..];
                        if eq(p[0], s[0], nocase) {
                            matched = true;
                        }
                    } else if p[0] == b']' {
                        break;
                    } else if p.len() >= 3 && p[1] == b'-' {
                        let (mut lo, mut hi) = (p[0], p[2]);
                        if lo > hi {
                            std::mem::swap(&mut lo, &mut hi);
                        }
                        let c = s[0];
                        let hit = if nocase {
                            let c = c.to_ascii_lowercase();
                            (lo.to_ascii_lowercase()..=hi.to_ascii_lowercase()).contains(&c)
                        } else {
                            (lo..=hi).contains(&c)
                        };
                        if hit {
                            matched = true;
                        }
                        p = &p[2..];
                    } else if eq(p[0], s[0], nocase) {
                        matched = true;
                    }
                    p = &p[1..];
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s = &s[1..];
                if p.is_empty() {
                    // Unterminated class: the pattern ends here.
                    return s.is_empty();
                }
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if s.is_empty() || !eq(p[0], s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
            c => {
                if s.is_empty() || !eq(c, s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
    }
    s.is_empty()
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
        assert!(matches(b"*", b"", false));
        assert!(matches(b"HELLO", b"hello", true));
        assert!(matches(b"a*b*c", b"axxbyyc", false));
        assert!(!matches(b"a*b*c", b"axxbyy", false));
    }
}
