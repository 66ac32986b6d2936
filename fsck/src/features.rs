//! The header's feature bits against what the filesystem holds (FK3, FK4 in
//! docs/DESIGN.md): a reader goes by the bits, so a block that needs a bit the header lacks
//! is misread by a reader that trusts them.
//!
//! - `COMPRESSED` (FORMAT-V2 "Compression"; Z3): a compressed DATA reference needs it.
//!   Version 1 has no compression at all: any compressed reference there is an error that
//!   fsck cannot repair (`hammer2 upgrade` makes it version 2, then `-y` sets the bit).
//! - `VARIABLE_COPIES` (FORMAT-V2 "Copies per block"): without it every reference has the
//!   filesystem's copy count N; a DATA reference with another count (1..4) needs the bit.
//!   Metadata keeps exactly N (VC1: a placement finding, `copies.rs`).
//!
//! `-y` and `-p` set a missing bit on version 2 in the first repair commit: the blocks are
//! valid under the bit, and a bit, once set, stays set (FORMAT-V2).

use crate::report::{BlockAt, FindingId, Findings, Problem, Repair};
use hammer2_format::layout::{FORMAT_VERSION, feature};
use hammer2_format::{BlockType, Blockref, VolumeHeader};

/// References that need a feature bit: how many, and the first one (with its PFS when
/// that is not ROOT: inode numbers are per PFS).
#[derive(Debug, Default)]
pub struct Needing {
    pub blocks: u64,
    pub first: Option<(BlockAt, Option<String>)>,
}

impl Needing {
    fn note(&mut self, first: impl FnOnce() -> (BlockAt, Option<String>)) {
        self.blocks += 1;
        if self.first.is_none() {
            self.first = Some(first());
        }
    }
}

/// What the walk saw that needs a feature bit.
#[derive(Debug, Default)]
pub struct FeatureUse {
    pub compressed: Needing,
    pub variable_copies: Needing,
}

impl FeatureUse {
    /// Notes one reference (each block once), `at` naming it for the message.
    pub fn note(&mut self, br: &Blockref, copies: u8, at: impl Fn() -> (BlockAt, Option<String>)) {
        if br.btype != BlockType::Data {
            return;
        }
        if br.compression().is_some() {
            self.compressed.note(&at);
        }
        if let Some(p) = br.ptr()
            && p.copies.len() != usize::from(copies)
        {
            self.variable_copies.note(&at);
        }
    }

    /// The findings, after the walk; returns the bits a repair commit should set, each with
    /// the finding it resolves.
    pub fn finish(&self, mh: &VolumeHeader, findings: &mut Findings) -> Vec<(u64, FindingId)> {
        let mut set = Vec::new();
        for (bit, n) in [(feature::COMPRESSED, &self.compressed), (feature::VARIABLE_COPIES, &self.variable_copies)] {
            if n.blocks == 0 || mh.has_feature(bit) {
                continue;
            }
            let name = feature::names(bit).join(", ");
            let v1 = mh.version == FORMAT_VERSION;
            let what = if bit == feature::COMPRESSED {
                "stored compressed".to_string()
            } else {
                format!("with a copy count other than the filesystem's {}", mh.copies)
            };
            let Some((first, pfs)) = n.first.clone() else { continue };
            let id = findings.add(Problem::FeatureMissing {
                feature: name.clone(),
                version: mh.version,
                blocks: n.blocks,
                what,
                first,
                pfs,
            });
            if v1 {
                let why = format!(
                    "format version 1 has no {name}: run hammer2 upgrade (format version 2), then fsck.hammer2 -y \
                     sets the bit"
                );
                findings.set(id, Repair::Unrepairable { why });
            } else if hammer2::inspect::implemented_features() & bit == 0 {
                // Setting it would make the filesystem unmountable by this very build.
                let why = format!("this build does not implement {name}: a build that does sets it");
                findings.set(id, Repair::Unrepairable { why });
            } else {
                set.push((bit, id));
            }
        }
        set
    }
}
