//! File capabilities: rpm's `%caps` text (libcap's `cap_from_text` form, e.g.
//! `cap_net_raw,cap_net_admin=ep`) turned into the `security.capability` attribute the
//! kernel reads (`struct vfs_cap_data`, revision 2).

/// Capability names in kernel bit order (`include/uapi/linux/capability.h`).
const NAMES: [&str; 41] = [
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x0000_0001;

/// Parses `text` into the bytes of `security.capability`; `Err` names what did not parse.
pub(crate) fn to_xattr(text: &str) -> Result<Vec<u8>, String> {
    // Sets: effective, permitted, inheritable, as 64-bit masks.
    let (mut e, mut p, mut i) = (0u64, 0u64, 0u64);
    let all: u64 = (1u64 << NAMES.len()) - 1;
    for clause in text.split_whitespace() {
        let op_at = clause
            .find(['=', '+', '-'])
            .ok_or_else(|| format!("capability clause {clause:?} has no =, + or -"))?;
        let (names, mut rest) = clause.split_at(op_at);
        let mut mask = 0u64;
        if names.is_empty() || names.eq_ignore_ascii_case("all") {
            mask = all;
        } else {
            for name in names.split(',') {
                let name = name.to_ascii_lowercase();
                let bit = NAMES
                    .iter()
                    .position(|n| *n == name)
                    .or_else(|| name.parse::<usize>().ok().filter(|b| *b < 64))
                    .ok_or_else(|| format!("unknown capability {name:?}"))?;
                mask |= 1 << bit;
            }
        }
        if names.is_empty() && !rest.starts_with('=') {
            return Err(format!("capability clause {clause:?} names no capability"));
        }
        while !rest.is_empty() {
            let op = rest.as_bytes()[0];
            let flags_end = rest[1..]
                .find(['=', '+', '-'])
                .map_or(rest.len(), |n| n + 1);
            let flags = &rest[1..flags_end];
            rest = &rest[flags_end..];
            if op == b'=' {
                e &= !mask;
                p &= !mask;
                i &= !mask;
            }
            for flag in flags.chars() {
                let set = match flag {
                    'e' => &mut e,
                    'p' => &mut p,
                    'i' => &mut i,
                    other => return Err(format!("unknown capability flag {other:?}")),
                };
                if op == b'-' {
                    *set &= !mask;
                } else {
                    *set |= mask;
                }
            }
        }
    }
    let magic = VFS_CAP_REVISION_2 | if e != 0 { VFS_CAP_FLAGS_EFFECTIVE } else { 0 };
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&(p as u32).to_le_bytes());
    out.extend_from_slice(&(i as u32).to_le_bytes());
    out.extend_from_slice(&((p >> 32) as u32).to_le_bytes());
    out.extend_from_slice(&((i >> 32) as u32).to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_become_vfs_cap_data() {
        // As `setcap cap_net_raw=ep` writes it: effective flag, bit 13 permitted.
        let raw = to_xattr("cap_net_raw=ep").unwrap();
        assert_eq!(raw.len(), 20);
        assert_eq!(&raw[0..4], &0x0200_0001u32.to_le_bytes());
        assert_eq!(&raw[4..8], &(1u32 << 13).to_le_bytes());
        assert_eq!(&raw[8..12], &0u32.to_le_bytes());
        let raw = to_xattr("cap_net_admin,cap_net_raw+p cap_bpf+i").unwrap();
        assert_eq!(&raw[0..4], &0x0200_0000u32.to_le_bytes());
        assert_eq!(&raw[4..8], &((1u32 << 12) | (1 << 13)).to_le_bytes());
        assert_eq!(&raw[16..20], &(1u32 << (39 - 32)).to_le_bytes());
        assert!(to_xattr("cap_nonsense=ep").is_err());
        assert!(to_xattr("cap_chown=x").is_err());
    }
}
