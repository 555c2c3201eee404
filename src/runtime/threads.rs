//! How ops use rayon's thread pool: the thread that runs them is a member of
//! the pool, and the other members keep polling for work between ops instead
//! of going to sleep.
//!
//! A rayon worker with nothing to do yields to the OS a few dozen times and
//! then sleeps on a condition variable. Waking it costs the next parallel
//! region a trip through the OS scheduler (on a virtual machine, through the
//! host's too: the idle vCPU halts). A training step is a chain of short
//! parallel regions separated by short serial stretches (autograd
//! bookkeeping, allocation, packing), so without care the other cores spend
//! much of a step being woken — for a small layer, longer than its work.
//! OpenMP runtimes (and so PyTorch) do the same by default: idle threads
//! spin for a while before they sleep.
//!
//! The thread that runs ops (the *driver*: `main` after
//! [`super::init`] or [`adopt_calling_thread`], each run of an experiment
//! grid while it holds [`drive_from_current_thread`]'s guard) calls
//! [`keep_workers_warm`] as ops complete (tensor ops, the backward pass and
//! the optimisers do; on any other thread the call does nothing). That sends every other worker of
//! its pool a job that polls the pool for work — running any it finds, as
//! rayon's own idle loop would — until it has found none for the spin time
//! (`MORPHGRAD_SPIN_US` microseconds, default 1000; `0` turns spinning off).
//! After a longer pause the workers sleep as before, and the next op wakes
//! them once.
//!
//! The max-plus kernels hand their tasks out with [`run_tasks`]: each
//! thread starts at its own share of the tasks, the same from one call to
//! the next, and the caller waits for the last one with a plain spin rather
//! than rayon's idle loop, which yields to the OS between its checks.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Make the calling thread worker 0 of rayon's global pool (of
/// `RAYON_NUM_THREADS` threads, or one per core) and, for the rest of its
/// life, the driver of its ops (see [`drive_from_current_thread`]). Without
/// it, every parallel op called from a thread outside the pool hands its work
/// to a pool thread and sleeps until it is done: two context switches per
/// op, more than a small layer's whole forward pass. Part of
/// [`super::init`]; call it once at the start of `main`, before anything
/// uses rayon. Returns false if the global pool already existed.
pub fn adopt_calling_thread() -> bool {
    DRIVER.with(|d| d.set(true));
    rayon::ThreadPoolBuilder::new().use_current_thread().build_global().is_ok()
}

thread_local! {
    /// Whether this thread is a driver: see [`drive_from_current_thread`].
    static DRIVER: Cell<bool> = const { Cell::new(false) };
    /// Pollers this thread started that are still running.
    static POLLERS: Arc<AtomicUsize> = Arc::new(AtomicUsize::new(0));
}

/// Mark the calling thread, a member of a rayon pool, as the one running a
/// chain of ops (a training run) until the returned guard is dropped: in
/// between, [`keep_workers_warm`] called on it keeps the pool's other
/// workers polling. Only drivers do, because a poller must never run on the
/// driver itself — it would hold the driver in its loop — and a pool thread
/// that once drove a run and now runs tasks stolen from another must not
/// send pollers to it.
#[must_use = "the thread drives ops only while the guard lives"]
pub fn drive_from_current_thread() -> Driving {
    DRIVER.with(|d| d.set(true));
    Driving(std::marker::PhantomData)
}

/// While alive, the thread that created it is a driver (not `Send`: the
/// mark belongs to that thread).
pub struct Driving(std::marker::PhantomData<*const ()>);

impl Drop for Driving {
    fn drop(&mut self) {
        DRIVER.with(|d| d.set(false));
    }
}

/// How long a poller keeps polling after the last work it found.
fn spin_time() -> Duration {
    static SPIN: OnceLock<Duration> = OnceLock::new();
    *SPIN.get_or_init(|| {
        let us = match std::env::var("MORPHGRAD_SPIN_US") {
            Err(_) => 1000,
            Ok(v) => v.trim().parse().unwrap_or_else(|_| {
                eprintln!("warning: MORPHGRAD_SPIN_US={v:?} is not a whole number of microseconds; using 1000 (0 turns spinning off)");
                1000
            }),
        };
        Duration::from_micros(us)
    })
}

/// Keep the other workers of the calling driver's pool awake for the spin
/// time (see the module docs). Cheap when they already are: a thread-local
/// read and an atomic load. Does nothing on a thread that is not a driver or
/// not in a pool, in a one-thread pool, or with spinning turned off.
pub fn keep_workers_warm() {
    if !DRIVER.with(Cell::get) {
        return;
    }
    let (Some(me), threads) = (rayon::current_thread_index(), rayon::current_num_threads()) else { return };
    let spin = spin_time();
    if threads < 2 || spin.is_zero() {
        return;
    }
    POLLERS.with(|alive| {
        if alive.load(Ordering::Acquire) > 0 {
            return;
        }
        alive.store(threads - 1, Ordering::Release);
        let alive = Arc::clone(alive);
        rayon::spawn_broadcast(move |ctx| {
            if ctx.index() != me {
                poll(spin);
                alive.fetch_sub(1, Ordering::AcqRel);
            }
        });
    });
}

/// Run the pool's pending work as it appears, until none has appeared for `spin`.
fn poll(spin: Duration) {
    let mut last = Instant::now();
    loop {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => last = Instant::now(),
            _ if last.elapsed() >= spin => return,
            _ => std::hint::spin_loop(),
        }
    }
}

/// Run `task(t)` for every `t` in `0..n` on the current pool's threads,
/// the calling thread included; return when all have run.
///
/// Thread `k` of `T` starts at task `k·n/T` and goes on in order, wrapping
/// around, claiming each task it reaches that no other thread has; so with
/// balanced tasks each thread runs a contiguous share (the same share from
/// one call to the next, which keeps each thread's output rows in its own
/// cache for the next op), and a thread that falls behind is helped.
///
/// Unlike a rayon parallel iterator, the calling thread waits for the last
/// task with a plain spin: rayon's idle loop yields to the OS between its
/// checks (a `sched_yield` system call of about a microsecond here, often
/// more) and may go to sleep, so the end of a region was noticed late. The
/// wait is only ever for a task another thread is running: a helper that no
/// other thread has picked up leaves its tasks to the caller.
pub fn run_tasks(n: usize, task: impl Fn(usize) + Sync) {
    let threads = rayon::current_num_threads().min(n);
    if threads <= 1 {
        (0..n).for_each(task);
        return;
    }
    let claimed: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
    let done = AtomicUsize::new(0);
    let work = |k: usize| {
        let start = k * n / threads;
        for t in (start..n).chain(0..start) {
            if !claimed[t].swap(true, Ordering::Relaxed) {
                // Counted even if the task panics, so the wait below ends
                // and the scope passes the panic on.
                let _count = Done(&done);
                task(t);
            }
        }
    };
    rayon::scope(|s| {
        for k in 1..threads {
            let work = &work;
            s.spawn(move |_| work(k));
        }
        work(0);
        while done.load(Ordering::Acquire) < n {
            std::hint::spin_loop();
        }
    });
}

/// Counts a task as done when dropped.
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// Pollers the calling thread started that are still running.
#[cfg(test)]
fn pollers_running() -> usize {
    POLLERS.with(|alive| alive.load(Ordering::Acquire))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn pollers_run_the_pools_work_and_stop_when_idle() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        pool.install(|| {
            // Not a driver yet: nothing starts.
            keep_workers_warm();
            assert_eq!(pollers_running(), 0);
            let driving = drive_from_current_thread();
            keep_workers_warm();
            assert_eq!(pollers_running(), 1, "one poller for the one other worker");
            // Parallel work still completes (the poller runs stolen halves).
            for _ in 0..100 {
                let s: u64 = (0..100_000u64).into_par_iter().map(|v| v * v).sum();
                assert_eq!(s, (0..100_000u64).map(|v| v * v).sum::<u64>());
                keep_workers_warm();
            }
            // Without work the poller gives up after the spin time.
            let t = Instant::now();
            while pollers_running() > 0 {
                assert!(t.elapsed() < Duration::from_secs(5), "the poller never stopped");
                std::thread::sleep(Duration::from_micros(200));
            }
            // No longer a driver once the guard is gone.
            drop(driving);
            keep_workers_warm();
            assert_eq!(pollers_running(), 0);
        });
    }

    #[test]
    fn run_tasks_runs_every_task_once_in_any_pool() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for n in [0, 1, 2, 3, 7, 8, 100] {
                let runs: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                let on: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(usize::MAX)).collect();
                pool.install(|| {
                    run_tasks(n, |t| {
                        runs[t].fetch_add(1, Ordering::Relaxed);
                        on[t].store(rayon::current_thread_index().unwrap(), Ordering::Relaxed);
                        // Long enough that the other threads pick up their shares.
                        std::thread::sleep(Duration::from_micros(50));
                    })
                });
                assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1), "{threads} threads, {n} tasks");
                let used: std::collections::HashSet<usize> = on.iter().map(|t| t.load(Ordering::Relaxed)).collect();
                assert!(used.len() <= threads);
            }
        }
        // Outside any pool: the global pool runs them.
        let sum = AtomicUsize::new(0);
        run_tasks(10, |t| {
            sum.fetch_add(t, Ordering::Relaxed);
        });
        assert_eq!(sum.into_inner(), 45);
    }

    #[test]
    fn a_panicking_task_panics_the_caller_without_hanging() {
        for bad in [0, 5, 7] {
            // On a thread of its own, so a hang fails the test instead of
            // stalling it.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    pool.install(|| {
                        run_tasks(8, |t| {
                            std::thread::sleep(Duration::from_micros(100));
                            assert!(t != bad, "task {t} fails");
                        })
                    })
                }));
                tx.send(result.is_err()).unwrap();
            });
            let panicked = rx.recv_timeout(Duration::from_secs(20)).expect("run_tasks hung after a task panicked");
            assert!(panicked, "the panic of task {bad} reached the caller");
        }
    }
}
