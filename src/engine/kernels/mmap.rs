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
