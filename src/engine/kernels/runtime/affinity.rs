//! CPU affinity for the compute pool (`--pin-threads`): the CPUs this process may run on, and
//! pinning the calling thread to one of them. Pinning keeps a worker's slice of the weights and
//! activations in one core's caches; whether that beats the OS scheduler is measured per machine
//! (off by default: no gain measured on the 2-vCPU VMs).

use std::mem::{size_of, zeroed};

/// The CPUs of this process's affinity set, in increasing order (empty if the OS does not say).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain bits, so all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    // SAFETY: the kernel writes at most `size_of::<cpu_set_t>()` bytes into `set`.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, inside the set's bits.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pin the calling thread to `cpu`; false when the OS refuses (e.g. `cpu` is not allowed).
pub fn pin_current_thread(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: cpu_set_t is plain bits, so all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 means the calling thread.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_thread_runs_only_where_it_was_pinned() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty(), "the affinity set is readable on Linux");
        let last = *cpus.last().unwrap();
        let seen = std::thread::spawn(move || {
            assert!(pin_current_thread(last));
            allowed_cpus()
        })
        .join()
        .unwrap();
        assert_eq!(seen, vec![last]);
        // The spawning thread is untouched.
        assert_eq!(allowed_cpus(), cpus);
        assert!(!pin_current_thread(libc::CPU_SETSIZE as usize));
    }
}
