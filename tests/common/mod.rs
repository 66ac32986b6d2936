#![allow(dead_code)]
pub mod engine;
pub mod image;
pub mod model;
