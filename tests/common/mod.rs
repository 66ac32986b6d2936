#![allow(dead_code)]
pub mod engine;
pub mod model;
