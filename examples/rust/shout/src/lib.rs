//! `shout!("text")` expands to the string literal upper-cased, at compile time.

use proc_macro::{Literal, TokenStream, TokenTree};

/// Upper-cases a string literal.
#[proc_macro]
pub fn shout(input: TokenStream) -> TokenStream {
    let mut tokens = input.into_iter();
    let text = match (tokens.next(), tokens.next()) {
        (Some(TokenTree::Literal(lit)), None) => lit.to_string(),
        _ => return "compile_error!(\"shout! takes one string literal\")".parse().unwrap(),
    };
    let inner = text.trim_matches('"').to_uppercase();
    TokenStream::from(TokenTree::Literal(Literal::string(&inner)))
}
