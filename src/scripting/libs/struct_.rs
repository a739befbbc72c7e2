//! The `struct` library (Roberto Ierusalimschy's struct.c as shipped with
//! Redis): `pack`, `unpack` and `size` of binary records described by a
//! format string.

use std::ffi::c_int;

use crate::scripting::convert::c_double_to_i64;
use crate::scripting::ffi::*;

/// Largest integer size (`i32` / `I32`).
const MAXINTSIZE: usize = 32;
/// Default and largest alignment (`!` alone): a double's alignment.
const MAXALIGN: usize = 8;

/// Pushes the `struct` table.
pub(crate) unsafe fn open(l: L) {
    unsafe {
        lua_newtable(l);
        set_fn(l, c"pack", pack);
        set_fn(l, c"unpack", unpack);
        set_fn(l, c"size", size);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Endian {
    Big,
    Little,
}

struct Header {
    endian: Endian,
    align: usize,
}

impl Header {
    fn new() -> Header {
        Header {
            endian: Endian::Little,
            align: 1,
        }
    }
}

/// A format string walked option by option; errors are raised as Lua errors
/// (nothing owned lives across them).
struct Fmt<'a> {
    s: &'a [u8],
    i: usize,
}

impl Fmt<'_> {
    fn next(&mut self) -> Option<u8> {
        let c = *self.s.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    unsafe fn num(&mut self, l: L, default: usize) -> usize {
        if !self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            return default;
        }
        let mut a: i32 = 0;
        while let Some(&d) = self.s.get(self.i).filter(|c| c.is_ascii_digit()) {
            let d = (d - b'0') as i32;
            if a > i32::MAX / 10 || a * 10 > i32::MAX - d {
                unsafe { raise_where(l, "integral size overflow") };
            }
            a = a * 10 + d;
            self.i += 1;
        }
        a as usize
    }

    /// The size of option `opt` (reading its count digits).
    unsafe fn optsize(&mut self, l: L, opt: u8) -> usize {
        match opt {
            b'B' | b'b' => 1,
            b'H' | b'h' => 2,
            b'L' | b'l' | b'T' | b'd' => 8,
            b'f' => 4,
            b'x' => 1,
            b'c' => unsafe { self.num(l, 1) },
            b'i' | b'I' => {
                let sz = unsafe { self.num(l, 4) };
                if sz > MAXINTSIZE {
                    unsafe {
                        raise_where(
                            l,
                            format!("integral size {sz} is larger than limit of {MAXINTSIZE}"),
                        )
                    };
                }
                sz
            }
            _ => 0,
        }
    }

    /// Endianness, alignment and spaces; anything else is a bad option.
    unsafe fn control(&mut self, l: L, opt: u8, h: &mut Header) {
        match opt {
            b' ' => {}
            b'>' => h.endian = Endian::Big,
            b'<' => h.endian = Endian::Little,
            b'!' => {
                let a = unsafe { self.num(l, MAXALIGN) };
                if a & a.wrapping_sub(1) != 0 {
                    unsafe { raise_where(l, format!("alignment {a} is not a power of 2")) };
                }
                h.align = a;
            }
            _ => unsafe {
                let mut msg = b"invalid format option '".to_vec();
                msg.push(opt);
                msg.push(b'\'');
                push_bytes(l, &msg);
                drop(msg);
                luaL_argerror(l, 1, lua_tostring(l, -1));
            },
        }
    }
}

/// Padding needed before an item of `size` at offset `len`.
fn gettoalign(len: usize, h: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align);
    size.wrapping_sub(len & size.wrapping_sub(1)) & size.wrapping_sub(1)
}

unsafe fn fmt_arg<'a>(l: L) -> Fmt<'a> {
    unsafe {
        let s = std::ffi::CStr::from_ptr(luaL_checklstring(l, 1, std::ptr::null_mut()));
        Fmt {
            s: std::slice::from_raw_parts(s.as_ptr() as *const u8, s.to_bytes().len()),
            i: 0,
        }
    }
}

/// The `size` low bytes of `n` as an integer, in `endian` order.
fn put_int(n: f64, endian: Endian, size: usize) -> [u8; MAXINTSIZE] {
    let mut value = if n < 0.0 {
        c_double_to_i64(n) as u64
    } else {
        n as u64
    };
    let mut buf = [0u8; MAXINTSIZE];
    for i in 0..size {
        let at = if endian == Endian::Little {
            i
        } else {
            size - 1 - i
        };
        buf[at] = value as u8;
        value >>= 8;
    }
    buf
}

/// Appends `bytes` to the output string kept on top of the stack.
unsafe fn append(l: L, bytes: &[u8]) {
    unsafe {
        push_bytes(l, bytes);
        lua_concat(l, 2);
    }
}

/// `struct.pack(fmt, ...)`. The output grows as a Lua string on top of the
/// stack, and every argument is checked before its bytes are computed, so an
/// argument error leaves nothing owned behind.
unsafe extern "C-unwind" fn pack(l: L) -> c_int {
    unsafe {
        let mut f = fmt_arg(l);
        let mut h = Header::new();
        let mut arg = 2;
        let mut total = 0usize;
        push_cstr(l, c"");
        while let Some(opt) = f.next() {
            let mut size = f.optsize(l, opt);
            let toalign = gettoalign(total, &h, opt, size);
            total += toalign;
            for _ in 0..toalign {
                append(l, &[0]);
            }
            match opt {
                b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                    let n = luaL_checknumber(l, arg);
                    arg += 1;
                    append(l, &put_int(n, h.endian, size)[..size]);
                }
                b'x' => append(l, &[0]),
                b'f' => {
                    let v = luaL_checknumber(l, arg) as f32;
                    arg += 1;
                    append(
                        l,
                        &match h.endian {
                            Endian::Little => v.to_le_bytes(),
                            Endian::Big => v.to_be_bytes(),
                        },
                    );
                }
                b'd' => {
                    let v = luaL_checknumber(l, arg);
                    arg += 1;
                    append(
                        l,
                        &match h.endian {
                            Endian::Little => v.to_le_bytes(),
                            Endian::Big => v.to_be_bytes(),
                        },
                    );
                }
                b'c' | b's' => {
                    let mut len = 0;
                    let s = luaL_checklstring(l, arg, &mut len);
                    arg += 1;
                    if size == 0 {
                        size = len;
                    }
                    if len < size {
                        luaL_argerror(l, arg, c"string too short".as_ptr());
                    }
                    append(l, std::slice::from_raw_parts(s as *const u8, size));
                    if opt == b's' {
                        append(l, &[0]);
                        size += 1;
                    }
                }
                _ => f.control(l, opt, &mut h),
            }
            total += size;
        }
        1
    }
}

fn get_int(data: &[u8], endian: Endian, signed: bool, size: usize) -> f64 {
    let mut v: u64 = 0;
    for i in 0..size {
        let b = if endian == Endian::Big {
            data[i]
        } else {
            data[size - 1 - i]
        };
        v = (v << 8) | b as u64;
    }
    if !signed {
        return v as f64;
    }
    // x86 masks the shift count, as the C original relies on.
    let mask = (!0u64).wrapping_shl((size * 8).wrapping_sub(1) as u32);
    if v & mask != 0 {
        v |= mask;
    }
    v as i64 as f64
}

unsafe extern "C-unwind" fn unpack(l: L) -> c_int {
    unsafe {
        let mut f = fmt_arg(l);
        let mut ld = 0usize;
        let data = luaL_checklstring(l, 2, &mut ld);
        let data = std::slice::from_raw_parts(data as *const u8, ld);
        // Redis's check of the offset is on an unsigned value, so a bad one
        // surfaces as "data string too short".
        let mut pos = (luaL_optinteger(l, 3, 1) as usize).wrapping_sub(1);
        let mut h = Header::new();
        let mut n = 0;
        while let Some(opt) = f.next() {
            let mut size = f.optsize(l, opt);
            pos = pos.wrapping_add(gettoalign(pos, &h, opt, size));
            if !(size <= ld && pos <= ld - size) {
                luaL_argerror(l, 2, c"data string too short".as_ptr());
            }
            luaL_checkstack(l, 2, c"too many results".as_ptr());
            match opt {
                b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                    let v = get_int(&data[pos..], h.endian, opt.is_ascii_lowercase(), size);
                    lua_pushnumber(l, v);
                    n += 1;
                }
                b'x' => {}
                b'f' => {
                    let b: [u8; 4] = data[pos..pos + 4].try_into().unwrap_or_default();
                    let v = match h.endian {
                        Endian::Little => f32::from_le_bytes(b),
                        Endian::Big => f32::from_be_bytes(b),
                    };
                    lua_pushnumber(l, v as f64);
                    n += 1;
                }
                b'd' => {
                    let b: [u8; 8] = data[pos..pos + 8].try_into().unwrap_or_default();
                    let v = match h.endian {
                        Endian::Little => f64::from_le_bytes(b),
                        Endian::Big => f64::from_be_bytes(b),
                    };
                    lua_pushnumber(l, v);
                    n += 1;
                }
                b'c' => {
                    if size == 0 {
                        if n == 0 || lua_isnumber(l, -1) == 0 {
                            raise_where(l, "format 'c0' needs a previous size");
                        }
                        size = lua_tonumber(l, -1) as usize;
                        lua_pop(l, 1);
                        n -= 1;
                        if !(size <= ld && pos <= ld - size) {
                            luaL_argerror(l, 2, c"data string too short".as_ptr());
                        }
                    }
                    push_bytes(l, &data[pos..pos + size]);
                    n += 1;
                }
                b's' => {
                    let Some(e) = data[pos..].iter().position(|&c| c == 0) else {
                        raise_where(l, "unfinished string in data");
                    };
                    size = e + 1;
                    push_bytes(l, &data[pos..pos + e]);
                    n += 1;
                }
                _ => f.control(l, opt, &mut h),
            }
            pos = pos.wrapping_add(size);
        }
        lua_pushnumber(l, pos.wrapping_add(1) as f64);
        n + 1
    }
}

unsafe extern "C-unwind" fn size(l: L) -> c_int {
    unsafe {
        let mut f = fmt_arg(l);
        let mut h = Header::new();
        let mut pos = 0usize;
        while let Some(opt) = f.next() {
            let size = f.optsize(l, opt);
            pos = pos.wrapping_add(gettoalign(pos, &h, opt, size));
            if opt == b's' {
                luaL_argerror(l, 1, c"option 's' has no fixed size".as_ptr());
            } else if opt == b'c' && size == 0 {
                luaL_argerror(l, 1, c"option 'c0' has no fixed size".as_ptr());
            }
            if !opt.is_ascii_alphanumeric() {
                f.control(l, opt, &mut h);
            }
            pos = pos.wrapping_add(size);
        }
        lua_pushnumber(l, pos as f64);
        1
    }
}
