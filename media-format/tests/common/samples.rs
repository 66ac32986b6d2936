// Sample structures shared by the format tests.
#[allow(unused_imports)]
use hammer2_format::blockref::{Copies, FLAG_DEGRADED};
use hammer2_format::*;

#[allow(dead_code)]
pub fn sample_ptr(size: u32) -> BlockPtr {
    let mut copies = Copies::new();
    copies.push(Location::valid(0, RESERVED_BYTES + 4096));
    copies.push(Location::valid(1, RESERVED_BYTES + 8192));
    BlockPtr { size, check: CheckMethod::Crc32c.compute(b"x"), copies }
}

#[allow(dead_code)]
pub fn sample_data_ref(key: u64) -> Blockref {
    Blockref {
        btype: BlockType::Data,
        keybits: 16,
        level: 0,
        flags: 0,
        key,
        modify_tid: 5,
        mirror_tid: 6,
        data: BlockData::Block(sample_ptr(65536)),
        payload: Payload::None,
    }
}

#[allow(dead_code)]
pub fn sample_inode(content: InodeContent) -> InodeBlock {
    let size = match &content {
        InodeContent::Embedded(d) => d.len() as u64,
        InodeContent::Tree { .. } => 1 << 20,
    };
    InodeBlock {
        inum: 42,
        parent: 0,
        mode: 0o100644,
        uid: 1000,
        gid: 1000,
        nlink: 1,
        size,
        rdev: 0,
        atime: Timespec { sec: 1, nsec: 2 },
        mtime: Timespec { sec: 3, nsec: 4 },
        ctime: Timespec { sec: 5, nsec: 6 },
        btime: Timespec { sec: -7, nsec: 999_999_999 },
        version: 9,
        create_tid: 3,
        blocks: 65536,
        policy: InodePolicy::default(),
        content,
    }
}

#[allow(dead_code)]
pub fn sample_header() -> VolumeHeader {
    let dev = |i: u8| DeviceEntry {
        uuid: [i + 1; 16],
        size: 1 << 30,
        synced_tid: 10,
        free_units: 1000,
        missed_since: 0,
        read_errors: 1,
        write_errors: 2,
        check_errors: 3,
        repaired: 4,
        regions: 1,
        state: DeviceState::Online,
    };
    let mut root = sample_data_ref(0);
    root.btype = BlockType::Indirect;
    root.keybits = 0;
    root.level = 2;
    VolumeHeader {
        tid: 10,
        fs_uuid: [9; 16],
        device_uuid: [2; 16],
        device_index: 1,
        copies: 2,
        check: CheckMethod::Blake3,
        slot: 2,
        flags: 0,
        device_size: 1 << 30,
        next_inum: 100,
        commit_time_ns: 123,
        mkfs_time_ns: 100,
        data_block_shift: 16,
        indirect_block_shift: 16,
        version: FORMAT_VERSION,
        default_compression: 0,
        default_zstd_level: 0,
        incompat_features: 0,
        compat_features: 0,
        label: "demo".into(),
        sroot: [root, Blockref::EMPTY, Blockref::EMPTY, Blockref::EMPTY],
        devices: vec![dev(0), dev(1)],
    }
}
