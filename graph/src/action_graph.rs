//! The action graph: which action produces each derived file, which actions a set of requested files
//! needs, and a critical-path priority for each (longest chain of expected durations to the end).

use std::collections::{HashMap, HashSet};

use petgraph::graph::{DiGraph, NodeIndex};

use crate::action::{ActionSpec, Artifact};

/// Dense id of an action in an [`ActionGraph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionId(pub u32);

/// Problems in the set of actions the rules registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    /// Two actions declare the same output.
    #[error("Output `{path}` is declared by both `{first}` and `{second}`")]
    DuplicateOutput {
        /// The output path.
        path: String,
        /// First owner.
        first: String,
        /// Second owner.
        second: String,
    },
    /// A derived input has no producing action.
    #[error("`{owner}` reads `{path}`, which no action produces")]
    NoProducer {
        /// The consuming target.
        owner: String,
        /// The input path.
        path: String,
    },
    /// The actions depend on each other in a cycle.
    #[error("Dependency cycle between actions: {0}")]
    Cycle(String),
}

/// All actions of a build with their producer/consumer edges.
pub struct ActionGraph {
    /// Actions, indexed by [`ActionId`].
    pub actions: Vec<ActionSpec>,
    producers: HashMap<String, ActionId>,
    /// For each action, the actions producing its derived inputs (deduplicated).
    pub deps: Vec<Vec<ActionId>>,
}

impl ActionGraph {
    /// Indexes `actions`, checking for duplicate outputs, missing producers and cycles.
    pub fn new(actions: Vec<ActionSpec>) -> Result<Self, GraphError> {
        let mut producers: HashMap<String, ActionId> = HashMap::new();
        for (index, action) in actions.iter().enumerate() {
            for output in &action.outputs {
                if let Some(previous) =
                    producers.insert(output.path.clone(), ActionId(index as u32))
                {
                    return Err(GraphError::DuplicateOutput {
                        path: output.path.clone(),
                        first: actions[previous.0 as usize].owner.to_string(),
                        second: action.owner.to_string(),
                    });
                }
            }
        }
        let mut deps = Vec::with_capacity(actions.len());
        for action in &actions {
            let mut ids: Vec<ActionId> = Vec::new();
            for input in &action.inputs {
                if input.artifact.source {
                    continue;
                }
                match producers.get(&input.artifact.path) {
                    Some(id) => ids.push(*id),
                    None => {
                        return Err(GraphError::NoProducer {
                            owner: action.owner.to_string(),
                            path: input.artifact.path.clone(),
                        })
                    }
                }
            }
            ids.sort();
            ids.dedup();
            deps.push(ids);
        }
        let graph = ActionGraph {
            actions,
            producers,
            deps,
        };
        graph.check_acyclic()?;
        Ok(graph)
    }

    fn check_acyclic(&self) -> Result<(), GraphError> {
        let mut g: DiGraph<(), ()> = DiGraph::with_capacity(self.actions.len(), 0);
        let nodes: Vec<NodeIndex> = (0..self.actions.len()).map(|_| g.add_node(())).collect();
        for (consumer, deps) in self.deps.iter().enumerate() {
            for dep in deps {
                g.add_edge(nodes[dep.0 as usize], nodes[consumer], ());
            }
        }
        petgraph::algo::toposort(&g, None)
            .map(|_| ())
            .map_err(|cycle| {
                let action = &self.actions[cycle.node_id().index()];
                GraphError::Cycle(format!("{} ({})", action.owner, action.mnemonic))
            })
    }

    /// The action producing `path`, if any.
    pub fn producer(&self, path: &str) -> Option<ActionId> {
        self.producers.get(path).copied()
    }

    /// The action with id `id`.
    pub fn action(&self, id: ActionId) -> &ActionSpec {
        &self.actions[id.0 as usize]
    }

    /// Every action needed to produce `artifacts` (derived ones), plus `extra` actions, transitively.
    pub fn needed(&self, artifacts: &[Artifact], extra: &[ActionId]) -> HashSet<ActionId> {
        let mut needed = HashSet::new();
        let mut stack: Vec<ActionId> = artifacts
            .iter()
            .filter(|a| !a.source)
            .filter_map(|a| self.producer(&a.path))
            .chain(extra.iter().copied())
            .collect();
        while let Some(id) = stack.pop() {
            if needed.insert(id) {
                stack.extend(self.deps[id.0 as usize].iter().copied());
            }
        }
        needed
    }

    /// Critical-path priorities for `needed`: an action's expected duration plus the largest priority
    /// among the actions that consume its outputs. `expected_ms` gives a duration from history.
    pub fn priorities(
        &self,
        needed: &HashSet<ActionId>,
        expected_ms: &dyn Fn(&ActionSpec) -> u64,
    ) -> HashMap<ActionId, u64> {
        let mut consumers: HashMap<ActionId, Vec<ActionId>> = HashMap::new();
        for id in needed {
            for dep in &self.deps[id.0 as usize] {
                consumers.entry(*dep).or_default().push(*id);
            }
        }
        let mut priority: HashMap<ActionId, u64> = HashMap::new();
        // Iterative post-order over consumers, so deep chains cannot overflow the stack.
        for start in needed {
            let mut stack = vec![(*start, false)];
            while let Some((id, expanded)) = stack.pop() {
                if priority.contains_key(&id) {
                    continue;
                }
                let next = consumers.get(&id).map(|v| v.as_slice()).unwrap_or(&[]);
                if !expanded {
                    stack.push((id, true));
                    stack.extend(
                        next.iter()
                            .filter(|c| !priority.contains_key(c))
                            .map(|c| (*c, false)),
                    );
                } else {
                    let downstream = next
                        .iter()
                        .filter_map(|c| priority.get(c))
                        .max()
                        .copied()
                        .unwrap_or(0);
                    priority.insert(id, downstream + expected_ms(self.action(id)).max(1));
                }
            }
        }
        priority
    }
}
