//! `select()` resolved at load time: Kiln builds for one configuration, the host, so a select
//! becomes the value of the key that matches the host platform.
//!
//! Understood keys: `//conditions:default`, `@platforms//os:*`, `@platforms//cpu:*`, rules_go's
//! `@io_bazel_rules_go//go/platform:{goos}`, `:{goarch}` and `:{goos}_{goarch}` (also under
//! `@rules_go`), and `@bazel_tools//src/conditions:*` host conditions. Any other key (a
//! `config_setting` of the workspace, say) never matches. When several keys match, the most
//! specific wins (`linux_amd64` over `linux`), as Bazel's specialization rule says; two unrelated
//! matches are an error.

use super::HostPlatform;
use crate::label::Label;

/// The constraints a key stands for: an OS, a CPU, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Constraints<'a> {
    os: Option<&'a str>,
    cpu: Option<&'a str>,
}

impl Constraints<'_> {
    fn matches(&self, platform: &HostPlatform) -> bool {
        self.os.is_none_or(|os| os == platform.os) && self.cpu.is_none_or(|cpu| cpu == platform.cpu)
    }

    /// Whether `self` is strictly more specific than `other`.
    fn refines(&self, other: &Constraints<'_>) -> bool {
        let covers = |mine: Option<&str>, theirs: Option<&str>| theirs.is_none() || mine == theirs;
        covers(self.os, other.os) && covers(self.cpu, other.cpu) && self != other
    }
}

/// Kiln's name for an OS as Bazel's platforms spell it.
fn os_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "linux" => "linux",
        "macos" | "osx" | "darwin" | "ios" => "macos",
        "windows" => "windows",
        "freebsd" => "freebsd",
        "openbsd" => "openbsd",
        "android" => "android",
        _ => return None,
    })
}

/// Kiln's name for a CPU as Bazel's platforms (or Go) spell it.
fn cpu_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "x86_64" | "amd64" | "k8" => "x86_64",
        "aarch64" | "arm64" => "aarch64",
        "x86_32" | "386" | "i386" => "x86_32",
        "arm" | "armv7" => "arm",
        "riscv64" => "riscv64",
        "ppc64le" | "ppc" => "ppc64le",
        "s390x" => "s390x",
        _ => return None,
    })
}

/// The constraints of a (well-known) key, or `None` for a key that never matches.
fn constraints(key: &Label) -> Option<Constraints<'static>> {
    let none = Constraints {
        os: None,
        cpu: None,
    };
    match (key.repo.as_str(), key.package.as_str()) {
        ("platforms", "os") => Some(Constraints {
            os: Some(os_name(&key.name)?),
            ..none
        }),
        ("platforms", "cpu") => Some(Constraints {
            cpu: Some(cpu_name(&key.name)?),
            ..none
        }),
        ("io_bazel_rules_go" | "rules_go", "go/platform") => {
            if let Some((os, cpu)) = key.name.split_once('_') {
                return Some(Constraints {
                    os: Some(os_name(os)?),
                    cpu: Some(cpu_name(cpu)?),
                });
            }
            os_name(&key.name)
                .map(|os| Constraints {
                    os: Some(os),
                    ..none
                })
                .or_else(|| {
                    cpu_name(&key.name).map(|cpu| Constraints {
                        cpu: Some(cpu),
                        ..none
                    })
                })
        }
        ("bazel_tools", "src/conditions") => match key.name.split_once('_') {
            Some((os, cpu)) => Some(Constraints {
                os: Some(os_name(os)?),
                cpu: Some(cpu_name(cpu)?),
            }),
            None => os_name(&key.name).map(|os| Constraints {
                os: Some(os),
                ..none
            }),
        },
        _ => None,
    }
}

/// Whether `key` is `//conditions:default`.
fn is_default(key: &Label) -> bool {
    matches!(key.repo.as_str(), "" | "bazel_tools")
        && key.package == "conditions"
        && key.name == "default"
}

/// Picks the index of the branch for `platform` among `keys` (already parsed labels), or says why
/// none can be chosen.
pub(crate) fn choose(keys: &[Label], platform: &HostPlatform) -> Result<usize, String> {
    let matching: Vec<(usize, Constraints<'static>)> = keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| {
            constraints(k)
                .filter(|c| c.matches(platform))
                .map(|c| (i, c))
        })
        .collect();
    if let Some(&(best, _)) = matching
        .iter()
        .find(|(i, c)| matching.iter().all(|(j, other)| i == j || c.refines(other)))
    {
        return Ok(best);
    }
    if let [(a, _), (b, _), ..] = matching.as_slice() {
        return Err(format!(
            "Ambiguous `select()`: keys `{}` and `{}` both match {} {} and neither is more specific",
            keys[*a], keys[*b], platform.os, platform.cpu
        ));
    }
    keys.iter().position(is_default).ok_or_else(|| {
        format!(
            "No key of this `select()` matches the host platform ({} {}) and there is no `//conditions:default`",
            platform.os, platform.cpu
        )
    })
}
