//! The extra libraries Redis gives scripts: `cjson`, `struct`, `cmsgpack`
//! and `bit`, implemented over the Lua C API with the behaviour of the C
//! modules Redis 7.0 bundles.

mod bit;
mod cjson;
mod cmsgpack;
mod struct_;

use super::ffi::*;

/// Sets the library tables as globals.
pub(crate) unsafe fn open(l: L) {
    unsafe {
        cjson::open(l);
        lua_setglobal(l, c"cjson".as_ptr());
        struct_::open(l);
        lua_setglobal(l, c"struct".as_ptr());
        cmsgpack::open(l);
        lua_setglobal(l, c"cmsgpack".as_ptr());
        bit::open(l);
        lua_setglobal(l, c"bit".as_ptr());
    }
}
