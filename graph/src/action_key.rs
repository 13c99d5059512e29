//! Action keys: an [`ActionSpec`] plus the digests of its inputs becomes a REAPI v2 `Action` (a
//! `Command` and an input-root Merkle tree of `Directory` messages); the key is the digest of the
//! encoded `Action`. Nothing host-specific enters the key except through the platform properties.

use std::collections::BTreeMap;

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use kiln_cache::{Digest, DigestFunction};
use prost::Message;

use crate::action::{ActionSpec, Artifact};

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
    reapi::Digest { hash: digest.hex(), size_bytes: digest.size as i64 }
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
        let digest = input_digest(&input.artifact).ok_or_else(|| KeyError::MissingInput(input.artifact.path.clone()))?;
        match inputs.get(&input.exec_path) {
            Some(existing) if *existing != digest => return Err(KeyError::Conflict(input.exec_path.clone())),
            _ => {
                inputs.insert(input.exec_path.clone(), digest);
            }
        }
    }
    let (input_root, directories) = merkle_tree(&inputs, function)?;

    let mut properties: BTreeMap<String, String> = platform.properties.clone();
    for mount in &spec.tool_mounts {
        properties.insert(format!("kiln-toolchain:{}", mount.sandbox_path), mount.identity.clone());
    }
    if spec.network {
        properties.insert("kiln-network".into(), "host".into());
    }
    let platform_proto = reapi::Platform {
        properties: properties
            .iter()
            .map(|(name, value)| reapi::platform::Property { name: name.clone(), value: value.clone() })
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
            .map(|(name, value)| reapi::command::EnvironmentVariable { name: name.clone(), value: value.clone() })
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
        timeout: spec.timeout.map(|t| bazel_remote_apis::google::protobuf::Duration {
            seconds: t.as_secs() as i64,
            nanos: t.subsec_nanos() as i32,
        }),
        do_not_cache: !spec.cacheable,
        salt: Vec::new(),
        platform: Some(platform_proto),
    };
    let action_bytes = action.encode_to_vec();
    let key = Digest::of_bytes(function, &action_bytes);
    Ok(KeyedAction { action, command, directories, command_bytes, action_bytes, input_root, key, inputs })
}

fn check_relative(path: &str) -> Result<(), KeyError> {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(KeyError::BadPath(path.to_string()));
    }
    Ok(())
}

/// Builds the Merkle tree of `files` (exec path → digest); returns the root digest and every
/// directory message, children before parents.
fn merkle_tree(
    files: &BTreeMap<String, FileDigest>,
    function: DigestFunction,
) -> Result<(Digest, Vec<(Digest, Vec<u8>)>), KeyError> {
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
        let message = reapi::Directory { files, directories, symlinks: Vec::new(), node_properties: None };
        let bytes = message.encode_to_vec();
        let digest = Digest::of_bytes(function, &bytes);
        out.push((digest, bytes));
        digest
    }
    let mut out = Vec::new();
    let root_digest = encode(&root, function, &mut out);
    Ok((root_digest, out))
}
