//! Test fixture: a plugin that breaks the contract, written against the WIT directly.
//! - access: responds with an invalid header name;
//! - header-filter: responds with status 1000;
//! - log: responds (not allowed in log).
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    path: "../../../wit/sluice-plugin@0.1.0",
    world: "sluice:plugin/plugin@0.1.0",
});

use sluice::plugin::types::{HeaderField, Phase, Response};

struct Contract;

fn respond(status: u16, headers: Vec<HeaderField>) -> Decision {
    Decision::Respond(Response {
        status,
        headers,
        body: Vec::new(),
    })
}

impl Guest for Contract {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "contract".into(),
            version: "0.1.0".into(),
            priority: 0,
            phases: vec![Phase::Access, Phase::HeaderFilter, Phase::Log],
            consumer_credential: None,
        }
    }
    fn validate(_config: String) -> Result<(), String> {
        Ok(())
    }
    fn validate_consumer(_config: String) -> Result<(), String> {
        Ok(())
    }
    fn configure(_config: String) -> Result<ConfigHandle, String> {
        Ok(0)
    }
    fn release(_handle: ConfigHandle) {}
    fn rewrite(_handle: ConfigHandle) -> Decision {
        Decision::Continue
    }
    fn access(_handle: ConfigHandle) -> Decision {
        respond(
            403,
            vec![HeaderField {
                name: "bad name".into(),
                value: "v".into(),
            }],
        )
    }
    fn header_filter(_handle: ConfigHandle) -> Decision {
        respond(1000, Vec::new())
    }
    fn body_filter(_handle: ConfigHandle) -> Decision {
        Decision::Continue
    }
    fn log(_handle: ConfigHandle) -> Decision {
        respond(200, Vec::new())
    }
}

export!(Contract);
