//! The vision thread: collects pending requests, encodes their items in batches of at most
//! `max_batch_patches` patches (at least one item), and hands finished requests to the LLM stage.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use actix::Addr;

use super::encode;
use crate::actors::bridge::BridgeRx;
use crate::actors::error::RequestError;
use crate::actors::llm::worker::EngineStats;
use crate::actors::llm::{Admit, LlmActor};
use crate::actors::request::PreparedRequest;
use crate::actors::stream::{Fail, StreamActor};
use crate::engine::kernels::runtime::pool::ThreadPool;
use crate::engine::vision::VisionOutput;
use crate::engine::Qwen3VlModel;
use std::sync::atomic::Ordering;

/// Requests held by the worker beyond its channel (bounds memory).
const MAX_PENDING: usize = 8;
/// Recently encoded items kept for reuse by content hash.
const RECENT_ITEMS: usize = 16;

/// How the vision thread shares the cores with the engine thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisionSharing {
    /// Always use the shared compute pool (vision and decode alternate kernel by kernel).
    Pool,
    /// While sequences are decoding, run the tower on the vision thread alone, leaving the
    /// compute pool to the decode steps (the OS shares the cores between the threads); with
    /// nothing decoding, use the whole pool.
    Fair,
}

pub fn spawn_vision_worker(
    model: Arc<Qwen3VlModel>,
    rx: BridgeRx<Box<PreparedRequest>>,
    llm: Addr<LlmActor>,
    stream: Addr<StreamActor>,
    max_batch_patches: usize,
    sharing: VisionSharing,
    stats: Arc<EngineStats>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("qwen3vl-vision".into())
        .spawn(move || {
            // The compute pool runs nested regions inline on the calling thread. A private
            // two-thread pool gives the vision thread such a region: inside it, every kernel of
            // the tower runs single-threaded here instead of queueing for the shared pool,
            // where each of a decode step's hundreds of small kernels would wait behind a large
            // vision kernel.
            let solo = ThreadPool::new(2);
            let mut recent: VecDeque<(u128, Arc<VisionOutput>)> = VecDeque::new();
            let mut pending: VecDeque<Box<PreparedRequest>> = VecDeque::new();
            loop {
                if pending.is_empty() {
                    match rx.recv() {
                        Some(r) => pending.push_back(r),
                        None => return,
                    }
                }
                while pending.len() < MAX_PENDING {
                    match rx.try_recv() {
                        Some(r) => pending.push_back(r),
                        None => break,
                    }
                }
                pending.retain(|r| !r.cancel.is_cancelled());
                if pending.is_empty() {
                    continue;
                }
                // The same image (by content hash) is encoded once.
                for r in pending.iter_mut() {
                    for it in r.visuals.iter_mut().filter(|i| i.output.is_none()) {
                        if let Some((_, out)) = recent.iter().find(|(h, _)| *h == it.hash) {
                            it.output = Some(out.clone());
                            it.pixels = Vec::new();
                        }
                    }
                }
                // One tower pass over items of as many requests as fit the patch budget.
                let mut batch = Vec::new();
                let mut patches = 0;
                'fill: for (ri, r) in pending.iter().enumerate() {
                    for (ii, it) in r.visuals.iter().enumerate() {
                        if it.output.is_some() {
                            continue;
                        }
                        let n = it.grid[0] * it.grid[1] * it.grid[2];
                        if !batch.is_empty() && patches + n > max_batch_patches {
                            break 'fill;
                        }
                        batch.push((ri, ii));
                        patches += n;
                    }
                }
                let mut failed: Vec<(usize, String)> = Vec::new();
                {
                    let mut refs: Vec<&mut crate::actors::request::VisualItem> = Vec::new();
                    // Collect &mut items in batch order (batch is sorted by (ri, ii)).
                    let mut want = batch.iter().peekable();
                    for (ri, r) in pending.iter_mut().enumerate() {
                        for (ii, item) in r.visuals.iter_mut().enumerate() {
                            if want.peek() == Some(&&(ri, ii)) {
                                refs.push(item);
                                want.next();
                            }
                        }
                    }
                    let decoding = stats.running.load(Ordering::Relaxed) > 0;
                    let started = std::time::Instant::now();
                    let res = catch_unwind(AssertUnwindSafe(|| {
                        if sharing == VisionSharing::Fair && decoding {
                            let cell = std::sync::Mutex::new((&mut refs, None));
                            solo.run(2, &|task| {
                                if task == 0 {
                                    let mut g = cell.lock().unwrap_or_else(|e| e.into_inner());
                                    let (items, out) = &mut *g;
                                    *out = Some(encode::encode_items(&model, items));
                                }
                            });
                            let (_, out) = cell.into_inner().unwrap_or_else(|e| e.into_inner());
                            out.unwrap_or_else(|| {
                                Err(crate::engine::EngineError::Kernel(
                                    "vision task lost".into(),
                                ))
                            })
                        } else {
                            encode::encode_items(&model, &mut refs)
                        }
                    }));
                    tracing::debug!(
                        target: "qwen3vl::actors::vision",
                        items = refs.len(),
                        patches,
                        decoding,
                        ms = started.elapsed().as_secs_f64() * 1e3,
                        ok = matches!(res, Ok(Ok(()))),
                        "vision batch"
                    );
                    if let Ok(Ok(())) = &res {
                        for it in refs.iter() {
                            if let Some(out) = &it.output {
                                if recent.len() == RECENT_ITEMS {
                                    recent.pop_front();
                                }
                                recent.push_back((it.hash, out.clone()));
                            }
                        }
                    }
                    let err = match res {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(_) => Some("vision tower panicked".to_string()),
                    };
                    if let Some(e) = err {
                        let mut rs: Vec<usize> = batch.iter().map(|b| b.0).collect();
                        rs.dedup();
                        failed.extend(rs.into_iter().map(|r| (r, e.clone())));
                    }
                }
                // Fail requests whose batch failed; forward the complete ones in order.
                let mut next = VecDeque::new();
                for (ri, mut r) in pending.drain(..).enumerate() {
                    if let Some((_, e)) = failed.iter().find(|f| f.0 == ri) {
                        let _ = futures::executor::block_on(
                            stream.send(Fail(r.id, RequestError::Vision(e.clone()))),
                        );
                        continue;
                    }
                    if r.pending_visuals() > 0 {
                        next.push_back(r);
                        continue;
                    }
                    if let Err(e) = encode::assemble(&model, &mut r) {
                        let _ = futures::executor::block_on(
                            stream.send(Fail(r.id, RequestError::Vision(e.to_string()))),
                        );
                        continue;
                    }
                    r.timings.vision_done = Some(r.since_arrival());
                    let id = r.id;
                    // Waits for room in the LLM stage's mailbox (backpressure).
                    if !matches!(futures::executor::block_on(llm.send(Admit(r))), Ok(Ok(()))) {
                        let _ = futures::executor::block_on(
                            stream.send(Fail(id, RequestError::Shutdown)),
                        );
                    }
                }
                pending = next;
            }
        })
}
