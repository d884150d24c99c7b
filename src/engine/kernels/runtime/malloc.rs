//! How many heaps ("arenas") glibc's malloc keeps. By default a new thread gets a new arena, up
//! to eight per core, and a server's many threads (HTTP workers, media and tokenizer tasks, the
//! compute pool) spread their allocations over all of them. Each arena keeps the memory it once
//! held, so RSS creeps up for minutes after start and never comes back: in the soak
//! (`tests/soak.rs`, 2 vCPUs) the default arenas grew RSS by up to 23 MiB/min over the measured
//! window and ended 40–70 MiB higher than one arena, which stayed flat (0–0.05 MiB/min). Small
//! allocations do not need arenas to scale: glibc's per-thread cache serves them without a lock.

/// Caps the arenas for a server on this machine: 1 + cores / 8 (see [`limit_arenas`]).
pub fn limit_server_arenas() -> Option<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    limit_arenas(1 + cores / 8)
}

/// Caps glibc's arenas at `n` for the rest of the process. Call it before other threads
/// allocate: glibc gives each new thread a new arena until it has eight, and those stay (the
/// soak, `tests/soak.rs`, caps them in its own `main` for that reason). Leaves
/// the operator's `MALLOC_ARENA_MAX` alone: glibc applied it at start-up. Returns the cap now
/// in force, or `None` where it cannot be set (another C library, or glibc refused).
pub fn limit_arenas(n: usize) -> Option<usize> {
    if let Some(v) = std::env::var_os("MALLOC_ARENA_MAX") {
        return v.to_str().and_then(|s| s.trim().parse().ok());
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_ARENA_MAX: i32 = -8;
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        let n = n.clamp(1, i32::MAX as usize);
        // SAFETY: mallopt only changes a tuning parameter of the allocator; glibc takes its own
        // lock, and the call is valid at any time from any thread.
        if unsafe { mallopt(M_ARENA_MAX, n as i32) } == 1 {
            return Some(n);
        }
    }
    let _ = n;
    None
}
