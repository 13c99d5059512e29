//! Integration test: greet as a dependent crate sees it.

#[test]
fn every_language_greets() {
    for (language, hello) in greet::LANGUAGES {
        let text = greet::greet(language, "Grace").expect("known language");
        assert!(text.starts_with(hello), "{text}");
    }
}

#[test]
fn shouting_uses_the_proc_macro() {
    assert_eq!(
        greet::shout("en", "Grace").as_deref(),
        Some("HELLO, GRACE! AGAIN")
    );
}
