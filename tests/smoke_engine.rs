use hammer2::format::{FormatOptions, format};
use hammer2::storage::DynStorage;
use hammer2::storage::mem::MemStorage;
use hammer2::{Creds, Fs, Options};
use std::sync::Arc;

fn opts() -> Options {
    Options { background_sync: false, ..Options::default() }
}

#[test]
fn smoke() {
    let a: DynStorage = Arc::new(MemStorage::new(64 << 20, "a"));
    let b: DynStorage = Arc::new(MemStorage::new(64 << 20, "b"));
    let rep = format(vec![a.clone(), b.clone()], &FormatOptions { copies: Some(2), ..Default::default() }).unwrap();
    eprintln!("{rep:?}");
    let fs = Fs::mount(vec![a.clone(), b.clone()], opts()).unwrap();
    let root = fs.root();
    let f = fs.create(root, b"hello", 0o644, Creds::default()).unwrap();
    fs.write(f.ino, 0, b"hello world").unwrap();
    let big = fs.create(root, b"big", 0o644, Creds::default()).unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs.write(big.ino, 0, &data).unwrap();
    let d = fs.mkdir(root, b"dir", 0o755, Creds::default()).unwrap();
    for i in 0..100 {
        fs.create(d.ino, format!("file{i}").as_bytes(), 0o644, Creds::default()).unwrap();
    }
    fs.sync().unwrap();
    assert_eq!(fs.read(f.ino, 0, 100).unwrap(), b"hello world");
    assert_eq!(fs.read(big.ino, 0, data.len()).unwrap(), data);
    fs.unmount().unwrap();

    let fs = Fs::mount(vec![b.clone(), a.clone()], opts()).unwrap();
    let f2 = fs.lookup(root, b"hello").unwrap();
    assert_eq!(fs.read(f2.ino, 0, 100).unwrap(), b"hello world");
    let big2 = fs.lookup(root, b"big").unwrap();
    assert_eq!(fs.read(big2.ino, 0, data.len()).unwrap(), data);
    let d2 = fs.lookup(root, b"dir").unwrap();
    let mut n = 0;
    fs.readdir(d2.ino, 0, |_| {
        n += 1;
        false
    })
    .unwrap();
    assert_eq!(n, 102);
    fs.unmount().unwrap();
}
