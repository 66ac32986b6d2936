//! The helpers of fsck's tests: images built with the engine, the trees read raw with the
//! format crate, precise damage, and running `fsck-hammer2`.

pub mod damage;
pub mod image;
pub mod raw;
pub mod run;

/// Tests that hold image files locked (flock) and tests that start processes run one at a
/// time: a process started by one test briefly holds a copy of every descriptor of the
/// test process (between fork and exec), so a lock another test just released can still
/// look held, and fsck would rightly call the image in use.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
