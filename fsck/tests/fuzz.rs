//! Damaged images of every sort (one device or two, two copies), checked in-process:
//! random bytes anywhere, damaged and crafted headers (with a valid check code), metadata
//! damaged behind its check values (resealed up to the headers, as a buggy writer would
//! leave it), references pointing to themselves or their parent, a truncated device,
//! another filesystem's superblock. Whatever the image, fsck returns a report and an exit
//! status in {0, 1, 4, 5, 8} within a time bound, and never panics; `-y` then `-n`
//! likewise, and `-y` never leaves a block in use marked free.
//!
//! `HAMMER2_FSCK_FUZZ_CASES` sets the number of cases (default 64).

use hammer2_test_support::fsck as common;

use common::image::{MIB, pattern};
use common::raw::{Node, Parent, Raw};
use hammer2::storage::DynStorage;
use hammer2::storage::mem::MemStorage;
use hammer2::{Creds, Fs};
use hammer2_format::layout::{HEADER_SIZE, HEADER_SLOTS, header_offset};
use hammer2_format::{BlockType, Location};
use hammer2_fsck::{Mode, Options, run_devices};
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A run on a 40 MiB image takes well under a second; this only catches hangs.
const TIME_BOUND: Duration = Duration::from_secs(60);
const SIZE: u64 = 40 * MIB;

/// A base filesystem: its device images and its blocks.
type Base = (Vec<Vec<u8>>, Vec<Node>);

/// The base images, a little of everything, with two copies: on one device (two regions)
/// or on two devices.
fn base(ndev: usize) -> &'static Base {
    static BASES: [OnceLock<Base>; 2] = [OnceLock::new(), OnceLock::new()];
    BASES[ndev - 1].get_or_init(|| {
        let img = common::image::Img::new(ndev, SIZE, 2);
        let fs = img.mount();
        fill(&fs);
        fs.unmount().expect("unmount");
        let nodes = Raw::open(&img.paths).walk();
        (img.paths.iter().map(|p| std::fs::read(p).expect("read image")).collect(), nodes)
    })
}

fn fill(fs: &Fs) {
    let c = Creds::default();
    let root = fs.root();
    let d = fs.mkdir(root, b"d", 0o755, c).expect("mkdir");
    for i in 0..40u64 {
        let f = fs.create(d.ino, format!("file-{i}").as_bytes(), 0o644, c).expect("create");
        fs.write(f.ino, 0, &pattern(i, 100 + 300 * i as usize)).expect("write");
    }
    let big = fs.create(root, b"big", 0o644, c).expect("create");
    fs.write(big.ino, 0, &pattern(99, 40 * 65536 + 100)).expect("write");
    fs.symlink(root, b"link", b"d/file-1", c).expect("symlink");
    fs.create(root, "n".repeat(120).as_bytes(), 0o644, c).expect("create");
    fs.setxattr(big.ino, b"user.x", b"y", Default::default()).expect("setxattr");
    let sub = fs.mkdir(d.ino, b"sub", 0o755, c).expect("mkdir");
    fs.link(big.ino, sub.ino, b"big-again").expect("link");
    fs.sync().expect("sync");
    fs.unlink(d.ino, b"file-3").expect("unlink");
}

#[derive(Debug, Clone)]
enum Damage {
    /// XOR random bytes at random offsets of the used part of the image.
    Flip(Vec<(u32, u8)>),
    /// XOR a byte of a header slot (its check code no longer matches).
    HeaderFlip {
        slot: usize,
        at: u16,
        x: u8,
    },
    /// Set a byte of the newest header and recompute its check code.
    HeaderCraft {
        at: u16,
        v: u8,
    },
    /// XOR a byte of a metadata block's copy (caught by the check value).
    MetaFlip {
        node: usize,
        at: u32,
        x: u8,
    },
    /// Set a byte of a metadata block and reseal the check values up to the header.
    MetaCraft {
        node: usize,
        at: u32,
        v: u8,
    },
    /// Point a reference at its own parent's location (or at itself), resealed.
    PointUp {
        node: usize,
        at_self: bool,
    },
    /// Swap the locations of two references, resealed.
    Swap {
        a: usize,
        b: usize,
    },
    Truncate(u32),
    /// Another filesystem's superblock over the start of the device.
    Foreign {
        keep_headers: bool,
    },
    Zero {
        start: u32,
        len: u32,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    let used = 12 * MIB as u32;
    prop_oneof![
        3 => prop::collection::vec((0..used, 1..=255u8), 1..64).prop_map(Damage::Flip),
        2 => (0..HEADER_SLOTS, 0..HEADER_SIZE as u16, 1..=255u8).prop_map(|(slot, at, x)| Damage::HeaderFlip { slot, at, x }),
        3 => (0..2048u16, any::<u8>()).prop_map(|(at, v)| Damage::HeaderCraft { at, v }),
        3 => (any::<usize>(), any::<u32>(), 1..=255u8).prop_map(|(node, at, x)| Damage::MetaFlip { node, at, x }),
        6 => (any::<usize>(), any::<u32>(), any::<u8>()).prop_map(|(node, at, v)| Damage::MetaCraft { node, at, v }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(node, at_self)| Damage::PointUp { node, at_self }),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Damage::Swap { a, b }),
        1 => (0..SIZE as u32).prop_map(Damage::Truncate),
        1 => any::<bool>().prop_map(|keep_headers| Damage::Foreign { keep_headers }),
        1 => (0..used, 0..(4 * MIB as u32)).prop_map(|(start, len)| Damage::Zero { start, len }),
    ]
}

fn metadata(nodes: &[Node]) -> Vec<usize> {
    nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.br.ptr().is_some() && n.br.btype != BlockType::Data)
        .map(|(i, _)| i)
        .collect()
}

/// Applies the damage to the image files (`dev`: the device byte-level damage goes to).
fn apply(paths: &[PathBuf], dev: u8, d: &Damage) {
    let mut raw = Raw::open(paths);
    let mut nodes = raw.walk();
    let meta = metadata(&nodes);
    let pick = |i: usize| meta[i % meta.len()];
    match d {
        Damage::Flip(v) => {
            for (at, x) in v {
                let b = raw.read_at(dev, u64::from(*at), 1);
                raw.write_at(dev, u64::from(*at), &[b[0] ^ x]);
            }
        }
        Damage::HeaderFlip { slot, at, x } => {
            let off = header_offset(*slot) + u64::from(*at);
            let b = raw.read_at(dev, off, 1);
            raw.write_at(dev, off, &[b[0] ^ x]);
        }
        Damage::HeaderCraft { at, v } => {
            let Some((slot, h)) = raw.newest(usize::from(dev)) else { return };
            let mut bytes = h.encode().to_vec();
            bytes[usize::from(*at)] = *v;
            // Re-encoding would undo the craft: the check code is recomputed by hand.
            let crc = crc32c::crc32c(&bytes[..HEADER_SIZE - 4]);
            bytes[HEADER_SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
            raw.write_at(dev, header_offset(slot), &bytes);
        }
        Damage::MetaFlip { node, at, x } => {
            let n = &nodes[pick(*node)];
            let p = n.br.ptr().expect("block");
            let l = p.copies.as_slice()[(*at as usize) % p.copies.len()];
            let off = l.offset + u64::from(*at % p.size);
            let b = raw.read_at(l.device, off, 1);
            raw.write_at(l.device, off, &[b[0] ^ x]);
        }
        Damage::MetaCraft { node, at, v } => {
            let i = pick(*node);
            let mut bytes = raw.block(&nodes[i].br);
            let n = bytes.len();
            bytes[(*at as usize) % n] = *v;
            raw.reseal(&mut nodes, i, &bytes);
        }
        Damage::PointUp { node, at_self: true } => {
            // A node that lists itself among its children.
            let i = pick(*node);
            let mut bytes = raw.block(&nodes[i].br);
            if nodes[i].br.btype == BlockType::Indirect && bytes.len() >= 256 {
                nodes[i].br.encode_into(&mut bytes[128..]);
                raw.reseal(&mut nodes, i, &bytes);
            }
        }
        Damage::PointUp { node, at_self: false } => {
            // A reference that leads back to its parent.
            let i = pick(*node);
            let Parent::Block { idx, .. } = nodes[i].parent else { return };
            let target = nodes[idx].br;
            let mut br = nodes[i].br;
            let (Some(p), Some(t)) = (br.ptr_mut(), target.ptr()) else { return };
            let loc = t.copies.as_slice()[0];
            for c in p.copies.as_mut_slice() {
                *c = Location::valid(loc.device, loc.offset);
            }
            p.size = t.size;
            p.check = t.check;
            raw.set_ref(&mut nodes, i, br);
        }
        Damage::Swap { a, b } => {
            let (i, j) = (pick(*a), pick(*b));
            if i == j {
                return;
            }
            let (mut x, y) = (nodes[i].br, nodes[j].br);
            if let (Some(px), Some(py)) = (x.ptr_mut(), y.ptr()) {
                px.copies = py.copies;
                px.check = py.check;
                px.size = py.size;
            }
            raw.set_ref(&mut nodes, i, x);
        }
        Damage::Truncate(len) => {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&paths[usize::from(dev)])
                .and_then(|f| f.set_len(u64::from(*len)))
                .expect("truncate");
        }
        Damage::Foreign { keep_headers } => {
            if !keep_headers {
                for s in 0..HEADER_SLOTS {
                    raw.write_at(dev, header_offset(s), &[0u8; HEADER_SIZE]);
                }
            }
            raw.write_at(dev, 1080, &[0x53, 0xef]);
        }
        Damage::Zero { start, len } => {
            raw.write_at(dev, u64::from(*start), &vec![0u8; *len as usize]);
        }
    }
}

/// A run's exit status, finding kinds and device images afterwards.
type Ran = (i32, Vec<String>, Vec<Vec<u8>>);

/// Runs fsck in a thread with a time bound (or says why it failed).
fn run_bounded(images: Vec<Vec<u8>>, mode: Mode) -> Result<Ran, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let devs: Vec<Arc<MemStorage>> = images
            .into_iter()
            .enumerate()
            .map(|(i, b)| Arc::new(MemStorage::from_bytes(b, &format!("fuzz{i}.img"))))
            .collect();
        let storages: Vec<DynStorage> = devs.iter().map(|d| d.clone() as DynStorage).collect();
        let out = run_devices(storages, &Options { mode, ..Options::default() });
        let _ = tx.send((out.status, out.report.json(), devs.iter().map(|d| d.snapshot()).collect()));
    });
    match rx.recv_timeout(TIME_BOUND) {
        Ok((status, json, after)) => {
            let v = serde_json::from_str::<serde_json::Value>(&json).map_err(|e| format!("report is not JSON: {e}"))?;
            Ok((status, common::run::kinds(&v), after))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(format!("no result within {TIME_BOUND:?}")),
        Err(_) => Err("fsck panicked".into()),
    }
}

fn cases() -> u32 {
    std::env::var("HAMMER2_FSCK_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_damaged_image_gives_a_report_and_a_status_never_a_panic_or_a_hang(
        d in damage(),
        repair in any::<bool>(),
        ndev in 1..=2usize,
        dev in 0..2u8,
    ) {
        let (images, _) = base(ndev);
        let dir = tempfile::tempdir().expect("tempdir");
        let paths: Vec<PathBuf> = images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                let p = dir.path().join(format!("fuzz{i}.img"));
                std::fs::write(&p, image).expect("write");
                p
            })
            .collect();
        apply(&paths, dev % ndev as u8, &d);
        let bytes: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).expect("read")).collect();
        let (st, before, after) = run_bounded(bytes.clone(), Mode::Check).map_err(TestCaseError::fail)?;
        prop_assert!([0, 4, 8].contains(&st), "-n status {st} for {d:?}");
        prop_assert!(after == bytes, "-n wrote to the image for {d:?}");
        if repair {
            let (st, _, after) = run_bounded(bytes, Mode::Yes).map_err(TestCaseError::fail)?;
            prop_assert!([0, 1, 4, 5, 8].contains(&st), "-y status {st} for {d:?}");
            let (st2, kinds, _) = run_bounded(after, Mode::Check).map_err(TestCaseError::fail)?;
            prop_assert!([0, 4, 8].contains(&st2), "-n after -y status {st2} for {d:?}");
            if st == 1 {
                prop_assert_eq!(st2, 0, "-y said it repaired everything, but -n disagrees for {:?}: {:?}", d, kinds);
            }
            // The one thing a repair must never leave behind: a block in use that the free
            // map offers for reuse.
            let worse = kinds.iter().any(|k| k == "marked_free") && !before.iter().any(|k| k == "marked_free");
            prop_assert!(!worse, "-y left blocks in use marked free for {:?}: {:?}", d, kinds);
        }
    }
}

#[test]
fn the_base_images_are_clean() {
    for ndev in 1..=2 {
        let (images, nodes) = base(ndev);
        assert!(metadata(nodes).len() > 20);
        let (st, _, _) = run_bounded(images.clone(), Mode::Check).expect("run");
        assert_eq!(st, 0);
    }
}

/// Found by the fuzz above: the second copy of the PFS table's root reference (header byte
/// 689) moved past the end of the one device. The repair's commit relocates that root and
/// freed the old block's copies, the one past the end included, which left a unit outside
/// every region marked free (DESIGN S5). Repaired, the image now checks clean.
#[test]
fn a_root_copy_past_the_end_of_its_device_is_repaired_without_freeing_units_outside_the_regions() {
    let d = Damage::HeaderCraft { at: 689, v: 40 };
    let (images, _) = base(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fuzz0.img");
    std::fs::write(&path, &images[0]).expect("write");
    apply(std::slice::from_ref(&path), 0, &d);
    let bytes = vec![std::fs::read(&path).expect("read")];
    let (st, before, _) = run_bounded(bytes.clone(), Mode::Check).expect("fsck -n");
    assert_eq!(st, 4, "{before:?}");
    assert!(before.iter().any(|k| k == "placement") && before.iter().any(|k| k == "bad_copy"), "{before:?}");
    let (st, _, after) = run_bounded(bytes, Mode::Yes).expect("fsck -y");
    assert!([1, 5].contains(&st), "-y status {st}");
    let (st, kinds, _) = run_bounded(after, Mode::Check).expect("fsck -n after -y");
    assert_eq!((st, kinds), (0, Vec::<String>::new()));
}
