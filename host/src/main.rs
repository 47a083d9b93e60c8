//! The `bagpipe` command line. The work is in the library; this file only parses, sets up
//! logging and the runtime, and turns outcomes into exit codes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Bags are allocated on one worker thread (checked and stamped where the sender runs) and freed
/// on another (where the receiver took them): mimalloc's per-thread free lists take that in
/// stride, where glibc's malloc takes arena locks and consolidates.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Dropped last: what is logged until the very end is written out.
    let logs = cli::init_logging(&args.log, args.log_format);
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(cli::dispatch(args, logs.feed.clone()));
    // Everything has been joined unless a second signal forced the stop; then nothing is waited for.
    runtime.shutdown_background();
    code
}

/// Blocks may hold thousands of connections: lift the soft limit on open files to the hard one.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
