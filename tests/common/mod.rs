#![allow(dead_code)]
pub mod bins;
pub mod crash;
pub mod damage;
pub mod engine;
pub mod ext4;
pub mod faulty_fuse;
pub mod image;
pub mod model;
pub mod mount;
pub mod rng;
pub mod uring;
