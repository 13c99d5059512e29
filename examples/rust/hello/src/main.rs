//! `hello [LANGUAGE] [NAME]`: prints a greeting, and the version and profile it was built with.

fn main() {
    let mut args = std::env::args().skip(1);
    let language = args.next().unwrap_or_else(|| "en".to_string());
    let name = args.next().unwrap_or_else(|| "world".to_string());
    match greet::greet(&language, &name) {
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
