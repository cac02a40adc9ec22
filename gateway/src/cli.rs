//! The `sluice` command line.

use crate::settings::ServeArgs;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a WebAssembly-programmable API gateway",
    long_about = "Sluice routes HTTP traffic to upstreams and runs WebAssembly plugins at each phase \
                  of a request. Configure it through the APISIX-compatible admin API."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: proxy listener, admin API, embedded store.
    Serve(ServeArgs),
}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let settings = args.resolve()?;
            let _log_guard = crate::logging::init(settings.log_format, &settings.log_level)?;
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.enable_all();
            if let Some(n) = settings.workers {
                runtime.worker_threads(n);
            }
            let runtime = runtime.build()?;
            runtime.block_on(crate::server::run(settings))
        }
    }
}
