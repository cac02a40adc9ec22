//! The plugin host against real built components, without the proxy: phases, faults, limits, outbound calls.
//! One test binary for both files, so the wasmtime-linked test executable is built and linked once.
mod plugin_outbound;
mod plugin_runtime;
mod support;
