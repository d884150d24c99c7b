//! Minimal data parallelism over disjoint output chunks (scoped std threads, no pool).

/// Calls `f(index, chunk)` for every `chunk_len`-sized chunk of `data`, spreading contiguous runs
/// of chunks over the available cores. Small inputs stay on the calling thread.
pub fn for_each_chunk<T: Send>(
    data: &mut [T],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    const MIN_PARALLEL: usize = 1 << 16;
    let chunk_len = chunk_len.max(1);
    let n_chunks = data.len().div_ceil(chunk_len);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(n_chunks);
    if threads <= 1 || data.len() < MIN_PARALLEL {
        data.chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    let per = n_chunks.div_ceil(threads);
    std::thread::scope(|s| {
        for (t, part) in data.chunks_mut(per * chunk_len).enumerate() {
            let f = &f;
            s.spawn(move || {
                for (i, c) in part.chunks_mut(chunk_len).enumerate() {
                    f(t * per + i, c);
                }
            });
        }
    });
}
