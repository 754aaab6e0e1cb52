//! What the kernel says about a node's capture, for tests that must see programs detached: links
//! by id through aya (no bpftool needed).

use std::path::Path;

use aya::programs::links::{FdLink, PinnedLink};

/// A bpf_link and the program it attaches, by kernel id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkIds {
    pub link: u32,
    pub program: u32,
}

/// The links pinned below `<pin_dir>/pods/<pod>/`.
pub fn pinned_pod_links(pin_dir: &Path) -> Vec<LinkIds> {
    let files = |dir: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .map(|read| read.filter_map(|e| Some(e.ok()?.path())).collect())
            .unwrap_or_default()
    };
    files(&pin_dir.join("pods"))
        .iter()
        .flat_map(|pod| files(pod))
        .filter_map(|path| {
            let link = FdLink::from(PinnedLink::from_pin(&path).ok()?);
            let info = link.info().ok()?;
            Some(LinkIds {
                link: info.id(),
                program: info.program_id(),
            })
        })
        .collect()
}

/// Every link the kernel has now, whoever created it.
pub fn loaded_links() -> Vec<LinkIds> {
    aya::programs::loaded_links()
        .filter_map(Result::ok)
        .map(|info| LinkIds {
            link: info.id(),
            program: info.program_id(),
        })
        .collect()
}
