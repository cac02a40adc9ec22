use sluice_plugin_sdk::{export_plugin, request, Decision, Plugin};

#[derive(serde::Deserialize)]
pub struct Config {
    name: String,
    value: String,
}

pub struct AddHeader;

#[export_plugin]
impl Plugin for AddHeader {
    type Config = Config;
    fn access(cfg: &Config) -> Decision {
        let _ = request::set_header(&cfg.name, &cfg.value);
        Decision::Continue
    }
}
