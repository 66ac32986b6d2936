//! fsck speed on a filesystem of at least 1 GiB, holding 1 GiB of file data: not a timed
//! assertion, a measurement. Run it in release mode:
//!
//!     cargo test --release -p hammer2-fsck --test speed -- --ignored --nocapture
//!
//! It prints MB/s of bytes read (every copy), with the images dropped from the page cache
//! first (cold, what a disk gives) and again with them cached (warm: the CPU cost).
//! `HAMMER2_FSCK_SPEED_MIB` sets the data size (default 1024).

use hammer2_test_support::fsck as common;

use common::image::*;
use common::run::*;
use std::os::fd::AsRawFd;

fn drop_cache(paths: &[std::path::PathBuf]) {
    for p in paths {
        let f = std::fs::File::open(p).expect("open");
        f.sync_all().expect("sync");
        // SAFETY: fadvise on a valid descriptor; it only drops clean cached pages.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn fsck_reads_a_gibibyte_filesystem_at_device_speed() {
    let mib: u64 = std::env::var("HAMMER2_FSCK_SPEED_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    for (ndev, copies) in [(1usize, 1u8), (2, 2)] {
        let size = (mib + mib / 2 + 64) * MIB;
        let img = Img::new(ndev, size, copies);
        let fs = img.mount();
        let chunk = pattern(42, 4 << 20);
        let files = mib / 64;
        for i in 0..files {
            let f = fs.create(fs.root(), format!("f{i}").as_bytes(), 0o644, hammer2::Creds::default()).expect("create");
            for k in 0..16u64 {
                let mut c = chunk.clone();
                c[0] = i as u8;
                c[1] = k as u8;
                fs.write(f.ino, k * (4 << 20), &c).expect("write");
            }
            fs.sync().expect("sync");
        }
        fs.unmount().expect("unmount");
        // The machine may be busy with other work: three runs each, the best counts.
        for cache in ["cold", "warm"] {
            let mut best = 0.0f64;
            let mut line = String::new();
            for _ in 0..3 {
                if cache == "cold" {
                    drop_cache(&img.paths);
                }
                let (st, r) = fsck_json(&["-n"], &img.args());
                assert_eq!(st, 0, "{}", messages(&r));
                let c = &r["counts"];
                let speed = r["read_mb_per_s"].as_f64().unwrap_or(0.0);
                if speed > best {
                    best = speed;
                    line = format!(
                        "fsck -n, {ndev} device(s) of {} MiB, copies {copies}, {} MiB of data: {} MiB read in {:.2} s = {:.0} MB/s ({cache}, best of 3)",
                        size >> 20,
                        c["bytes_allocated"].as_u64().unwrap_or(0) >> 20,
                        c["bytes_read"].as_u64().unwrap_or(0) >> 20,
                        r["seconds"].as_f64().unwrap_or(0.0),
                        speed,
                    );
                }
            }
            println!("{line}");
        }
    }
}
