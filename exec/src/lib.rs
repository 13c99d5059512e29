//! The sandbox: placeholder until the sandbox module lands.
