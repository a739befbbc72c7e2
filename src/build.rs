//! Build script: compiles the C `long double` shim used by INCRBYFLOAT and
//! HINCRBYFLOAT (see `src/commands/longdouble.c`).

fn main() {
    println!("cargo:rerun-if-changed=src/commands/longdouble.c");
    cc::Build::new()
        .file("src/commands/longdouble.c")
        .opt_level(2)
        .warnings(true)
        .compile("ringkv_longdouble");
}
