//! Greetings in a few languages; the table comes from the build script.

include!(concat!(env!("OUT_DIR"), "/languages.rs"));

/// The profile the build script saw (`debug` or `release`).
pub const PROFILE: &str = env!("GREET_PROFILE");

/// Whether the build script's cfg reached the crate.
pub fn built_with_build_script() -> bool {
    cfg!(greet_build_info)
}

/// Greets `name` in `language`, or `None` for a language the table does not know.
pub fn greet(language: &str, name: &str) -> Option<String> {
    LANGUAGES
        .iter()
        .find(|(l, _)| *l == language)
        .map(|(_, hello)| format!("{hello}, {name}!"))
}

/// Greets loudly.
pub fn shout(language: &str, name: &str) -> Option<String> {
    greet(language, name).map(|g| format!("{} {}", g.to_uppercase(), shout::shout!("again")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_in_french() {
        assert_eq!(greet("fr", "Ada").as_deref(), Some("Bonjour, Ada!"));
    }

    #[test]
    fn unknown_language() {
        assert_eq!(greet("xx", "Ada"), None);
    }

    #[test]
    fn build_script_cfg_reaches_the_crate() {
        assert!(built_with_build_script());
        assert!(PROFILE == "debug" || PROFILE == "release");
    }
}
