//! Test fixture: misbehaves in the phase its config names, and is a no-op elsewhere.
//! Config: `{"phase": "rewrite"|"access"|"header-filter"|"body-filter"|"log", "fault": "trap"|"loop"|"memory"|"none"}`.
use sluice_plugin_sdk::{export_plugin, request, Decision, Plugin};

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    None,
    Trap,
    Loop,
    Memory,
}

#[derive(serde::Deserialize)]
pub struct Config {
    phase: String,
    fault: Fault,
}

fn maybe_fault(cfg: &Config, phase: &str) {
    if cfg.phase != phase {
        return;
    }
    match cfg.fault {
        Fault::None => {}
        Fault::Trap => panic!("fault fixture: trap in {phase}"),
        Fault::Loop => {
            let mut i: u64 = 0;
            loop {
                i = std::hint::black_box(i.wrapping_add(1));
            }
        }
        Fault::Memory => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![0xA5; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
    }
}

pub struct Faults;

#[export_plugin]
impl Plugin for Faults {
    type Config = Config;
    fn rewrite(cfg: &Config) -> Decision {
        maybe_fault(cfg, "rewrite");
        Decision::Continue
    }
    fn access(cfg: &Config) -> Decision {
        maybe_fault(cfg, "access");
        // Proves the instance is alive after a fault elsewhere.
        let _ = request::set_header("x-faults-ok", "1");
        Decision::Continue
    }
    fn header_filter(cfg: &Config) -> Decision {
        maybe_fault(cfg, "header-filter");
        Decision::Continue
    }
    fn body_filter(cfg: &Config) {
        maybe_fault(cfg, "body-filter");
    }
    fn log(cfg: &Config) {
        maybe_fault(cfg, "log");
    }
}
