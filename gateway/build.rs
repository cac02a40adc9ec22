//! Embeds the built-in plugins (`plugins/builtin/*`, built to components by `scripts/build-plugins.sh`)
//! into the binary, so one `sluice` file carries key-auth, limit-count and the rest.
//!
//! Why embed rather than load from disk: a gateway whose auth plugin is a separate file can be started
//! without it, and then routes that should be protected fail config validation at best. Why a build
//! script that only *includes* prebuilt components rather than compiling them: the guests build for
//! another target with their own profile, and nesting that cargo run inside the host build would contend
//! for the target-dir lock on every host build (see `scripts/build-plugins.sh`).
//!
//! A component that is missing at build time is left out with a cargo warning (so `cargo check` works on
//! a fresh clone); the gateway lists what it has at `GET /apisix/admin/plugins/list`.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("gateway/ sits in the workspace root");
    let builtin_dir = root.join("plugins/builtin");
    let components = std::env::var_os("SLUICE_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/plugins"));
    println!("cargo:rerun-if-env-changed=SLUICE_PLUGINS_DIR");
    println!("cargo:rerun-if-changed={}", builtin_dir.display());

    let mut names = crate_names(&builtin_dir);
    names.sort();
    let mut table = String::from("pub static BUILTINS: &[(&str, &[u8])] = &[\n");
    for name in names {
        let wasm = components.join(format!("{name}.wasm"));
        println!("cargo:rerun-if-changed={}", wasm.display());
        if wasm.is_file() {
            let _ = writeln!(
                table,
                "    ({name:?}, include_bytes!({:?})),",
                wasm.display().to_string()
            );
        } else {
            println!(
                "cargo:warning=built-in plugin {name} is not built ({} missing); run scripts/build-plugins.sh",
                wasm.display()
            );
        }
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("builtins.rs");
    std::fs::write(out, table).expect("writing builtins.rs");
}

/// Package names of the crates under `plugins/builtin/` (each is one plugin, named as in APISIX).
fn crate_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("Cargo.toml")).ok())
        .filter_map(|toml| {
            toml.lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix("name").map(str::trim))
                .and_then(|rest| rest.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
        })
        .collect()
}
