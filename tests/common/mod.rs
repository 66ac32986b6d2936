#![allow(dead_code)]
pub mod crash;
pub mod engine;
pub mod image;
pub mod model;
pub mod mount;
pub mod rng;
