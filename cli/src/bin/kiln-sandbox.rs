//! `kiln-sandbox`: the sandbox helper as a small binary of its own. `kiln` starts it (when it sits
//! beside `kiln`) for every action instead of re-executing its own, much larger, image; starting
//! a small binary is measurably cheaper per action. Without it, `kiln __sandbox` does the same job.

fn main() {
    if std::env::args().nth(1).as_deref() == Some(kiln_exec::HELPER_ARG) {
        kiln_exec::helper_main()
    }
    eprintln!("kiln-sandbox is started by kiln for each action; it is not meant to be run by hand");
    std::process::exit(2)
}
