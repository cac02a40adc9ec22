//! Upload validation: cheap byte-level checks before compiling, then checks of the compiled component's
//! imports and exports against the `sluice:plugin/plugin@0.1.0` world.
use super::fault::UploadError;
use wasmtime::component::Component;
use wasmtime::Engine;

/// Interfaces a plugin may import: exactly the world's imports.
pub const ALLOWED_IMPORTS: [&str; 14] = [
    "sluice:plugin/request@0.1.0",
    "sluice:plugin/response@0.1.0",
    "sluice:plugin/context@0.1.0",
    "sluice:plugin/consumers@0.1.0",
    "sluice:plugin/counters@0.1.0",
    "sluice:plugin/shared@0.1.0",
    "sluice:plugin/kv@0.1.0",
    "sluice:plugin/cache@0.1.0",
    "sluice:plugin/http-outbound@0.1.0",
    "sluice:plugin/logging@0.1.0",
    "sluice:plugin/log-sink@0.1.0",
    "sluice:plugin/metrics@0.1.0",
    "sluice:plugin/random@0.1.0",
    "sluice:plugin/clock@0.1.0",
];

/// Types-only interface the others `use`; components may import it too.
const TYPES_IMPORT: &str = "sluice:plugin/types@0.1.0";

/// Functions the world exports.
pub const REQUIRED_EXPORTS: [&str; 9] = [
    "info",
    "validate",
    "configure",
    "release",
    "rewrite",
    "access",
    "header-filter",
    "body-filter",
    "log",
];

/// Size and header checks (microseconds), done before anything else.
pub fn check_header(bytes: &[u8], max_size: usize) -> Result<(), UploadError> {
    if bytes.len() > max_size {
        return Err(UploadError::TooLarge {
            size: bytes.len(),
            limit: max_size,
        });
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(UploadError::NotWasm);
    }
    if wasmparser::Parser::is_core_wasm(bytes) {
        return Err(UploadError::NotAComponent);
    }
    if !wasmparser::Parser::is_component(bytes) {
        return Err(UploadError::Malformed(format!(
            "unknown WebAssembly version/layer {:02x?}",
            &bytes[4..8]
        )));
    }
    Ok(())
}

/// Full structural validation (about a millisecond per 100 KB): truncated or malformed bytes get a precise
/// message here rather than a compile error. Skipped when the artifact cache already has these exact bytes.
pub fn check_structure(bytes: &[u8]) -> Result<(), UploadError> {
    let mut validator =
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::default());
    validator
        .validate_all(bytes)
        .map_err(|e| UploadError::Malformed(e.to_string()))?;
    Ok(())
}

/// Checks the compiled component's imports and exports against the world.
pub fn check_world(engine: &Engine, component: &Component) -> Result<(), UploadError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        if name != TYPES_IMPORT && !ALLOWED_IMPORTS.contains(&name) {
            return Err(UploadError::DisallowedImport(name.to_string()));
        }
    }
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let missing: Vec<&str> = REQUIRED_EXPORTS
        .iter()
        .copied()
        .filter(|e| !exports.contains(e))
        .collect();
    if !missing.is_empty() {
        return Err(UploadError::WrongWorld(format!(
            "missing export{} {}; build the plugin with sluice-plugin-sdk (world sluice:plugin/plugin@0.1.0)",
            if missing.len() > 1 { "s" } else { "" },
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}
