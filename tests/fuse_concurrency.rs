//! Several processes writing, renaming, replacing, deleting and reading in the same
//! directories at once; afterwards (and after a remount) the tree is exactly what the
//! operations add up to, and no reader ever saw a half-replaced file.

use hammer2_test_support as common;

use common::mount::*;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command};

const WORKERS: usize = 4;
const ITERATIONS: usize = 120;
const BIG: usize = 200_000;

/// One writer: creates `w{id}_{i}` through a temporary name, renames it into the next shared
/// directory, deletes every fourth one, fights the others for the name `common` with atomic
/// replaces (checking it never reads a torn one), rewrites a 200 KB file every tenth round,
/// and reads whatever the others have written.
const WORKER: &str = r#"
set -u
id=$1; root=$2; n=$3; big=$4
i=0
while [ $i -lt $n ]; do
  d=$root/shared$((i % 3)); t=$root/shared$(((i + 1) % 3)); f=w${id}_$i
  printf 'w%s_%s\n' $id $i > $d/$f.tmp
  mv $d/$f.tmp $d/$f
  mv $d/$f $t/$f
  printf 'owner w%s iteration %s\n' $id $i > $root/common.w$id
  mv $root/common.w$id $root/common
  c=$(cat $root/common)
  case "$c" in "owner w"*" iteration "*) ;; *) echo "torn common: [$c]"; exit 1;; esac
  if [ $((i % 10)) -eq 0 ]; then
    yes "w$id $i" | head -c $big > $root/big.w$id.tmp
    mv $root/big.w$id.tmp $root/big.w$id
  fi
  cat $root/shared*/w* > /dev/null 2>&1 || true
  if [ $((i % 4)) -eq 0 ]; then rm $t/$f; fi
  i=$((i + 1))
done
"#;

/// A reader that lists and reads everything until told to stop.
const READER: &str = r#"
root=$1
while [ ! -e $root/stop ]; do
  ls -laR $root > /dev/null 2>&1
  find $root -type f -exec cat {} + > /dev/null 2>&1
done
"#;

fn spawn(script: &str, args: &[String]) -> Child {
    Command::new("sh").arg("-c").arg(script).arg("sh").args(args).spawn().expect("spawn sh")
}

fn yes_output(line: &str, len: usize) -> Vec<u8> {
    format!("{line}\n").into_bytes().into_iter().cycle().take(len).collect()
}

/// The tree the workers' operations add up to.
fn check(root: &Path) {
    for d in 0..3 {
        let dir = root.join(format!("shared{d}"));
        let names: Vec<String> =
            fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        let want = (0..WORKERS)
            .flat_map(|id| (0..ITERATIONS).map(move |i| (id, i)))
            .filter(|&(_, i)| i % 4 != 0 && (i + 1) % 3 == d)
            .count();
        assert_eq!(names.len(), want, "shared{d} holds {names:?}");
        for n in names {
            assert!(!n.ends_with(".tmp"), "leftover temporary {n}");
            let (id, i) = n[1..].split_once('_').unwrap_or_else(|| panic!("odd name {n}"));
            let i: usize = i.parse().unwrap();
            assert_eq!((i + 1) % 3, d, "{n} in the wrong directory");
            let p = dir.join(&n);
            assert_eq!(fs::read_to_string(&p).unwrap(), format!("w{id}_{i}\n"), "{n}");
            assert_eq!(fs::metadata(&p).unwrap().nlink(), 1, "{n}");
        }
        assert_eq!(fs::metadata(&dir).unwrap().nlink(), 2);
    }
    let common = fs::read_to_string(root.join("common")).unwrap();
    assert!(common.starts_with("owner w") && common.contains(" iteration "), "common: {common:?}");
    let last_big = (ITERATIONS - 1) / 10 * 10;
    for id in 0..WORKERS {
        assert_eq!(fs::read(root.join(format!("big.w{id}"))).unwrap(), yes_output(&format!("w{id} {last_big}"), BIG));
    }
    let mut top: Vec<String> =
        fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    top.sort();
    let mut want: Vec<String> = ["common", "shared0", "shared1", "shared2", "stop"].map(String::from).to_vec();
    want.extend((0..WORKERS).map(|id| format!("big.w{id}")));
    want.sort();
    assert_eq!(top, want);
}

#[test]
fn processes_racing_in_shared_directories_leave_exactly_the_tree_their_operations_add_up_to() {
    let img = Image::new();
    let m = img.mount();
    for d in 0..3 {
        fs::create_dir(m.join(format!("shared{d}"))).unwrap();
    }
    fs::write(m.join("common"), "owner w0 iteration 0\n").unwrap();
    let root = m.path.display().to_string();
    let readers: Vec<Child> = (0..2).map(|_| spawn(READER, std::slice::from_ref(&root))).collect();
    let workers: Vec<Child> = (0..WORKERS)
        .map(|id| spawn(WORKER, &[id.to_string(), root.clone(), ITERATIONS.to_string(), BIG.to_string()]))
        .collect();
    for (id, w) in workers.into_iter().enumerate() {
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success(), "worker {id} failed ({})", out.status);
    }
    fs::write(m.join("stop"), b"").unwrap();
    for r in readers {
        r.wait_with_output().unwrap();
    }
    check(&m.path);
    File::open(&m.path).unwrap().sync_all().unwrap();
    let before = snapshot(&m.path);
    m.unmount();

    let m = img.mount();
    check(&m.path);
    let after = snapshot(&m.path);
    for (p, s) in &before {
        // Reading during the check may move atime only; everything else must be identical.
        assert_eq!(after.get(p), Some(s), "{} differs after remount", p.display());
    }
    assert_eq!(before.len(), after.len());
    m.unmount();
}
