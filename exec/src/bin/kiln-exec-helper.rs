//! A stand-in for the `kiln` binary's helper entry, used by this crate's tests and the
//! overhead measurement.

fn main() {
    if std::env::args().nth(1).as_deref() == Some(kiln_exec::HELPER_ARG) {
        kiln_exec::helper_main()
    }
    eprintln!(
        "usage: kiln-exec-helper {} <request.json>",
        kiln_exec::HELPER_ARG
    );
    std::process::exit(2)
}
