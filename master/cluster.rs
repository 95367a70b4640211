//! What the master does with a conf's `cluster { }` block (`cluster.md`). Cluster mode itself
//! (the consensus helper process of §9) is not built yet: `-t` checks the block as it checks
//! every directive, but a start or a reload with one is refused, so that a node never serves a
//! cluster conf as if it were a single node.

use std::path::Path;

use conf::Conf;

use crate::error::MasterError;

/// Refuses `conf` (read from `path`, as given to `conf::load`) when it has a cluster block.
pub fn refuse_cluster(path: &Path, conf: &Conf) -> Result<(), MasterError> {
    match &conf.cluster {
        Some(cluster) => Err(MasterError::ClusterUnavailable {
            file: path.to_path_buf(),
            line: cluster.line,
        }),
        None => Ok(()),
    }
}
