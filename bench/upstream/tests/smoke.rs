//! The benchmark harness's smoke variant, run by the test suite: `bench/run.sh --smoke` starts every
//! contender (Sluice in each configuration, nginx, HAProxy, the direct upstream), loads each for a second
//! and writes the report. The figures mean nothing here (debug binaries, 1 s runs); what the test holds is
//! that the harness still works end to end and that every scenario answered its load without errors, so
//! a change that breaks a contender or the harness fails CI rather than the next manual benchmark run.
//!
//! The peers come from Debian (`scripts/setup.sh` installs them); the Sluice binary is the debug one the
//! gateway's own integration tests build (`SLUICE_BIN` overrides it).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("bench/upstream sits two levels below the workspace")
        .to_path_buf()
}

fn sluice_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
        Some(t) => workspace().join(t),
        None => workspace().join("target"),
    };
    target.join("debug").join("sluice")
}

/// The scenarios `run.sh --list` names as runnable (status `ok`).
fn scenarios(run_sh: &Path) -> Vec<String> {
    let out = Command::new("bash")
        .arg(run_sh)
        .arg("--list")
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "run.sh --list failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let (name, _proto, status) = (cols.next()?, cols.next()?, cols.next()?);
            (status == "ok").then(|| name.to_string())
        })
        .collect()
}

/// The report's throughput row for `name`: (req/s, errors).
fn row(report: &str, name: &str) -> Option<(f64, u64)> {
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("| **{name}**:")))?;
    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
    // | name | req/s (range) | p50 | p99 | p99.9 | errors | ...
    let rps = cells.get(2)?.split_whitespace().next()?.replace(',', "");
    let errors = cells.get(6)?.replace(',', "");
    Some((rps.parse().ok()?, errors.parse().ok()?))
}

#[test]
fn every_contender_answers_in_the_smoke_run() {
    let root = workspace();
    let run_sh = root.join("bench/run.sh");
    let sluice = sluice_bin();
    assert!(
        sluice.is_file(),
        "no sluice binary at {} (cargo test --workspace builds it)",
        sluice.display()
    );
    let out = tempfile::tempdir().expect("temp dir");
    let status = Command::new("bash")
        .arg(&run_sh)
        .args(["--smoke", "--skip-install", "--out", "smoke"])
        .arg("--sluice-bin")
        .arg(&sluice)
        .arg("--upstream-bin")
        .arg(env!("CARGO_BIN_EXE_bench-upstream"))
        .arg("--results-dir")
        .arg(out.path())
        .current_dir(&root)
        .status()
        .expect("bash runs");
    assert!(status.success(), "bench/run.sh --smoke failed: {status}");

    let report = std::fs::read_to_string(out.path().join("smoke.md")).expect("report written");
    assert!(
        out.path().join("smoke.svg").is_file(),
        "chart written beside the report"
    );
    let names = scenarios(&run_sh);
    assert!(names.len() >= 10, "scenarios listed: {names:?}");
    for name in &names {
        let (rps, errors) = row(&report, name)
            .unwrap_or_else(|| panic!("{name} missing from the report:\n{report}"));
        assert!(rps > 0.0, "{name} served nothing:\n{report}");
        assert_eq!(errors, 0, "{name} had errors:\n{report}");
    }
}
