//! The built-in plugins compiled into this binary (see `gateway/build.rs`): APISIX-named Wasm components
//! built from `plugins/builtin/*` with our own SDK, the same way any third-party plugin is built.
//!
//! They are compiled on first use (a route, service, global rule or consumer naming one), not at start:
//! a gateway that uses two of them should not pay to compile twelve, and the compiled artifact is cached
//! in the store like an uploaded plugin's, so a restart does not compile again.

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The component bytes of a built-in plugin.
pub fn component(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Names of the built-in plugins, sorted.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(n, _)| *n)
}
