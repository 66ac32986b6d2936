#![allow(dead_code)]
pub mod mount;
