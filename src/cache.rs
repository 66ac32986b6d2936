//! A bounded cache of verified blocks, shared by all threads.
//!
//! Blocks are immutable once written (copy-on-write), so a cached block never goes stale
//! while its location stays allocated. A freed location can be reused for new content; the
//! key therefore includes the check fingerprint of the content, so an entry for old content
//! simply stops matching and ages out.
//!
//! Replacement is CLOCK (second chance) per shard; shards keep lock hold times short and
//! independent for concurrent FUSE threads. The budget is in bytes, split evenly by shard.

use hammer2_format::{Blockref, InodeBlock, InodeContent};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Encoded location of the block's first copy (device and offset).
    pub device: u8,
    pub offset: u64,
    pub fingerprint: u64,
}

/// What is cached: raw bytes of a data-like block, the decoded entries of a tree node, or
/// a decoded inode. Inodes are kept decoded because a cold `stat` of a directory reads
/// them by the thousand: a 4 KiB block each, mostly zeros, whose copy into a fresh
/// allocation (and the page faults of a growing heap) cost more than the decode itself.
#[derive(Clone)]
pub enum Cached {
    Bytes(Arc<[u8]>),
    Node(Arc<crate::tree::Node>),
    Inode(Arc<InodeBlock>),
}

impl Cached {
    fn cost(&self) -> u64 {
        match self {
            Cached::Bytes(b) => b.len() as u64 + 64,
            Cached::Node(n) => (n.len() * (std::mem::size_of::<Blockref>() + 8)) as u64 + 64,
            Cached::Inode(i) => {
                let content = match &i.content {
                    InodeContent::Tree { entries, .. } => entries.len() * std::mem::size_of::<Blockref>(),
                    InodeContent::Embedded(bytes) => bytes.len(),
                };
                (std::mem::size_of::<InodeBlock>() + content) as u64 + 64
            }
        }
    }
}

struct Entry {
    value: Cached,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    /// foldhash, not SipHash: the hash is on every cached read, and foldhash's per-table
    /// random seed still keeps a writer who chooses data (and so check fingerprints) from
    /// aiming collisions at the table.
    map: HashMap<CacheKey, Entry, foldhash::fast::RandomState>,
    ring: VecDeque<CacheKey>,
    bytes: u64,
}

pub struct BlockCache {
    shards: Vec<Mutex<Shard>>,
    shard_budget: u64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl BlockCache {
    pub fn new(budget_bytes: u64) -> BlockCache {
        BlockCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_budget: (budget_bytes / SHARDS as u64).max(1 << 20),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, k: &CacheKey) -> &Mutex<Shard> {
        let h = k.offset.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ k.fingerprint ^ u64::from(k.device);
        &self.shards[(h >> 7) as usize % SHARDS]
    }

    pub fn get(&self, k: &CacheKey) -> Option<Cached> {
        let mut s = self.shard(k).lock();
        match s.map.get_mut(k) {
            Some(e) => {
                e.referenced = true;
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(e.value.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub fn insert(&self, k: CacheKey, value: Cached) {
        let cost = value.cost();
        if cost > self.shard_budget {
            return;
        }
        let mut s = self.shard(&k).lock();
        if let Some(old) = s.map.insert(k, Entry { value, referenced: false }) {
            s.bytes -= old.value.cost();
        } else {
            s.ring.push_back(k);
        }
        s.bytes += cost;
        while s.bytes > self.shard_budget {
            let Some(victim) = s.ring.pop_front() else {
                break;
            };
            let second_chance = match s.map.get_mut(&victim) {
                Some(e) if e.referenced => {
                    e.referenced = false;
                    true
                }
                Some(_) => false,
                None => continue,
            };
            if second_chance {
                s.ring.push_back(victim);
            } else if let Some(e) = s.map.remove(&victim) {
                s.bytes -= e.value.cost();
            }
        }
    }

    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().bytes).sum()
    }

    pub fn clear(&self) {
        for s in &self.shards {
            let mut s = s.lock();
            s.map.clear();
            s.ring.clear();
            s.bytes = 0;
        }
    }
}
