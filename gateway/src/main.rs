/// jemalloc rather than glibc's malloc: per request the proxy allocates and frees many small objects
/// (header maps, bytes, futures) on several worker threads. Measured on the plain proxy (BENCHMARKS.md):
/// CPU per request 32.2 µs with glibc, 27.7 µs with jemalloc, 27.3 µs with mimalloc; peak RSS 27, 49 and
/// 73 MiB. jemalloc takes nearly all of the gain for half of mimalloc's extra memory (Pingora and TiKV
/// made the same choice).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    match sluice::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
