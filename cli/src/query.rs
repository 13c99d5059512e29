//! `kiln query`: placeholder replaced by the query module.

use anyhow::Result;

use crate::args::QueryArgs;
use crate::exit::{self, Exit};

/// Runs a query.
pub fn run(_args: &QueryArgs) -> Result<i32> {
    Err(Exit::new(exit::INTERNAL, "`kiln query` is not built yet").into())
}
