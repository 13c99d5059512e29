//! Inputs for the criterion benchmarks in `benches/`: files shaped like the ones Kiln hashes.

use std::path::{Path, PathBuf};

/// A directory holding one file of `len` pseudo-random bytes, on the memory file system when
/// there is one (where a sandbox's outputs are when Kiln hashes them), else in the temp dir.
pub struct SampleFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SampleFile {
    /// Writes the file.
    pub fn new(len: usize) -> std::io::Result<SampleFile> {
        let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir())?;
        let path = dir.path().join("sample.bin");
        // A cheap xorshift stream: incompressible enough, and the same on every run.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(&path, bytes)?;
        Ok(SampleFile { _dir: dir, path })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
