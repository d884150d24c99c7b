//! One persistent compute pool sized to the cores. A parallel region hands out task indices
//! through an atomic counter; idle workers spin briefly (decode steps come every few ms) and then
//! park on a condvar, so a descheduled thread never makes the others spin forever. A region
//! runs under its caller's kernel plan: a plan scoped with `KernelPlan::run` reaches the tasks.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;

use super::plan::{self, KernelPlan};

type Task<'a> = dyn Fn(usize) + Sync + 'a;

/// A type-erased pointer to the task of the current region.
#[derive(Clone, Copy)]
struct TaskPtr(*const Task<'static>);
// SAFETY: the pointee is `Sync` and `run` keeps it alive until every worker has left the region.
unsafe impl Send for TaskPtr {}

struct Shared {
    epoch: AtomicU64,
    /// The region's task, its task count and the plan its caller scoped.
    task: Mutex<Option<(TaskPtr, usize, Option<KernelPlan>)>>,
    wake: Condvar,
    next: AtomicUsize,
    pending_workers: AtomicUsize,
    done_lock: Mutex<()>,
    done: Condvar,
    panicked: AtomicBool,
    shutdown: AtomicBool,
}

pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    region: Mutex<()>,
}

thread_local! {
    static IN_REGION: Cell<bool> = const { Cell::new(false) };
}

/// Spin rounds before parking, about 100–150 µs (one round ≈ 0.1 µs on a 3 GHz Zen 5): long
/// enough to bridge consecutive regions of a decode step.
const SPIN_ITERS: usize = 1_000;

/// Plain work between two PAUSEs of a spin wait. Under a hypervisor, PAUSEs closer together than
/// ~128 cycles read as a vCPU spinning on a lock whose holder was preempted (KVM's pause-loop
/// exiting), and the vCPU gets descheduled: on the 2-vCPU EPYC VM a pool region of a 20 µs
/// decode GEMM then often took 0.25–0.37 ms (the median of back-to-back calls), every call
/// paying for a worker that had been yielded away. A dependent chain keeps the PAUSEs apart
/// (~150 cycles per round here; loads alone overlap with the PAUSE and do not).
const SPIN_CHAIN: u64 = 128;

/// One round of a spin wait: a short dependent chain, then a PAUSE.
#[inline]
fn spin_round() {
    let mut x = 1u64;
    for _ in 0..SPIN_CHAIN {
        x = std::hint::black_box(x.wrapping_mul(3));
    }
    std::hint::black_box(x);
    std::hint::spin_loop();
}

impl ThreadPool {
    /// A pool with `threads` compute threads in total (the caller counts as one).
    pub fn new(threads: usize) -> Self {
        Self::with_pinning(threads, false)
    }

    /// [`ThreadPool::new`], with worker i pinned to the i-th CPU of the process's affinity set
    /// when `pin` (the caller, which counts as thread 0, is left where it is: it is the engine
    /// or vision thread, whose placement is the OS's).
    pub fn with_pinning(threads: usize, pin: bool) -> Self {
        let cpus = if pin {
            super::affinity::allowed_cpus()
        } else {
            Vec::new()
        };
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            task: Mutex::new(None),
            wake: Condvar::new(),
            next: AtomicUsize::new(0),
            pending_workers: AtomicUsize::new(0),
            done_lock: Mutex::new(()),
            done: Condvar::new(),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
        });
        let workers = (1..threads.max(1))
            .map(|i| {
                let s = shared.clone();
                let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
                std::thread::Builder::new()
                    .name(format!("qwen3vl-compute-{i}"))
                    .spawn(move || {
                        if let Some(c) = cpu {
                            if !super::affinity::pin_current_thread(c) {
                                tracing::warn!(cpu = c, "could not pin a compute thread");
                            }
                        }
                        worker_loop(&s)
                    })
                    .expect("spawn compute thread")
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            region: Mutex::new(()),
        }
    }

    /// The process-wide pool, sized by the process kernel plan's `threads` when first used.
    pub fn global() -> &'static ThreadPool {
        static POOL: OnceLock<ThreadPool> = OnceLock::new();
        POOL.get_or_init(|| {
            let p = &plan::process().plan;
            ThreadPool::with_pinning(p.threads, p.pin_threads)
        })
    }

    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Run `f(0..n_tasks)` across the pool and return when all tasks are done. Nested calls from
    /// inside a task run serially on the calling thread.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if n_tasks == 1 || self.workers.is_empty() || IN_REGION.with(|c| c.get()) {
            (0..n_tasks).for_each(f);
            return;
        }
        let _region = self.region.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: only the lifetime is erased. `f` outlives this call, and this call does not return
        // before `pending_workers` reaches zero, i.e. before every worker has stopped using it.
        let ptr = TaskPtr(unsafe { std::mem::transmute::<&Task<'_>, &Task<'static>>(f) });
        {
            let mut t = s.task.lock().unwrap_or_else(|e| e.into_inner());
            *t = Some((ptr, n_tasks, plan::scoped()));
            s.next.store(0, Ordering::SeqCst);
            s.pending_workers
                .store(self.workers.len(), Ordering::SeqCst);
            s.epoch.fetch_add(1, Ordering::SeqCst);
        }
        s.wake.notify_all();
        IN_REGION.with(|c| c.set(true));
        let caller = catch_unwind(AssertUnwindSafe(|| claim_tasks(s, f, n_tasks)));
        IN_REGION.with(|c| c.set(false));
        let mut spins = 0;
        while s.pending_workers.load(Ordering::Acquire) != 0 {
            if spins < SPIN_ITERS {
                spins += 1;
                spin_round();
            } else {
                let g = s.done_lock.lock().unwrap_or_else(|e| e.into_inner());
                if s.pending_workers.load(Ordering::Acquire) != 0 {
                    let _ = s.done.wait_timeout(g, std::time::Duration::from_millis(1));
                }
            }
        }
        *s.task.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Err(p) = caller {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::SeqCst) {
            panic!("a compute task panicked on a worker thread");
        }
    }

    /// Split `0..len` into at most `threads` contiguous chunks (each a multiple of `align`
    /// except the last) and run `f(start, end)` on each.
    pub fn run_chunks(&self, len: usize, align: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        let align = align.max(1);
        let units = len.div_ceil(align);
        let parts = self.threads().min(units).max(1);
        let per = units.div_ceil(parts) * align;
        self.run(parts, &|i| {
            let start = i * per;
            let end = ((i + 1) * per).min(len);
            if start < end {
                f(start, end);
            }
        });
    }
}

fn claim_tasks(s: &Shared, f: &Task<'_>, n: usize) {
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        f(i);
    }
}

fn worker_loop(s: &Shared) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0;
        loop {
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            if s.epoch.load(Ordering::Acquire) != seen {
                break;
            }
            if spins < SPIN_ITERS {
                spins += 1;
                spin_round();
                continue;
            }
            let g = s.task.lock().unwrap_or_else(|e| e.into_inner());
            if s.epoch.load(Ordering::Acquire) == seen && !s.shutdown.load(Ordering::Acquire) {
                drop(s.wake.wait(g));
            }
        }
        seen = s.epoch.load(Ordering::Acquire);
        let job = *s.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((TaskPtr(ptr), n, scoped)) = job {
            IN_REGION.with(|c| c.set(true));
            plan::set_scoped(scoped);
            // SAFETY: `run` keeps the task alive until this worker decrements `pending_workers`.
            let f = unsafe { &*ptr };
            if catch_unwind(AssertUnwindSafe(|| claim_tasks(s, f, n))).is_err() {
                s.panicked.store(true, Ordering::SeqCst);
            }
            plan::set_scoped(None);
            IN_REGION.with(|c| c.set(false));
        }
        if s.pending_workers.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = s.done_lock.lock().unwrap_or_else(|e| e.into_inner());
            s.done.notify_all();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.task.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_exactly_once() {
        let pool = ThreadPool::new(3);
        for n in [1usize, 2, 5, 100] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            pool.run(n, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn chunks_cover_the_range() {
        let pool = ThreadPool::new(2);
        let sum = AtomicUsize::new(0);
        pool.run_chunks(1003, 16, &|a, b| {
            assert!(a % 16 == 0);
            sum.fetch_add(b - a, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 1003);
    }

    #[test]
    fn nested_regions_run_inline() {
        let pool = ThreadPool::new(2);
        let total = AtomicUsize::new(0);
        pool.run(4, &|_| {
            pool.run(3, &|_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(total.load(Ordering::Relaxed), 12);
    }
}
