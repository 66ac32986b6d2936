//! The walk reads metadata ahead in runs (`readahead`); that changes how blocks are read,
//! never what fsck finds. Among many small files: a bad copy of an inode block and of an
//! inode-index node are reported with their device and offset and rewritten, an inode
//! block whose every copy is bad is reported unreadable (never served as good from a
//! run), and the reads show that each damaged copy came through a run.

use hammer2_test_support::fsck as common;

use common::damage::{data_ref, inode_block, spoil_all, spoil_copy, with_engine};
use common::image::*;
use common::raw::{Parent, Raw, Tree, find};
use hammer2::storage::{DynStorage, Storage};
use hammer2_format::{BlockType, Blockref, Location};
use hammer2_fsck::report::{Problem, Repair};
use hammer2_fsck::{EXIT_CLEAN, EXIT_CORRECTED, EXIT_UNCORRECTED, Mode, Options, run_devices};
use std::io;
use std::sync::{Arc, Mutex};

/// A device that remembers every read (offset, length).
struct Recorder {
    inner: DynStorage,
    reads: Mutex<Vec<(u64, usize)>>,
}

impl Storage for Recorder {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.reads.lock().unwrap_or_else(|e| e.into_inner()).push((offset, buf.len()));
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

fn recorded(img: &Img) -> Vec<Arc<Recorder>> {
    img.storages().into_iter().map(|inner| Arc::new(Recorder { inner, reads: Mutex::new(Vec::new()) })).collect()
}

fn run(devs: &[Arc<Recorder>], mode: Mode) -> hammer2_fsck::Outcome {
    let storages: Vec<DynStorage> = devs.iter().map(|d| d.clone() as DynStorage).collect();
    run_devices(storages, &Options { mode, ..Options::default() })
}

fn copy_at(br: &Blockref, slot: usize) -> Location {
    br.ptr().expect("a block").copies.as_slice()[slot]
}

#[test]
fn damage_among_metadata_read_ahead_is_found_and_repaired_as_before() {
    let _serial = common::serial();
    // More inodes than one node holds (512 references), each file with a data block, so
    // the inode blocks lie between data and the inode index has several nodes.
    let img = Img::new(2, 128 * MIB, 2);
    let fs = img.mount();
    let dir = fs.mkdir(fs.root(), b"many", 0o755, hammer2::Creds::default()).expect("mkdir");
    let mut exp = Expected::new();
    let mut inums = Vec::new();
    for i in 0..1500u64 {
        let name = format!("f{i}");
        let f = fs.create(dir.ino, name.as_bytes(), 0o644, hammer2::Creds::default()).expect("create");
        let data = pattern(i, 4096);
        fs.write(f.ino, 0, &data).expect("write");
        exp.insert(format!("/many/{name}"), data);
        inums.push(f.ino);
    }
    fs.unmount().expect("unmount");

    let bad_copy = inode_block(&img, inums[700]);
    let lost = inode_block(&img, inums[1100]);
    let mut lost_data = None;
    with_engine(&img, |fs| lost_data = Some(data_ref(fs, "/many/f1100", 0)));
    let lost_data = lost_data.expect("the lost file's data block");
    // The inode-index node above another inode.
    let node = {
        let nodes = Raw::open(&img.paths).walk();
        let i = find(&nodes, |n| n.tree == Tree::Inodes && n.br.btype == BlockType::Inode && n.br.key == inums[300]);
        let Parent::Block { idx, .. } = nodes[i].parent else { panic!("inode {} is a root", inums[300]) };
        nodes[idx].br
    };
    assert_eq!(node.btype, BlockType::Indirect);
    spoil_copy(&img, &bad_copy, 1);
    spoil_copy(&img, &node, 0);
    spoil_all(&img, &lost);

    // -n: exactly the damage, each copy where it is.
    let devs = recorded(&img);
    let out = run(&devs, Mode::Check);
    let r = &out.report;
    let (mut bad, mut leaked) = (Vec::new(), Vec::new());
    let mut unreadable = 0;
    for f in &r.findings {
        match &f.problem {
            Problem::BadCopy { device, offset, .. } => bad.push((device.clone(), *offset)),
            Problem::Unreadable { at, .. } if at.inum == Some(inums[1100]) => unreadable += 1,
            // The lost file's data: nothing reachable uses it any more.
            Problem::Leaked { device, offset, .. } => leaked.push((device.clone(), *offset)),
            _ => panic!("unexpected finding: {}", f.message),
        }
    }
    let name = |l: Location| img.paths[usize::from(l.device)].display().to_string();
    let places = |v: &[Location]| {
        let mut p: Vec<(String, u64)> = v.iter().map(|&l| (name(l), l.offset)).collect();
        p.sort();
        p
    };
    bad.sort();
    leaked.sort();
    assert_eq!(bad, places(&[copy_at(&bad_copy, 1), copy_at(&node, 0)]));
    assert_eq!(leaked, places(&[copy_at(&lost_data, 0), copy_at(&lost_data, 1)]));
    assert_eq!(unreadable, 1);
    assert_eq!(out.status, EXIT_UNCORRECTED);

    // Each damaged copy was read as part of a longer run, never on its own.
    let spoiled = [copy_at(&bad_copy, 1), copy_at(&node, 0), copy_at(&lost, 0), copy_at(&lost, 1)];
    let sizes = [bad_copy.size(), node.size(), lost.size(), lost.size()];
    for (l, size) in spoiled.iter().zip(sizes) {
        let reads = devs[usize::from(l.device)].reads.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (o, s) = (l.offset, size as usize);
        assert!(!reads.contains(&(o, s)), "copy at {o} of device {} read alone", l.device);
        assert!(
            reads.iter().any(|&(ro, rl)| ro <= o && o + s as u64 <= ro + rl as u64 && rl > s),
            "copy at {o} of device {} not read in a run",
            l.device
        );
    }

    drop(devs);

    // -y: the bad copies are rewritten, the lost inode removed; then nothing is left.
    let out = run(&recorded(&img), Mode::Yes);
    assert_eq!(out.status, EXIT_CORRECTED, "{:?}", out.report.findings);
    assert!(out.report.findings.iter().all(|f| matches!(f.repair, Repair::Repaired { .. })));
    let out = run(&recorded(&img), Mode::Check);
    assert_eq!(out.status, EXIT_CLEAN, "{:?}", out.report.findings);
    assert!(out.report.findings.is_empty());
    assert_intact(&img.paths, &exp, &["/many/f1100"]);
}
