//! Read-only file mappings for checkpoints (the only OS-level unsafe the weight loader needs).

use std::fs::File;

use memmap2::Mmap;

/// Map a whole file read-only.
pub fn map_file(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: the mapping is read-only and private to this process; checkpoint files are not
    // expected to change while loaded (the same contract as safetensors' own loaders).
    unsafe { Mmap::map(file) }
}

/// Drop this process's resident pages in `[start, end)` (rounded inward to whole pages).
pub fn release_range(map: &Mmap, start: usize, end: usize) {
    const PAGE: usize = 4096;
    let (start, end) = (start.div_ceil(PAGE) * PAGE, end / PAGE * PAGE);
    if end > start && end <= map.len() {
        // SAFETY: the mapping is private and read-only; after MADV_DONTNEED a later read of the range
        // faults the file contents back in, so no live reference can observe a change.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
    }
}

/// Asks Linux to back `[ptr, ptr + len)` with transparent huge pages (where THP is in `madvise`
/// mode, the common default). Call it before the buffer is first written. Decode streams every
/// weight once per token; with 4 KiB pages one core reads ≈ 17 GB/s here, with 2 MiB pages ≈ 32.
/// A no-op elsewhere, when the kernel refuses, or where the kernel plan says no (its `huge_pages`,
/// off with `QWEN3VL_NO_HUGEPAGES` set).
pub fn advise_huge_pages(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        const MADV_HUGEPAGE: i32 = 14;
        extern "C" {
            fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
        }
        if !super::plan::active().huge_pages {
            return;
        }
        // Only whole 2 MiB ranges inside the buffer can become huge pages.
        let start = (ptr as usize).div_ceil(HUGE) * HUGE;
        let end = (ptr as usize + len) / HUGE * HUGE;
        if end > start {
            // SAFETY: [start, end) lies inside the caller's allocation; MADV_HUGEPAGE only changes
            // how the kernel backs those pages, never their contents.
            let _ = unsafe { madvise(start as *mut std::ffi::c_void, end - start, MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (ptr, len);
    }
}
