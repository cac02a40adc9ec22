//! Implements every phase and does nothing: the host's call-cost baseline.
use sluice_plugin_sdk::{export_plugin, Decision, Plugin};

pub struct Noop;

#[export_plugin]
impl Plugin for Noop {
    type Config = serde::de::IgnoredAny;
    fn rewrite(_: &Self::Config) -> Decision {
        Decision::Continue
    }
    fn access(_: &Self::Config) -> Decision {
        Decision::Continue
    }
    fn header_filter(_: &Self::Config) -> Decision {
        Decision::Continue
    }
    fn body_filter(_: &Self::Config) {}
    fn log(_: &Self::Config) {}
}
