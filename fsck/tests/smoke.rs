mod common;
use common::image::*;
use common::run::*;

#[test]
fn smoke_clean() {
    let (img, _exp) = standard(1, 128 * MIB, 1);
    let o = fsck(&["-n", "-v"], &img.args());
    println!("{}", text(&o));
    let (st, v) = fsck_json(&["-n"], &img.args());
    println!("{}", messages(&v));
    assert_eq!(st, 0);
}
