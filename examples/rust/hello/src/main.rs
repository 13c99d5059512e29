//! `hello [LANGUAGE] [NAME] [--json]`: prints a greeting, and the version and profile it was built
//! with; `--json` prints the greeting as JSON through serde.

use serde::Serialize;

/// A greeting as `--json` prints it.
#[derive(Serialize)]
struct Greeting<'a> {
    language: &'a str,
    text: String,
    version: &'static str,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let mut words = args.iter().filter(|a| *a != "--json");
    let language = words.next().map(String::as_str).unwrap_or("en");
    let name = words.next().map(String::as_str).unwrap_or("world");
    match greet::greet(language, name) {
        Some(text) if json => {
            let greeting = Greeting {
                language,
                text,
                version: env!("CARGO_PKG_VERSION"),
            };
            println!("{}", serde_json::to_string(&greeting).expect("serializable"));
        }
        Some(text) => {
            println!("{text}");
            println!(
                "hello {} (greet built for {})",
                env!("CARGO_PKG_VERSION"),
                greet::PROFILE
            );
        }
        None => {
            eprintln!("unknown language {language}");
            std::process::exit(2);
        }
    }
}
