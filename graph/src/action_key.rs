//! Action keys: an [`ActionSpec`] plus the digests of its inputs becomes a REAPI v2 `Action` (a
//! `Command` and an input-root Merkle tree of `Directory` messages); the key is the digest of the
//! encoded `Action`. Nothing host-specific enters the key except through the platform properties.

use std::collections::BTreeMap;

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use kiln_cache::{Digest, DigestFunction};
use prost::Message;

use crate::action::{ActionSpec, Artifact};

/// The platform property listing, one per line, the outputs that are materialized executable.
pub const EXECUTABLE_OUTPUTS_PROPERTY: &str = "kiln-executable-outputs";

/// The content of one input file as the key sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileDigest {
    /// Content digest.
    pub digest: Digest,
    /// Executable bit.
    pub executable: bool,
}

/// Platform properties shared by every action of a build: OS, CPU, and a digest of the host tools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlatformProperties {
    /// Sorted name → value pairs, e.g. `OSFamily=linux`, `ISA=x86-64`.
    pub properties: BTreeMap<String, String>,
}

/// Why an action's key could not be computed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// An input has no known digest (its producer has not run).
    #[error("Input `{0}` has no digest yet")]
    MissingInput(String),
    /// Two inputs claim the same path with different contents, or a path is both a file and a directory.
    #[error("Conflicting inputs at `{0}`")]
    Conflict(String),
    /// An input path is absolute or escapes the exec root.
    #[error("Input path `{0}` must be relative to the exec root and must not contain `..`")]
    BadPath(String),
}

/// An action made concrete: the REAPI messages, their encodings, and the key.
#[derive(Clone, Debug)]
pub struct KeyedAction {
    /// The `Action` message.
    pub action: reapi::Action,
    /// The `Command` message.
    pub command: reapi::Command,
    /// Every `Directory` of the input root with its digest and encoding (root last).
    pub directories: Vec<(Digest, Vec<u8>)>,
    /// Encoded `Command`.
    pub command_bytes: Vec<u8>,
    /// Encoded `Action`.
    pub action_bytes: Vec<u8>,
    /// Digest of the input root `Directory`.
    pub input_root: Digest,
    /// The action key: the digest of `action_bytes`.
    pub key: Digest,
    /// The input files by exec path, as they went into the tree.
    pub inputs: BTreeMap<String, FileDigest>,
}

/// Converts a digest to its REAPI message.
pub fn to_proto(digest: &Digest) -> reapi::Digest {
    reapi::Digest {
        hash: digest.hex(),
        size_bytes: digest.size as i64,
    }
}

/// Converts a REAPI digest message to a [`Digest`], checking the hash's form.
pub fn from_proto(function: DigestFunction, digest: &reapi::Digest) -> Option<Digest> {
    if digest.size_bytes < 0 {
        return None;
    }
    Digest::from_hex(function, &digest.hash, digest.size_bytes as u64).ok()
}

/// Builds the REAPI `Action` for `spec`. `input_digest` gives the content of each input artifact.
pub fn compute_key(
    spec: &ActionSpec,
    input_digest: &dyn Fn(&Artifact) -> Option<FileDigest>,
    platform: &PlatformProperties,
    function: DigestFunction,
) -> Result<KeyedAction, KeyError> {
    let mut inputs: BTreeMap<String, FileDigest> = BTreeMap::new();
    for input in &spec.inputs {
        check_relative(&input.exec_path)?;
        let digest = input_digest(&input.artifact)
            .ok_or_else(|| KeyError::MissingInput(input.artifact.path.clone()))?;
        match inputs.get(&input.exec_path) {
            Some(existing) if *existing != digest => {
                return Err(KeyError::Conflict(input.exec_path.clone()))
            }
            _ => {
                inputs.insert(input.exec_path.clone(), digest);
            }
        }
    }
    let (input_root, directories) = merkle_tree(&inputs, function)?;

    let mut properties: BTreeMap<String, String> = platform.properties.clone();
    for mount in &spec.tool_mounts {
        properties.insert(
            format!("kiln-toolchain:{}", mount.sandbox_path),
            mount.identity.clone(),
        );
    }
    if spec.network {
        properties.insert("kiln-network".into(), "host".into());
    }
    // The rule, not the produced file, decides an output's executable bit (and a cache hit
    // replays the stored bit), so the bit is part of what the action means.
    let mut executable_outputs: Vec<&str> = spec
        .outputs
        .iter()
        .filter(|o| o.executable)
        .map(|o| o.path.as_str())
        .collect();
    if !executable_outputs.is_empty() {
        executable_outputs.sort_unstable();
        executable_outputs.dedup();
        properties.insert(
            EXECUTABLE_OUTPUTS_PROPERTY.into(),
            executable_outputs.join("\n"),
        );
    }
    let platform_proto = reapi::Platform {
        properties: properties
            .iter()
            .map(|(name, value)| reapi::platform::Property {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    };

    let mut output_paths: Vec<String> = spec.outputs.iter().map(|o| o.path.clone()).collect();
    output_paths.sort();
    output_paths.dedup();
    #[allow(deprecated)] // Older servers read the Command's platform; REAPI 2.2 moved it to Action.
    let command = reapi::Command {
        arguments: spec.arguments.clone(),
        environment_variables: spec
            .env
            .iter()
            .map(|(name, value)| reapi::command::EnvironmentVariable {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        output_paths,
        working_directory: spec.working_directory.clone(),
        platform: Some(platform_proto.clone()),
        ..Default::default()
    };
    let command_bytes = command.encode_to_vec();
    let command_digest = Digest::of_bytes(function, &command_bytes);
    let action = reapi::Action {
        command_digest: Some(to_proto(&command_digest)),
        input_root_digest: Some(to_proto(&input_root)),
        timeout: spec
            .timeout
            .map(|t| bazel_remote_apis::google::protobuf::Duration {
                seconds: t.as_secs() as i64,
                nanos: t.subsec_nanos() as i32,
            }),
        do_not_cache: !spec.cacheable,
        salt: Vec::new(),
        platform: Some(platform_proto),
    };
    let action_bytes = action.encode_to_vec();
    let key = Digest::of_bytes(function, &action_bytes);
    Ok(KeyedAction {
        action,
        command,
        directories,
        command_bytes,
        action_bytes,
        input_root,
        key,
        inputs,
    })
}

fn check_relative(path: &str) -> Result<(), KeyError> {
    if path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(KeyError::BadPath(path.to_string()));
    }
    Ok(())
}

/// A `Directory` message's digest and encoding.
pub type EncodedDirectory = (Digest, Vec<u8>);

/// Builds the Merkle tree of `files` (exec path → digest); returns the root digest and every
/// directory message, children before parents.
fn merkle_tree(
    files: &BTreeMap<String, FileDigest>,
    function: DigestFunction,
) -> Result<(Digest, Vec<EncodedDirectory>), KeyError> {
    #[derive(Default)]
    struct Node {
        files: BTreeMap<String, FileDigest>,
        dirs: BTreeMap<String, Node>,
    }
    let mut root = Node::default();
    for (path, digest) in files {
        let mut node = &mut root;
        let mut parts = path.split('/').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                if node.dirs.contains_key(part) {
                    return Err(KeyError::Conflict(path.clone()));
                }
                node.files.insert(part.to_string(), *digest);
            } else {
                if node.files.contains_key(part) {
                    return Err(KeyError::Conflict(path.clone()));
                }
                node = node.dirs.entry(part.to_string()).or_default();
            }
        }
    }
    fn encode(node: &Node, function: DigestFunction, out: &mut Vec<(Digest, Vec<u8>)>) -> Digest {
        let directories = node
            .dirs
            .iter()
            .map(|(name, child)| reapi::DirectoryNode {
                name: name.clone(),
                digest: Some(to_proto(&encode(child, function, out))),
            })
            .collect();
        let files = node
            .files
            .iter()
            .map(|(name, file)| reapi::FileNode {
                name: name.clone(),
                digest: Some(to_proto(&file.digest)),
                is_executable: file.executable,
                node_properties: None,
            })
            .collect();
        let message = reapi::Directory {
            files,
            directories,
            symlinks: Vec::new(),
            node_properties: None,
        };
        let bytes = message.encode_to_vec();
        let digest = Digest::of_bytes(function, &bytes);
        out.push((digest, bytes));
        digest
    }
    let mut out = Vec::new();
    let root_digest = encode(&root, function, &mut out);
    Ok((root_digest, out))
}

/// `platform` plus the `kiln-host-tools` property: a digest of `tools` (host programs the
/// action runs, e.g. `/bin/bash`) with each one's digest from `digests` (`unknown` when
/// missing), so that an action keys on the host tools it uses.
pub fn with_host_tools(
    platform: &PlatformProperties,
    tools: &[String],
    digests: &std::collections::HashMap<String, String>,
    function: DigestFunction,
) -> PlatformProperties {
    let mut named: Vec<String> = tools
        .iter()
        .map(|t| {
            let digest = digests.get(t).map_or("unknown", |s| s.as_str());
            format!("{t}={digest}")
        })
        .collect();
    named.sort();
    let mut platform = platform.clone();
    platform.properties.insert(
        "kiln-host-tools".to_string(),
        Digest::of_bytes(function, named.join("\n").as_bytes()).hex(),
    );
    platform
}

#[cfg(test)]
mod tests {
    //! One test per field of the key: changing the field must change the key.

    use std::time::Duration;

    use super::*;
    use crate::action::{ActionSpec, OutputSpec, ToolMount};
    use crate::label::Label;

    fn base() -> ActionSpec {
        let owner = Label {
            repo: String::new(),
            package: "a".into(),
            name: "gen".into(),
        };
        let mut spec = ActionSpec::new(
            owner,
            "Genrule",
            vec!["/bin/bash".into(), "-c".into(), "cat a/x > $OUT".into()],
        );
        spec.env.insert("PATH".into(), "/bin".into());
        spec.input(&Artifact::source("a/x"));
        spec.input(&Artifact::derived("kiln-out/bin/b/y"));
        spec.outputs.push(OutputSpec {
            path: "kiln-out/bin/a/out".into(),
            executable: false,
            optional: false,
        });
        spec
    }

    /// A non-executable input whose content is `text`.
    fn blob(text: &str) -> Option<FileDigest> {
        Some(FileDigest {
            digest: Digest::of_bytes(DigestFunction::Blake3, text.as_bytes()),
            executable: false,
        })
    }

    fn content(a: &Artifact) -> Option<FileDigest> {
        Some(FileDigest {
            digest: Digest::of_bytes(DigestFunction::Blake3, a.path.as_bytes()),
            executable: false,
        })
    }

    fn platform() -> PlatformProperties {
        let mut p = PlatformProperties::default();
        p.properties.insert("OSFamily".into(), "linux".into());
        p
    }

    fn key(spec: &ActionSpec) -> Digest {
        key_with(spec, &content, &platform(), DigestFunction::Blake3)
    }

    fn key_with(
        spec: &ActionSpec,
        inputs: &dyn Fn(&Artifact) -> Option<FileDigest>,
        platform: &PlatformProperties,
        function: DigestFunction,
    ) -> Digest {
        match compute_key(spec, inputs, platform, function) {
            Ok(keyed) => keyed.key,
            Err(e) => panic!("key failed: {e}"),
        }
    }

    #[test]
    fn key_is_deterministic() {
        assert_eq!(key(&base()), key(&base()));
    }

    #[test]
    fn arguments_change_the_key() {
        let mut spec = base();
        spec.arguments[2] = "cat a/x >> $OUT".into();
        assert_ne!(key(&base()), key(&spec));
    }

    #[test]
    fn environment_changes_the_key() {
        let mut spec = base();
        spec.env.insert("PATH".into(), "/usr/bin".into());
        assert_ne!(key(&base()), key(&spec));
        let mut added = base();
        added.env.insert("LANG".into(), "C".into());
        assert_ne!(key(&base()), key(&added));
    }

    #[test]
    fn input_content_changes_the_key() {
        let edited = |a: &Artifact| {
            if a.path == "a/x" {
                blob("edited")
            } else {
                blob(&a.path)
            }
        };
        assert_ne!(
            key(&base()),
            key_with(&base(), &edited, &platform(), DigestFunction::Blake3)
        );
    }

    #[test]
    fn derived_input_content_changes_the_key() {
        let edited = |a: &Artifact| {
            if a.path.ends_with("/y") {
                blob("other")
            } else {
                blob(&a.path)
            }
        };
        assert_ne!(
            key(&base()),
            key_with(&base(), &edited, &platform(), DigestFunction::Blake3)
        );
    }

    #[test]
    fn input_path_changes_the_key() {
        let mut spec = base();
        spec.inputs[0].exec_path = "a/renamed".into();
        assert_ne!(key(&base()), key(&spec));
    }

    #[test]
    fn input_executable_bit_changes_the_key() {
        let executable = |a: &Artifact| {
            content(a).map(|d| FileDigest {
                executable: a.path == "a/x",
                ..d
            })
        };
        assert_ne!(
            key(&base()),
            key_with(&base(), &executable, &platform(), DigestFunction::Blake3)
        );
    }

    #[test]
    fn adding_an_input_changes_the_key() {
        let mut spec = base();
        spec.input(&Artifact::source("a/z"));
        assert_ne!(key(&base()), key(&spec));
    }

    #[test]
    fn outputs_change_the_key() {
        let mut spec = base();
        spec.outputs[0].path = "kiln-out/bin/a/other".into();
        assert_ne!(key(&base()), key(&spec));
    }

    #[test]
    fn output_executable_bit_changes_the_key() {
        let mut spec = base();
        spec.outputs[0].executable = !spec.outputs[0].executable;
        assert_ne!(key(&base()), key(&spec));
        let keyed = compute_key(&spec, &content, &platform(), DigestFunction::Blake3).unwrap();
        let listed: Vec<&str> = keyed
            .action
            .platform
            .iter()
            .flat_map(|p| &p.properties)
            .filter(|p| p.name == EXECUTABLE_OUTPUTS_PROPERTY)
            .map(|p| p.value.as_str())
            .collect();
        let expected = if spec.outputs[0].executable {
            vec![spec.outputs[0].path.as_str()]
        } else {
            vec![]
        };
        assert_eq!(listed, expected);
    }

    #[test]
    fn working_directory_changes_the_key() {
        let mut spec = base();
        spec.working_directory = "a".into();
        assert_ne!(key(&base()), key(&spec));
    }

    #[test]
    fn platform_properties_change_the_key() {
        let mut other = platform();
        other.properties.insert("ISA".into(), "aarch64".into());
        assert_ne!(
            key(&base()),
            key_with(&base(), &content, &other, DigestFunction::Blake3)
        );
    }

    #[test]
    fn toolchain_identity_changes_the_key() {
        let mut one = base();
        one.tool_mounts.push(ToolMount {
            sandbox_path: "/kiln/toolchains/go".into(),
            host_path: "/usr/local/go".into(),
            identity: "go1.26.8@abc".into(),
        });
        let mut two = one.clone();
        two.tool_mounts[0].identity = "go1.26.9@def".into();
        assert_ne!(key(&one), key(&two));
        // The host path is deliberately not part of the key: only the identity is.
        let mut moved = one.clone();
        moved.tool_mounts[0].host_path = "/opt/go".into();
        assert_eq!(key(&one), key(&moved));
    }

    #[test]
    fn network_access_changes_the_key() {
        let mut spec = base();
        spec.network = true;
        assert_ne!(key(&base()), key(&spec));
    }

    #[test]
    fn timeout_changes_the_key() {
        let mut spec = base();
        spec.timeout = Some(Duration::from_secs(60));
        assert_ne!(key(&base()), key(&spec));
    }

    #[test]
    fn cacheability_changes_the_key() {
        let mut spec = base();
        spec.cacheable = false;
        assert_ne!(key(&base()), key(&spec));
    }

    #[test]
    fn digest_function_is_part_of_the_key() {
        let sha = |a: &Artifact| {
            Some(FileDigest {
                digest: Digest::of_bytes(DigestFunction::Sha256, a.path.as_bytes()),
                executable: false,
            })
        };
        let blake = key(&base());
        let sha256 = key_with(&base(), &sha, &platform(), DigestFunction::Sha256);
        // Stores are keyed on (function, hash): the two never meet, whatever the hashes.
        assert_eq!(blake.function, DigestFunction::Blake3);
        assert_eq!(sha256.function, DigestFunction::Sha256);
    }

    #[test]
    fn each_host_tool_digest_changes_the_key() {
        let tools = vec!["/bin/bash".to_string(), "/usr/bin/cat".to_string()];
        let digests = |bash: &str, cat: &str| {
            std::collections::HashMap::from([
                ("/bin/bash".to_string(), bash.to_string()),
                ("/usr/bin/cat".to_string(), cat.to_string()),
            ])
        };
        let keyed = |digests: &std::collections::HashMap<String, String>, tools: &[String]| {
            let platform = with_host_tools(&platform(), tools, digests, DigestFunction::Blake3);
            key_with(&base(), &content, &platform, DigestFunction::Blake3)
        };
        let start = keyed(&digests("b1", "c1"), &tools);
        assert_eq!(start, keyed(&digests("b1", "c1"), &tools), "stable");
        assert_ne!(start, keyed(&digests("b2", "c1"), &tools), "bash changed");
        assert_ne!(start, keyed(&digests("b1", "c2"), &tools), "cat changed");
        assert_ne!(
            start,
            keyed(&digests("b1", "c1"), &tools[..1]),
            "one tool fewer"
        );
        assert_ne!(start, key(&base()), "no tools at all");
    }

    #[test]
    fn mnemonic_and_owner_do_not_change_the_key() {
        // Two targets declaring the same command on the same inputs share a cache entry, as in Bazel.
        let mut spec = base();
        spec.mnemonic = "Other".into();
        spec.progress_message = "different".into();
        assert_eq!(key(&base()), key(&spec));
    }

    #[test]
    fn conflicting_and_bad_inputs_are_errors() {
        let mut spec = base();
        spec.input(&Artifact::source("a/x/inner"));
        assert!(matches!(
            compute_key(&spec, &content, &platform(), DigestFunction::Blake3),
            Err(KeyError::Conflict(_))
        ));
        let mut escape = base();
        escape.input(&Artifact::source("../etc/passwd"));
        assert!(matches!(
            compute_key(&escape, &content, &platform(), DigestFunction::Blake3),
            Err(KeyError::BadPath(_))
        ));
        let missing = |_: &Artifact| None;
        assert!(matches!(
            compute_key(&base(), &missing, &platform(), DigestFunction::Blake3),
            Err(KeyError::MissingInput(_))
        ));
    }

    #[test]
    fn merkle_tree_matches_reapi_layout() {
        let keyed = match compute_key(&base(), &content, &platform(), DigestFunction::Blake3) {
            Ok(k) => k,
            Err(e) => panic!("{e}"),
        };
        // Root has directories `a` and `kiln-out`, no files; children come before the root.
        let (root_digest, root_bytes) = keyed
            .directories
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("no directories"));
        assert_eq!(root_digest, keyed.input_root);
        let root =
            reapi::Directory::decode(root_bytes.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = root.directories.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["a", "kiln-out"]);
        assert!(root.files.is_empty());
        assert_eq!(keyed.command.output_paths, ["kiln-out/bin/a/out"]);
    }
}
