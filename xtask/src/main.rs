//! `cargo xtask`: repository chores. `cargo xtask tidy` runs the same checks as `cargo test -p xtask`;
//! `cargo xtask bench` runs the whole-build benchmark script (never in CI).

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
        Some("bench") => {
            eprintln!("Run bench/genrules/run.sh (it installs Bazel and hyperfine and writes bench/results/)");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: cargo xtask tidy|bench");
            ExitCode::from(2)
        }
    }
}
