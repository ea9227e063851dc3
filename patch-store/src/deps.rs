//! Patch dependencies: what-requires, query-dependencies (with cycles reported), closures.

use std::collections::BTreeSet;

use petgraph::graphmap::DiGraphMap;

use crate::ops::join;
use crate::store::Store;
use crate::{Outcome, StoreError};

impl Store {
    /// `what-requires`: for each ID, the patches that list it in `requires`.
    pub fn what_requires(&self, ids: &[String]) -> Result<Outcome, StoreError> {
        let mut outcome = Outcome::default();
        for id in ids {
            if !self.patches.contains_key(id) {
                return Err(StoreError::refused(format!("Patch {id} does not exist")));
            }
            let by: BTreeSet<String> = self
                .patches
                .values()
                .filter(|p| p.metadata.requires.contains(id))
                .map(|p| p.metadata.id.clone())
                .collect();
            if by.is_empty() {
                outcome.info(format!("{id} is not required by any patches."));
            } else {
                outcome.info(format!("{id} is required by: {}", join(&by)));
            }
        }
        Ok(outcome)
    }

    /// `query-dependencies`: the IDs plus what they require (transitively with `recursive`),
    /// sorted. A cycle in `requires` is reported as an error, never looped on; a required
    /// patch that is not in the store is reported too.
    pub fn query_dependencies(
        &self,
        ids: &[String],
        recursive: bool,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self
            .dependency_closure(ids, recursive)?
            .into_iter()
            .collect())
    }

    pub(crate) fn dependency_closure(
        &self,
        ids: &[String],
        recursive: bool,
    ) -> Result<BTreeSet<String>, StoreError> {
        for id in ids {
            if !self.patches.contains_key(id) {
                return Err(StoreError::refused(format!("Patch {id} does not exist")));
            }
        }
        let mut graph: DiGraphMap<&str, ()> = DiGraphMap::new();
        for p in self.patches.values() {
            graph.add_node(p.metadata.id.as_str());
            for req in &p.metadata.requires {
                graph.add_edge(p.metadata.id.as_str(), req.as_str(), ());
            }
        }
        let mut result: BTreeSet<String> = ids.iter().cloned().collect();
        if !recursive {
            for id in ids {
                result.extend(self.patches[id].metadata.requires.iter().cloned());
            }
            return Ok(result);
        }
        let mut stack: Vec<&str> = ids.iter().map(String::as_str).collect();
        while let Some(id) = stack.pop() {
            for next in graph.neighbors(id) {
                if result.insert(next.to_owned()) {
                    stack.push(next);
                }
            }
        }
        // Cycles among what we reached: report them (the original would recurse forever).
        let cyclic: BTreeSet<String> = petgraph::algo::tarjan_scc(&graph)
            .into_iter()
            .filter(|scc| scc.len() > 1 || scc.first().is_some_and(|n| graph.contains_edge(n, n)))
            .flatten()
            .filter(|n| result.contains(*n))
            .map(str::to_owned)
            .collect();
        if !cyclic.is_empty() {
            return Err(StoreError::refused(format!(
                "The requires of these patches form a cycle: {}",
                join(&cyclic)
            )));
        }
        let unknown: BTreeSet<String> = result
            .iter()
            .filter(|id| !self.patches.contains_key(*id))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(StoreError::refused(format!(
                "Required patches are not in the system: {}",
                join(&unknown)
            )));
        }
        Ok(result)
    }
}
