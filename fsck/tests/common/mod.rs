#![allow(dead_code)]
pub mod damage;
pub mod image;
pub mod raw;
pub mod run;
