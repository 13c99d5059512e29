//! `cargo xtask`: repository chores. `cargo xtask tidy` runs the same checks as `cargo test -p xtask`;
//! `cargo xtask test` runs the whole test suite after making sure of Go and Bazel (what CI runs);
//! `cargo xtask bench` points at the whole-build benchmark scripts (never in CI).

mod test_suite;
mod tidy;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("tidy") => match tidy::check_all(&tidy::repo_root()) {
            Ok(()) => {
                eprintln!("tidy: ok");
                ExitCode::SUCCESS
            }
            Err(problems) => {
                for problem in problems {
                    eprintln!("tidy: {problem}");
                }
                ExitCode::FAILURE
            }
        },
        Some("test") => test_suite::run(&args[1..]),
        Some("bench") => {
            eprintln!("Run bench/genrules/run.sh (it installs Bazel and hyperfine and writes bench/results/)");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: cargo xtask tidy|test [cargo test args]|bench");
            ExitCode::from(2)
        }
    }
}
