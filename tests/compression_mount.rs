//! Compression as users meet it, through real mounts of image files made by the real
//! `mkfs.hammer2` (lz4 by default on format version 2): a real source tree untarred,
//! compared with `diff -r`, `du` showing less than `ls -l` (st_blocks counts stored
//! bytes); `hammer2 set|get compression=` on a directory, inherited by a new file; a
//! damaged copy of a compressed block healed from the other copy; every copy damaged:
//! EIO, never other bytes; fsck verifies the compressed blocks; version 1 refuses every
//! compression setting with FORMAT-V2's line.

use hammer2_test_support as common;

use common::damage::Blocks;
use common::image::{fsck, hammer2, info_json, mkfs, ok, one_line_error, stdout};
use common::mount::*;
use hammer2_format::CompressionMethod;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const V1_LINE: &str = "this filesystem is format version 1; 'hammer2 upgrade' converts it (see FORMAT-V2)";

/// A tar of real sources: this repository's `src`, `docs` and `media-format` (text that
/// compresses the way source trees do).
fn source_tar(dir: &Path) -> std::path::PathBuf {
    let tar = dir.join("src.tar");
    let root = env!("CARGO_MANIFEST_DIR");
    sh(&format!("tar -C {root} -cf {} src docs media-format/src", tar.display()));
    tar
}

/// At least this many bytes of file content are in the tarball: its size less one 512-byte
/// header per member and the padding of each to 512 bytes.
fn logical_tar_floor(tar: &Path) -> u64 {
    let members = String::from_utf8_lossy(&sh(&format!("tar -tf {}", tar.display())).stdout).lines().count() as u64;
    std::fs::metadata(tar).unwrap().len().saturating_sub(members * 1024 + 10240)
}

fn du_bytes(p: &Path, apparent: bool) -> u64 {
    let flag = if apparent { "--apparent-size -sB1" } else { "-sB1" };
    let out = sh(&format!("du {flag} {}", p.display()));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn a_source_tree_is_stored_compressed_and_reads_back_identical() {
    let img = Image::by_mkfs(2, 256 << 20, 2);
    let tar = source_tar(img.dir.path());
    let m = img.mount();
    sh(&format!("tar -C {} -xf {}", m.path.display(), tar.display()));
    let root = env!("CARGO_MANIFEST_DIR");
    for d in ["src", "docs", "media-format/src"] {
        sh(&format!("diff -r {root}/{d} {}", m.join(d).display()));
    }
    m.unmount();
    // After a remount (the kernel caches attributes for a while, and st_blocks changes at
    // the commit): du (st_blocks) shows what is stored, ls -l (st_size) what files hold.
    let m = img.mount();
    let (physical, logical) = (du_bytes(&m.join("src"), false), du_bytes(&m.join("src"), true));
    assert!(physical * 10 < logical * 8, "du {physical} against apparent {logical}: nothing saved");
    let big = std::fs::read_dir(m.join("src/vnops"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let md = std::fs::metadata(&big).unwrap();
    assert!(md.blocks() * 512 < md.len(), "{}: {} blocks for {} bytes", big.display(), md.blocks(), md.len());
    // `hammer2 info --json` on the mount: the totals, as written and as stored.
    let live = info_json([m.path.as_os_str()]);
    m.unmount();
    let offline = info_json(img.devices.iter().map(|d| d.as_os_str()));
    for info in [&live, &offline] {
        assert_eq!(info["compression"], "lz4", "{info}");
        let d = &info["data"];
        let (logical, stored, physical) = (
            d["logical_bytes"].as_u64().unwrap(),
            d["stored_bytes"].as_u64().unwrap(),
            d["physical_bytes"].as_u64().unwrap(),
        );
        assert!(logical >= logical_tar_floor(&tar) && stored * 10 < logical * 8, "{d}");
        assert_eq!(physical, 2 * stored, "{d}");
        assert!(d["ratio"].as_f64().unwrap() > 1.25, "{d}");
        assert!(d["compressed_blocks"].as_u64().unwrap() * 2 > d["blocks"].as_u64().unwrap(), "{d}");
    }
    assert_eq!(live["data"], offline["data"]);

    // fsck verifies every copy of every block, compressed ones included, and finds nothing.
    let out = fsck(img.devices.iter().map(|d| d.as_os_str()).chain([std::ffi::OsStr::new("-n")]));
    ok(&out);
    let b = Blocks::open(&img.devices);
    let data = b.all_data();
    let lz4 = data.iter().filter(|br| br.compression().is_some_and(|c| c.method == CompressionMethod::Lz4)).count();
    assert!(lz4 * 2 > data.len() / 2, "{lz4} of {} data blocks compressed", data.len());
    b.assert_every_copy_good();
    drop(b);

    let m = img.mount_with("ro");
    for d in ["src", "docs", "media-format/src"] {
        sh(&format!("diff -r {root}/{d} {}", m.join(d).display()));
    }
    m.unmount();
}

#[test]
fn set_and_get_compression_of_a_directory_inherited_by_new_files() {
    let img = Image::by_mkfs(1, 128 << 20, 1);
    let m = img.mount();
    let dir = m.join("z");
    std::fs::create_dir(&dir).unwrap();
    let get =
        |p: &Path| stdout(&hammer2([std::ffi::OsStr::new("get"), std::ffi::OsStr::new("compression"), p.as_os_str()]));
    assert_eq!(get(&dir).trim(), format!("{}: compression=default (lz4)", dir.display()));
    ok(&hammer2([std::ffi::OsStr::new("set"), std::ffi::OsStr::new("compression=zstd:7"), dir.as_os_str()]));
    assert_eq!(get(&dir).trim(), format!("{}: compression=zstd:7", dir.display()));
    let f = dir.join("new");
    std::fs::write(&f, "inherited ".repeat(20_000)).unwrap();
    // The codec is the one in force when the commit writes the blocks.
    sh(&format!("sync {}", f.display()));
    assert_eq!(
        stdout(&hammer2([std::ffi::OsStr::new("get"), std::ffi::OsStr::new("compression"), f.as_os_str()])).trim(),
        format!("{}: compression=zstd:7", f.display())
    );
    // Bad values and names: one line each, nothing changed.
    let bad = hammer2([std::ffi::OsStr::new("set"), std::ffi::OsStr::new("compression=brotli"), dir.as_os_str()]);
    one_line_error(&bad, "hammer2 set: ", "brotli");
    let bad = hammer2([std::ffi::OsStr::new("set"), std::ffi::OsStr::new("colour=red"), dir.as_os_str()]);
    one_line_error(&bad, "hammer2 set: ", "unknown setting");
    let elsewhere = img.dir.path().join("plain");
    std::fs::write(&elsewhere, b"x").unwrap();
    let bad = hammer2([std::ffi::OsStr::new("set"), std::ffi::OsStr::new("compression=lz4"), elsewhere.as_os_str()]);
    one_line_error(&bad, "hammer2 set: ", "not on a mounted hammer2 filesystem");
    // `default` gives the file back to the mount's setting; the directory keeps its own.
    ok(&hammer2([std::ffi::OsStr::new("set"), std::ffi::OsStr::new("compression=default"), f.as_os_str()]));
    assert_eq!(get(&f).trim(), format!("{}: compression=default (lz4)", f.display()));
    let ino = std::fs::metadata(dir.join("new")).unwrap().ino();
    std::fs::write(dir.join("later"), "zstd data ".repeat(20_000)).unwrap();
    std::fs::write(m.join("plain-lz4"), "lz4 data! ".repeat(20_000)).unwrap();
    let plain = std::fs::metadata(m.join("plain-lz4")).unwrap().ino();
    let later = std::fs::metadata(dir.join("later")).unwrap().ino();
    m.unmount();

    let b = Blocks::open(&img.devices);
    // Every block of more than one unit is compressed with the file's codec (the tail, one
    // unit, cannot save one and is stored raw).
    let all_with = |inum: u64, want: CompressionMethod| {
        let blocks = b.data_of(inum);
        let methods: Vec<_> = blocks.iter().map(|br| (br.size(), br.compression().map(|c| c.method))).collect();
        assert!(blocks.len() == 13, "{methods:?}");
        assert!(methods.iter().all(|(size, m)| *m == Some(want) || (*size == 4096 && m.is_none())), "{methods:?}");
    };
    all_with(ino, CompressionMethod::Zstd);
    all_with(later, CompressionMethod::Zstd);
    all_with(plain, CompressionMethod::Lz4);
    drop(b);
    // The settings survive the remount.
    let m = img.mount();
    assert_eq!(get(&m.join("z")).trim(), format!("{}: compression=zstd:7", m.join("z").display()));
    m.unmount();
}

#[test]
fn a_damaged_copy_heals_from_the_other_and_every_copy_damaged_is_eio() {
    let img = Image::by_mkfs(2, 128 << 20, 2);
    let m = img.mount();
    let content = "healing compressed copies\n".repeat(40_000);
    std::fs::write(m.join("f"), &content).unwrap();
    let ino = std::fs::metadata(m.join("f")).unwrap().ino();
    m.unmount();

    let b = Blocks::open(&img.devices);
    let blocks = b.data_of(ino);
    assert!(blocks.len() > 8 && blocks.iter().all(|br| br.compression().is_some()));
    b.smash(&blocks[1], 0);
    b.smash(&blocks[2], 1);
    for slot in 0..2 {
        b.smash(&blocks[5], slot);
    }
    drop(b);

    let m = img.mount();
    let f = m.join("f");
    // Block 1's first copy is bad: read from the second, rewritten.
    let mut good = vec![0u8; 16384];
    let file = std::fs::File::open(&f).unwrap();
    use std::os::unix::fs::FileExt;
    file.read_exact_at(&mut good, 16384).unwrap();
    assert_eq!(good, content.as_bytes()[16384..32768]);
    // Block 5: no good copy. EIO for that range, nothing else returned.
    let err = file.read_exact_at(&mut good, 5 * 16384).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // `cat` of the whole file fails; the blocks before the bad one still read.
    let out = std::process::Command::new("cat").arg(&f).output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.len() <= 5 * 16384 && content.as_bytes().starts_with(&out.stdout));
    // A scrub rewrites block 2's bad second copy and names block 5 as unrepairable.
    drop(file);
    let scrub = hammer2([std::ffi::OsStr::new("scrub"), m.path.as_os_str()]);
    assert!(!scrub.status.success(), "scrub with an unrepairable block must fail");
    m.unmount();

    // fsck verifies the stored bytes of compressed blocks as of any other: block 5 is bad.
    let out = fsck(img.devices.iter().map(|d| d.as_os_str()).chain([std::ffi::OsStr::new("-n")]));
    assert!(!out.status.success(), "fsck -n found nothing: {}", stdout(&out));
    let b = Blocks::open(&img.devices);
    assert!(!b.still_smashed(&blocks[1], 0), "the read healed block 1");
    assert!(!b.still_smashed(&blocks[2], 1), "the scrub healed block 2");
    assert!(b.still_smashed(&blocks[5], 0) && b.still_smashed(&blocks[5], 1));
}

#[test]
fn version_1_refuses_every_compression_setting_with_the_format_v2_line() {
    let d = tempfile::tempdir().unwrap();
    let dev = d.path().join("v1.img");
    let out = mkfs([
        "--size".as_ref(),
        "64M".as_ref(),
        "--format-version".as_ref(),
        "1".as_ref(),
        "--compression".as_ref(),
        "lz4".as_ref(),
        dev.as_os_str(),
    ]);
    one_line_error(&out, "mkfs.hammer2: ", V1_LINE);
    assert!(!dev.exists() || std::fs::metadata(&dev).unwrap().len() == 0, "nothing made");

    let img = {
        let i = Image::by_mkfs(1, 64 << 20, 1);
        // Remade as version 1 (the same image file).
        ok(&mkfs(["-f".as_ref(), "--format-version".as_ref(), "1".as_ref(), i.devices[0].as_os_str()]));
        i
    };
    let out = img.try_mount(&img.mountpoint(), "compression=lz4");
    one_line_error(&out, "hammer2 mount: ", V1_LINE);
    let m = img.mount();
    let f = m.join("f");
    std::fs::write(&f, "version one ".repeat(10_000)).unwrap();
    assert_eq!(
        stdout(&hammer2([std::ffi::OsStr::new("get"), f.as_os_str()])).trim(),
        format!("{0}: compression=default (none)\n{0}: copies=default (1)", f.display())
    );
    let out = hammer2([std::ffi::OsStr::new("set"), std::ffi::OsStr::new("compression=lz4"), f.as_os_str()]);
    one_line_error(&out, "hammer2 set: ", V1_LINE);
    m.unmount();
}
