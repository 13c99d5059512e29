//! Go rules (`go_library`, `go_binary`, `go_test`) on the Go compiler and linker, as `go build`
//! and rules_go drive them: one compile action per package with export data (`.x`) separate from
//! the link object (`.a`), the standard library compiled per package on demand, build constraints,
//! embed, assembly, test mains, and third-party modules from go.mod/go.sum.
//!
//! Pure parts (no I/O): [`constraints`], [`lexer`], [`scan`], [`testfuncs`], [`testmain`],
//! [`gomod`], [`godebug`], [`literal`].

pub mod action;
pub mod archive;
pub mod compile;
pub mod constraints;
pub mod dirhash;
pub mod embed;
pub mod env;
pub mod fs_copy;
pub mod gazelle;
pub mod go_env_file;
pub mod godebug;
pub mod gomod;
pub mod header_memo;
pub mod lexer;
pub mod link;
pub mod literal;
pub mod module_repo;
pub mod modules;
pub mod modules_fetch;
pub mod package;
pub mod platform;
pub mod proxy_fetch;
pub mod repository;
pub mod rules;
pub mod scan;
pub mod sdk_download;
pub mod stdlib;
pub mod syslist;
pub mod testbin;
pub mod testfuncs;
pub mod testmain;
pub mod toolchain;
