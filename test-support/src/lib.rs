//! What the tests of every workspace member share: finding the workspace's binaries, images
//! (in memory, in files, on loop devices), real FUSE mounts, running the command-line tools,
//! damaging copies and structures on purpose, the model the engine is checked against, and
//! the one seeded random generator (`rng`) that every test tree, the tools and the
//! benchmarks draw from, so any failure printed with its seed replays exactly.
//!
//! A test file names it `common` (`use hammer2_test_support as common;`); fsck's tests use
//! its `fsck` module the same way.

pub mod bins;
pub mod crash;
pub mod damage;
pub mod engine;
pub mod ext4;
pub mod faulty_fuse;
pub mod fsck;
pub mod fuse_mount;
pub mod image;
pub mod model;
pub mod mount;
pub mod nbd;
pub mod raw_blocks;
pub mod rng;
pub mod uring;
