//! The `kiln` binary: parses the command line, opens the workspace, and runs one command.
//! Kiln's own messages go to stderr; stdout belongs to `kiln run`'s program and `kiln query`.

mod allocator;
mod args;
mod commands;
mod config;
mod events_file;
mod exit;
mod query;
mod remote;
mod scratch_claim;
mod serve;
mod state;
mod ui;
mod watch;
mod workspace;

use clap::Parser;

fn main() {
    // The sandbox helper is this same binary, started by kiln-exec with a marker argument.
    if std::env::args().nth(1).as_deref() == Some(kiln_exec::HELPER_ARG) {
        kiln_exec::helper_main();
    }
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::SUCCESS
                }
                _ => exit::BAD_COMMAND_LINE,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    // Ctrl-C: stop at once with Bazel's "interrupted" code. Running actions die with us (the
    // sandbox helper has PDEATHSIG set); every cache and state write is atomic, so nothing is left
    // half-written. The memory scratch directory of a build under way is renamed out of the way
    // first, for the next kiln to remove (see `scratch_claim`).
    // While `kiln run` waits for its program, the program handles Ctrl-C itself and kiln
    // exits with the program's code.
    // `kiln serve` handles SIGINT and SIGTERM itself, finishing in-flight uploads first.
    let serving = matches!(cli.command, args::Command::Serve(_));
    let _ = (!serving).then(|| {
        ctrlc::set_handler(|| {
            use std::sync::atomic::Ordering;
            if exit::PROGRAM_IN_FOREGROUND.load(Ordering::SeqCst) {
                return;
            }
            if exit::WATCHING.load(Ordering::SeqCst) {
                // Stop the program `kiln watch run` started (and everything it started), then
                // leave.
                exit::stop_service();
                eprintln!("\nINFO: Stopped watching");
                scratch_claim::set_aside_claimed_and_exit(exit::SUCCESS);
            }
            eprintln!("\nINFO: Interrupted; stopping");
            scratch_claim::set_aside_claimed_and_exit(exit::INTERRUPTED);
        })
    });
    // A panic is a bug in Kiln: say so and exit with Bazel's "internal error" code, not 101.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("ERROR: Internal error (a bug in Kiln, please report it): {info}");
        exit::stop_service();
        std::process::exit(exit::INTERNAL);
    }));
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            let code = exit::code_of(&error);
            let text = format!("{error:#}");
            if !text.is_empty() {
                eprintln!("ERROR: {text}");
            }
            code
        }
    };
    exit::stop_service();
    std::process::exit(code);
}
