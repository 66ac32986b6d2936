//! For every shared-block finding, the block that reached its units first: a second walk
//! (only when some units are shared), reading one good copy of each node.

use crate::Checker;
use crate::blocks::read_good;
use crate::report::{BlockAt, Problem};
use hammer2::inspect::{Ctx, Roots, Visitor};
use hammer2_format::Blockref;
use hammer2_format::layout::UNIT;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Fills in the first owner of every shared-block finding.
pub fn find_first_owners(ck: &mut Checker<'_>, roots: &Roots) {
    struct Owners<'a, 'v> {
        ck: &'a mut Checker<'v>,
        seen: HashSet<(u8, u64)>,
        found: Vec<Option<BlockAt>>,
        /// (device, unit) -> the shared-block findings (by index) that cover it.
        units: HashMap<(u8, u64), Vec<usize>>,
    }
    impl Visitor for Owners<'_, '_> {
        fn visit(&mut self, br: &Blockref, ctx: &Ctx) -> hammer2::Result<Option<Arc<[u8]>>> {
            let Some(p) = br.ptr() else { return Ok(None) };
            for l in p.copies.iter().filter(|l| l.is_valid()) {
                let unit = l.offset / UNIT;
                for u in unit..unit + u64::from(p.size).div_ceil(UNIT) {
                    for &k in self.units.get(&(l.device, u)).map(Vec::as_slice).unwrap_or(&[]) {
                        if self.found[k].is_none() {
                            self.found[k] = Some(crate::scan::at(br, ctx));
                        }
                    }
                }
            }
            let first = p.copies.iter().find(|l| l.is_valid()).map(|l| (l.device, l.offset));
            if !br.btype.names_blocks() || !first.is_some_and(|f| self.seen.insert(f)) {
                return Ok(None);
            }
            Ok(read_good(self.ck.vol, p).map(Arc::from))
        }
    }
    let n = ck.shared_findings.len();
    let mut units: HashMap<(u8, u64), Vec<usize>> = HashMap::new();
    for (k, (d, off, size, _)) in ck.shared_findings.iter().enumerate() {
        let unit = off / UNIT;
        for u in unit..unit + u64::from(*size).div_ceil(UNIT) {
            units.entry((*d, u)).or_default().push(k);
        }
    }
    let found = {
        let mut o = Owners { ck, seen: HashSet::new(), found: vec![None; n], units };
        let _ = hammer2::inspect::walk(roots, &mut o);
        o.found
    };
    for (k, owner) in found.into_iter().enumerate() {
        let id = ck.shared_findings[k].3;
        if let Some(f) = ck.findings.get_mut(id)
            && let Problem::SharedBlock { first, .. } = &mut f.problem
        {
            *first = owner;
        }
    }
}
