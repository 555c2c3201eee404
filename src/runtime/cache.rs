//! The cache sizes this machine reports, for blocking that fits any CPU
//! rather than the one a kernel was tuned on.

use std::sync::OnceLock;

/// Bytes of the per-core L2 cache (Linux sysfs, read once); 1 MiB when the
/// system does not say. `MORPHGRAD_L2_BYTES=n` overrides it (to study
/// blocking, or on systems that report it wrong).
pub fn l2_bytes() -> usize {
    static L2: OnceLock<usize> = OnceLock::new();
    *L2.get_or_init(|| cache_bytes("MORPHGRAD_L2_BYTES", 2, 1 << 20))
}

/// Bytes of the per-core L1 data cache (Linux sysfs, read once); 32 KiB
/// when the system does not say. `MORPHGRAD_L1_BYTES=n` overrides it.
pub fn l1_bytes() -> usize {
    static L1: OnceLock<usize> = OnceLock::new();
    *L1.get_or_init(|| cache_bytes("MORPHGRAD_L1_BYTES", 1, 32 << 10))
}

/// The size `var` sets, else the one sysfs reports for `level`, else `default`.
fn cache_bytes(var: &str, level: u32, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).or_else(|| sysfs_cache_bytes(level)).unwrap_or(default)
}

/// Size of the first data or unified cache of `level` listed for cpu0.
fn sysfs_cache_bytes(level: u32) -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.flatten().find_map(|entry| {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        let is_level = read("level")?.trim().parse::<u32>().ok()? == level;
        let holds_data = matches!(read("type")?.trim(), "Data" | "Unified");
        if is_level && holds_data { parse_size(read("size")?.trim()) } else { None }
    })
}

/// "512K", "2048K", "32M" or a plain byte count, in bytes.
fn parse_size(s: &str) -> Option<usize> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => s.split_at(at),
        None => (s, ""),
    };
    let scale = match unit {
        "" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        _ => return None,
    };
    digits.parse::<usize>().ok().filter(|&v| v > 0).map(|v| v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("32M"), Some(32 << 20));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("0K"), None);
        assert_eq!(parse_size("12Q"), None);
        assert!(l2_bytes() >= 1 << 10 && l1_bytes() >= 1 << 10);
    }
}
