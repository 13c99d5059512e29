//! Labels: `@repo//pkg/path:name`. Placeholder type, to be completed by the label module owner.

use serde::{Deserialize, Serialize};

/// A fully resolved label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Label {
    /// External repository name without `@`, or empty for the main repository.
    pub repo: String,
    /// Package path, e.g. `a/b` (empty for the root package).
    pub package: String,
    /// Target name within the package (may contain `/`).
    pub name: String,
}
