//! An ordered list of configured plugins and how one phase runs through it.
//!
//! Built once per snapshot (never per request): entries are sorted by priority (higher first, as in
//! APISIX), ties by name so the order is stable across rebuilds.

use crate::otel::SpanScope;
use crate::plugin::{ConfiguredPlugin, Decision, Phase, PluginFault, PluginResponse, RequestState};
use std::sync::Arc;

pub struct ChainEntry {
    pub name: String,
    pub priority: i64,
    pub fail_open: bool,
    pub plugin: Arc<ConfiguredPlugin>,
}

#[derive(Default)]
pub struct PluginChain {
    entries: Vec<ChainEntry>,
}

impl PluginChain {
    pub fn new(mut entries: Vec<ChainEntry>) -> Self {
        entries.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        PluginChain { entries }
    }

    /// One chain running every entry of `chains`, re-sorted by priority. Global rules use this: two
    /// rules may configure the same plugin, and both configs must run.
    pub fn merge(chains: Vec<PluginChain>) -> Self {
        PluginChain::new(chains.into_iter().flat_map(|c| c.entries).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Whether any plugin here implements `phase` (lets the proxy skip building state it won't need).
    pub fn implements(&self, phase: Phase) -> bool {
        self.entries
            .iter()
            .any(|e| e.plugin.plugin().implements(phase))
    }

    /// Runs `phase` through every plugin in order. A `respond` (where the phase allows one) stops the
    /// chain and is returned. A fault is logged with the plugin's name, phase and backtrace; with
    /// `_meta.fail_open` the plugin is skipped, otherwise the fault is returned (the caller answers 500).
    /// With `trace` (spans exported), each call gets a child span of it.
    pub fn run(
        &self,
        phase: Phase,
        state: &mut RequestState,
        trace: Option<&SpanScope>,
    ) -> Result<Option<PluginResponse>, PluginFault> {
        for e in &self.entries {
            let span = trace
                .filter(|_| e.plugin.plugin().implements(phase))
                .map(|t| t.plugin(&e.name));
            let called = e.plugin.call(phase, state);
            if let Some(span) = span {
                if let Err(fault) = &called {
                    span.fail(format!("{:?}: {}", fault.kind, fault.message));
                }
                span.end();
            }
            match called {
                Ok(Decision::Continue) => {}
                Ok(Decision::Respond(r)) if phase.may_respond() => return Ok(Some(r)),
                Ok(Decision::Respond(_)) => {
                    tracing::warn!(plugin = %e.name, %phase, "plugin tried to respond in a phase that cannot; ignored");
                }
                Err(fault) => {
                    tracing::error!(
                        plugin = %e.name,
                        %phase,
                        kind = ?fault.kind,
                        error = %fault.message,
                        backtrace = fault.backtrace.as_deref().unwrap_or("-"),
                        fail_open = e.fail_open,
                        "plugin fault"
                    );
                    if !e.fail_open {
                        return Err(fault);
                    }
                }
            }
        }
        Ok(None)
    }
}
