#![allow(dead_code)]
pub mod image;
pub mod run;
