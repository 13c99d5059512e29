//! Settings as cmd/go reads them, for keys that `$GOROOT/go.env` does not set (`GOFLAGS`): the
//! environment first, then the go env file that `go env -w` writes (`$GOENV`, else `$XDG_CONFIG_HOME/go/env`, else `$HOME/.config/go/env`;
//! `GOENV=off` means no file). Kiln asks through [`HostAccess`], so the next build's no-op check
//! notices a changed variable or file (a file that appears included).

use std::path::PathBuf;

use kiln_graph::analysis::HostAccess;

/// The value of the cmd/go setting `name` (`GOFLAGS`, ...), empty when unset.
pub fn setting(host: &dyn HostAccess, name: &str) -> String {
    if let Some(value) = host.env_var(name).filter(|v| !v.is_empty()) {
        return value;
    }
    let Some(file) = env_file_path(
        host.env_var("GOENV"),
        host.env_var("XDG_CONFIG_HOME"),
        host.env_var("HOME"),
    ) else {
        return String::new();
    };
    host.observe(&file);
    std::fs::read_to_string(&file)
        .map(|text| value_in(&text, name))
        .unwrap_or_default()
}

/// Where cmd/go keeps its env file (`cfg.EnvFile`), given `GOENV`, `XDG_CONFIG_HOME` and `HOME`.
fn env_file_path(
    goenv: Option<String>,
    xdg_config_home: Option<String>,
    home: Option<String>,
) -> Option<PathBuf> {
    match goenv.filter(|v| !v.is_empty()) {
        Some(off) if off == "off" => None,
        Some(file) => Some(PathBuf::from(file)),
        None => {
            // os.UserConfigDir: a relative XDG_CONFIG_HOME is an error, and cmd/go then reads
            // no env file.
            let config = match xdg_config_home.filter(|d| !d.is_empty()) {
                Some(dir) if dir.starts_with('/') => PathBuf::from(dir),
                Some(_) => return None,
                None => PathBuf::from(home.filter(|h| !h.is_empty())?).join(".config"),
            };
            Some(config.join("go/env"))
        }
    }
}

/// `name`'s value in an env file's `KEY=VALUE` lines; the last line for a key wins, as in cmd/go.
fn value_in(text: &str, name: &str) -> String {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
        .next_back()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn the_env_file_is_where_cmd_go_looks() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(env_file_path(s("off"), s("/x"), s("/h")), None);
        assert_eq!(
            env_file_path(s("/etc/goenv"), s("/x"), s("/h")),
            Some("/etc/goenv".into())
        );
        assert_eq!(
            env_file_path(None, s("/x"), s("/h")),
            Some("/x/go/env".into())
        );
        assert_eq!(
            env_file_path(s(""), s(""), s("/h")),
            Some("/h/.config/go/env".into())
        );
        assert_eq!(env_file_path(s(""), s("relative"), s("/h")), None);
        assert_eq!(env_file_path(None, None, None), None);
    }

    #[test]
    fn the_last_line_for_a_key_wins() {
        let text = "GOPROXY=direct\nGOFLAGS=-mod=vendor\nGOFLAGSX=no\nGOFLAGS=-mod=mod -tags=a\n";
        assert_eq!(value_in(text, "GOFLAGS"), "-mod=mod -tags=a");
        assert_eq!(value_in(text, "GONOSUMDB"), "");
    }

    /// A host with a fixed environment that records what was observed.
    struct FakeHost {
        env: HashMap<&'static str, String>,
        observed: Mutex<Vec<PathBuf>>,
    }

    impl HostAccess for FakeHost {
        fn observe(&self, path: &Path) {
            if let Ok(mut seen) = self.observed.lock() {
                seen.push(path.to_path_buf());
            }
        }
        fn memo_get(&self, _key: &str) -> Option<Vec<u8>> {
            None
        }
        fn memo_put(&self, _key: &str, _value: &[u8]) {}
        fn env_var(&self, name: &str) -> Option<String> {
            self.env.get(name).cloned()
        }
    }

    #[test]
    fn the_environment_wins_over_the_file_which_is_observed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("env");
        std::fs::write(&file, "GOFLAGS=-mod=mod\n").unwrap_or_else(|e| panic!("{e}"));
        let mut host = FakeHost {
            env: HashMap::from([("GOENV", file.to_string_lossy().to_string())]),
            observed: Mutex::new(Vec::new()),
        };
        assert_eq!(setting(&host, "GOFLAGS"), "-mod=mod");
        assert_eq!(
            host.observed.lock().map(|o| o.clone()).unwrap_or_default(),
            vec![file.clone()]
        );
        host.env.insert("GOFLAGS", "-mod=vendor".into());
        assert_eq!(setting(&host, "GOFLAGS"), "-mod=vendor");
        host.env.insert("GOENV", "off".into());
        host.env.insert("GOFLAGS", String::new());
        assert_eq!(setting(&host, "GOFLAGS"), "");
    }
}
