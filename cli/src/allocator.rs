//! The allocator `kiln` runs on, and the one mimalloc option Kiln changes before it starts.
//!
//! mimalloc instead of the system allocator: `kiln serve` allocates a fresh buffer for each
//! megabyte it reads or receives, and glibc hands those out as new mappings that fault in and are
//! zeroed page by page (a tenth of the server's CPU in large reads); mimalloc reuses them.
//!
//! mimalloc's default on Linux commits its first 1 GiB arena eagerly, and then gives freed pages
//! back lazily: a build's peak RSS doubled (clean build of the 1,000-genrule benchmark: 100 MiB
//! instead of 49 MiB) with no speed gained by either a build or `kiln serve` (bench/remote rows
//! within their noise). Arenas are therefore committed on demand. The option has to be set before
//! mimalloc's own start-up code runs, because the Rust runtime allocates (and so creates the first
//! arena) before `main`.

/// The global allocator for every Kiln process started from this binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc.h: the same index (4) in mimalloc v1, v2 and v3;
/// the `libmimalloc-sys` version is pinned in Cargo.toml so the bundled header cannot move under it.
#[cfg(target_os = "linux")]
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Runs from the ELF `.init_array` with priority 101, the first one open to programs: before
/// mimalloc's own constructor (registered without a priority, so it runs after every prioritized
/// one) and so before any allocation. The Rust standard library registers its argument capture
/// the same way, at 99.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array.00101"]
static COMMIT_ARENAS_ON_DEMAND: extern "C" fn() = commit_arenas_on_demand;

/// Tells mimalloc to commit arena memory as it is used instead of all at once.
#[cfg(target_os = "linux")]
extern "C" fn commit_arenas_on_demand() {
    // SAFETY: `mi_option_set` only stores two integers in mimalloc's static option table; it does
    // not allocate, and is valid before mimalloc is initialised (an option set then is marked
    // initialised and kept, not re-read from the environment). Nothing else runs at this point
    // of start-up, so there is no concurrent access.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn arenas_are_committed_on_demand_from_the_start() {
        // This test binary carries the same `.init_array` entry; if it did not run before
        // mimalloc read its options, the value would be mimalloc's default, 2.
        // SAFETY: reads one integer from mimalloc's option table.
        let value = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT) };
        assert_eq!(value, 0);
    }
}
