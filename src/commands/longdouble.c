/*
 * ringkv: C `long double` helpers for INCRBYFLOAT and HINCRBYFLOAT.
 *
 * Redis computes these increments in `long double` (80-bit x87 extended
 * precision on x86-64), parses with strtold and prints with "%.17Lf" minus
 * trailing zeros. Rust has no such type, so the arithmetic and the
 * formatting live here and Rust handles the values as opaque 16-byte blobs
 * (copied with memcpy, so Rust needs no particular alignment).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

/* Redis's MAX_LONG_DOUBLE_CHARS: the buffer for parsing and printing. */
#define RINGKV_LD_CHARS (5 * 1024)

/* The Rust side reserves 16 bytes for one long double. */
_Static_assert(sizeof(long double) <= 16, "long double must fit in 16 bytes");

/*
 * Parses `len` bytes with Redis's string2ld rules: non-empty and shorter than
 * the buffer, no leading space, all `len` bytes consumed (so no NUL inside),
 * no NaN, and no ERANGE overflow or total underflow. Returns 1 and stores
 * the value in `out` on success, 0 otherwise.
 */
int ringkv_ld_parse(const char *s, size_t len, void *out) {
    char buf[RINGKV_LD_CHARS];
    char *eptr;
    long double v;

    if (len == 0 || len >= sizeof(buf)) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v = strtold(buf, &eptr);
    if (isspace((unsigned char)buf[0]) || eptr[0] != '\0' ||
        (size_t)(eptr - buf) != len ||
        (errno == ERANGE &&
         (v == HUGE_VAL || v == -HUGE_VAL || fpclassify(v) == FP_ZERO)) ||
        errno == EINVAL || isnan(v))
        return 0;
    memcpy(out, &v, sizeof(v));
    return 1;
}

/* Converts an integer exactly (64-bit mantissa) as Redis does for
 * int-encoded strings. */
void ringkv_ld_from_i64(long long n, void *out) {
    long double v = (long double)n;
    memcpy(out, &v, sizeof(v));
}

/* out = a + b. */
void ringkv_ld_add(const void *a, const void *b, void *out) {
    long double x, y, r;
    memcpy(&x, a, sizeof(x));
    memcpy(&y, b, sizeof(y));
    r = x + y;
    memcpy(out, &r, sizeof(r));
}

/* 1 when the value is neither NaN nor infinite. */
int ringkv_ld_is_finite(const void *a) {
    long double x;
    memcpy(&x, a, sizeof(x));
    return !(isnan(x) || isinf(x));
}

/*
 * Formats like Redis's ld2string in LD_STR_HUMAN mode: "inf"/"-inf", else
 * "%.17Lf" with trailing zeros (and a bare '.') removed and "-0" turned into
 * "0". Writes at most `cap` bytes (no NUL) and returns the length, or 0 when
 * the buffer is too small.
 */
size_t ringkv_ld_format_human(const void *a, char *out, size_t cap) {
    char buf[RINGKV_LD_CHARS];
    long double x;
    size_t l;
    int n;

    memcpy(&x, a, sizeof(x));
    if (isinf(x)) {
        const char *s = x > 0 ? "inf" : "-inf";
        l = strlen(s);
        memcpy(buf, s, l);
    } else {
        n = snprintf(buf, sizeof(buf), "%.17Lf", x);
        if (n < 0 || (size_t)n + 1 > sizeof(buf)) return 0;
        l = (size_t)n;
        if (memchr(buf, '.', l) != NULL) {
            char *p = buf + l - 1;
            while (*p == '0') {
                p--;
                l--;
            }
            if (*p == '.') l--;
        }
        if (l == 2 && buf[0] == '-' && buf[1] == '0') {
            buf[0] = '0';
            l = 1;
        }
    }
    if (l > cap) return 0;
    memcpy(out, buf, l);
    return l;
}
