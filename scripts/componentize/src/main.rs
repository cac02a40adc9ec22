//! `sluice-componentize IN.wasm OUT.wasm`: core module → component (validated), via `wit-component`.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: sluice-componentize IN.wasm OUT.wasm");
        return ExitCode::from(2);
    };
    let result = std::fs::read(input)
        .map_err(|e| format!("read {input}: {e}"))
        .and_then(|module| {
            wit_component::ComponentEncoder::default()
                .validate(true)
                .module(&module)
                .and_then(|enc| enc.encode())
                .map_err(|e| format!("componentize {input}: {e:#}"))
        })
        .and_then(|component| {
            std::fs::write(output, &component).map_err(|e| format!("write {output}: {e}"))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-componentize: {e}");
            ExitCode::FAILURE
        }
    }
}
