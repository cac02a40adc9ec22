//! Errors of the plugin runtime: faults while a plugin runs, config rejections, upload rejections.
use super::state::Phase;
use std::fmt;

/// Where in a plugin's lifecycle a fault happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallSite {
    /// `info()` at load.
    Info,
    /// `validate(config)`.
    Validate,
    /// `configure(config)`.
    Configure,
    /// A phase.
    Phase(Phase),
    /// Creating an instance.
    Instantiate,
}

impl fmt::Display for CallSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallSite::Info => f.write_str("info"),
            CallSite::Validate => f.write_str("validate"),
            CallSite::Configure => f.write_str("configure"),
            CallSite::Phase(p) => f.write_str(p.as_str()),
            CallSite::Instantiate => f.write_str("instantiate"),
        }
    }
}

/// What kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The guest trapped (panic, `unreachable`, out-of-bounds access, ...).
    Trap,
    /// The guest ran past its deadline and was interrupted.
    Deadline,
    /// The guest wanted more linear memory (or table space) than its limit.
    Memory,
    /// The guest returned something the contract forbids (e.g. `respond` from `log`, an invalid header).
    Contract,
    /// The host could not run the guest (instance limits reached, instantiation failed).
    Host,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Trap => "trapped",
            FaultKind::Deadline => "ran past its deadline",
            FaultKind::Memory => "exceeded its memory limit",
            FaultKind::Contract => "broke the plugin contract",
            FaultKind::Host => "could not be run",
        })
    }
}

/// A plugin failed while running. The instance it ran in is discarded; the next call gets a fresh one.
///
/// The gateway answers 500 with a generic body (or skips the plugin when its config says `fail_open`) and
/// logs `{fault}` plus [`PluginFault::backtrace`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin:?} {kind} in {site}: {message}")]
pub struct PluginFault {
    /// Plugin name.
    pub plugin: String,
    /// Where it happened.
    pub site: CallSite,
    /// What happened.
    pub kind: FaultKind,
    /// Wasmtime's description of the trap or the contract violation.
    pub message: String,
    /// The wasm backtrace (function names from the name section), when there is one.
    pub backtrace: Option<String>,
}

impl PluginFault {
    /// True for a trap (panic, unreachable, ...).
    pub fn is_trap(&self) -> bool {
        self.kind == FaultKind::Trap
    }
    /// True when the deadline interrupted the plugin.
    pub fn is_deadline(&self) -> bool {
        self.kind == FaultKind::Deadline
    }
    /// True when the plugin hit its memory limit.
    pub fn is_memory(&self) -> bool {
        self.kind == FaultKind::Memory
    }
}

/// `validate` or `configure` refused a config, or the plugin faulted while checking it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// The plugin's own message (serde's, or its `validate` hook's), to show the admin as is.
    #[error("{0}")]
    Rejected(String),
    /// The plugin faulted while checking the config.
    #[error(transparent)]
    Fault(#[from] PluginFault),
}

/// An uploaded binary was refused. Each message says what is wrong and, where it helps, what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UploadError {
    /// Over the size limit.
    #[error("plugin binary is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// Upload size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// No `\0asm` header.
    #[error("not a WebAssembly binary (it does not start with the \\0asm header)")]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component; build it with scripts/build-plugins.sh \
         (which componentizes it) or `wasm-tools component new`"
    )]
    NotAComponent,
    /// Invalid or truncated bytes.
    #[error("invalid WebAssembly component: {0}")]
    Malformed(String),
    /// Imports something outside the `sluice:plugin` world.
    #[error(
        "the component imports `{0}`, which Sluice does not provide; plugins may import only \
         sluice:plugin@0.1.0 interfaces (no WASI file system, sockets, environment or other WASI access)"
    )]
    DisallowedImport(String),
    /// Not a `sluice:plugin/plugin` component (missing or mistyped exports or imports).
    #[error("the component does not target the sluice:plugin/plugin@0.1.0 world: {0}")]
    WrongWorld(String),
    /// Cranelift failed.
    #[error("compiling the component failed: {0}")]
    Compile(String),
    /// `info()` faulted or returned nonsense.
    #[error("the plugin's info() failed: {0}")]
    Info(String),
}

impl UploadError {
    /// Stable short code for the admin API and tests.
    pub fn code(&self) -> &'static str {
        match self {
            UploadError::TooLarge { .. } => "too_large",
            UploadError::NotWasm => "not_wasm",
            UploadError::NotAComponent => "not_a_component",
            UploadError::Malformed(_) => "malformed",
            UploadError::DisallowedImport(_) => "disallowed_import",
            UploadError::WrongWorld(_) => "wrong_world",
            UploadError::Compile(_) => "compile",
            UploadError::Info(_) => "info",
        }
    }
}

/// Renders a wasmtime error with its causes, as `a: b: c`.
pub(crate) fn error_chain(e: &wasmtime::Error) -> String {
    let mut out = String::new();
    for (i, cause) in e.chain().enumerate() {
        if i > 0 {
            out.push_str(": ");
        }
        out.push_str(&cause.to_string());
    }
    out
}
